"""Model averaging: local SGD with a sync period, and one-shot averaging as its limit.

Each rank takes ``sync_every`` SGD steps on its own partition, with its share of the global
batch; then one Allreduce averages the parameters with weights n_k / N (the loss and metric
sums since the last sync travel in the same buffer). With sync_every=1 and equal shares this
is exactly synchronous SGD; one-shot averaging is sync_every = steps.

Optimizer state is per rank; at a sync point ``settings.local_state`` keeps it, averages it with
the same weights (in the same Allreduce as the parameters) or resets it. The learning-rate
schedule follows the global step in every case.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from .. import optim
from ..data import Dataset
from ..models import Model
from ..timeline import CHECKPOINT, COMPUTE, DATA, REDUCE, UPDATE, Timeline
from .base import (LOCAL_STATES, Hooks, Logger, Result, Settings, State, add_penalty_gradient, check_finite,
                   make_optimizer, penalty, steps_per_epoch)
from .sync import Batches

if TYPE_CHECKING:
    from ..comm import Comm


def fit_local_sgd(
    model: Model,
    data: Dataset,
    comm: "Comm",
    settings: Settings,
    state: State,
    log: Optional[Logger] = None,
    hooks: Hooks = Hooks(),
    timeline: Optional[Timeline] = None,
) -> Result:
    """Train ``state.theta`` (n_params,) in place with local SGD and weighted averaging.

    A supervisor that listens for stop requests costs one 8-byte Allreduce per local step.
    """
    if settings.batch_size is None or settings.sync_every is None or settings.sync_every < 1:
        raise ValueError("local SGD needs a batch_size and sync_every >= 1")
    if settings.compress is not None:
        raise ValueError("compression applies to gradients (gd, sgd), not to averaging parameters in local SGD")
    if settings.local_state not in LOCAL_STATES:
        raise ValueError(f"unknown local_state {settings.local_state!r}; choose one of {', '.join(LOCAL_STATES)}")
    batches = Batches(data, comm.size, comm.rank, settings.batch_size, settings.seed)
    n_params, weight, k = model.n_params, data.n_local / data.n_total, model.n_penalized
    rule, schedule = make_optimizer(settings, model)
    opt_state = optim.restore(rule.init(state.theta), state.opt_state)
    average = settings.local_state == "average"
    n_state = sum(a.size for a in optim.state_arrays(opt_state)) if average else 0
    per_epoch = steps_per_epoch(data.n_total, settings.batch_size)
    grad, scratch = np.empty_like(state.theta), np.empty_like(state.theta)
    # [weighted parameters | weighted optimizer state (average) | loss sum | metric sum | samples | stop votes]
    buf = np.empty(n_params + n_state + 4, dtype=state.theta.dtype)
    vote = np.empty(1)
    theta, period = state.theta, state.period
    result = Result(theta, timeline=timeline or Timeline())
    timeline = result.timeline
    timeline.start()
    for step in range(state.step, settings.steps):
        hooks.begin_step(step)
        if batches.share:
            X, y = batches.at(step)
            timeline.mark(DATA)
            period += (*model.sums(theta, X, y, grad), batches.share)
            timeline.mark(COMPUTE)
            grad /= batches.share
            add_penalty_gradient(theta, grad, settings.l2, k)
            direction, opt_state = rule.update(grad, opt_state, theta)
            optim.apply(theta, direction, schedule(step), grad if direction is grad else scratch)
            timeline.mark(UPDATE)
        result.steps, result.samples = step + 1, result.samples + batches.global_size
        synced = (step + 1) % settings.sync_every == 0 or step + 1 == settings.steps
        if synced:
            np.multiply(theta, weight, out=buf[:n_params])
            if average:
                np.multiply(np.concatenate(optim.state_arrays(opt_state)), weight, out=buf[n_params:-4])
            buf[-4:-1] = period
            buf[-1] = hooks.stop_vote()
            comm.Allreduce(buf, algorithm=settings.allreduce)
            timeline.mark(REDUCE)
            check_finite(buf, step)
            theta[:] = buf[:n_params]
            if average:
                opt_state = optim.unflatten_arrays(opt_state, buf[n_params:-4])
            elif settings.local_state == "reset":
                opt_state = rule.init(theta)
            loss_sum, metric_sum, seen = buf[-4:-1]
            if log is not None:
                log({
                    "step": step + 1,
                    "epoch": (step + 1) / per_epoch,
                    "loss": loss_sum / seen + penalty(theta, settings.l2, k),
                    "metric": model.metric(metric_sum, int(seen)),
                    "seconds": timeline.elapsed(),
                })
            period[:] = 0
            stop = buf[-1] > 0
            timeline.skip()
        else:
            vote[0] = hooks.stop_vote() if hooks.listens else 0.0
            stop = hooks.listens and comm.Allreduce(vote)[0] > 0
            timeline.mark(REDUCE)
        result.stopped = bool(stop) and step + 1 < settings.steps
        if result.stopped or (synced and hooks.checkpoint_due(step + 1)):
            hooks.save(State(step + 1, theta, period, opt_state), synced=synced)
            timeline.mark(CHECKPOINT)
        if result.stopped:
            break
    result.opt_state = opt_state
    return result.finish()
