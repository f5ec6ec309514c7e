"""Distributed inference: each rank predicts its rows; rank 0 gets them back in row order."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from . import metrics
from .data import Dataset
from .data.labels import encode
from .models import Model

if TYPE_CHECKING:
    from .comm import Comm


def predict(model: Model, theta: np.ndarray, data: Dataset, comm: "Comm", *,
            labels: bool = False) -> tuple[Optional[np.ndarray], Optional[float]]:
    """Collective: (predictions of shape (n_total, ...) on rank 0 and None elsewhere, metric or None).

    Predictions are values or probabilities of shape (n_total,) (logistic: of the second
    class), or class probabilities of shape (n_total, K) for softmax and MLP classifiers; with
    ``labels``, a classifier gives the predicted class of each row instead, shape (n_total,):
    the label as the training data wrote it when the model knows its classes, else the index.

    A model read by ``models.load`` carries a ``schema``, applied here as ``mpitrain predict``
    applies it: missing cells filled, features standardised as in training, and labels mapped
    to the model's classes. Give such a model the raw rows, not standardised ones.

    The metric (RMSE or accuracy, over all rows) is computed when the data has labels, which
    must suit the model (JobError otherwise), and is returned on every rank.
    """
    from .comm import as_comm

    comm = as_comm(comm)  # None, a Comm or an mpi4py communicator
    schema = model.schema
    X, y = _as_trained(model, data, comm)
    local = model.predict(theta, X)
    metric = None
    if y is not None:
        bad = model.check_labels(y, data.start)
        comm.raise_if_any(f"{data.spec}: cannot score the predictions: {bad}" if bad else "")
        sums = comm.Allreduce(np.array(model.sums(theta, X, y)))
        metric = model.metric(sums[1], data.n_total)
    if labels and model.metric_name == "accuracy":
        index = (local > 0.5) if local.ndim == 1 else np.argmax(local, axis=1)
        gathered = comm.gather_rows(index.astype(np.int64))
        classes = None if schema is None else schema.classes
        if gathered is None or classes is None:
            return gathered, metric
        return classes[gathered], metric
    return comm.gather_rows(local), metric


def _as_trained(model: Model, data: Dataset, comm: "Comm") -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Collective: (X, y) of ``data`` as the model's schema wants them: features filled and scaled as
    in training, labels mapped to class indices (unchanged without a schema)."""
    schema, X, y = model.schema, data.X, data.y
    if schema is not None:
        names, trained = data.feature_names, schema.feature_names
        comm.raise_if_any(f"{data.spec} has the features ({', '.join(names)}), but the model was trained on "
                          f"({', '.join(trained)})" if names and trained and tuple(names) != tuple(trained) else "")
        with comm.together():
            X = schema.transform(X)
        if y is not None and schema.classes is not None:
            with comm.together():
                y = encode(y, schema.classes, data.start, data.spec)
    return X, y


def score(model: Model, theta: np.ndarray, data: Dataset, comm: "Comm", names: Sequence[str]) -> dict[str, float]:
    """Collective: {name: value} of ``mpitrain.metrics`` for the model's predictions of ``data``'s labelled
    rows, the schema applied as ``predict`` applies it."""
    from .comm import as_comm

    comm = as_comm(comm)
    X, y = _as_trained(model, data, comm)
    if y is None:
        raise ValueError(f"{data.spec} has no labels to score the predictions against")
    bad = model.check_labels(y, data.start)
    comm.raise_if_any(f"{data.spec}: cannot score the predictions: {bad}" if bad else "")
    return metrics.score(model, theta, dataclasses.replace(data, X=X, y=y), comm, names)
