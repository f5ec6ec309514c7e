"""Cross-rank agreement: the same error on every rank, naming the ranks, instead of a hang.

Every function here is collective over ``comm`` (a ``mpitrain.comm.Comm``): all ranks call it
at the same point. They use only the communicator's buffer reductions and, for error text,
its small-string gather.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .errors import JobError, UsageError

if TYPE_CHECKING:
    from .comm import Comm


@contextmanager
def together(comm: "Comm") -> Iterator[None]:
    """Run a block on every rank; if it raises UsageError or OSError anywhere, fail everywhere.

    Every rank leaves the block with the same JobError, whose message names the ranks and
    their errors, so the job stops with one message instead of leaving ranks in a collective.
    """
    error = ""
    try:
        yield
    except UsageError as exc:
        error = str(exc)
    except OSError as exc:
        error = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    raise_if_any(comm, error)


def raise_if_any(comm: "Comm", error: str) -> None:
    """Raise the same JobError on every rank if any rank passed a non-empty ``error``."""
    flag = comm.Allreduce(np.array([1 if error else 0], dtype=np.int64))
    if flag[0]:
        raise JobError(describe_ranks(comm.gather_text(error), comm.size))


def identical(comm: "Comm", arr: np.ndarray) -> bool:
    """True when ``arr`` holds the same bits on every rank (two small reductions)."""
    bits = np.ascontiguousarray(arr).view(np.uint8)
    digest = np.frombuffer(hashlib.blake2b(bits.tobytes(), digest_size=16).digest(), dtype=np.int64).copy()
    low = comm.Allreduce(digest.copy(), "min")
    return bool(np.array_equal(comm.Allreduce(digest, "max"), low))


def agree_int(comm: "Comm", what: str, value: int, context: str) -> None:
    """Raise JobError on every rank unless all ranks passed the same ``value``."""
    values = comm.allgather_int(value)
    if (values != values[0]).any():
        seen = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
        raise JobError(f"ranks disagree on the {what} of {context} ({seen}); every rank must see the same data")


def describe_ranks(errors: list[str], size: int, limit: int = 4) -> str:
    """One line per distinct error message naming its ranks (just the message if all ranks agree)."""
    by_message: dict[str, list[int]] = {}
    for rank, message in enumerate(errors):
        if message:
            by_message.setdefault(message, []).append(rank)
    if len(by_message) == 1 and len(next(iter(by_message.values()))) == size:
        return next(iter(by_message))
    lines = [f"{_rank_list(ranks)}: {message}" for message, ranks in by_message.items()]
    if len(lines) > limit:
        lines[limit:] = [f"... and {len(lines) - limit} more different errors on other ranks"]
    return "\n".join(lines)


def _rank_list(ranks: list[int]) -> str:
    """'rank 3' or 'ranks 0, 2'."""
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))
