"""Distributed training loops: synchronous GD/SGD and model averaging (local SGD, one-shot)."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..data import Dataset
from ..errors import JobError
from ..models import Model
from .base import Logger, Result, Settings, evaluate, steps_per_epoch
from .local_sgd import fit_local_sgd
from .sync import fit_sync

if TYPE_CHECKING:
    from ..comm import Comm

ALGORITHMS = ("gd", "sgd", "local-sgd", "one-shot")

__all__ = ["ALGORITHMS", "Settings", "Result", "fit", "evaluate", "steps_per_epoch"]


def fit(
    model: Model,
    data: Dataset,
    comm: "Comm",
    algorithm: str,
    settings: Settings,
    theta: Optional[np.ndarray] = None,
    log: Optional[Logger] = None,
) -> Result:
    """Collective: train ``model`` on every rank's partition of ``data``; return the Result.

    ``theta`` (n_params,) is the starting point (by default ``model.init(settings.seed)``,
    broadcast from rank 0). Afterwards ``result.theta`` holds the same bits on every rank;
    RuntimeError if it does not.

    >>> result = fit(model, data, comm, "gd", Settings(steps=100, lr=0.1))  # doctest: +SKIP
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    message = model.check_labels(data.y, data.start) if data.y is not None else "training needs labels"
    comm.raise_if_any(message or "")
    theta = comm.bcast(model.init(settings.seed)) if theta is None else np.array(theta, dtype=np.float64)
    if theta.shape != (model.n_params,):
        raise ValueError(f"theta has shape {theta.shape}; this model needs ({model.n_params},)")
    if algorithm == "gd":
        result = fit_sync(model, data, comm, replace(settings, batch_size=None), theta, log)
    elif algorithm == "sgd":
        result = fit_sync(model, data, comm, settings, theta, log)
    else:
        if algorithm == "one-shot":
            settings = replace(settings, sync_every=settings.steps)
        result = fit_local_sgd(model, data, comm, settings, theta, log)
    if not comm.identical(result.theta):
        raise RuntimeError("parameters differ between ranks after training: the MPI reduction is not "
                           "bitwise reproducible across ranks; please report this with `mpitrain info`")
    return result
