"""Numeric CSV with a header, read in byte ranges so each rank parses only its own rows.

Reading is three steps. ``line_starts`` scans one byte range for the lines that begin in it
(a line belongs to the range holding its first byte). The ranks then exchange their line
counts and the byte offsets at which the row blocks begin (``block_offsets``), so that row
blocks, not byte ranges, are what each rank finally parses with ``parse_rows``.
"""
from __future__ import annotations

import io
import os
from typing import Optional

import numpy as np

from ..errors import UsageError

_NEWLINE = ord("\n")
_SCAN = 1 << 24  # bytes per scan chunk, so scanning a large range needs little memory


def line_starts(path: str, start: int, stop: int) -> np.ndarray:
    """Byte offsets of the non-empty lines whose first byte lies in [start, stop), shape (k,).

    ``start`` must be at or after the first data byte (past the header).
    """
    data = np.memmap(path, dtype=np.uint8, mode="r") if os.path.getsize(path) else np.zeros(0, np.uint8)
    stop = min(stop, data.size)
    found = []
    for lo in range(start, stop, _SCAN):
        hi = min(lo + _SCAN, stop)
        # A line starts at q when q follows a newline; look one byte back for the first q.
        window = np.asarray(data[max(lo - 1, 0) : hi])
        newline = np.flatnonzero(window == _NEWLINE) + max(lo - 1, 0) + 1
        found.append(newline[(newline >= lo) & (newline < hi)])
    starts = np.concatenate(found) if found else np.empty(0, dtype=np.int64)
    starts = starts.astype(np.int64)
    blank = np.isin(np.asarray(data[starts]) if starts.size else starts, (_NEWLINE, ord("\r")))
    return starts[~blank]


def block_offsets(starts: np.ndarray, counts: np.ndarray, rank: int, file_end: int) -> np.ndarray:
    """What this rank knows of the byte offsets where each row block begins, shape (size+1,).

    ``counts[k]`` is the number of lines rank k found; ``starts`` are this rank's line offsets.
    Entry j is the offset of block j's first row if this rank found that row, else -1; the last
    entry, and those of empty blocks at the end, are ``file_end``. The element-wise maximum
    over all ranks is the complete table.
    """
    from .partition import block_bounds

    size, total = len(counts), int(np.sum(counts))
    first_line = int(np.sum(counts[:rank]))
    table = np.full(size + 1, -1, dtype=np.int64)
    table[size] = file_end
    for j in range(size):
        row = block_bounds(total, size, j)[0]
        if row == total:
            table[j] = file_end
        elif first_line <= row < first_line + len(starts):
            table[j] = starts[row - first_line]
    return table


def parse_rows(path: str, start: int, stop: int, n_columns: int, n_rows: int) -> np.ndarray:
    """Parse the lines in bytes [start, stop) of ``path``: shape (n_rows, n_columns), float64."""
    if n_rows == 0:
        return np.empty((0, n_columns))
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read(stop - start).decode("utf-8")
    try:
        rows = np.loadtxt(io.StringIO(text, newline=None), delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise UsageError(f"{path}: cannot parse bytes {start}-{stop} as numbers: {exc}") from None
    if rows.shape != (n_rows, n_columns):
        raise UsageError(
            f"{path}: bytes {start}-{stop} hold {rows.shape[0]} rows of {rows.shape[1]} columns, "
            f"expected {n_rows} rows of {n_columns} columns (the header has {n_columns})"
        )
    return rows


class CsvSource:
    """A numeric CSV file whose first line names the columns; one column holds the label.

    ``label_column`` is a column name or a 0-based index (negative counts from the end); the
    default is the last column. With ``n_features`` given and equal to the column count, the
    file is taken to have no label column (for prediction).
    """

    def __init__(self, path: str, label_column: Optional[str], n_features: Optional[int]) -> None:
        with open(path, "rb") as f:
            header = f.readline()
        if not header.strip():
            raise UsageError(f"{path} is empty; expected a header line naming the columns")
        self.path, self.columns = path, [c.strip() for c in header.decode("utf-8").strip().split(",")]
        self.data_start, self.file_end = len(header), os.path.getsize(path)
        n_cols = len(self.columns)
        self.has_labels = not (n_features == n_cols and label_column is None)
        self.label_index = self._label_index(label_column) if self.has_labels else None
        self.n_features = n_cols - 1 if self.has_labels else n_cols
        self.n_total = -1  # known after locate()
        self._starts = np.empty(0, dtype=np.int64)

    def _label_index(self, label_column: Optional[str]) -> int:
        n = len(self.columns)
        if label_column is None:
            return n - 1
        if label_column in self.columns:
            return self.columns.index(label_column)
        try:
            index = int(label_column)
        except ValueError:
            index = n  # neither a name nor a number
        if not -n <= index < n:
            raise UsageError(
                f"--label-column {label_column!r} is neither a column of {self.path} "
                f"({', '.join(self.columns)}) nor an index in [{-n}, {n})"
            )
        return index % n

    def scan(self, rank: int, size: int) -> int:
        """Find the lines starting in this rank's share of the bytes; return their count."""
        span = self.file_end - self.data_start
        lo = self.data_start + span * rank // size
        hi = self.data_start + span * (rank + 1) // size
        self._starts = line_starts(self.path, lo, hi)
        return len(self._starts)

    def locate(self, counts: np.ndarray, rank: int) -> np.ndarray:
        """This rank's part of the block-offset table (see ``block_offsets``)."""
        self.n_total = int(np.sum(counts))
        return block_offsets(self._starts, counts, rank, self.file_end)

    def read_block(self, start_byte: int, stop_byte: int, n_rows: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Parse one row block: X of shape (n_rows, d) and y of shape (n_rows,) or None."""
        rows = parse_rows(self.path, start_byte, stop_byte, len(self.columns), n_rows)
        if self.label_index is None:
            return rows, None
        X = np.ascontiguousarray(np.delete(rows, self.label_index, axis=1))
        return X, np.ascontiguousarray(rows[:, self.label_index])
