"""Rabenseifner allreduce: recursive-halving reduce-scatter, then recursive-doubling allgather.

Moves 2(p-1)/p of the buffer like the ring but in 2 log2(p) steps. Non-powers of two use the
same fold-in / fold-out as recursive doubling. The buffer is cut into 2^k blocks whose sizes
differ by at most one; survivor v ends the reduce-scatter owning block v, reduced once on one
rank, so every rank gets the same bits.
"""
from __future__ import annotations

import numpy as np

from ._ops import UFUNCS, block_counts, block_offsets
from ..comm import Comm
from .recursive_doubling import fold_in, fold_out, real_rank

TAG = 13


def allreduce(ch: Comm, buf: np.ndarray, op: str) -> None:
    """Reduce ``buf`` (shape (n,)) in place over all ranks with Rabenseifner's algorithm."""
    if ch.size == 1:
        return
    me = fold_in(ch, buf, op)
    if me is not None:
        pof2 = 1 << (ch.size.bit_length() - 1)
        at = block_offsets(block_counts(buf.size, pof2))
        ufunc = UFUNCS[op]
        got = ch.scratch(at[pof2 // 2], buf.dtype)  # the lower half is the larger
        lo, hi = 0, pof2  # blocks [lo, hi) are this rank's current share
        half = pof2 // 2
        while half >= 1:
            partner = real_rank(me ^ half, ch.size)
            mid = lo + (hi - lo) // 2
            keep, give = ((lo, mid), (mid, hi)) if me & half == 0 else ((mid, hi), (lo, mid))
            kept = buf[at[keep[0]]:at[keep[1]]]
            incoming = got[: kept.size]
            ch.sendrecv(buf[at[give[0]]:at[give[1]]], partner, incoming, partner, TAG)
            ufunc(kept, incoming, out=kept)
            lo, hi = keep
            half //= 2
        half = 1
        while half < pof2:
            partner = real_rank(me ^ half, ch.size)
            width = hi - lo
            plo = lo - width if me & half else lo + width
            ch.sendrecv(buf[at[lo]:at[hi]], partner, buf[at[plo]:at[plo + width]], partner, TAG)
            lo, hi = min(lo, plo), max(hi, plo + width)
            half <<= 1
    fold_out(ch, buf)
