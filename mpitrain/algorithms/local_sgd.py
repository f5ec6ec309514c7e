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
from .base import LOCAL_STATES, Clock, Logger, Result, Settings, add_penalty_gradient, make_optimizer, penalty, steps_per_epoch
from .sync import Batches

if TYPE_CHECKING:
    from ..comm import Comm


def fit_local_sgd(
    model: Model,
    data: Dataset,
    comm: "Comm",
    settings: Settings,
    theta: np.ndarray,
    log: Optional[Logger] = None,
) -> Result:
    """Train ``theta`` (n_params,) in place with local SGD and weighted averaging."""
    if settings.batch_size is None or settings.sync_every is None or settings.sync_every < 1:
        raise ValueError("local SGD needs a batch_size and sync_every >= 1")
    if settings.local_state not in LOCAL_STATES:
        raise ValueError(f"unknown local_state {settings.local_state!r}; choose one of {', '.join(LOCAL_STATES)}")
    batches = Batches(data, comm.size, comm.rank, settings.batch_size, settings.seed)
    n_params, weight, k = model.n_params, data.n_local / data.n_total, model.n_penalized
    per_epoch = steps_per_epoch(data.n_total, settings.batch_size)
    rule, schedule = make_optimizer(settings, model)
    opt_state = rule.init(theta)
    average = settings.local_state == "average"
    n_state = sum(a.size for a in optim.state_arrays(opt_state)) if average else 0
    grad = np.empty(n_params)
    # [weighted parameters | weighted optimizer state (average) | loss sum | metric sum | samples]
    buf = np.empty(n_params + n_state + 3)
    period = np.zeros(3)
    clock = Clock(comm)
    for step in range(settings.steps):
        if batches.share:
            X, y = batches.at(step)
            period += (*model.sums(theta, X, y, grad), batches.share)
            grad /= batches.share
            add_penalty_gradient(theta, grad, settings.l2, k)
            direction, opt_state = rule.update(grad, opt_state, theta)
            optim.apply(theta, direction, schedule(step))
        if (step + 1) % settings.sync_every == 0 or step + 1 == settings.steps:
            np.multiply(theta, weight, out=buf[:n_params])
            if average:
                np.multiply(np.concatenate(optim.state_arrays(opt_state)), weight, out=buf[n_params:-3])
            buf[-3:] = period
            comm.allreduce(buf)
            theta[:] = buf[:n_params]
            if average:
                opt_state = optim.unflatten_arrays(opt_state, buf[n_params:-3])
            elif settings.local_state == "reset":
                opt_state = rule.init(theta)
            loss_sum, metric_sum, seen = buf[-3:]
            if log is not None:
                log({
                    "step": step + 1,
                    "epoch": (step + 1) / per_epoch,
                    "loss": loss_sum / seen + penalty(theta, settings.l2, k),
                    "metric": model.metric(metric_sum, int(seen)),
                    "seconds": clock.elapsed(),
                })
            period[:] = 0
    return clock.finish(Result(theta, opt_state, samples=settings.steps * batches.global_size))
