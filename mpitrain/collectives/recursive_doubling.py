"""Recursive doubling allreduce: log2(p) exchanges of the whole buffer.

Latency-optimal for small buffers. When p is not a power of two, the first 2*rem ranks
(rem = p - 2^floor(log2 p)) pair up: each even one folds its buffer into its odd neighbour and
sits out, then receives the result at the end (fold-in / fold-out). Every exchange combines the
same two partial results on both partners, and IEEE addition, max and min are commutative, so
all ranks end with the same bits.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ._ops import UFUNCS
from ..comm import Comm

TAG = 12


def fold_in(ch: Comm, buf: np.ndarray, op: str) -> Optional[int]:
    """Fold extra ranks into their partners; return this rank's index among the 2^k survivors, or None."""
    p, r = ch.size, ch.rank
    pof2 = 1 << (p.bit_length() - 1)
    rem = p - pof2
    if r < 2 * rem:
        if r % 2 == 0:
            ch.send(buf, r + 1, TAG)
            return None
        got = ch.scratch(buf.size, buf.dtype)
        ch.recv(got, r - 1, TAG)
        UFUNCS[op](buf, got, out=buf)
        return r // 2
    return r - rem


def fold_out(ch: Comm, buf: np.ndarray) -> None:
    """Send the finished ``buf`` from each survivor back to the rank that folded into it."""
    rem = ch.size - (1 << (ch.size.bit_length() - 1))
    if ch.rank < 2 * rem:
        if ch.rank % 2 == 0:
            ch.recv(buf, ch.rank + 1, TAG)
        else:
            ch.send(buf, ch.rank - 1, TAG)


def real_rank(virtual: int, size: int) -> int:
    """The rank that plays survivor ``virtual`` after ``fold_in``."""
    rem = size - (1 << (size.bit_length() - 1))
    return 2 * virtual + 1 if virtual < rem else virtual + rem


def allreduce(ch: Comm, buf: np.ndarray, op: str) -> None:
    """Reduce ``buf`` (shape (n,)) in place over all ranks by recursive doubling."""
    if ch.size == 1:
        return
    me = fold_in(ch, buf, op)
    if me is not None:
        ufunc = UFUNCS[op]
        pof2 = 1 << (ch.size.bit_length() - 1)
        got = ch.scratch(buf.size, buf.dtype)
        mask = 1
        while mask < pof2:
            partner = real_rank(me ^ mask, ch.size)
            ch.sendrecv(buf, partner, got, partner, TAG)
            ufunc(buf, got, out=buf)
            mask <<= 1
    fold_out(ch, buf)
