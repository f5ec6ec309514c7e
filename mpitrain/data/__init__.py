"""Loading this rank's contiguous block of a data set, named by a SPEC string.

SPEC is one of: a directory holding X.npy and y.npy; a ``.csv`` file with a header;
``synthetic:regression`` or ``synthetic:classification`` with ``,key=value`` options; or one of
the data sets scikit-learn ships (``digits``, ``breast_cancer``, ``wine``, ``iris``; these names
always mean the built-in sets: write ``./iris`` for a directory of that name).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from ..errors import JobError, UsageError
from .builtin import FILES as BUILTIN, BuiltinSource
from .csv import CsvSource
from .npy import NpySource
from .partition import batch_shares, block_bounds, block_sizes
from .prepare import as_dtype, n_classes, split, standardize
from .sampler import BatchSampler
from .synthetic import SyntheticSource

if TYPE_CHECKING:
    from ..comm import Comm

__all__ = ["Dataset", "load", "open_source", "as_dtype", "n_classes", "split", "standardize", "block_bounds", "block_sizes",
           "batch_shares", "BatchSampler", "BUILTIN"]

Source = Union[CsvSource, NpySource, SyntheticSource, BuiltinSource]


@dataclass
class Dataset:
    """One rank's rows of a data set.

    X : ndarray of shape (n_local, n_features), float64
    y : ndarray of shape (n_local,), float64, or None when the data has no labels
    start : global index of this rank's first row; n_total : rows over all ranks
    counts : rows on every rank, shape (size,): contiguous blocks in rank order
    """

    X: np.ndarray
    y: Optional[np.ndarray]
    start: int
    n_total: int
    spec: str
    counts: np.ndarray

    @property
    def n_local(self) -> int:
        """Rows on this rank."""
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        """Columns of X."""
        return self.X.shape[1]


def open_source(spec: str, label_column: Optional[str] = None, n_features: Optional[int] = None) -> Source:
    """Parse SPEC and open the source (reads headers only, never the rows)."""
    if spec in BUILTIN:
        return BuiltinSource(spec)
    if spec.startswith("synthetic:"):
        kind, *pairs = spec[len("synthetic:") :].split(",")
        options = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise UsageError(f"synthetic option {pair!r} in {spec!r} must look like key=value")
            options[key.strip()] = value.strip()
        return SyntheticSource(kind, options)
    if os.path.isdir(spec):
        return NpySource(spec)
    if spec.lower().endswith(".csv"):
        if not os.path.exists(spec):
            raise UsageError(f"data file {spec!r} does not exist")
        return CsvSource(spec, label_column, n_features)
    if not os.path.exists(spec):
        raise UsageError(
            f"data {spec!r} does not exist; give a directory with X.npy and y.npy, a .csv file, "
            f"synthetic:regression / synthetic:classification, or one of {', '.join(BUILTIN)}"
        )
    raise UsageError(f"cannot read {spec!r}: expected a directory with X.npy and y.npy, or a .csv file")


def load(
    spec: str,
    comm: "Comm",
    *,
    label_column: Optional[str] = None,
    n_features: Optional[int] = None,
    require_labels: bool = True,
) -> Dataset:
    """Collective: every rank opens SPEC and reads only its own block of rows.

    Ranks agree that they see the same number of rows and features before reading, and every
    rank checks its rows for NaN and infinity. Any failure on any rank raises the same
    JobError everywhere, naming the ranks. ``comm``: see ``mpitrain.comm.as_comm``.
    """
    from ..comm import as_comm

    comm = as_comm(comm)
    with comm.together():
        source = open_source(spec, label_column, n_features)
        local_count = source.scan(comm.rank, comm.size) if isinstance(source, CsvSource) else 0
    byte_range = None
    if isinstance(source, CsvSource):
        counts = comm.allgather_int(local_count)
        table = comm.Allreduce(source.locate(counts, comm.rank), "max")
        byte_range = int(table[comm.rank]), int(table[comm.rank + 1])
    comm.agree_int("rows", source.n_total, spec)
    comm.agree_int("features", source.n_features, spec)
    comm.agree_int("label column (1 if present)", int(source.has_labels), spec)
    if require_labels and not source.has_labels:
        raise JobError(f"{spec} has no labels (y.npy or a label column), which training needs")
    if n_features is not None and source.n_features != n_features:
        raise JobError(f"{spec} has {source.n_features} features, but the model expects {n_features}")
    start, stop = block_bounds(source.n_total, comm.size, comm.rank)
    with comm.together():
        if byte_range is not None:
            X, y = source.read_block(*byte_range, stop - start)
        else:
            X, y = source.read(start, stop)
        check_finite(X, y, start, spec)
    return Dataset(X, y, start, source.n_total, spec, block_sizes(source.n_total, comm.size))


def check_finite(X: np.ndarray, y: Optional[np.ndarray], start: int, spec: str) -> None:
    """Raise UsageError naming the first global row and column that holds NaN or infinity."""
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UsageError(f"{spec}: row {start + row}, feature {col} is {X[row, col]}; remove or impute it")
    if y is not None and not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise UsageError(f"{spec}: the label of row {start + row} is {y[row]}; remove or impute it")
