"""The MPI layer of the training code: a private communicator, buffer collectives, job-wide errors.

Only this module and ``mpitrain.collectives._p2p`` use mpi4py (through ``_mpi``, which picks
the thread level). Arrays travel only through the
buffer calls (``Allreduce``, ``Bcast``, ``Gatherv``, or our own algorithms in
``mpitrain.collectives``); the lower-case pickling calls appear only for short strings (error
messages, host names).
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np

from . import collectives
from ._mpi import MPI
from .errors import JobError, UsageError

_OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}


class Comm:
    """A private duplicate of an MPI communicator that moves NumPy buffers.

    ``busy`` is True while this rank is inside a collective (the watchdog reports it).
    """

    def __init__(self, base: Optional[MPI.Comm] = None) -> None:
        self._comm = (MPI.COMM_WORLD if base is None else base).Dup()
        self.rank: int = self._comm.Get_rank()
        self.size: int = self._comm.Get_size()
        self.busy = False  # True while inside a collective (read by the watchdog)
        self._plans: dict[tuple, str] = {}  # (bytes, dtype, op) -> the algorithm auto chose
        if self.size > 1:
            _install_abort_hook()

    # -- buffer collectives ------------------------------------------------------------------
    def Allreduce(self, buf: np.ndarray, op: str = "sum", algorithm: str = "native",
                  compress: Optional[str] = None) -> np.ndarray:
        """Reduce ``buf`` (contiguous, any shape) in place over all ranks and return it.

        ``algorithm`` is "native" (the MPI library's call), "auto" or one of
        ``collectives.ALGORITHMS``; ``compress`` ("fp16", "bf16") sends 16-bit payloads. The
        plan ``auto`` makes for each buffer size is kept, so where it is the library's call the
        step pays nothing for the choice.
        """
        self.busy = True
        if algorithm == "auto" and compress is None:
            algorithm = self._plans.get((buf.nbytes, buf.dtype.char, op)) or self._plan(buf, op)
        if algorithm == "native" and compress is None:
            self._comm.Allreduce(MPI.IN_PLACE, buf, op=_OPS[op])
        else:
            collectives.allreduce(buf, op=op, algorithm=algorithm, compress=compress, comm=self._comm)
        self.busy = False
        return buf

    def Iallreduce(self, buf: np.ndarray, call: int = 0) -> "collectives.ordered.Pending":
        """Start a rank-ordered sum of ``buf`` (contiguous) in place; ``.test()`` progresses it, ``.wait()`` ends it.

        Reductions in flight together need different ``call`` numbers; every rank starts them
        in the same order (see ``collectives.start_allreduce``).
        """
        return collectives.start_allreduce(buf, comm=self._comm, call=call)

    def _plan(self, buf: np.ndarray, op: str) -> str:
        """Collective on first use: what ``auto`` does with buffers like this one (kept)."""
        key = (buf.nbytes, buf.dtype.char, op)
        self._plans[key] = collectives.plan(buf.nbytes, buf.dtype, op, comm=self._comm)
        return self._plans[key]

    def Bcast(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        """Overwrite ``buf`` on every rank with root's copy and return it."""
        self.busy = True
        self._comm.Bcast(buf, root=root)
        self.busy = False
        return buf

    def allgather_int(self, value: int) -> np.ndarray:
        """Return an int64 array of shape (size,) holding every rank's ``value``."""
        out = np.zeros(self.size, dtype=np.int64)
        out[self.rank] = value
        return self.Allreduce(out)

    def gather_rows(self, local: np.ndarray, root: int = 0) -> Optional[np.ndarray]:
        """Concatenate every rank's ``local`` (shape (n_k, ...)) in rank order on ``root``.

        Returns the array of shape (sum n_k, ...) on root and None elsewhere.
        """
        local = np.ascontiguousarray(local)
        row = int(np.prod(local.shape[1:], dtype=np.int64))
        counts = self.allgather_int(local.shape[0]) * row
        out = None
        if self.rank == root:
            out = np.empty((int(counts.sum()) // max(row, 1),) + local.shape[1:], dtype=local.dtype)
        self.busy = True
        self._comm.Gatherv(local, [out, counts] if out is not None else None, root=root)
        self.busy = False
        return out

    def identical(self, arr: np.ndarray) -> bool:
        """True when ``arr`` holds the same bits on every rank (two small reductions)."""
        bits = np.ascontiguousarray(arr).view(np.uint8)
        digest = np.frombuffer(_fingerprint(bits), dtype=np.int64).copy()
        low = self.Allreduce(digest.copy(), "min")
        return bool(np.array_equal(self.Allreduce(digest, "max"), low))

    def agree_int(self, what: str, value: int, context: str) -> None:
        """Collective: raise JobError on every rank unless all ranks passed the same ``value``."""
        values = self.allgather_int(value)
        if (values != values[0]).any():
            seen = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            raise JobError(f"ranks disagree on the {what} of {context} ({seen}); every rank must see the same data")

    def ranks_on_node(self) -> int:
        """How many ranks share this rank's node (shared-memory domain)."""
        node = self._comm.Split_type(MPI.COMM_TYPE_SHARED)
        size = node.Get_size()
        node.Free()
        return size

    def sum_shards(self, shards: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Sum every rank's rows of ``shards`` (shape (k, n), k may differ) into ``out`` (n,), in fixed point:
        the bits depend only on the set of rows over all ranks (``collectives.sum_shards``)."""
        self.busy = True
        collectives.sum_shards(shards, out, comm=self._comm)
        self.busy = False
        return out

    def reduce_scatter(self, buf: np.ndarray, algorithm: str = "ring") -> np.ndarray:
        """This rank's block (``collectives.block_counts``) of the sum of ``buf`` (shape (n,)) over ranks, a new array.

        ``algorithm`` is "ring" (the first half of the ring allreduce: the same bits) or "native".
        """
        self.busy = True
        mine = collectives.reduce_scatter(buf, algorithm=algorithm, comm=self._comm)
        self.busy = False
        return mine

    def Allgatherv(self, buf: np.ndarray, counts: list[int]) -> np.ndarray:
        """Fill every rank's block of ``buf`` (shape (sum(counts),); rank r's at sum(counts[:r])) from its owner."""
        displs = [sum(counts[:r]) for r in range(len(counts))]
        self.busy = True
        self._comm.Allgatherv(MPI.IN_PLACE, [buf, (list(counts), displs)])
        self.busy = False
        return buf

    def node(self) -> "Comm":
        """Collective: the ranks that share this rank's node (shared-memory domain), as a Comm of their own."""
        base = self._comm.Split_type(MPI.COMM_TYPE_SHARED)
        node = Comm(base)
        base.Free()
        return node

    def Sendrecv(self, send: np.ndarray, dest: int, recv: np.ndarray, source: int) -> np.ndarray:
        """Send ``send`` to rank ``dest`` while receiving ``recv`` (same dtype) from rank ``source``; returns recv."""
        self.busy = True
        self._comm.Sendrecv(send, dest, 0, recv, source, 0)
        self.busy = False
        return recv

    def barrier(self) -> None:
        """Wait until every rank arrives."""
        self._comm.Barrier()

    # -- agreement and failure ---------------------------------------------------------------
    def gather_text(self, text: str) -> list[str]:
        """Every rank's short ``text``, in rank order, on every rank."""
        return self._comm.allgather(text)  # small control object (strings), never arrays

    @contextmanager
    def together(self) -> Iterator[None]:
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
        self.raise_if_any(error)

    def raise_if_any(self, error: str) -> None:
        """Collective: raise the same JobError on every rank if any rank passed a non-empty error."""
        flag = self.Allreduce(np.array([1 if error else 0], dtype=np.int64))
        if flag[0]:
            raise JobError(describe_ranks(self.gather_text(error), self.size))

    def abort(self, code: int) -> None:
        """End the whole job now with exit status ``code`` (never 0 for an error)."""
        sys.stdout.flush()
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(code)

    def info(self) -> dict:
        """Versions, thread level and processor names (collective)."""
        import mpi4py

        levels = {
            MPI.THREAD_SINGLE: "single",
            MPI.THREAD_FUNNELED: "funneled",
            MPI.THREAD_SERIALIZED: "serialized",
            MPI.THREAD_MULTIPLE: "multiple",
        }
        return {
            "numpy": np.__version__,
            "mpi4py": mpi4py.__version__,
            "mpi_library": MPI.Get_library_version().strip().splitlines()[0],
            "mpi_standard": "%d.%d" % MPI.Get_version(),
            "world_size": self.size,
            "thread_level": levels.get(MPI.Query_thread(), str(MPI.Query_thread())),
            "processors": self.gather_text(MPI.Get_processor_name()),
        }


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


def _fingerprint(bits: np.ndarray) -> bytes:
    """A 16-byte digest of a byte array."""
    import hashlib

    return hashlib.blake2b(bits.tobytes(), digest_size=16).digest()


_hook_installed = False


def _install_abort_hook() -> None:
    """Make an uncaught exception on any rank print once (with the rank) and abort the job."""
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True

    def hook(kind, value, tb):  # type: ignore[no-untyped-def]
        report_and_abort(value, tb)

    sys.excepthook = hook


def report_and_abort(exc: BaseException, tb=None) -> None:  # type: ignore[no-untyped-def]
    """Print ``exc`` prefixed with this rank, then end the whole job with a non-zero status."""
    rank, size = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
    where = f"rank {rank} of {size}"
    if isinstance(exc, UsageError):
        code, text = 2, f"mpitrain: error{f' on {where}' if size > 1 else ''}: {exc}\n"
    elif isinstance(exc, KeyboardInterrupt):
        code, text = 130, f"mpitrain: interrupted on {where}\n"
    else:
        code = 1
        lines = traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)
        text = "".join(f"[{where}] {line}" for line in "".join(lines).splitlines(True))
        text = f"mpitrain: unexpected error on {where}; traceback follows\n{text}"
    sys.stderr.write(text)
    sys.stderr.flush()
    sys.stdout.flush()
    if size > 1:
        time.sleep(0.25)  # let the launcher forward this rank's output before Abort tears it down
        MPI.COMM_WORLD.Abort(code)
    os._exit(code)


_world: Optional[Comm] = None


def world() -> Comm:
    """The process-wide private duplicate of COMM_WORLD, created on first use."""
    global _world
    if _world is None:
        _world = Comm()
    return _world
