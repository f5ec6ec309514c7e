"""Loading this rank's contiguous block of a data set, named by a SPEC string.

SPEC is one of: a directory holding X.npy and y.npy, or part files (``part-*.csv``,
``*.parquet``); a ``.csv`` (``.tsv``, ``.csv.gz``), ``.parquet``, LIBSVM (``.svm``, ``.libsvm``,
``.svmlight``), ``.npz[:X,y]`` or HDF5 (``.h5[:X,y]``) file; ``synthetic:regression`` or
``synthetic:classification`` with ``,key=value`` options; or one of the data sets scikit-learn
ships (``digits``, ``breast_cancer``, ``wine``, ``iris``; these names always mean the built-in
sets: write ``./iris`` for a directory of that name).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..comm import Comm, as_comm
from ..errors import JobError, UsageError
from .builtin import FILES as BUILTIN, BuiltinSource
from .byteranges import ByteRanges, unbalanced_quotes
from .csv import CsvSource, WholeCsvSource
from .hdf5 import Hdf5Source
from .labels import encode_labels, find_classes, is_text, numbers_if_all_ranks_can
from .libsvm import LibsvmSource
from .npy import NpySource
from .parquet import ParquetSource
from .parts import KINDS as PARTS, PartsSource, part_files
from .partition import batch_shares, block_bounds, block_sizes
from .prepare import IMPUTE, as_dtype, impute, n_classes, split, standardize
from .schema import Schema
from .sampler import BatchSampler
from .synthetic import SyntheticSource

__all__ = ["Dataset", "load", "open_source", "as_dtype", "n_classes", "split", "standardize", "block_bounds", "block_sizes",
           "batch_shares", "BatchSampler", "BUILTIN", "Schema", "encode_labels", "find_classes", "impute", "IMPUTE"]

Source = Union[CsvSource, WholeCsvSource, LibsvmSource, ParquetSource, Hdf5Source, PartsSource, NpySource,
               SyntheticSource, BuiltinSource]
LIBSVM = (".svm", ".libsvm", ".svmlight")
CSV = (".csv", ".tsv", ".csv.gz", ".tsv.gz")


@dataclass
class Dataset:
    """One rank's rows of a data set.

    X : ndarray of shape (n_local, n_features), float64, or a scipy.sparse CSR matrix (LIBSVM)
    y : ndarray of shape (n_local,), float64 (or str for text labels, until ``encode_labels``),
        or None when the data has no labels
    start : global index of this rank's first row; n_total : rows over all ranks
    counts : rows on every rank, shape (size,): contiguous blocks in rank order
    feature_names : the d column names, or None; label_name : the label column's name, or None
    notes : what the reader decided that the user should hear (a header taken as data, a
        column left out)
    weight : ndarray of shape (n_local,), each row's weight in losses and metrics, or None (every
        row counts 1); ``mpitrain.weighting`` sets it, scaled to mean 1 over all ranks' rows
    """

    X: np.ndarray
    y: Optional[np.ndarray]
    start: int
    n_total: int
    spec: str
    counts: np.ndarray
    feature_names: Optional[tuple[str, ...]] = None
    label_name: Optional[str] = None
    notes: tuple[str, ...] = ()
    weight: Optional[np.ndarray] = None

    @property
    def n_local(self) -> int:
        """Rows on this rank."""
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        """Columns of X."""
        return self.X.shape[1]


def open_source(spec: str, label_column: Union[str, int, None] = None, n_features: Optional[int] = None, *,
                header: Optional[bool] = None, delimiter: Optional[str] = None, index: Optional[bool] = None) -> Source:
    """Parse SPEC and open the source (reads headers only, never the rows).

    ``header`` (CSV): True, False, or None to decide from the first line; ``delimiter`` (CSV):
    by default a tab for ``.tsv`` files and a comma otherwise; ``index`` (CSV): whether the first
    column is a row index to leave out, or None to decide (see ``csv.choose_columns``).
    """
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
        if os.path.isfile(os.path.join(spec, "X.npy")):
            return NpySource(spec)
        parts = part_files(spec)
        if not parts:
            raise UsageError(f"data directory {spec!r} holds neither X.npy nor part files ({', '.join(PARTS)})")
        return PartsSource(spec, parts, label_column, n_features, header, delimiter, index)
    path, names = spec, None
    base, colon, listed = spec.rpartition(":")
    if colon and base.lower().endswith((".h5", ".hdf5", ".npz")):
        path, names = base, [n.strip() for n in listed.split(",") if n.strip()]
    lower = path.lower()
    if not os.path.exists(path):
        raise UsageError(
            f"data {path!r} does not exist; give a directory with X.npy and y.npy or part files, a .csv, "
            f".parquet, .svm, .npz or .h5 file, synthetic:regression / synthetic:classification, or one of "
            f"{', '.join(BUILTIN)}"
        )
    if lower.endswith(CSV):
        sep = delimiter if delimiter is not None else ("\t" if ".tsv" in lower else ",")
        if len(sep) != 1:
            raise UsageError(f"the delimiter must be one character, not {sep!r}")
        cls = WholeCsvSource if lower.endswith(".gz") else CsvSource
        return cls(path, label_column, n_features, header, sep, index)
    if lower.endswith((".parquet", ".pq")):
        return ParquetSource(path, label_column, n_features)
    if lower.endswith(LIBSVM):
        return LibsvmSource(path, n_features)
    if lower.endswith(".npz"):
        return NpySource(path, names)
    if lower.endswith((".h5", ".hdf5")):
        return Hdf5Source(path, names)
    raise UsageError(f"cannot tell the format of {spec!r} from its name: expected {', '.join(CSV)}, .parquet, "
                     f"{', '.join(LIBSVM)}, .npz, .h5 or a directory")


def load(
    spec: str,
    comm: "Comm",
    *,
    label_column: Union[str, int, None] = None,
    n_features: Optional[int] = None,
    require_labels: bool = True,
    header: Optional[bool] = None,
    delimiter: Optional[str] = None,
    allow_missing: bool = False,
    sparse: Optional[bool] = None,
    index: Optional[bool] = None,
) -> Dataset:
    """Collective: every rank opens SPEC and reads only its own block of rows.

    Ranks agree that they see the same number of rows and features before reading, and every
    rank checks its rows for missing (NaN) and infinite values; with ``allow_missing`` NaN
    stays for ``impute`` to fill. Text labels become numbers when every label on every rank is
    one. Any failure on any rank raises the same JobError everywhere, naming the ranks.
    ``label_column``, ``header``, ``delimiter`` and ``index``: see ``open_source``. A sparse source
    (LIBSVM) gives X as a scipy.sparse CSR matrix unless ``sparse`` is False (then dense rows).
    """
    comm = as_comm(comm)  # None, a Comm or an mpi4py communicator
    with comm.together():
        source = open_source(spec, label_column, n_features, header=header, delimiter=delimiter, index=index)
    # Ranks that see different files (inconsistent copies, a file still being written) are named
    # here, before the byte-range scan, whose line counts would not fit together.
    comm.agree_int("features", source.n_features, spec)
    byte_range = None
    if isinstance(source, ByteRanges):
        comm.agree_int("size in bytes", source.file_end, spec)
        with comm.together():
            local_quotes = source.scan(comm.rank, comm.size)
        quotes = comm.allgather_int(local_quotes)
        if quotes.sum() % 2:  # the same on every rank
            raise JobError(unbalanced_quotes(spec))
        counts = comm.allgather_int(source.keep(int(quotes[: comm.rank].sum())))
        table = comm.Allreduce(source.locate(counts, comm.rank), "max")
        if (table < 0).any() or (np.diff(table) < 0).any():  # the same table on every rank
            raise JobError(f"the ranks found lines of {spec} that do not fit together; every rank must see "
                           f"the same file (is it being written, or are the copies different?)")
        byte_range = int(table[comm.rank]), int(table[comm.rank + 1])
    if isinstance(source, PartsSource):
        source.count(comm)
    comm.agree_int("rows", source.n_total, spec)
    comm.agree_int("label column (1 if present)", int(source.has_labels), spec)
    if require_labels and not source.has_labels:
        raise JobError(f"{spec} has no labels (y.npy or a label column), which training needs")
    if require_labels and source.n_total == 0:
        only = " (only a header line)" if isinstance(source, (CsvSource, WholeCsvSource)) else ""
        raise JobError(f"{spec} has no rows{only}; training needs at least one")
    start, stop = block_bounds(source.n_total, comm.size, comm.rank)
    names = getattr(source, "feature_names", None)
    with comm.together():
        if byte_range is not None:
            X, y = source.read_block(*byte_range, start, stop - start)
        else:
            X, y = source.read(start, stop)
    if isinstance(source, LibsvmSource):
        with comm.together():
            X = source.width(X, comm)
        if sparse is False:
            X = X.toarray()
    comm.agree_int("features", source.n_features, spec)
    if n_features is not None and source.n_features != n_features:
        raise JobError(f"{spec} has {source.n_features} features, but the model expects {n_features}")
    y = numbers_if_all_ranks_can(y, comm)
    with comm.together():
        check_finite(X, y, start, spec, names, allow_missing)
    return Dataset(X, y, start, source.n_total, spec, block_sizes(source.n_total, comm.size), names,
                   getattr(source, "label_name", None), tuple(getattr(source, "notes", ())))


def check_finite(X: np.ndarray, y: Optional[np.ndarray], start: int, spec: str,
                 names: Optional[tuple[str, ...]] = None, allow_missing: bool = False) -> None:
    """UsageError naming the first global row and column that holds NaN (unless allowed) or infinity."""
    if not isinstance(X, np.ndarray):  # sparse CSR: only the stored values can be bad
        if not np.isfinite(X.data).all():
            k = int(np.flatnonzero(~np.isfinite(X.data))[0])
            row = int(np.searchsorted(X.indptr, k, side="right")) - 1
            raise UsageError(f"{spec}: row {start + row}, feature {X.indices[k]} is {X.data[k]}; remove or replace it")
        X = np.empty((0, 0))
    bad = np.isinf(X) if allow_missing else ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        column = f"column {names[col]!r}" if names is not None else f"feature {col}"
        if np.isnan(X[row, col]):
            raise UsageError(f"{spec}: row {start + row}, {column} is missing (NaN); remove the row, fill it in, "
                             f"or impute it (--impute mean|median|zero)")
        raise UsageError(f"{spec}: row {start + row}, {column} is {X[row, col]}; remove or replace it")
    if y is not None and not is_text(y) and not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise UsageError(f"{spec}: the label of row {start + row} is {y[row]}; remove the row or fill in its label")
