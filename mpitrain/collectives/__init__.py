"""Our own collectives on MPI point-to-point, with ``auto`` choosing the fastest per call.

Every function is collective: all ranks of ``comm`` must call it in the same order with the
same shape, dtype and options. ``comm`` is anything ``mpitrain.comm.as_comm`` takes: None (the
process's private duplicate of ``COMM_WORLD``, the same as ``mpitrain.world()``), a
``mpitrain.Comm``, or an mpi4py intracommunicator (which gets its own private duplicate), so
these messages never match the user's own receives.

>>> import numpy as np
>>> from mpitrain import collectives
>>> grad = np.ones(10)
>>> grad = collectives.allreduce(grad, op="avg")     # in place, auto-selected algorithm
>>> total = collectives.allreduce(grad, np.empty_like(grad), compress="bf16")
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from ..comm import Comm, as_comm
from . import auto, compress as _compress, deterministic as _deterministic
from . import hierarchical, native, ordered, rabenseifner, recursive_doubling, ring, tree
from ._ops import block_counts, block_offsets
from .compress import Feedback, feedback_apply, feedback_init

__all__ = [
    "ALGORITHMS",
    "OPS",
    "DTYPES",
    "allreduce",
    "allreduce_many",
    "start_allreduce",
    "reduce",
    "bcast",
    "reduce_scatter",
    "allgather",
    "sum_shards",
    "plan",
    "Feedback",
    "feedback_init",
    "feedback_apply",
]


def _auto(comm: Comm, buf: np.ndarray, op: str) -> None:
    """Reduce ``buf`` (shape (n,)) in place with the algorithm ``auto`` picks for it on ``comm``."""
    ALGORITHMS[auto.plan(comm, buf.nbytes)](comm, buf, op)


ALGORITHMS: dict[str, Callable[[Comm, np.ndarray, str], None]] = {
    "native": native.allreduce,
    "ring": ring.allreduce,
    "recursive_doubling": recursive_doubling.allreduce,
    "rabenseifner": rabenseifner.allreduce,
    "tree": tree.allreduce,
    "ordered": ordered.allreduce,
    "hierarchical": lambda comm, buf, op: hierarchical.allreduce(comm, buf, op, _auto),
}
OPS = ("sum", "avg", "max", "min")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64))

_DTYPE_SET = frozenset(DTYPES)
_FAST_OPS = frozenset(("sum", "max", "min"))  # valid for every dtype: skips a call on the latency path


def plan(nbytes: int, *, comm: Any = None) -> str:
    """The algorithm ``algorithm="auto"`` uses for a buffer of ``nbytes`` bytes on ``comm`` (collective on first use)."""
    return auto.plan(as_comm(comm), nbytes)


def _check(buf: Any, name: str) -> None:
    """Raise unless ``buf`` is a C-contiguous ndarray of a supported dtype."""
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, not {type(buf).__name__}")
    if buf.dtype not in _DTYPE_SET:
        raise TypeError(
            f"{name} has dtype {buf.dtype}, but collectives support float32, float64, int32 and int64; "
            f"convert with {name}.astype(np.float64)"
        )
    if not buf.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")


def _flat(buf: Any, name: str) -> np.ndarray:
    """``buf`` viewed as shape (n,), after ``_check``."""
    _check(buf, name)
    return buf.reshape(-1)


def _target(buf: np.ndarray, out: Optional[np.ndarray]) -> np.ndarray:
    """The array that receives the result (``buf`` itself when ``out`` is None), checked."""
    if out is None:
        target = buf
    else:
        target = out
        _check(out, "out")
        if out.shape != buf.shape or out.dtype != buf.dtype:
            raise ValueError(
                f"out has shape {out.shape} and dtype {out.dtype}, but buf has {buf.shape} and {buf.dtype}; "
                "allocate out with np.empty_like(buf)"
            )
        if out is not buf and np.shares_memory(out, buf):
            raise ValueError("out overlaps buf without being buf; pass out=None to reduce in place")
    if not target.flags.writeable:
        raise ValueError("the result array is read-only; pass a writeable out= array")
    return target


def _check_op(op: str, dtype: np.dtype) -> None:
    """Raise for an unknown op or an average of integers."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, not {op!r}")
    if op == "avg" and dtype.kind != "f":
        raise TypeError(f"op='avg' needs a float dtype, not {dtype}; sum the integers and divide yourself")


def allreduce(
    buf: np.ndarray,
    out: Optional[np.ndarray] = None,
    *,
    op: str = "sum",
    algorithm: str = "auto",
    comm: Any = None,
    compress: Optional[str] = None,
    deterministic: bool = False,
) -> np.ndarray:
    """Reduce ``buf`` (any shape) over all ranks into ``out`` (same shape and dtype) and return it.

    ``out=None`` reduces in place, overwriting ``buf``. ``op`` is "sum", "avg", "max" or "min";
    ``algorithm`` is "auto" or a key of ``ALGORITHMS``. ``compress`` ("fp16" or "bf16", float
    sums only) sends 16-bit payloads and accumulates in float32. ``deterministic=True`` makes
    float sums bitwise independent of the number of ranks (see ``deterministic.py``). Every
    algorithm gives the same bits on every rank.
    """
    flags = buf.flags if type(buf) is np.ndarray and out is None else None  # the latency path: one flags read
    if flags is not None and flags.c_contiguous and flags.writeable and buf.dtype in _DTYPE_SET:
        target = buf
    else:
        _check(buf, "buf")
        target = _target(buf, out)
    if op not in _FAST_OPS:
        _check_op(op, buf.dtype)
    if algorithm != "auto" and algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be 'auto' or one of {sorted(ALGORITHMS)}, not {algorithm!r}")
    if compress is not None:
        _check_compress(compress, buf.dtype, op, algorithm, deterministic)
    ch = comm if type(comm) is Comm else as_comm(comm)
    if target is not buf:
        np.copyto(target, buf)
    reduce_op = "sum" if op == "avg" else op
    ch.busy = True  # the watchdog says a rank stuck here waits in a collective
    if deterministic and buf.dtype.kind == "f" and reduce_op == "sum":
        run = _auto if algorithm == "auto" else ALGORITHMS[algorithm]
        _deterministic.sum_shards(ch, target.reshape(1, -1), target.reshape(-1), lambda ints: run(ch, ints, "sum"))
    elif ch.size == 1:
        pass
    elif compress is not None:
        _compress.allreduce(ch, target.reshape(-1), reduce_op, compress)
    else:
        if algorithm == "auto":
            plans = ch.plans
            algorithm = (plans.get(target.nbytes) if plans is not None else None) or auto.plan(ch, target.nbytes)
        if algorithm == "native":  # the MPI call takes any shape: skip the reshape on the latency path
            ch.native_allreduce(target, reduce_op)
        else:
            ALGORITHMS[algorithm](ch, target.reshape(-1), reduce_op)
    ch.busy = False
    if op == "avg":
        np.divide(target, ch.size, out=target)
    return target


def start_allreduce(buf: np.ndarray, *, op: str = "sum", comm: Any = None, call: int = 0) -> ordered.Pending:
    """Start a rank-ordered reduction of ``buf`` (contiguous, any shape) in place; finish it with ``wait()``.

    The result has the bits of ``allreduce(buf, algorithm="ordered")`` however a buffer is split
    into calls. Calls in flight at the same time need different ``call`` numbers (0 to 4095),
    each with its own scratch memory, and every rank must start them in the same order.
    ``test()`` lets MPI progress the reduction while the caller computes.
    """
    _check(buf, "buf")
    _target(buf, None)
    if op not in _FAST_OPS:
        raise ValueError(f"op must be one of {sorted(_FAST_OPS)}, not {op!r}")
    if not 0 <= call < ordered.TAG_SPAN // 2:
        raise ValueError(f"call must be between 0 and {ordered.TAG_SPAN // 2 - 1}, not {call}")
    ch = comm if type(comm) is Comm else as_comm(comm)
    return ordered.start(ch, buf.reshape(-1), op, call, slot=16 + call)


def allreduce_many(arrays: list[np.ndarray], *, op: str = "sum", algorithm: str = "auto", comm: Any = None,
                   compress: Optional[str] = None, deterministic: bool = False) -> list[np.ndarray]:
    """Reduce several arrays (one dtype, any shapes) in place with one fused allreduce; returns them.

    The arrays are copied into one buffer of shape (sum of sizes,), reduced with the options of
    ``allreduce``, and copied back: one message schedule instead of one per array.
    """
    if not arrays:
        return arrays
    for i, a in enumerate(arrays):
        _check(a, f"arrays[{i}]")
        _target(a, None)  # writeable
        if a.dtype != arrays[0].dtype:
            raise TypeError(f"arrays[{i}] has dtype {a.dtype} but arrays[0] has {arrays[0].dtype}; fuse one dtype at a time")
    fused = np.concatenate([a.reshape(-1) for a in arrays])
    allreduce(fused, op=op, algorithm=algorithm, comm=comm, compress=compress, deterministic=deterministic)
    start = 0
    for a in arrays:
        a.reshape(-1)[...] = fused[start:start + a.size]
        start += a.size
    return arrays


def _check_compress(compress: str, dtype: np.dtype, op: str, algorithm: str, deterministic: bool) -> None:
    """Raise ValueError unless ``compress`` is a known codec used on a float sum over the ring."""
    if compress not in _compress.CODECS:
        raise ValueError(f"compress must be None or one of {sorted(_compress.CODECS)}, not {compress!r}")
    if dtype.kind != "f" or op not in ("sum", "avg") or deterministic or algorithm not in ("auto", "ring"):
        raise ValueError(
            "compress works for float sums and averages with algorithm 'auto' or 'ring' and "
            f"deterministic=False (got dtype {dtype}, op {op!r}, algorithm {algorithm!r}, "
            f"deterministic={deterministic})"
        )


def sum_shards(shards: np.ndarray, out: Optional[np.ndarray] = None, *, comm: Any = None) -> np.ndarray:
    """Sum every rank's rows of ``shards`` (shape (k, n), float) into ``out`` (shape (n,)), deterministically.

    The bits depend only on the set of rows over all ranks, not on how they are split among
    ranks (``k`` may differ, even be 0), so a job on 1, 2, 3 or 4 ranks gets the same result.
    """
    if not isinstance(shards, np.ndarray) or shards.ndim != 2 or shards.dtype.kind != "f":
        raise TypeError("shards must be a 2-D float numpy.ndarray of shape (k, n)")
    if out is None:
        out = np.empty(shards.shape[1], dtype=shards.dtype)
    elif out.shape != (shards.shape[1],) or out.dtype.kind != "f":
        raise ValueError(f"out must be a float array of shape ({shards.shape[1]},), not {out.shape} {out.dtype}")
    ch = as_comm(comm)
    _deterministic.sum_shards(ch, shards, out, lambda ints: _auto(ch, ints, "sum"))
    return out


def reduce(buf: np.ndarray, out: Optional[np.ndarray] = None, *, op: str = "sum", root: int = 0,
           algorithm: str = "tree", comm: Any = None) -> Optional[np.ndarray]:
    """Reduce ``buf`` (any shape) onto ``root``; returns the result there and None elsewhere.

    ``buf`` is never modified unless it is ``out`` (or ``out`` is None) on the root.
    ``algorithm`` is "tree" (binomial) or "native".
    """
    flat = _flat(buf, "buf")
    _check_op(op, buf.dtype)
    ch = as_comm(comm)
    _check_root(root, ch.size)
    if ch.rank == root:
        target = _target(buf, out)
        work = target.reshape(-1)
        if target is not buf:
            np.copyto(work, flat)
    else:
        work = flat.copy()
    reduce_op = "sum" if op == "avg" else op
    if algorithm == "tree":
        tree.reduce(ch, work, reduce_op, root)
    elif algorithm == "native":
        ch.native_reduce(work, reduce_op, root)
    else:
        raise ValueError(f"reduce algorithm must be 'tree' or 'native', not {algorithm!r}")
    if ch.rank != root:
        return None
    if op == "avg":
        np.divide(work, ch.size, out=work)
    return target


def bcast(buf: np.ndarray, *, root: int = 0, algorithm: str = "tree", comm: Any = None) -> np.ndarray:
    """Overwrite ``buf`` (any shape) on every rank with root's copy and return it."""
    flat = _flat(buf, "buf")
    _target(buf, None)
    ch = as_comm(comm)
    _check_root(root, ch.size)
    if algorithm == "tree":
        tree.bcast(ch, flat, root)
    elif algorithm == "native":
        ch.Bcast(flat, root)
    else:
        raise ValueError(f"bcast algorithm must be 'tree' or 'native', not {algorithm!r}")
    return buf


def reduce_scatter(buf: np.ndarray, *, op: str = "sum", algorithm: str = "ring", comm: Any = None) -> np.ndarray:
    """This rank's block of the reduction of ``buf`` (shape (n,)): a new array of shape (n_r,).

    Blocks follow ``block_counts(n, size)``: rank r gets n // size items, plus one if
    r < n % size. ``buf`` is not modified. ``algorithm`` is "ring" or "native".
    """
    _check_op(op, buf.dtype)
    flat = _flat(buf, "buf").copy() if algorithm == "ring" else _flat(buf, "buf")
    ch = as_comm(comm)
    reduce_op = "sum" if op == "avg" else op
    counts = block_counts(flat.size, ch.size)
    at = block_offsets(counts)
    if algorithm == "ring":
        ring.reduce_scatter(ch, flat, reduce_op)
        mine = flat[at[ch.rank]:at[ch.rank + 1]].copy()
    elif algorithm == "native":
        mine = ch.native_reduce_scatter(flat, counts, reduce_op)
    else:
        raise ValueError(f"reduce_scatter algorithm must be 'ring' or 'native', not {algorithm!r}")
    if op == "avg":
        np.divide(mine, ch.size, out=mine)
    return mine


def allgather(block: np.ndarray, *, algorithm: str = "ring", comm: Any = None) -> np.ndarray:
    """Every rank's ``block`` (shape (m,), the same m everywhere) stacked in rank order: shape (size, m)."""
    flat = _flat(block, "block")
    ch = as_comm(comm)
    out = np.empty((ch.size, flat.size), dtype=flat.dtype)
    out[ch.rank] = flat
    counts = [flat.size] * ch.size
    if algorithm == "ring":
        ring.allgather(ch, out.reshape(-1), block_offsets(counts))
    elif algorithm == "native":
        ch.native_allgather(out.reshape(-1), counts)
    else:
        raise ValueError(f"allgather algorithm must be 'ring' or 'native', not {algorithm!r}")
    return out


def _check_root(root: int, size: int) -> None:
    """Raise ValueError unless 0 <= root < size."""
    if not 0 <= root < size:
        raise ValueError(f"root is {root}, but the communicator has {size} ranks (0..{size - 1})")
