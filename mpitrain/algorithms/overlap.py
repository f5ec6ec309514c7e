"""Overlap of the gradient reduction with the backward pass (``Settings.overlap``).

The model hands each part of the step buffer to ``ready`` as soon as the backward pass has
written it for the last time (a layer's weight gradient, then its bias gradient). Adjacent
parts are merged; once a run of them reaches ``BUCKET_BYTES`` its reduction starts, and every
call lets MPI progress the reductions in flight. ``finish`` starts what is left (the small
bias run, the loss sums and votes, and all of a model that reports nothing) and waits.

The reductions are rank-ordered (``collectives.ordered``): each element's sum has the bits of
one blocking ``allreduce="ordered"`` call whatever the buckets, so the parameters are bitwise
those of the same step without overlap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import collectives

if TYPE_CHECKING:
    from ..comm import Comm

BUCKET_BYTES = 64 * 1024


class Buckets:
    """Reduces ``buf`` (shape (n,)), a step's gradient sums and scalars, in buckets started during the backward pass."""

    def __init__(self, comm: "Comm", buf: np.ndarray) -> None:
        self.comm, self.buf = comm, buf
        self.min_items = max(1, BUCKET_BYTES // buf.itemsize)
        self._base = buf.ctypes.data
        self.begin()

    def begin(self) -> None:
        """Forget the previous step: nothing is ready or started."""
        self.waiting: list[list[int]] = []  # ready, not yet started [lo, hi) runs, sorted
        self.started: list[tuple[int, int]] = []
        self.pending: list[Any] = []

    def ready(self, part: np.ndarray) -> None:
        """``part``, a contiguous view into ``buf``, holds its final values for this step."""
        lo = (part.ctypes.data - self._base) // self.buf.itemsize
        run = self._merge(lo, lo + part.size)
        if run[1] - run[0] >= self.min_items:
            self.waiting.remove(run)
            self._start(*run)
        for request in self.pending:
            request.test()

    def finish(self) -> np.ndarray:
        """Reduce everything not yet started and wait for all of it; returns ``buf``."""
        covered = 0
        for lo, hi in sorted(self.started):
            if lo > covered:
                self._start(covered, lo)
            covered = hi
        if covered < self.buf.size:
            self._start(covered, self.buf.size)
        self.comm.busy = True
        for request in self.pending:
            request.wait()
        self.comm.busy = False
        self.begin()
        return self.buf

    def _merge(self, lo: int, hi: int) -> list[int]:
        """Add [lo, hi) to the waiting runs, joined with its neighbours; return its run."""
        run = [lo, hi]
        for other in [w for w in self.waiting if w[1] == lo or w[0] == hi]:
            self.waiting.remove(other)
            run = [min(run[0], other[0]), max(run[1], other[1])]
        self.waiting.append(run)
        return run

    def _start(self, lo: int, hi: int) -> None:
        self.started.append((lo, hi))
        self.pending.append(collectives.start_allreduce(self.buf[lo:hi], comm=self.comm, call=len(self.pending)))
