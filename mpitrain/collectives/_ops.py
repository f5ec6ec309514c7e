"""Reduction ops as NumPy ufuncs and the block arithmetic every algorithm shares (NumPy only)."""
from __future__ import annotations

import numpy as np

UFUNCS = {"sum": np.add, "max": np.maximum, "min": np.minimum}


def block_counts(n: int, parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous blocks covering ``n`` items; they differ by at most one."""
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def block_offsets(counts: list[int]) -> list[int]:
    """Start of each block: shape (len(counts) + 1,), the last entry is the total."""
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    return offsets
