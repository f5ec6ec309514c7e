"""Row weights: a weight column or array, and scikit-learn's ``class_weight="balanced"`` with global counts.

A weighted data set's objective is sum_i w_i loss_i / sum_i w_i (+ the L2 term), scikit-learn's
with ``sample_weight``. The weights are stored scaled to mean 1 over all ranks' rows (one
Allreduce of their sum), so every loop that divides a loss sum by the row count N (or a batch's
by B) divides by the global weight sum instead, with no other change: gd and the solvers
minimise exactly the weighted objective at any number of ranks, and sgd's step is an unbiased
estimate of its gradient. Metrics are weighted alike (``sample_weight`` in ``sklearn.metrics``).

>>> data = weighting.with_weights(data, my_rows_weights, comm)   # (n_local,) on each rank  # doctest: +SKIP
>>> data = weighting.with_weights(data, weighting.balanced(data, comm, 3), comm)  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Union

import numpy as np

from .data import Dataset
from .errors import JobError

if TYPE_CHECKING:
    from .comm import Comm


def with_weights(data: Dataset, weight: np.ndarray, comm: "Comm") -> Dataset:
    """Collective: ``data`` with ``weight`` (n_local,), finite and >= 0, scaled to mean 1 over all rows.

    JobError on every rank naming the first bad row (by its global index), or when all weights are 0.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.shape != (data.n_local,):
        error = f"rank {comm.rank} has {data.n_local} rows but {weight.shape} weights; give one weight per row"
    else:
        bad = np.flatnonzero(~np.isfinite(weight) | (weight < 0))
        error = f"{data.spec}: row {data.start + bad[0]} has weight {weight[bad[0]]}; weights must be finite and >= 0" \
            if bad.size else ""
    comm.raise_if_any(error)
    total = float(comm.Allreduce(np.array([weight.sum()]))[0])
    if not total > 0:
        raise JobError(f"{data.spec}: every row has weight 0; at least one row needs a positive weight")
    return dataclasses.replace(data, weight=(weight * (data.n_total / total)).astype(data.X.dtype))


def balanced(data: Dataset, comm: "Comm", n_classes: int) -> np.ndarray:
    """Collective: each row's class weight N / (K n_c), scikit-learn's ``"balanced"``, from global
    counts n_c of the class indices in ``data.y``; times ``data.weight`` when set. Shape (n_local,)."""
    labels = data.y.astype(np.int64)
    counts = comm.Allreduce(np.bincount(labels, minlength=n_classes).astype(np.float64))
    present = int(np.count_nonzero(counts))
    per_class = np.where(counts > 0, data.n_total / (present * np.maximum(counts, 1)), 0.0)
    rows = per_class[labels]
    return rows if data.weight is None else rows * data.weight


def take_column(data: Dataset, column: Union[str, int]) -> Dataset:
    """``data`` without the feature ``column`` (its name, or its index among the features), whose
    values become the raw row weights (``with_weights`` scales them)."""
    names = data.feature_names
    if isinstance(column, str) and not column.lstrip("-").isdigit():
        if names is None or column not in names:
            have = f"its columns are {', '.join(names)}" if names else "it has no column names (no header)"
            raise JobError(f"--weight-column {column}: {data.spec} has no column {column!r}; {have}")
        index = names.index(column)
    else:
        index = int(column)
        if not 0 <= index < data.n_features:
            raise JobError(f"--weight-column {column}: {data.spec} has {data.n_features} feature columns (0 to "
                           f"{data.n_features - 1})")
    if not isinstance(data.X, np.ndarray):
        raise JobError(f"--weight-column needs dense rows, and {data.spec} is sparse (use --no-sparse)")
    keep = [i for i in range(data.n_features) if i != index]
    weight = np.array(data.X[:, index], dtype=np.float64)
    return dataclasses.replace(data, X=np.ascontiguousarray(data.X[:, keep]), weight=weight,
                               feature_names=None if names is None else tuple(names[i] for i in keep))
