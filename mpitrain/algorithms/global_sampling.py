"""World-size-invariant SGD: the same global rows in every batch, and with ``deterministic`` the
same bits, at any number of ranks.

Sampling (``SGD(B, sampling="global")``, ``sync.GlobalBatches``): epoch e visits all N rows in one order, sorted by a hash
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

from typing import Callable

import numpy as np

from .. import collectives
from ..timeline import COMPUTE, DATA, REDUCE
from .loop import Outcome
from .sync import Synchronous


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
        collectives.sum_shards(rows, self.buf[: n + 2], comm=self.comm)
        votes = np.array([vote() if listens else 0.0])
        self.buf[-1] = self.comm.Allreduce(votes)[0] if listens else 0.0
        timeline.mark(REDUCE)
        return self.update(step)
