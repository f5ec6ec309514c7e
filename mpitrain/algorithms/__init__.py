"""Distributed training loops: synchronous GD/SGD and model averaging (local SGD, one-shot)."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..comm import as_comm
from ..data import Dataset
from ..models import Model
from ..timeline import Timeline
from .base import Hooks, Logger, Result, Settings, State, evaluate, steps_per_epoch
from .local_sgd import fit_local_sgd
from .sync import fit_sync

if TYPE_CHECKING:
    from ..comm import Comm

ALGORITHMS = ("gd", "sgd", "local-sgd", "one-shot")

__all__ = ["ALGORITHMS", "Hooks", "Settings", "State", "Result", "fit", "evaluate", "steps_per_epoch"]


def fit(
    model: Model,
    data: Dataset,
    comm: "Comm",
    algorithm: str,
    settings: Settings,
    theta: Optional[np.ndarray] = None,
    log: Optional[Logger] = None,
    *,
    state: Optional[State] = None,
    hooks: Optional[Hooks] = None,
    timeline: Optional[Timeline] = None,
) -> Result:
    """Collective: train ``model`` on every rank's partition of ``data``; return the Result.

    ``comm`` is a ``Comm`` (``mt.world()``), an mpi4py intracommunicator or None (the world).

    The arithmetic follows ``data.X.dtype`` (see ``mpitrain.data.as_dtype``). ``theta``
    (n_params,) is the starting point (by default ``model.init(settings.seed)``,
    broadcast from rank 0); ``state`` resumes a run
    instead (see ``mpitrain.supervisor``); ``timeline`` records where the time goes.
    Afterwards ``result.theta`` holds the same bits on every rank; RuntimeError if it does not.

    >>> result = fit(model, data, comm, "gd", Settings(steps=100, lr=0.1))  # doctest: +SKIP
    """
    comm = as_comm(comm)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    if settings.overlap and algorithm not in ("gd", "sgd"):
        raise ValueError(f"overlap applies to the gradient reduction of gd and sgd, not to {algorithm}")
    comm.agree_int("parameter count", model.n_params, f"the {model.name} model")
    message = model.check_labels(data.y, data.start) if data.y is not None else "training needs labels"
    comm.raise_if_any(message or "")
    if state is None:
        state = State(0, comm.Bcast(model.init(settings.seed)) if theta is None else theta)
    # Parameters, gradients and optimizer state take the data's precision (float64 or float32).
    state.theta = np.array(state.theta, dtype=data.X.dtype)
    if state.theta.shape != (model.n_params,):
        raise ValueError(f"theta has shape {state.theta.shape}; this model needs ({model.n_params},)")
    hooks = Hooks() if hooks is None else hooks
    if algorithm == "gd":
        result = fit_sync(model, data, comm, replace(settings, batch_size=None), state, log, hooks, timeline)
    elif algorithm == "sgd":
        result = fit_sync(model, data, comm, settings, state, log, hooks, timeline)
    else:
        if algorithm == "one-shot":
            settings = replace(settings, sync_every=settings.steps)
        result = fit_local_sgd(model, data, comm, settings, state, log, hooks, timeline)
    if not result.stopped and not comm.identical(result.theta):
        raise RuntimeError("parameters differ between ranks after training: the MPI reduction is not "
                           "bitwise reproducible across ranks; please report this with `mpitrain info`")
    return result
