"""A folder of part files, as Spark and dask write them: ``part-*.csv``, ``*.parquet``, ...

The parts, in name order, are one table. The ranks count the rows of the parts together (each
rank counts every size-th part), then each rank reads its block of rows from the parts that
hold them. Files whose names start with ``_`` or ``.`` (``_SUCCESS``, ``.crc``) are ignored.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from ..errors import UsageError
from .csv import WholeCsvSource
from .parquet import ParquetSource

if TYPE_CHECKING:
    from ..comm import Comm

KINDS = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet")


def part_files(path: str) -> list[str]:
    """The part files of folder ``path``, in name order (empty when it holds none)."""
    names = sorted(n for n in os.listdir(path) if not n.startswith(("_", ".")) and n.lower().endswith(KINDS))
    return [os.path.join(path, n) for n in names]


class PartsSource:
    """The part files of a folder as one table (see the module); options as for their format."""

    def __init__(self, path: str, files: list[str], label_column: Union[str, int, None] = None,
                 n_features: Optional[int] = None, header: Optional[bool] = None, delimiter: Optional[str] = None,
                 index: Optional[bool] = None) -> None:
        kinds = {next(k for k in KINDS if f.lower().endswith(k)) for f in files}
        if len(kinds) > 1:
            raise UsageError(f"{path} mixes part files of kinds {', '.join(sorted(kinds))}; keep one kind per folder")
        self.path, self.files, self.kind = path, files, kinds.pop()
        self._options = (label_column, n_features, header, delimiter, index)
        first = self._open(0)
        if index is None and first.columns.skip == (0,):  # every part's first column is its index
            self._options = (label_column, n_features, header, delimiter, True)
        self.columns, self.has_labels, self.n_features = first.columns, first.has_labels, first.n_features
        self.feature_names, self.label_name = first.feature_names, first.label_name
        self.notes = [f"{len(files)} part files"] + list(first.notes)
        self.n_total = -1  # known after ``count``
        self._edges = np.zeros(len(files) + 1, dtype=np.int64)

    def _open(self, i: int) -> Union[WholeCsvSource, ParquetSource]:
        label_column, n_features, header, delimiter, index = self._options
        if self.kind == ".parquet":
            source: Union[WholeCsvSource, ParquetSource] = ParquetSource(self.files[i], label_column, n_features)
        else:
            sep = delimiter if delimiter is not None else ("\t" if self.kind.startswith(".tsv") else ",")
            source = WholeCsvSource(self.files[i], label_column, n_features, header, sep, index)
        if i and source.columns.names != self.columns.names:
            raise UsageError(f"{self.files[i]} has the columns ({', '.join(source.columns.names)}), but "
                             f"{self.files[0]} has ({', '.join(self.columns.names)})")
        return source

    def count(self, comm: "Comm") -> None:
        """Collective: the rows of every part (each rank counts every size-th part)."""
        counts = np.zeros(len(self.files), dtype=np.int64)
        with comm.together():
            for i in range(comm.rank, len(self.files), comm.size):
                counts[i] = self._open(i).n_total
        comm.Allreduce(counts)
        self._edges[1:] = np.cumsum(counts)
        self.n_total = int(self._edges[-1])

    def read(self, start: int, stop: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Rows [start, stop) of the table, from the parts that hold them."""
        Xs, ys = [np.empty((0, self.n_features))], []
        for i in range(len(self.files)):
            lo, hi = max(start, int(self._edges[i])), min(stop, int(self._edges[i + 1]))
            if lo < hi:
                X, y = self._open(i).read(lo - int(self._edges[i]), hi - int(self._edges[i]))
                Xs.append(X)
                ys.append(y)
        if not self.has_labels:
            return np.vstack(Xs), None
        text = any(y.dtype.kind == "U" for y in ys)
        return np.vstack(Xs), (np.concatenate([y.astype(str) if text else y for y in ys]) if ys else np.empty(0))
