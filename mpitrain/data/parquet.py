"""Parquet through pyarrow: a rank reads only the row groups that hold its rows."""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

from ..errors import UsageError
from .csv import choose_columns
from .extras import require


def column_values(column, name: str, where: str, start: int, label: bool) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A pyarrow column as float64 (nulls as NaN), or as text for a label column of strings."""
    pa = require("pyarrow", "parquet", where)
    kind = column.type
    if label and (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)):
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise UsageError(f"{where}: row {start + row} has no label (column {name!r} is null); remove the row "
                             f"or fill in its label")
        return np.asarray(column.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=str)
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise UsageError(f"{where}: column {name!r} has type {kind}; features must be numbers")
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


class ParquetSource:
    """A Parquet file; ``label_column`` as for CSV (default: the last column)."""

    def __init__(self, path: str, label_column: Union[str, int, None] = None, n_features: Optional[int] = None) -> None:
        pq = require("pyarrow.parquet", "parquet", f"{path} (Parquet)", "pyarrow")
        try:
            self._file = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
            raise UsageError(f"{path} is not a readable Parquet file: {exc}") from None
        names = list(self._file.schema_arrow.names)
        self.columns, self.notes = choose_columns(names, label_column, n_features, True, ",", path)
        groups = [self._file.metadata.row_group(i).num_rows for i in range(self._file.num_row_groups)]
        self._edges = np.concatenate([[0], np.cumsum(groups, dtype=np.int64)])
        self.path, self.n_total = path, int(self._edges[-1])
        self.has_labels = self.columns.label is not None
        self.n_features = len(self.columns.features)
        self.feature_names = self.columns.feature_names
        self.label_name = self.columns.names[self.columns.label] if self.has_labels else None

    def read(self, start: int, stop: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Rows [start, stop): X (stop-start, d) float64 and y (stop-start,) or None; only their row groups are read."""
        cols = self.columns
        if stop <= start:
            return np.empty((0, self.n_features)), (np.empty(0) if self.has_labels else None)
        first = int(np.searchsorted(self._edges, start, side="right")) - 1
        last = int(np.searchsorted(self._edges, stop, side="left"))
        wanted = [cols.names[i] for i in cols.features] + ([cols.names[cols.label]] if self.has_labels else [])
        table = self._file.read_row_groups(list(range(first, last)), columns=wanted)
        table = table.slice(start - int(self._edges[first]), stop - start)
        X = np.empty((stop - start, self.n_features))
        for j, i in enumerate(cols.features):
            X[:, j] = column_values(table.column(cols.names[i]), cols.names[i], self.path, start, False)
        y = None
        if self.has_labels:
            name = cols.names[cols.label]
            y = column_values(table.column(name), name, self.path, start, True)
        return X, y
