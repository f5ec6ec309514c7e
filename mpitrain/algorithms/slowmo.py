"""SlowMo (Wang et al. 2020): local SGD whose averagings take a slow outer momentum step.

Between averagings each rank runs local SGD (``local_sgd.py``). At an averaging at step t with
step size lr_t, x0 the parameters after the previous averaging and mean the new average:

    u     = slow_momentum * u + (x0 - mean) / lr_t
    theta = x0 - slow_lr * lr_t * u

The slow state (u and x0) is the same on every rank, computed from the reduced mean, so the
step costs no communication beyond local SGD's. With slow_momentum 0 and slow_lr 1, theta is
x0 - lr_t * ((x0 - mean) / lr_t): the mean up to two roundings.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import optim
from ..data import Dataset
from ..models import Model
from ..timeline import Timeline
from .base import State
from .config import Reduce, SlowMo
from .local_sgd import LocalAveraging

if TYPE_CHECKING:
    from ..comm import Comm


class SlowMomentum(LocalAveraging):
    """Local SGD plus the slow momentum step at each averaging; checkpoints keep u and x0."""

    def __init__(self, model: Model, data: Dataset, comm: "Comm", loop: SlowMo, rule: optim.GradientTransformation,
                 schedule: optim.Schedule, l2: float, reduce: Reduce, seed: int, state: State, steps: int,
                 timeline: Timeline) -> None:
        n, saved = model.n_params, state.opt_state
        inner = None
        if isinstance(saved, np.ndarray):  # from a checkpoint: [optimizer state | x0 | u]
            inner, x0, u = saved[: saved.size - 2 * n], saved[saved.size - 2 * n : saved.size - n], saved[saved.size - n :]
        super().__init__(model, data, comm, loop, rule, schedule, l2, reduce, seed,
                         State(state.step, state.theta, state.period, inner), steps, timeline)
        self.beta, self.alpha = loop.slow_momentum, loop.slow_lr
        self.u = np.zeros_like(self.theta)
        if inner is not None:
            self.anchor[:], self.u[:] = x0, u

    def averaged(self, step: int) -> None:
        """theta (now the mean) becomes x0 - alpha * lr * u after u takes (x0 - mean) / lr."""
        lr, theta, u = self.schedule(step), self.theta, self.u
        np.subtract(self.anchor, theta, out=self.scratch)
        self.scratch /= lr
        u *= self.beta
        u += self.scratch
        np.multiply(u, self.alpha * lr, out=self.scratch)
        np.subtract(self.anchor, self.scratch, out=theta)

    def snapshot(self, step: int, period: np.ndarray) -> State:
        """Local SGD's state with the slow state appended to the optimizer's: [optimizer | x0 | u]."""
        slow = np.concatenate([optim.flatten(self.opt_state), self.anchor, self.u])
        return State(step, self.theta, self.pending, slow)
