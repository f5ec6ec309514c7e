"""Post-local SGD (Lin et al. 2020): synchronous SGD first, local SGD after ``switch_step`` steps.

The first ``switch_step`` steps are exactly those of ``SGD(batch_size)`` (``sync.py``); from
then on each rank steps alone and the models are averaged every ``sync_every`` steps, as in
``LocalSGD`` (``local_sgd.py``), counting steps from the start of the run. Both phases share
the parameters; the optimizer state, the same on every rank at the switch, becomes per-rank.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from .. import optim
from ..data import Dataset
from ..models import Model
from ..timeline import Timeline
from .base import State
from .config import SGD, LocalSGD, PostLocalSGD, Reduce
from .local_sgd import LocalAveraging
from .loop import Outcome
from .sync import Synchronous

if TYPE_CHECKING:
    from ..comm import Comm


class PostLocal:
    """``Synchronous`` for steps < switch_step, then ``LocalAveraging``; the loop sees one algorithm."""

    def __init__(self, model: Model, data: Dataset, comm: "Comm", loop: PostLocalSGD,
                 rule: optim.GradientTransformation, schedule: optim.Schedule, l2: float, reduce: Reduce,
                 seed: int, state: State, steps: int, timeline: Timeline) -> None:
        self.switch, self.next = loop.switch_step, state.step
        self.sync = Synchronous(model, data, comm, SGD(loop.batch_size), rule, schedule, l2, reduce, seed, state,
                                timeline)
        local = LocalSGD(loop.batch_size, loop.sync_every, loop.local_state, loop.max_drift, loop.drift_action)
        # Until the switch, the loop keeps the metric totals; afterwards the local phase does.
        pending = state.period if state.step > self.switch else np.zeros(3)
        self.local = LocalAveraging(model, data, comm, local, rule, schedule, l2, reduce, seed,
                                    State(state.step, state.theta, pending, state.opt_state), steps, timeline)
        self.batches, self.theta, self.rank = self.sync.batches, state.theta, comm.rank

    @property
    def log_every_sync(self) -> bool:
        """False while synchronous (log at epoch ends), True once a local step has been taken."""
        return self.next > self.switch

    @property
    def per_rank_state(self) -> bool:
        """Whether the optimizer state differs between ranks (only ever after the switch)."""
        return self.next > self.switch and self.local.per_rank_state

    @property
    def opt_state(self) -> object:
        return self.sync.opt_state if self.next <= self.switch else self.local.opt_state

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> Outcome:
        """A synchronous step before the switch, a local one (maybe averaging) after."""
        if step < self.switch:
            outcome = self.sync.step(step, vote, listens)
        else:
            if step == self.switch:  # hand over the optimizer state and the point the replicas leave from
                self.local.opt_state = self.sync.opt_state
                self.local.anchor[:] = self.theta
            outcome = self.local.step(step, vote, listens)
        self.next = step + 1
        return outcome

    def snapshot(self, step: int, period: np.ndarray) -> State:
        """Before the switch, synchronous SGD's state; after, local SGD's with the loop's unlogged totals.

        Local SGD's totals are this rank's own, summed over the ranks at the next averaging; the
        loop's (left from the synchronous steps) are already summed, so only rank 0 keeps them.
        """
        if self.next <= self.switch:
            return self.sync.snapshot(step, period)
        return State(step, self.theta, self.local.pending + (period if self.rank == 0 else 0), self.local.opt_state)
