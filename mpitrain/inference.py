"""Distributed inference: each rank predicts its rows; rank 0 gets them back in row order."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from .data import Dataset
from .models import Model

if TYPE_CHECKING:
    from .comm import Comm


def predict(model: Model, theta: np.ndarray, data: Dataset, comm: "Comm") -> tuple[Optional[np.ndarray], Optional[float]]:
    """Collective: (predictions of shape (n_total,) on rank 0 and None elsewhere, metric or None).

    The metric (RMSE or accuracy, over all rows) is computed when the data has labels and is
    returned on every rank.
    """
    local = model.predict(theta, data.X)
    metric = None
    if data.y is not None:
        sums = comm.allreduce(np.array(model.sums(theta, data.X, data.y)))
        metric = model.metric(sums[1], data.n_total)
    return comm.gather_rows(local), metric
