"""References for the collectives tests: plain NumPy on an allgather of the inputs, which every rank computes."""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

WORLD = MPI.COMM_WORLD


def gather_rows(local: np.ndarray, comm: MPI.Intracomm = WORLD) -> np.ndarray:
    """Every rank's ``local`` (shape (n,), same n everywhere) stacked in rank order: shape (p, n)."""
    local = np.ascontiguousarray(local)
    out = np.empty((comm.Get_size(),) + local.shape, dtype=local.dtype)
    comm.Allgather(local, out)
    return out


def same_on_all_ranks(arr: np.ndarray, comm: MPI.Intracomm = WORLD) -> bool:
    """True when ``arr`` has the same bits on every rank (every rank gets the same answer)."""
    bits = gather_rows(np.ascontiguousarray(arr).reshape(-1).view(np.uint8), comm)
    return bool((bits == bits[0]).all())


def lengths(size: int) -> list[int]:
    """The lengths every algorithm is tested at for ``size`` ranks (deduplicated, sorted)."""
    return sorted({0, 1, max(size - 1, 0), size, size + 1, 2**5 + 1, 2**10 + 1})


def inputs(rank: int, n: int, dtype: np.dtype) -> np.ndarray:
    """rank * n + i (catches misplaced blocks), plus a seeded fraction in [0, 1) for floats."""
    base = rank * n + np.arange(n, dtype=np.int64)
    if np.dtype(dtype).kind == "i":
        return (base - n).astype(dtype)  # some negatives, so max/min and sign matter
    fraction = np.random.default_rng([rank, n]).random(n)
    return (base + fraction - n).astype(dtype)


def reference(rows: np.ndarray, op: str) -> np.ndarray:
    """The reduction over axis 0 of ``rows`` (shape (p, n)) in rank order, float sums in float64."""
    if op in ("sum", "avg"):
        acc = rows.astype(np.float64 if rows.dtype.kind == "f" else rows.dtype).sum(axis=0)
        return acc / rows.shape[0] if op == "avg" else acc
    return rows.max(axis=0) if op == "max" else rows.min(axis=0)


def everywhere(ok: bool, comm: MPI.Intracomm = WORLD) -> bool:
    """True when ``ok`` holds on every rank: each rank asserts the same value and none is left blocked."""
    return bool(gather_rows(np.array([ok], dtype=np.int64), comm).all())
