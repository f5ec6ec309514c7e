"""Binomial trees: reduce to a root in ceil(log2 p) steps, broadcast from it in as many.

Allreduce is reduce to rank 0 then broadcast, so the result is computed once and copied.
"""
from __future__ import annotations

import numpy as np

from ._ops import UFUNCS
from ..comm import Comm

TAG = 14


def reduce(ch: Comm, buf: np.ndarray, op: str, root: int) -> None:
    """Reduce ``buf`` (shape (n,)) onto ``root``; other ranks' ``buf`` is left as partial results."""
    p = ch.size
    me = (ch.rank - root) % p
    ufunc = UFUNCS[op]
    mask = 1
    while mask < p:
        if me & mask:
            ch.send(buf, (me - mask + root) % p, TAG)
            return
        if me + mask < p:
            got = ch.scratch(buf.size, buf.dtype)
            ch.recv(got, (me + mask + root) % p, TAG)
            ufunc(buf, got, out=buf)
        mask <<= 1


def bcast(ch: Comm, buf: np.ndarray, root: int) -> None:
    """Copy ``buf`` (shape (n,)) from ``root`` to every rank."""
    p = ch.size
    me = (ch.rank - root) % p
    mask = 1
    while mask < p:
        if me & mask:
            ch.recv(buf, (me - mask + root) % p, TAG)
            break
        mask <<= 1
    mask >>= 1
    while mask > 0:
        if me + mask < p:
            ch.send(buf, (me + mask + root) % p, TAG)
        mask >>= 1


def allreduce(ch: Comm, buf: np.ndarray, op: str) -> None:
    """Reduce ``buf`` (shape (n,)) in place over all ranks: tree reduce to rank 0, then tree bcast."""
    reduce(ch, buf, op, 0)
    bcast(ch, buf, 0)
