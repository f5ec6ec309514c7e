"""Rank-ordered allreduce, blocking or started now and finished later.

Every element is reduced as ``((x_0 + x_1) + x_2) + ... + x_{p-1}`` over the ranks in rank
order, on the rank that owns its block, and then copied to every rank. The bits therefore
depend only on the p values of each element: not on how a buffer is split into calls, nor on
whether a call blocks, which is what lets the training step reduce gradient buckets while the
backward pass runs and still get the parameters of one blocking call (``algorithm="ordered"``).

Direct exchange: the buffer is cut into p blocks; each rank sends every other rank its piece of
that rank's block, reduces its own block, and sends the result to every other rank. Each rank
sends 2(p-1)/p of the buffer, like the ring, in p-1 messages per phase at once: suited to the
ranks of a node or a few nodes, not to thousands of ranks.
"""
from __future__ import annotations

import numpy as np

from ._ops import UFUNCS, block_counts, block_offsets
from ..comm import Comm

TAG_BASE, TAG_SPAN = 4096, 8192  # tags of concurrent calls differ (2 per call, cycling)


class Pending:
    """A rank-ordered reduction of ``buf`` (shape (n,)) in progress; ``buf`` must stay untouched until done.

    ``scratch`` (shape (p, ceil(n / p)), buf's dtype) receives the other ranks' pieces of this
    rank's block. Every rank must start its reductions in the same order with the same sizes.
    """

    def __init__(self, ch: Comm, buf: np.ndarray, op: str, scratch: np.ndarray, call: int) -> None:
        self.ch, self.buf, self.ufunc, self.done = ch, buf, UFUNCS[op], ch.size == 1
        self.tag = TAG_BASE + (2 * call) % TAG_SPAN
        self.offsets = block_offsets(block_counts(buf.size, ch.size))
        r, lo, hi = ch.rank, self.offsets[ch.rank], self.offsets[ch.rank + 1]
        self.pieces = scratch[:, : hi - lo]
        others = [k for k in range(ch.size) if k != r]
        self.requests = [ch.irecv(self.pieces[k], k, self.tag) for k in others]
        self.requests += [ch.isend(self.block(k), k, self.tag) for k in others]
        self.phase = 1

    def block(self, k: int) -> np.ndarray:
        """Rank k's block of the buffer."""
        return self.buf[self.offsets[k] : self.offsets[k + 1]]

    def _advance(self) -> None:
        """Phase 1 is complete: reduce this rank's block in rank order and send it to every rank."""
        ch, r, mine = self.ch, self.ch.rank, self.block(self.ch.rank)
        pieces = self.pieces
        if r >= 2:  # this rank's own value is needed after x_0 + x_1 overwrites its block
            pieces[r] = mine
        first = mine if r == 0 else pieces[0]
        second = mine if r == 1 else pieces[1]
        self.ufunc(first, second, out=mine)
        for k in range(2, ch.size):
            self.ufunc(mine, pieces[k], out=mine)
        others = [k for k in range(ch.size) if k != r]
        self.requests = [ch.irecv(self.block(k), k, self.tag + 1) for k in others]
        self.requests += [ch.isend(mine, k, self.tag + 1) for k in others]
        self.phase = 2

    def test(self) -> bool:
        """Let MPI progress the reduction and go on to the next phase if possible; True once done."""
        if not self.done and self.ch.test_all(self.requests):
            if self.phase == 1:
                self._advance()
            else:
                self.done = True
        return self.done

    def wait(self) -> np.ndarray:
        """Finish the reduction; returns ``buf``, now the same on every rank."""
        if not self.done:
            if self.phase == 1:
                self.ch.wait_all(self.requests)
                self._advance()
            self.ch.wait_all(self.requests)
            self.done = True
        return self.buf


def start(ch: Comm, buf: np.ndarray, op: str, call: int, slot: int) -> Pending:
    """Start reducing ``buf`` (shape (n,)) with scratch from the channel's ``slot``; ``call`` numbers it."""
    rows, width = ch.size, -(-buf.size // ch.size)  # room for every rank's piece of the largest block
    return Pending(ch, buf, op, ch.scratch(rows * width, buf.dtype, slot).reshape(rows, width), call)


def allreduce(ch: Comm, buf: np.ndarray, op: str) -> None:
    """Reduce ``buf`` (shape (n,)) in place over all ranks, in rank order (blocking)."""
    start(ch, buf, op, 0, 0).wait()
