"""Model averaging: local SGD with a sync period, and one-shot averaging as its limit.

Each rank takes ``sync_every`` SGD steps on its own partition, with its share of the global
batch; then one Allreduce averages the parameters with weights n_k / N (the loss and metric
sums since the last sync travel in the same buffer). With sync_every=1 and equal shares this
is exactly synchronous SGD; one-shot averaging is sync_every = steps.

Optimizer state is per rank; at a sync point ``local_state`` keeps it, averages it with
the same weights (in the same Allreduce as the parameters) or resets it. The learning-rate
schedule follows the global step in every case.

Drift: the same Allreduce measures how far the replicas had moved apart. With weights
w_k = n_k/N, mean = sum_k w_k theta_k and any point r common to all ranks (the parameters
after the previous averaging),

    sum_k w_k ||theta_k - mean||^2 = sum_k w_k ||theta_k - r||^2 - ||mean - r||^2,

so each rank adds w_k ||theta_k - r||^2 to the buffer and the weighted root mean square
``drift_rms`` follows after the reduction, the same on every rank (``max_drift`` compares it).
A maximum cannot travel in a sum, but each rank knows its own distance once the mean has
arrived: it sends it in its own slot of the next averaging's buffer, and that averaging logs
``drift_max_prev``, the largest distance of the one before.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Callable, Union

import numpy as np

from .. import collectives, optim
from ..data import Dataset
from ..errors import JobError
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
        self.layout = Layout.record({"theta": (model.n_params,), "opt_state": (n_state,), "sums": (3,),
                                    "spread": (1 + comm.size,), "vote": ()})
        self.buf = self.layout.empty(self.theta.dtype)
        self.views = self.layout.views(self.buf)
        self.vote = np.empty(1)
        self.max_drift, self.drift_action = getattr(loop, "max_drift", None), getattr(loop, "drift_action", "warn")
        # r of the drift identity: theta after the last averaging (common to all ranks); unknown
        # after resuming between averagings, when the origin serves (exact in theory, more rounding)
        self.anchor = self.theta.copy() if state.step == 0 else np.zeros_like(self.theta)
        self.distance = np.nan  # this rank's ||theta_k - mean|| at the previous averaging
        # Kept per rank, optimizer state differs between ranks even right after an averaging.
        self.per_rank_state = self.local_state == "keep" and optim.flatten(self.opt_state, counts=False).size > 0

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> Outcome:
        """A local step; at a sync point, one reduction averages the models (n_k/N weights)."""
        self.local_step(step)
        if (step + 1) % self.sync_every == 0 or step + 1 == self.steps:
            return self.average(step, vote)
        return self.between(vote, listens)

    def local_step(self, step: int) -> None:
        """One optimizer step on this rank's share of the batch (none on an empty partition)."""
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

    def between(self, vote: Callable[[], float], listens: bool) -> Outcome:
        """A step without averaging: the stop votes alone are summed, in 8 bytes, if a supervisor listens."""
        self.vote[0] = vote() if listens else 0.0
        stop = listens and self.comm.Allreduce(self.vote)[0] > 0
        self.timeline.mark(REDUCE)
        return Outcome(bool(stop), None, 0.0, synced=False)

    def average(self, step: int, vote: Callable[[], float]) -> Outcome:
        """One reduction: the n_k/N-weighted mean of the models, the metric sums, the spread and the votes."""
        model, theta, v = self.model, self.theta, self.views
        drift = self.reduce_replicas(step, vote, self.local_state == "average")
        theta[:] = v["theta"]
        if self.local_state == "average":
            self.opt_state = optim.unflatten(self.opt_state, v["opt_state"], counts=False)
        elif self.local_state == "reset":
            self.opt_state = self.rule.init(theta)
        self.pending[:] = 0
        self.averaged(step)
        self.anchor[:] = theta
        return Outcome(bool(v["vote"] > 0), v["sums"].copy(), penalty(theta, self.l2, model.n_penalized),
                       record=drift)

    def reduce_replicas(self, step: int, vote: Callable[[], float], with_state: bool) -> dict:
        """Collective: one Allreduce of [weighted theta (the mean arrives in views["theta"]) | this rank's
        optimizer state if ``with_state`` | pending sums | spread | vote]; the drift record. theta stays."""
        v = self.views
        np.multiply(self.theta, self.weight, out=v["theta"])
        if with_state:
            np.multiply(optim.flatten(self.opt_state, counts=False), self.weight, out=v["opt_state"])
        else:
            v["opt_state"][...] = 0
        v["sums"][...] = self.pending
        v["vote"][...] = vote()
        spread = v["spread"]
        spread[:] = 0
        np.subtract(self.theta, self.anchor, out=self.scratch)
        spread[0] = self.weight * float(self.scratch @ self.scratch)
        spread[1 + self.comm.rank] = self.distance
        collectives.allreduce(self.buf, algorithm=self.reduce.algorithm, comm=self.comm)
        self.timeline.mark(REDUCE)
        check_finite(self.buf[: -self.comm.size - 2], step)
        return self._drift(v["theta"], step)

    def averaged(self, step: int) -> None:
        """Called after each averaging, with theta the mean and ``anchor`` still the previous one."""

    def _drift(self, mean: np.ndarray, step: int) -> dict:
        """The replicas' spread around ``mean`` (reduced, before theta takes it) for the metrics record."""
        spread = self.views["spread"]
        np.subtract(mean, self.anchor, out=self.scratch)
        rms = float(np.sqrt(max(0.0, float(spread[0]) - float(self.scratch @ self.scratch))))
        np.subtract(self.theta, mean, out=self.scratch)
        self.distance = float(np.sqrt(self.scratch @ self.scratch))
        previous = spread[1:]
        record = {"drift_rms": rms, "drift_max_prev": float(previous.max()) if np.isfinite(previous).all() else None}
        if self.max_drift is not None and rms > self.max_drift:
            message = (f"the replicas drifted apart: drift_rms {rms:.4g} exceeds max_drift {self.max_drift:g} at "
                       f"step {step + 1}; average more often (a smaller sync_every) or lower the learning rate")
            if self.drift_action == "stop":
                raise JobError(message)
            if self.comm.rank == 0:
                warnings.warn(message, RuntimeWarning, stacklevel=2)
        return record

    def snapshot(self, step: int, period: np.ndarray) -> State:
        """The state after ``step`` steps: between averagings, this rank's own model and sums."""
        return State(step, self.theta, self.pending, self.opt_state)
