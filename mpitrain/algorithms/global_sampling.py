"""World-size-invariant SGD: the same global rows in every batch, and with ``deterministic`` the
same bits, at any number of ranks.

Sampling (``SGD(B, sampling="global")``): epoch e visits all N rows in one order, sorted by a hash
of (seed, e, global row index) (``data.sampler.epoch_order``), and step t takes positions
[tB, (t+1)B) of the endless stream of epochs. Each rank computes the rows of that batch it
holds, however many (none is fine); the sums are reduced as in sgd. The trajectory is the same
at any rank count up to the rounding of the reduction.

Deterministic (``deterministic=True``, for gd and for sgd with global sampling): each rank
computes the gradient, loss and metric of every row of its part of the batch separately, one row
at a time, and ``collectives.sum_shards`` adds the rows in fixed point, exactly: the sum depends
only on the set of rows, not on how they are spread over ranks. Every later operation is the
same on every rank, so the parameters are bitwise identical at 1, 2, 3, ... ranks. The stop votes
travel in an 8-byte sum of their own when a supervisor listens. Cost: one model call per row
instead of one per step, an int64 buffer of the gradient's size and a small max-reduction; the
fixed-point rounding of each row's contribution is below 2^-46 of the largest one.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from ..data import Dataset
from ..data.sampler import epoch_order
from ..errors import JobError
from ..timeline import COMPUTE, DATA, REDUCE
from .loop import Outcome
from .sync import Synchronous


class GlobalBatches:
    """This rank's rows of each step's global batch, drawn from one order of all N rows per epoch."""

    def __init__(self, data: Dataset, batch_size: int, seed: int, parts: int = 1) -> None:
        if not 1 <= batch_size <= data.n_total:
            raise JobError(f"--batch-size {batch_size} must be between 1 and the {data.n_total} training samples")
        self.data, self.global_size, self.seed, self.parts = data, batch_size, seed, parts
        self.share = data.n_local  # an upper bound: the rows this rank holds in a batch vary
        self._cached: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def _order(self, epoch: int) -> np.ndarray:
        if self._cached[0] != epoch:
            self._cached = (epoch, epoch_order(self.seed, epoch, 0, self.data.n_total))
        return self._cached[1]

    def rows(self, step: int) -> np.ndarray:
        """Local indices of this rank's rows of the global batch at ``step``, in the batch's order."""
        n, first, last = self.data.n_total, step * self.global_size, (step + 1) * self.global_size
        parts = []
        while first < last:
            epoch, offset = divmod(first, n)
            take = min(last - first, n - offset)
            parts.append(self._order(epoch)[offset : offset + take])
            first += take
        rows = np.concatenate(parts) - self.data.start
        return rows[(rows >= 0) & (rows < self.data.n_local)]

    def at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of this rank's rows of the batch at ``step``: shapes (k, d) and (k,), k >= 0."""
        idx = self.rows(step)
        return self.data.X[idx], self.data.y[idx]

    def micro(self, step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(X, y) of each non-empty one of ``parts`` contiguous pieces of this rank's rows at ``step``."""
        idx = self.rows(step)
        for piece in np.array_split(idx, self.parts):
            if piece.size:
                yield self.data.X[piece], self.data.y[piece]


class Deterministic(Synchronous):
    """gd or sgd with global sampling whose sums are exact in fixed point, row by row (bitwise at any rank count)."""

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> Outcome:
        """Sum every row's gradient, loss and metric in fixed point over ranks, then sgd's update."""
        model, theta, timeline, n = self.model, self.theta, self.timeline, self.model.n_params
        X, y = self.batches.at(step)
        timeline.mark(DATA)
        rows = np.empty((len(y), n + 2), dtype=theta.dtype)
        for i in range(len(y)):
            rows[i, n:] = model.sums(theta, X[i : i + 1], y[i : i + 1], rows[i, :n])
        timeline.mark(COMPUTE)
        self.comm.sum_shards(rows, self.buf[: n + 2])
        votes = np.array([vote() if listens else 0.0])
        self.buf[-1] = self.comm.Allreduce(votes)[0] if listens else 0.0
        timeline.mark(REDUCE)
        return self.update(step)
