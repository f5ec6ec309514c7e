"""Collective preparation of loaded data: class count, stratified train/test split, standardisation.

Each function sees only this rank's rows and combines per-rank sums with Allreduce, so no rank
ever holds another rank's rows and the result does not depend on the number of ranks.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..comm import Comm, as_comm
from ..errors import JobError

if TYPE_CHECKING:
    from . import Dataset


def n_classes(data: "Dataset", comm: "Comm") -> int:
    """Collective: the number K of classes, when the labels over all ranks are exactly 0, 1, ..., K-1.

    JobError otherwise (labels with gaps such as {0, 1, 100}, -1/+1 or text): map them to
    0..K-1 with ``encode_labels`` first.
    """
    comm = as_comm(comm)
    from .labels import describe_classes, find_classes

    classes = find_classes(data.y, comm)
    if classes.dtype.kind in "US" or not np.array_equal(classes, np.arange(classes.size)):
        raise JobError(f"the labels of {data.spec} are {describe_classes(classes)}, not 0..K-1; map them to class "
                       f"indices with encode_labels(train, comm, ...) first")
    return int(classes.size)


def split(data: "Dataset", comm: "Comm", fraction: float, seed: int = 0, stratify: bool = True) -> tuple["Dataset", "Dataset"]:
    """Collective: (train, test) with round(fraction * n_c) test rows of every class c.

    Which rows of class c are test rows is decided by a permutation of 0..n_c-1 drawn from
    (seed, c), applied to the rows of class c in global order: deterministic, and the same for any
    number of ranks. Each rank keeps its own rows, so both parts stay contiguous in rank order.
    Without ``stratify`` (regression) all rows form one class.
    """
    comm = as_comm(comm)
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
    return _subset(data, ~is_test, comm), _subset(data, is_test, comm)


def _subset(data: "Dataset", keep: np.ndarray, comm: "Comm") -> "Dataset":
    """The rows of ``data`` where ``keep``, as a Dataset whose blocks follow the ranks' new counts."""
    import dataclasses

    counts = comm.allgather_int(int(keep.sum()))
    y = None if data.y is None else data.y[keep]
    weight = None if data.weight is None else data.weight[keep]
    return dataclasses.replace(data, X=data.X[keep], y=y, start=int(counts[: comm.rank].sum()),
                               n_total=int(counts.sum()), counts=counts, weight=weight)


def standardize(train: "Dataset", comm: "Comm", *others: "Dataset") -> tuple[np.ndarray, np.ndarray]:
    """Collective: scale X of ``train`` and ``others`` in place by the training rows' global mean and
    standard deviation (constant features are only centred); return (mean, scale), each shape (d,).

    Sparse rows (CSR) are only divided by the standard deviation, not centred (that would make
    them dense), as scikit-learn's ``StandardScaler(with_mean=False)`` does: mean is then all zeros.
    Two Allreduces of per-rank sums: of x, then of (x - mean)^2 (for sparse rows: over the stored
    values, plus mean^2 for each cell left out).
    """
    comm = as_comm(comm)
    if train.n_total == 0:
        raise JobError("cannot standardise: the training data has no rows")
    mean = comm.Allreduce(np.asarray(train.X.sum(axis=0), dtype=np.float64).ravel()) / train.n_total
    if isinstance(train.X, np.ndarray):
        squares = np.square(train.X - mean).sum(axis=0)
    else:
        stored = np.bincount(train.X.indices, minlength=train.n_features)
        squares = np.bincount(train.X.indices, weights=np.square(train.X.data - mean[train.X.indices]),
                              minlength=train.n_features) + (train.n_local - stored) * np.square(mean)
    std = np.sqrt(comm.Allreduce(squares) / train.n_total)
    scale = np.where(std > 0, std, 1.0)
    if not isinstance(train.X, np.ndarray):
        train.notes = (*train.notes, "sparse rows are divided by each feature's standard deviation, not centred")
        mean = np.zeros_like(mean)
    for data in (train, *others):
        data.X = scale_rows(data.X, mean, scale)
    return mean, scale


def scale_rows(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(X - mean) / scale: in place for dense rows (n, d); a new CSR matrix for sparse rows (mean must be 0)."""
    if not isinstance(X, np.ndarray):
        import scipy.sparse

        return scipy.sparse.csr_matrix(X.multiply(1.0 / scale))  # the same stored cells, scaled
    X -= mean
    X /= scale
    return X


def as_dtype(data: "Dataset", dtype: str) -> "Dataset":
    """``data`` with X and y in ``dtype`` ("float64" or "float32"): training then runs in that precision."""
    import dataclasses

    if dtype not in ("float64", "float32"):
        raise JobError(f"--dtype must be float64 or float32, not {dtype!r}")
    y = None if data.y is None else data.y.astype(dtype, copy=False)
    X = np.ascontiguousarray(data.X, dtype=dtype) if isinstance(data.X, np.ndarray) else data.X.astype(dtype)
    return dataclasses.replace(data, X=X, y=y)


IMPUTE = ("mean", "median", "zero")


def impute(train: "Dataset", comm: "Comm", how: str, *others: "Dataset") -> np.ndarray:
    """Collective: fill the missing (NaN) cells of ``train`` and ``others`` in place; return the fill values (d,).

    ``how`` is "mean" or "median" of each feature's present values in the training rows over
    all ranks, or "zero". The median is exact: the middle order statistics are found by bisection
    on the bits of float64 (64 Allreduces of per-feature counts), the same for any number of ranks.
    JobError for a feature with no values at all.
    """
    comm = as_comm(comm)
    if how not in IMPUTE:
        raise JobError(f"impute must be one of {', '.join(IMPUTE)}, not {how!r}")
    if not isinstance(train.X, np.ndarray):
        raise JobError(f"{train.spec} has sparse rows, which have no missing cells to impute (a cell left out of a "
                       f"LIBSVM row is 0); drop --impute, or read the rows dense (sparse=False, --no-sparse)")
    present = ~np.isnan(train.X)
    counts = comm.Allreduce(present.sum(axis=0).astype(np.int64))
    if how == "zero":
        fill = np.zeros(train.n_features)
    else:
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            name = train.feature_names[empty[0]] if train.feature_names else f"feature {empty[0]}"
            raise JobError(f"cannot impute {name!r} of {train.spec}: it has no values in the training rows")
        if how == "mean":
            fill = comm.Allreduce(np.where(present, train.X, 0.0).sum(axis=0)) / counts
        else:
            low, high = _order_statistics(train.X, present, np.stack([(counts - 1) // 2, counts // 2]), comm)
            fill = (low + high) / 2
    for data in (train, *others):
        missing = np.isnan(data.X)
        data.X[missing] = np.broadcast_to(fill, data.X.shape)[missing]
    return fill


def _sortable(X: np.ndarray) -> np.ndarray:
    """uint64 keys that order like the float64 values of X (NaN excluded by the caller)."""
    bits = np.ascontiguousarray(X, dtype=np.float64).view(np.uint64)
    return np.where(bits >> np.uint64(63), ~bits, bits | np.uint64(1 << 63))


def _from_sortable(keys: np.ndarray) -> np.ndarray:
    """The float64 values of ``_sortable`` keys."""
    bits = np.where(keys >> np.uint64(63), keys & ~np.uint64(1 << 63), ~keys)
    return bits.view(np.float64)


def _order_statistics(X: np.ndarray, present: np.ndarray, ranks: np.ndarray, comm: "Comm") -> np.ndarray:
    """Collective: the ranks[i, j]-th smallest present value (0-based) of column j over all ranks, shape ranks.shape.

    Bisection on the sortable keys: the answer is the smallest key K with count(keys <= K) > rank.
    """
    keys = _sortable(np.where(present, X, 0.0))
    lo = np.zeros(ranks.shape, dtype=np.uint64)
    hi = np.full(ranks.shape, np.iinfo(np.uint64).max, dtype=np.uint64)
    for _ in range(64):
        mid = lo + (hi - lo) // np.uint64(2)
        below = np.stack([((keys <= m) & present).sum(axis=0) for m in mid]).astype(np.int64)
        comm.Allreduce(below)
        enough = below > ranks
        hi = np.where(enough, mid, hi)
        lo = np.where(enough, lo, mid + np.uint64(1))
    return _from_sortable(hi)


