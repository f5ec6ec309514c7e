"""Model averaging: local SGD with a sync period, and one-shot averaging as its limit.

Each rank takes ``sync_every`` SGD steps on its own partition, with its share of the global
batch; then one Allreduce averages the parameters with weights n_k / N (the loss and metric
sums since the last sync travel in the same buffer). With sync_every=1 and equal shares this
is exactly synchronous SGD; one-shot averaging is sync_every = steps.

Optimizer state is per rank; at a sync point ``local_state`` keeps it, averages it with
the same weights (in the same Allreduce as the parameters) or resets it. The learning-rate
schedule follows the global step in every case.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Union

import numpy as np

from .. import optim
from ..data import Dataset
from ..models import Model
from ..params import Layout
from ..timeline import COMPUTE, DATA, REDUCE, UPDATE, Timeline
from .base import State, add_penalty_gradient, check_finite, penalty
from .config import LocalSGD, OneShot, Reduce
from .loop import Outcome
from .sync import Batches

if TYPE_CHECKING:
    from ..comm import Comm


class LocalAveraging:
    """Local SGD (``loop`` a ``LocalSGD``) and one-shot averaging (a ``OneShot``: one average, at ``steps``).

    Between averagings each rank keeps its own (loss sum, metric sum, samples) in ``pending``.
    """

    log_every_sync = True

    def __init__(self, model: Model, data: Dataset, comm: "Comm", loop: Union[LocalSGD, OneShot],
                 rule: optim.GradientTransformation, schedule: optim.Schedule, l2: float, reduce: Reduce,
                 seed: int, state: State, steps: int, timeline: Timeline) -> None:
        self.model, self.comm, self.rule, self.schedule, self.l2 = model, comm, rule, schedule, l2
        self.reduce, self.timeline, self.steps = reduce, timeline, steps
        self.sync_every = steps if isinstance(loop, OneShot) else loop.sync_every
        self.local_state = loop.local_state
        self.batches = Batches(data, comm.size, comm.rank, loop.batch_size, seed)
        self.weight = data.n_local / data.n_total
        self.theta, self.pending = state.theta, state.period
        self.opt_state = optim.unflatten(rule.init(self.theta), state.opt_state)
        n_state = optim.flatten(self.opt_state, counts=False).size if self.local_state == "average" else 0
        self.grad, self.scratch = np.empty_like(self.theta), np.empty_like(self.theta)
        self.layout = Layout.record({"theta": (model.n_params,), "opt_state": (n_state,), "sums": (3,), "vote": ()})
        self.buf = self.layout.empty(self.theta.dtype)
        self.views = self.layout.views(self.buf)
        self.vote = np.empty(1)
        # Kept per rank, optimizer state differs between ranks even right after an averaging.
        self.per_rank_state = self.local_state == "keep" and optim.flatten(self.opt_state, counts=False).size > 0

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> Outcome:
        """A local step; at a sync point, one reduction averages the models (n_k/N weights)."""
        model, theta, timeline, batches = self.model, self.theta, self.timeline, self.batches
        if batches.share:
            X, y = batches.at(step)
            timeline.mark(DATA)
            self.pending += (*model.sums(theta, X, y, self.grad), batches.share)
            timeline.mark(COMPUTE)
            self.grad /= batches.share
            add_penalty_gradient(theta, self.grad, self.l2, model.n_penalized)
            direction, self.opt_state = self.rule.update(self.grad, self.opt_state, theta)
            optim.apply(theta, direction, self.schedule(step), self.grad if direction is self.grad else self.scratch)
            timeline.mark(UPDATE)
        if not ((step + 1) % self.sync_every == 0 or step + 1 == self.steps):
            self.vote[0] = vote() if listens else 0.0
            stop = listens and self.comm.Allreduce(self.vote)[0] > 0
            timeline.mark(REDUCE)
            return Outcome(bool(stop), None, 0.0, synced=False)
        v = self.views
        np.multiply(theta, self.weight, out=v["theta"])
        if self.local_state == "average":
            np.multiply(optim.flatten(self.opt_state, counts=False), self.weight, out=v["opt_state"])
        v["sums"][...] = self.pending
        v["vote"][...] = vote()
        self.comm.Allreduce(self.buf, algorithm=self.reduce.algorithm)
        timeline.mark(REDUCE)
        check_finite(self.buf, step)
        theta[:] = v["theta"]
        if self.local_state == "average":
            self.opt_state = optim.unflatten(self.opt_state, v["opt_state"], counts=False)
        elif self.local_state == "reset":
            self.opt_state = self.rule.init(theta)
        self.pending[:] = 0
        return Outcome(bool(v["vote"] > 0), v["sums"].copy(), penalty(theta, self.l2, model.n_penalized))

    def snapshot(self, step: int, period: np.ndarray) -> State:
        """The state after ``step`` steps: between averagings, this rank's own model and sums."""
        return State(step, self.theta, self.pending, self.opt_state)
