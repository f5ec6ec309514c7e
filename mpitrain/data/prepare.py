"""Collective preparation of loaded data: class count, stratified train/test split, standardisation.

Each function sees only this rank's rows and combines per-rank sums with Allreduce, so no rank
ever holds another rank's rows and the result does not depend on the number of ranks.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import JobError

if TYPE_CHECKING:
    from ..comm import Comm
    from . import Dataset


def n_classes(data: "Dataset", comm: "Comm") -> int:
    """Collective: 1 + the largest label over all ranks (labels are classes 0, 1, ..., K-1)."""
    top = np.array([data.y.max() if data.y is not None and data.n_local else -1.0])
    return int(_comm(comm).Allreduce(top, "max")[0]) + 1


def split(data: "Dataset", comm: "Comm", fraction: float, seed: int = 0, stratify: bool = True) -> tuple["Dataset", "Dataset"]:
    """Collective: (train, test) with round(fraction * n_c) test rows of every class c.

    Which rows of class c are test rows is decided by a permutation of 0..n_c-1 drawn from
    (seed, c), applied to the rows of class c in global order: deterministic, and the same for any
    number of ranks. Each rank keeps its own rows, so both parts stay contiguous in rank order.
    Without ``stratify`` (regression) all rows form one class.
    """
    from . import Dataset

    comm = _comm(comm)
    if not 0 < fraction < 1:
        raise JobError(f"--test-fraction {fraction} must be between 0 and 1 (exclusive)")
    y = data.y if data.y is not None else np.zeros(data.n_local)
    if stratify:
        bad = np.flatnonzero((y != np.round(y)) | (y < 0))
        comm.raise_if_any(f"a stratified split needs class labels 0, 1, ..., but row {data.start + bad[0]} "
                          f"has {y[bad[0]]}" if bad.size else "")
        classes = y.astype(np.int64)
    else:
        classes = np.zeros(data.n_local, dtype=np.int64)
    k = int(comm.Allreduce(np.array([classes.max(initial=-1)]), "max")[0]) + 1
    table = np.zeros((comm.size, k), dtype=np.int64)  # rows of each class on each rank
    table[comm.rank] = np.bincount(classes, minlength=k)
    comm.Allreduce(table)
    per_class, before = table.sum(axis=0), table[: comm.rank].sum(axis=0)
    n_test = np.floor(fraction * per_class + 0.5).astype(np.int64)
    is_test = np.zeros(data.n_local, dtype=bool)
    for c in range(k):
        rows = np.flatnonzero(classes == c)
        order = np.random.default_rng([seed, c]).permutation(per_class[c])
        is_test[rows] = order[before[c] + np.arange(rows.size)] < n_test[c]
    return _subset(data, ~is_test, comm, Dataset), _subset(data, is_test, comm, Dataset)


def _subset(data: "Dataset", keep: np.ndarray, comm: "Comm", cls: type) -> "Dataset":
    """The rows of ``data`` where ``keep``, as a Dataset whose blocks follow the ranks' new counts."""
    counts = comm.allgather_int(int(keep.sum()))
    y = None if data.y is None else data.y[keep]
    return cls(data.X[keep], y, int(counts[: comm.rank].sum()), int(counts.sum()), data.spec, counts)


def standardize(train: "Dataset", comm: "Comm", *others: "Dataset") -> tuple[np.ndarray, np.ndarray]:
    """Collective: scale X of ``train`` and ``others`` in place by the training rows' global mean and
    standard deviation (constant features are only centred); return (mean, scale), each shape (d,).

    Two Allreduces of per-rank sums: of x, then of (x - mean)^2.
    """
    comm = _comm(comm)
    if train.n_total == 0:
        raise JobError("cannot standardise: the training data has no rows")
    mean = comm.Allreduce(train.X.sum(axis=0)) / train.n_total
    var = comm.Allreduce(np.square(train.X - mean).sum(axis=0)) / train.n_total
    std = np.sqrt(var)
    scale = np.where(std > 0, std, 1.0)
    for data in (train, *others):
        data.X -= mean
        data.X /= scale
    return mean, scale


def as_dtype(data: "Dataset", dtype: str) -> "Dataset":
    """``data`` with X and y in ``dtype`` ("float64" or "float32"): training then runs in that precision."""
    import dataclasses

    if dtype not in ("float64", "float32"):
        raise JobError(f"--dtype must be float64 or float32, not {dtype!r}")
    y = None if data.y is None else data.y.astype(dtype, copy=False)
    return dataclasses.replace(data, X=np.ascontiguousarray(data.X, dtype=dtype), y=y)


def _comm(comm: Any) -> "Comm":
    """``comm`` as a Comm (see ``mpitrain.comm.as_comm``); imported here so that loading data needs no MPI."""
    from ..comm import as_comm

    return as_comm(comm)
