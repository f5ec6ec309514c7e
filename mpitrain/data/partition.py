"""Partition arithmetic: contiguous row blocks and shares of a global batch. NumPy only."""
from __future__ import annotations

import numpy as np


def block_bounds(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rows [start, stop) of ``rank``'s block when ``n`` rows are split into ``size`` blocks.

    Blocks are contiguous, in rank order, and their sizes differ by at most one (the first
    ``n % size`` blocks hold one extra row); with more ranks than rows the last blocks are empty.
    """
    if n < 0 or size < 1 or not 0 <= rank < size:
        raise ValueError(f"bad partition request: n={n}, size={size}, rank={rank}")
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def block_sizes(n: int, size: int) -> np.ndarray:
    """Sizes of the ``size`` blocks of ``n`` rows, shape (size,)."""
    return np.array([b - a for a, b in (block_bounds(n, size, r) for r in range(size))], dtype=np.int64)


def batch_shares(counts: np.ndarray, batch: int) -> np.ndarray:
    """Split a global batch over ranks in proportion to their row counts, shape (size,).

    Rank k gets floor(batch * c_{k+1} / N) - floor(batch * c_k / N) rows, where c_k is the
    number of rows before rank k and N the total: the shares sum to ``batch`` exactly, each
    is within one of batch * n_k / N, and an empty partition gets nothing.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros_like(counts)
    edges = np.concatenate([[0], np.cumsum(counts)])
    cuts = np.array([batch * int(e) // total for e in edges], dtype=np.int64)
    return np.diff(cuts)
