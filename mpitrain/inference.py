"""Distributed inference: each rank predicts its rows; rank 0 gets them back in row order."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from .data import Dataset
from .models import Model

if TYPE_CHECKING:
    from .comm import Comm


def predict(model: Model, theta: np.ndarray, data: Dataset, comm: "Comm") -> tuple[Optional[np.ndarray], Optional[float]]:
    """Collective: (predictions of shape (n_total, ...) on rank 0 and None elsewhere, metric or None).

    Predictions are values or probabilities of shape (n_total,), or class probabilities of shape
    (n_total, K) for softmax and MLP classifiers. The metric (RMSE or accuracy, over all rows) is
    computed when the data has labels, which must suit the model (JobError otherwise), and is
    returned on every rank.
    """
    from .comm import as_comm

    comm = as_comm(comm)
    local = model.predict(theta, data.X)
    metric = None
    if data.y is not None:
        bad = model.check_labels(data.y, data.start)
        comm.raise_if_any(f"{data.spec}: cannot score the predictions: {bad}" if bad else "")
        sums = comm.Allreduce(np.array(model.sums(theta, data.X, data.y)))
        metric = model.metric(sums[1], data.n_total)
    return comm.gather_rows(local), metric
