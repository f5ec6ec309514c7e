"""CSV as people write it, read in byte ranges so each rank parses only its own rows.

The ranks find their row blocks in a plain file together (see ``byteranges``); each parses its
block with ``parse_block`` (pandas when it is installed, ``np.loadtxt`` otherwise). A
``.csv.gz`` file cannot be split: every rank decompresses it whole and parses only its own rows.

The first line is a header unless ``header=False``; by default (``header=None``) a first line
whose fields are all numbers is data, not names, and the source says so in ``notes``. A first
column with an empty name is the index that pandas' ``to_csv`` writes: it is left out, and the
notes say so too, as they do for the index pandas writes without a header (see ``index``).
Fields may be quoted, and a quoted field may span lines; the quotes must pair up.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..errors import UsageError
from .byteranges import ByteRanges, rows_outside_quotes, scan_lines, unbalanced_quotes
from .index import check_counts_up, counts_up, head_of

_NEWLINE = ord("\n")
_NEWLINE_BYTE = b"\n"
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Columns:
    """The columns of a table: every name in file order, which one is the label, which are left out."""

    names: tuple[str, ...]
    label: Optional[int]  # index into names, or None when the file has no label column
    skip: tuple[int, ...] = ()  # columns that are neither features nor the label (a pandas index)
    delimiter: str = ","
    counted: bool = False  # the first column was taken for an index by its values: check them all

    @property
    def features(self) -> list[int]:
        """Indices of the feature columns, in file order."""
        return [i for i in range(len(self.names)) if i != self.label and i not in self.skip]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the feature columns."""
        return tuple(self.names[i] for i in self.features)


def _pandas():  # type: ignore[no-untyped-def]
    """pandas if it is installed, else None (then ``np.loadtxt`` parses)."""
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def parse_block(raw: bytes, columns: Columns, n_rows: int, first_row: int, where: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Parse the lines ``raw`` (rows first_row, first_row+1, ... of ``where``).

    Returns X of shape (n_rows, n_features), float64, NaN where a cell is empty or NA, and the
    label column as text, shape (n_rows,), or None. UsageError naming the global row and the
    column for a cell that is not a number, a missing label or a wrong count of rows or fields.
    """
    n_columns = len(columns.names)
    if n_rows == 0:
        return np.empty((0, len(columns.features))), (None if columns.label is None else np.empty(0, dtype=str))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise not_utf8(raw, where, first_row) from None
    pd = _pandas()
    if pd is not None:
        table = _read_pandas(pd, raw, columns, first_row, where)
        shape = table.shape
        if shape[0] == n_rows and shape[1] == n_columns:
            X = _numbers_pandas(pd, table, columns, first_row, where)
            if columns.counted:
                check_counts_up(table[0].to_numpy(), first_row, where)
            labels = None
            if columns.label is not None:
                label = table[columns.label]
                _check_labels_present(label.isna().to_numpy(), columns, first_row, where)
                labels = label.to_numpy(dtype=str)
    else:
        text = np.loadtxt(io.StringIO(raw.decode("utf-8"), newline=None), delimiter=columns.delimiter,
                          dtype=str, ndmin=2, quotechar='"', comments=None)
        shape = text.shape
        if shape[0] == n_rows and shape[1] == n_columns:
            text = np.char.strip(text)
            X = _numbers_text(text, columns, first_row, where)
            if columns.counted:
                check_counts_up(text[:, 0], first_row, where)
            labels = None
            if columns.label is not None:
                labels = text[:, columns.label]
                _check_labels_present(np.isin(labels, ("", "NA", "nan", "NaN")), columns, first_row, where)
    if shape != (n_rows, n_columns):
        raise UsageError(
            f"{where}: rows {first_row}-{first_row + n_rows - 1} hold {shape[0]} rows of {shape[1]} columns, "
            f"expected {n_rows} rows of {n_columns} columns ({', '.join(columns.names)}); a quote character (\") "
            f"inside an unquoted field hides the rows: quote such fields whole, doubling the quotes inside"
        )
    return X, labels


def not_utf8(raw: bytes, where: str, first_row: Optional[int]) -> UsageError:
    """The error for bytes that are not UTF-8: the row (None: the header line), the byte, and the fix."""
    try:
        raw.decode("utf-8")
        at = len(raw)
    except UnicodeDecodeError as exc:
        at = exc.start
    line = "the header line" if first_row is None else f"row {first_row + raw.count(_NEWLINE_BYTE, 0, at)}"
    return UsageError(f"{where}: {line} holds byte 0x{raw[at:at + 1].hex()} that is not UTF-8 (the file is in another "
                      f"encoding, such as Latin-1); convert it first: iconv -f latin1 -t utf-8 {where} > new.csv")


def _read_pandas(pd, raw: bytes, columns: Columns, first_row: int, where: str):  # type: ignore[no-untyped-def]
    """The block as a DataFrame with integer column labels; the label column kept as text."""
    dtype = {columns.label: str} if columns.label is not None else None
    try:
        return pd.read_csv(io.BytesIO(raw), header=None, sep=columns.delimiter, dtype=dtype,
                           skipinitialspace=True, names=range(len(columns.names)), index_col=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise UsageError(f"{where}: cannot parse rows from {first_row} on: {exc}") from None


def _numbers_pandas(pd, table, columns: Columns, first_row: int, where: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The feature columns of ``table`` as float64 (n, d); UsageError naming the first cell that is text."""
    X = np.empty((len(table), len(columns.features)))
    for j, i in enumerate(columns.features):
        col = table[i]
        if col.dtype.kind not in "fiub":
            numbers = pd.to_numeric(col, errors="coerce")
            bad = np.flatnonzero(numbers.isna().to_numpy() & col.notna().to_numpy())
            if bad.size:
                _not_a_number(col.iloc[bad[0]], bad[0], i, columns, first_row, where)
            col = numbers
        X[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
    return X


def _numbers_text(text: np.ndarray, columns: Columns, first_row: int, where: str) -> np.ndarray:
    """The feature columns of a text array (n, n_columns) as float64; empty and NA cells become NaN."""
    X = np.empty((text.shape[0], len(columns.features)))
    for j, i in enumerate(columns.features):
        cells = np.where(np.isin(text[:, i], ("", "NA")), "nan", text[:, i])
        try:
            X[:, j] = cells.astype(np.float64)
        except ValueError:
            for row, cell in enumerate(cells):
                try:
                    float(cell)
                except ValueError:
                    _not_a_number(cell, row, i, columns, first_row, where)
    return X


def _not_a_number(cell: object, row: int, column: int, columns: Columns, first_row: int, where: str) -> None:
    raise UsageError(f"{where}: row {first_row + row}, column {columns.names[column]!r}: {str(cell)!r} is not a number")


def _check_labels_present(missing: np.ndarray, columns: Columns, first_row: int, where: str) -> None:
    """UsageError naming the first row whose label is missing."""
    bad = np.flatnonzero(missing)
    if bad.size:
        raise UsageError(f"{where}: row {first_row + bad[0]} has no label (column "
                         f"{columns.names[columns.label]!r} is empty); remove the row or fill in its label")


def header_columns(first_line: bytes, header: Optional[bool], delimiter: str, where: str,
                   second_line: bytes = b"") -> tuple[list[str], bool, list[str]]:
    """(column names, whether the first line is a header, notes) from a file's first line.

    ``header`` True or False says; None decides: a line whose fields are all numbers is data, and
    one with a text field where ``second_line`` (the next line) has a number is a header. When
    every text field of the first line lies in a column that holds text in the next line too
    (labels such as "dog"), the line could be either: UsageError asking for --header or --no-header.
    Without a header the columns are named by their 0-based index.
    """
    try:
        text = first_line.decode("utf-8-sig").strip("\r\n")
    except UnicodeDecodeError:
        raise not_utf8(first_line, where, None) from None
    if not text.strip():
        raise UsageError(f"{where} is empty or starts with a blank line; expected a header line or data")
    fields = [f.strip() for f in next(csv.reader([text], delimiter=delimiter))]
    notes = []
    if header is None:
        texts = [i for i, f in enumerate(fields) if not _is_number(f)]
        following = _fields(second_line, delimiter)
        if texts and len(following) == len(fields) and all(not _is_number(following[i]) for i in texts):
            raise UsageError(f"cannot tell whether the first line of {where} names the columns: its fields that "
                             f"are not numbers ({', '.join(repr(fields[i]) for i in texts)}) hold text in the next "
                             "line too; give --header (the line names the columns) or --no-header (it is data)")
        header = bool(texts)
        if not header:
            notes.append("the first line is all numbers, so it is read as data, not as column names "
                         "(give --header if it names the columns)")
    names = fields if header else [str(i) for i in range(len(fields))]
    return names, header, notes


def _fields(line: bytes, delimiter: str) -> list[str]:
    """The fields of one line (empty when it is empty or not UTF-8)."""
    try:
        text = line.decode("utf-8").strip("\r\n")
    except UnicodeDecodeError:
        return []
    return [f.strip() for f in next(csv.reader([text], delimiter=delimiter))] if text.strip() else []


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def choose_columns(names: list[str], label_column: Union[str, int, None], n_features: Optional[int],
                   header: bool, delimiter: str, where: str, index: Optional[bool] = None,
                   counted: bool = False) -> tuple[Columns, list[str]]:
    """The Columns of a table with these names, and notes on what was decided.

    ``label_column`` is a name or a 0-based index (negative counts from the end); the default
    is the last column. With ``n_features`` given (prediction) and as many feature columns as
    that without a label, the table has no label column. A first column named "" (or
    "Unnamed: 0") in a header, or a Parquet column "__index_level_0__", is a pandas index and
    is left out, and so is a headerless first column that ``counted`` up (see ``index``).
    ``index`` True or False says whether the first column is an index; None decides as above.
    """
    notes = []
    skip: tuple[int, ...] = tuple(i for i, name in enumerate(names) if name.startswith("__index_level_"))
    first_is_index = index is True or (index is None and len(names) > 1 and (
        (header and names[0] in ("", "Unnamed: 0")) or (not header and counted)))
    if skip:
        notes.append(f"column {', '.join(repr(names[i]) for i in skip)} is the index that pandas wrote, so it is left out")
    elif first_is_index:
        skip = (0,)
        notes.append("the first column is a row index (--index), so it is left out" if index else
                     "the first column has no name (the index that pandas' to_csv writes), so it is left out" if header
                     else "the first column counts the rows up (the index that pandas' to_csv(header=False) writes), "
                          "so it is left out (give --no-index if it is a feature)")
    counted = counted and index is None and skip == (0,) and not header
    n_usable = len(names) - len(skip)
    if label_column is None and n_features is not None and n_usable == n_features:
        return Columns(tuple(names), None, skip, delimiter, counted), notes
    if label_column is None:
        label_column = max(i for i in range(len(names)) if i not in skip)  # the last column that is not an index
    return Columns(tuple(names), label_index(names, label_column, where), skip, delimiter, counted), notes


def label_index(names: list[str], label_column: Union[str, int, None], where: str) -> int:
    """The index of the label column: by name, by 0-based index, or the last column."""
    n = len(names)
    if label_column is None:
        return n - 1
    if isinstance(label_column, str) and label_column in names:
        return names.index(label_column)
    try:
        index = int(label_column)
    except ValueError:
        index = n  # neither a name nor a number
    if not -n <= index < n:
        raise UsageError(f"the label column {label_column!r} is neither a column of {where} "
                         f"({', '.join(names)}) nor an index in [{-n}, {n})")
    return index % n


class _Table:
    """What both CSV sources decide from a file's first lines: header, columns, names, notes."""

    def decide(self, path: str, data: "Union[str, bytes]", first: bytes, label_column: Union[str, int, None],
               n_features: Optional[int], header: Optional[bool], delimiter: str, index: Optional[bool]) -> int:
        """Set the columns and names; return the byte where the rows start (past a header or a BOM)."""
        following = head_of(data, len(first)).split(b"\n", 1)[0] if header is None else b""
        names, has_header, self.notes = header_columns(first, header, delimiter, path, following)
        start = len(first) if has_header else (len(_BOM) if first.startswith(_BOM) else 0)
        counted = not has_header and index is None and counts_up(head_of(data, start), delimiter, path)
        self.columns, notes = choose_columns(names, label_column, n_features, has_header, delimiter, path, index, counted)
        self.notes += notes
        self.has_labels = self.columns.label is not None
        self.n_features = len(self.columns.features)
        self.feature_names = self.columns.feature_names if has_header else None
        self.label_name = self.columns.names[self.columns.label] if self.has_labels else None
        return start


class CsvSource(ByteRanges, _Table):
    """A CSV file read in byte ranges (see ``ByteRanges`` and the module).

    ``label_column`` is a column name or a 0-based index (default: the last column); with
    ``n_features`` given and as many columns (besides a pandas index), the file has no label
    column (for prediction). ``header`` and ``delimiter`` as in ``header_columns``, ``index`` as
    in ``choose_columns``.
    """

    def __init__(self, path: str, label_column: Union[str, int, None] = None, n_features: Optional[int] = None,
                 header: Optional[bool] = None, delimiter: str = ",", index: Optional[bool] = None) -> None:
        with open(path, "rb") as f:
            first = f.readline()
        start = self.decide(path, path, first, label_column, n_features, header, delimiter, index)
        super().__init__(path, start, os.path.getsize(path))

    def read_block(self, start_byte: int, stop_byte: int, first_row: int, n_rows: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Parse one row block: X of shape (n_rows, d) and the labels as text, shape (n_rows,), or None."""
        with open(self.path, "rb") as f:
            f.seek(start_byte)
            raw = f.read(stop_byte - start_byte)
        return parse_block(raw, self.columns, n_rows, first_row, self.path)


class WholeCsvSource(_Table):
    """A CSV file whose line starts one rank finds alone: a ``.gz`` file (every rank decompresses
    it whole) or one part of a folder of parts (memory-mapped). Each rank parses only its rows."""

    def __init__(self, path: str, label_column: Union[str, int, None] = None, n_features: Optional[int] = None,
                 header: Optional[bool] = None, delimiter: str = ",", index: Optional[bool] = None) -> None:
        try:
            if path.lower().endswith(".gz"):
                with gzip.open(path, "rb") as f:
                    self._data = np.frombuffer(f.read(), dtype=np.uint8)
            else:
                self._data = np.memmap(path, dtype=np.uint8, mode="r") if os.path.getsize(path) else np.zeros(0, np.uint8)
        except (OSError, EOFError) as exc:
            raise UsageError(f"{path} is not readable: {exc}") from None
        first_end = int(np.argmax(self._data == _NEWLINE)) + 1 if (self._data == _NEWLINE).any() else self._data.size
        first = self._data[:first_end].tobytes()
        head = np.asarray(self._data[: first_end + (1 << 16)]).tobytes()
        origin = self.decide(path, head, first, label_column, n_features, header, delimiter, index)
        starts, before, n_quotes = scan_lines(self._data, origin, self._data.size, origin)
        if n_quotes % 2:
            raise UsageError(unbalanced_quotes(path))
        self._starts = rows_outside_quotes(self._data, starts, before, 0)
        self.path, self.n_total = path, len(self._starts)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Rows [start, stop): X of shape (stop-start, d) and the labels as text, or None."""
        lo = int(self._starts[start]) if start < self.n_total else self._data.size
        hi = int(self._starts[stop]) if stop < self.n_total else self._data.size
        return parse_block(np.asarray(self._data[lo:hi]).tobytes(), self.columns, stop - start, start, self.path)
