"""Synchronous data parallelism: full-batch gradient descent and mini-batch SGD.

Each step, every rank sums the loss gradient over its rows of the global batch; one
Allreduce adds the per-rank sums (the loss and metric sums and the ranks' stop votes travel in
the same buffer); the sum is divided by the global batch size and the L2 term is added once,
after the reduction. Full-batch GD is the case where each rank's batch is its whole partition. With overlap
the buffer is reduced in buckets started while the backward pass runs (``overlap.py``). With compression the
gradient travels as fp16/bf16 with error feedback (each rank carries its encoding error into its
next gradient) and the loss sums and votes in a second, exact reduction.
The optimizer sees only the reduced gradient, so its state is the same on every rank without
communication.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from .. import collectives, optim
from ..data import BatchSampler, Dataset, batch_shares
from ..errors import JobError
from ..models import Model
from ..timeline import CHECKPOINT, COMPUTE, DATA, REDUCE, UPDATE, Timeline
from .base import (Hooks, Logger, Result, Settings, State, add_penalty_gradient, check_finite, make_optimizer,
                   penalty, steps_per_epoch)
from .overlap import Buckets

if TYPE_CHECKING:
    from ..comm import Comm


def local_shares(data: Dataset, size: int, batch_size: int) -> np.ndarray:
    """Every rank's share of a global batch, shape (size,); JobError if the batch cannot be split."""
    if not 1 <= batch_size <= data.n_total:
        raise JobError(f"--batch-size {batch_size} must be between 1 and the {data.n_total} training samples")
    if len(data.counts) != size:
        raise ValueError(f"the data was loaded on {len(data.counts)} ranks, but this communicator has {size}")
    counts = data.counts
    shares = batch_shares(counts, batch_size)
    starved = np.flatnonzero((shares == 0) & (counts > 0))
    if starved.size:
        need = int(np.ceil(data.n_total / counts[starved].min()))
        raise JobError(
            f"--batch-size {batch_size} leaves ranks {', '.join(map(str, starved))} with no samples per step, "
            f"so their data would never be used; use --batch-size {need} or more, or fewer ranks"
        )
    return shares


class Batches:
    """This rank's rows of each step's global batch, gathered into preallocated arrays."""

    def __init__(self, data: Dataset, size: int, rank: int, batch_size: Optional[int], seed: int) -> None:
        self.data = data
        self.full = batch_size is None
        self.global_size = data.n_total if self.full else batch_size
        share = data.n_local if self.full else int(local_shares(data, size, batch_size)[rank])
        self.sampler = BatchSampler(data.start, data.n_local, share, seed)
        self.X = np.empty((share, data.n_features), dtype=data.X.dtype)
        self.y = np.empty(share, dtype=data.y.dtype)

    @property
    def share(self) -> int:
        """Rows this rank contributes to each step."""
        return self.sampler.share

    def at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of this rank's share at ``step``: shapes (share, d) and (share,)."""
        if self.full:
            return self.data.X, self.data.y
        idx = self.sampler.indices(step)
        # mode="clip": the sampler's indices are in range, and "raise" would buffer the copy
        np.take(self.data.X, idx, axis=0, out=self.X, mode="clip")
        np.take(self.data.y, idx, axis=0, out=self.y, mode="clip")
        return self.X, self.y


def fit_sync(
    model: Model,
    data: Dataset,
    comm: "Comm",
    settings: Settings,
    state: State,
    log: Optional[Logger] = None,
    hooks: Hooks = Hooks(),
    timeline: Optional[Timeline] = None,
) -> Result:
    """Train ``state.theta`` (n_params,) in place with synchronous GD/SGD from ``state.step``."""
    batches = Batches(data, comm.size, comm.rank, settings.batch_size, settings.seed)
    n_params, scale, k = model.n_params, 1.0 / batches.global_size, model.n_penalized
    rule, schedule = make_optimizer(settings, model)
    opt_state = optim.restore(rule.init(state.theta), state.opt_state)
    per_epoch = steps_per_epoch(data.n_total, settings.batch_size)
    buf = np.empty(n_params + 3, dtype=state.theta.dtype)  # [gradient sum | loss sum | metric sum | stop votes]
    grad = buf[:n_params]
    feedback = None
    if settings.compress is not None:
        feedback = collectives.feedback_init(grad)
        if state.residual is not None:
            feedback.residual[:] = state.residual
    buckets = Buckets(comm, buf) if settings.overlap else None
    scratch = np.empty_like(grad)
    plain = settings.optimizer == "sgd" and settings.clip_norm is None and not settings.l2
    theta, period = state.theta, state.period
    result = Result(theta, timeline=timeline or Timeline())
    timeline = result.timeline
    timeline.start()
    for step in range(state.step, settings.steps):
        hooks.begin_step(step)
        X, y = batches.at(step)
        timeline.mark(DATA)
        buf[-1] = hooks.stop_vote()
        buf[n_params : n_params + 2] = model.sums(theta, X, y, grad, None if buckets is None else buckets.ready)
        timeline.mark(COMPUTE)
        if buckets is not None:
            buckets.finish()
        elif feedback is None:
            comm.Allreduce(buf, algorithm=settings.allreduce)
        else:  # 16-bit gradients; the loss sums and votes travel exactly, in a small second call
            grad[:], feedback = collectives.feedback_apply(grad, feedback, settings.compress)
            comm.Allreduce(grad, algorithm=settings.allreduce, compress=settings.compress)
            comm.Allreduce(buf[n_params:])
        timeline.mark(REDUCE)
        check_finite(buf[n_params:], step)  # the loss: a non-finite gradient shows there one step later
        period += (buf[n_params], buf[n_params + 1], batches.global_size)
        objective_term = penalty(theta, settings.l2, k)
        if plain:  # theta -= (lr / B) * sum: one pass over the gradient fewer
            optim.apply(theta, grad, schedule(step) * scale, grad)
        else:
            grad *= scale
            add_penalty_gradient(theta, grad, settings.l2, k)
            direction, opt_state = rule.update(grad, opt_state, theta)
            optim.apply(theta, direction, schedule(step), grad if direction is grad else scratch)
        timeline.mark(UPDATE)
        result.steps, result.samples = step + 1, result.samples + batches.global_size
        if log is not None and ((step + 1) % per_epoch == 0 or step + 1 == settings.steps):
            log({
                "step": step + 1,
                "epoch": (step + 1) / per_epoch,
                "loss": period[0] / period[2] + objective_term,
                "metric": model.metric(period[1], int(period[2])),
                "seconds": timeline.elapsed(),
            })
            period[:] = 0
            timeline.skip()
        result.stopped = bool(buf[-1] > 0) and step + 1 < settings.steps
        if result.stopped or hooks.checkpoint_due(step + 1):
            check_finite(theta, step)  # a checkpoint never holds non-finite parameters
            residual = None if feedback is None else feedback.residual  # each rank's own: saved per rank
            hooks.save(State(step + 1, theta, period, opt_state, residual), synced=residual is None)
            timeline.mark(CHECKPOINT)
        if result.stopped:
            break
    check_finite(theta, settings.steps - 1)
    result.opt_state = opt_state
    return result.finish()
