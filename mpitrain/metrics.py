"""The metrics people report, computed exactly over every rank's rows with collectives of fixed size.

Each rank scores its own rows; what travels is small and does not depend on the rows a rank
holds: the K x K confusion matrix (one Allreduce) gives accuracy, precision, recall and F1;
log-loss, RMSE, MAE and R^2 are sums (one or two Allreduces of a few numbers). ROC AUC needs a
global ranking, so the (score, label, weight) triples are gathered on rank 0, which ranks them
and broadcasts the area: rank 0 holds 24 bytes per row of the scored data (plus NumPy's sort
workspace, about as much again), e.g. 240 MB for 10 million rows; the other ranks hold only
their own rows. The result is exact (ties count one half, as scikit-learn's ``roc_auc_score``).

With ``weight`` (n,) each row counts that much, as scikit-learn's ``sample_weight``.

Names (``--metrics``): classification ``accuracy``, ``log_loss``, ``f1`` (macro: the mean over
the classes present in the labels or the predictions, as scikit-learn's ``average="macro"``),
``f1_weighted`` (weighted by each class's support), ``precision`` and ``recall`` (macro),
``precision_weighted``, ``recall_weighted``, ``auc`` (binary tasks: the score is the probability
of class 1); regression ``rmse``, ``mae``, ``r2``.

>>> metrics.score(model, theta, test, comm, ("f1", "auc"))  # doctest: +SKIP
{'f1': 0.93, 'auc': 0.98}
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from .data import Dataset
from .models import Model

if TYPE_CHECKING:
    from .comm import Comm

CLASSIFICATION = ("accuracy", "log_loss", "f1", "f1_weighted", "precision", "recall", "precision_weighted",
                  "recall_weighted", "auc")
REGRESSION = ("rmse", "mae", "r2")
MAXIMISED = ("accuracy", "f1", "f1_weighted", "precision", "recall", "precision_weighted", "recall_weighted",
             "auc", "r2")  # larger is better; the others (losses and errors) are minimised


class MetricError(ValueError):
    """A metric that does not apply to the model or the data."""


def check_names(names: Sequence[str], classifier: bool, n_classes: int = 2) -> tuple[str, ...]:
    """The names as a tuple, or MetricError naming the first that does not apply."""
    kind, allowed = ("a classifier", CLASSIFICATION) if classifier else ("a regression model", REGRESSION)
    for name in names:
        if name not in CLASSIFICATION + REGRESSION:
            raise MetricError(f"unknown metric {name!r}; choose from {', '.join(CLASSIFICATION + REGRESSION)}")
        if name not in allowed:
            raise MetricError(f"metric {name!r} does not apply to {kind}; choose from {', '.join(allowed)}")
        if name == "auc" and n_classes != 2:
            raise MetricError(f"metric 'auc' is for binary tasks, and this one has {n_classes} classes")
    return tuple(names)


def n_classes_of(model: Model) -> int:
    """K for a classifier (2 for logistic regression), 0 for a regression model."""
    if model.metric_name != "accuracy":
        return 0
    return 2 if model.name == "logistic" else int(getattr(model, "n_classes", 0))


def score(model: Model, theta: np.ndarray, data: Dataset, comm: "Comm", names: Sequence[str],
          weight: Optional[np.ndarray] = None) -> dict[str, float]:
    """Collective: {name: value} of ``theta``'s predictions on every rank's rows of ``data``, weighted
    by ``weight`` (n_local,) or else ``data.weight``."""
    if not names:
        return {}
    weight = data.weight if weight is None else weight
    k = n_classes_of(model)
    out = model.predict(theta, data.X)
    if k:
        return classification(data.y, out, comm, names, k, weight)
    return regression(data.y, out, comm, names, weight)


def _weights(y: np.ndarray, weight: Optional[np.ndarray]) -> np.ndarray:
    return np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)


def confusion_matrix(y: np.ndarray, predicted: np.ndarray, k: int, comm: "Comm",
                     weight: Optional[np.ndarray] = None) -> np.ndarray:
    """Collective: (k, k) counts (weight sums) over all ranks, [true class, predicted class]."""
    counts = np.bincount(np.asarray(y, dtype=np.int64) * k + np.asarray(predicted, dtype=np.int64),
                         weights=_weights(y, weight), minlength=k * k).astype(np.float64)
    return comm.Allreduce(counts).reshape(k, k)


def from_confusion(matrix: np.ndarray, name: str) -> float:
    """accuracy, f1, precision or recall (macro, or ``_weighted``) from a (k, k) confusion matrix."""
    tp, true, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    if name == "accuracy":
        return float(tp.sum() / matrix.sum()) if matrix.sum() else float("nan")
    base, _, average = name.partition("_")
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = {"precision": np.where(predicted > 0, tp / predicted, 0.0),
                     "recall": np.where(true > 0, tp / true, 0.0),
                     "f1": np.where(true + predicted > 0, 2 * tp / (true + predicted), 0.0)}[base]
    if average == "weighted":
        return float(per_class @ true / true.sum()) if true.sum() else 0.0
    present = (true + predicted) > 0  # scikit-learn averages over the labels seen in y or the predictions
    return float(per_class[present].mean()) if present.any() else 0.0


def roc_auc(y: np.ndarray, score1: np.ndarray, comm: "Comm", weight: Optional[np.ndarray] = None) -> float:
    """Collective: the area under the ROC curve of scores (n,) for labels (n,) in {0, 1}, exact.

    Rank 0 gathers every rank's rows (24 bytes each) and broadcasts the area; ties count one half.
    """
    rows = np.column_stack([np.asarray(score1, dtype=np.float64), np.asarray(y, dtype=np.float64),
                            _weights(y, weight)])
    every = comm.gather_rows(rows)
    area = np.array([_area(every) if every is not None else 0.0])
    return float(comm.Bcast(area)[0])


def _area(rows: np.ndarray) -> float:
    """AUC of (score, label, weight) rows: weighted pairs positive over negative, ties one half."""
    s, positive, w = rows[:, 0], rows[:, 1] == 1, rows[:, 2]
    values, group = np.unique(s, return_inverse=True)
    pos = np.bincount(group, weights=np.where(positive, w, 0.0), minlength=values.size)
    neg = np.bincount(group, weights=np.where(positive, 0.0, w), minlength=values.size)
    below = np.cumsum(neg) - neg  # negative weight strictly below each score
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")  # undefined with one class (scikit-learn raises)
    return float(pos @ (below + 0.5 * neg) / (total_pos * total_neg))


def classification(y: np.ndarray, proba: np.ndarray, comm: "Comm", names: Sequence[str], k: int,
                   weight: Optional[np.ndarray] = None) -> dict[str, float]:
    """Collective: classification metrics of probabilities ``proba`` ((n,) of class 1 when k is 2,
    or (n, k)) against class indices ``y`` (n,)."""
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    full = np.column_stack([1.0 - proba, proba]) if proba.ndim == 1 else proba.reshape(len(y), k)
    predicted = (full[:, 1] > 0.5).astype(np.int64) if proba.ndim == 1 else np.argmax(full, axis=1)
    out: dict[str, float] = {}
    matrix = None
    for name in names:
        if name == "log_loss":
            out[name] = log_loss(y, full, comm, weight)
        elif name == "auc":
            out[name] = roc_auc(y, full[:, 1], comm, weight)
        else:
            matrix = confusion_matrix(y, predicted, k, comm, weight) if matrix is None else matrix
            out[name] = from_confusion(matrix, name)
    return out


def log_loss(y: np.ndarray, proba: np.ndarray, comm: "Comm", weight: Optional[np.ndarray] = None) -> float:
    """Collective: mean -log p(true class), probabilities (n, k) clipped to [eps, 1 - eps] and renormalised
    as scikit-learn's ``log_loss`` does."""
    eps = np.finfo(np.float64).eps
    p = np.clip(proba, eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    w = _weights(y, weight)
    picked = p[np.arange(len(y)), y] if len(y) else np.empty(0)
    sums = comm.Allreduce(np.array([-(w @ np.log(picked)), w.sum()]))
    return float(sums[0] / sums[1]) if sums[1] else float("nan")


def regression(y: np.ndarray, predicted: np.ndarray, comm: "Comm", names: Sequence[str],
               weight: Optional[np.ndarray] = None) -> dict[str, float]:
    """Collective: rmse, mae and r2 of ``predicted`` (n,) against ``y`` (n,).

    R^2 = 1 - SSE / SST takes a second Allreduce: SST is summed about the global mean, not from
    raw moments, so no precision is lost to cancellation. A constant y gives 1 for a perfect fit
    and 0 otherwise, as scikit-learn does.
    """
    y, predicted = np.asarray(y, dtype=np.float64), np.asarray(predicted, dtype=np.float64).reshape(len(y))
    w = _weights(y, weight)
    e = predicted - y
    sums = comm.Allreduce(np.array([w @ (e * e), w @ np.abs(e), w.sum(), w @ y]))
    sse, sae, total = sums[0], sums[1], sums[2]
    out: dict[str, float] = {}
    for name in names:
        if name == "rmse":
            out[name] = float(np.sqrt(sse / total)) if total else float("nan")
        elif name == "mae":
            out[name] = float(sae / total) if total else float("nan")
        elif name == "r2":
            mean = sums[3] / total if total else 0.0
            sst = float(comm.Allreduce(np.array([w @ ((y - mean) ** 2)]))[0])
            out[name] = (1.0 - sse / sst) if sst > 0 else (1.0 if sse == 0 else 0.0)
    return out
