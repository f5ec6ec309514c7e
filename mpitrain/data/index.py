"""The row index that pandas writes as a CSV's first column, when the file has no header line.

``df.to_csv(path, header=False)`` keeps pandas' default ``index=True``: every line starts with
the row's label in the frame, 0, 1, 2, ... (or the labels left after filtering, still
increasing). Without a header nothing names that column, so it is recognised by its values:
integers that go up from row to row; distinct integers in another order (a shuffled frame's
index) are refused until a flag decides. ``counts_up`` decides from the first lines of the file;
``check_counts_up`` then checks every rank's rows, so that a feature that merely starts like an
index is never dropped without a word: the run stops and names the flags that decide.
"""
from __future__ import annotations

import csv
import re

import numpy as np

from ..errors import UsageError

_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_HEAD_BYTES = 1 << 16  # the first lines looked at
_SHUFFLED_LINES = 10
_RISING_LINES = 5
FLAGS = "give --index if it is the row index, --no-index if it is a feature"


def head_of(path_or_bytes: "str | bytes", start: int) -> bytes:
    """The first lines of the data (from byte ``start``), at most 64 KiB."""
    if isinstance(path_or_bytes, bytes):
        return path_or_bytes[start : start + _HEAD_BYTES]
    with open(path_or_bytes, "rb") as f:
        f.seek(start)
        return f.read(_HEAD_BYTES)


def counts_up(head: bytes, delimiter: str, where: str) -> bool:
    """True when the first fields of the complete lines of ``head`` are 0, 1, 2, ... (two lines at
    least), or integers that go up (five lines at least): the look of a pandas index.

    UsageError when they are distinct integers in another order (10 lines at least): the look of
    the index of a shuffled frame (``train_test_split``, ``sample``), which cannot be told from a
    feature by its values.
    """
    lines = head.split(b"\n")[:-1] if len(head) >= _HEAD_BYTES else head.split(b"\n")
    lines = [line for line in lines if line.strip()]
    if len(lines) < 2:
        return False
    try:
        firsts = [row[0] if row else "" for row in csv.reader((line.decode("utf-8-sig") for line in lines),
                                                            delimiter=delimiter)]
    except (UnicodeDecodeError, csv.Error):
        return False  # the reader of the rows gives the message
    if not all(_INTEGER.fullmatch(f) for f in firsts):
        return False
    values = np.array([int(f) for f in firsts])
    if np.array_equal(values, np.arange(values.size)) or (values.size >= _RISING_LINES and np.all(np.diff(values) > 0)):
        return True
    if len(values) >= _SHUFFLED_LINES and np.unique(values).size == values.size:
        raise UsageError(f"{where} has no header line, and its first column holds distinct integers in no order "
                         f"({', '.join(map(str, values[:4]))}, ...), like the row index that pandas writes for a "
                         f"shuffled frame (df.to_csv(header=False)); {FLAGS}")
    return False


def check_counts_up(values: np.ndarray, first_row: int, where: str) -> None:
    """UsageError naming the first row whose first column (taken for the row index) does not count up.

    ``values`` are the first column of rows first_row, first_row+1, ... as parsed (numbers or text).
    """
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except ValueError:
        numbers = np.full(len(values), np.nan)
    bad = np.flatnonzero((numbers != np.round(numbers)) | ~np.isfinite(numbers))
    down = np.flatnonzero(np.diff(numbers) <= 0) + 1
    rows = np.union1d(bad, down)
    if rows.size:
        k = int(rows[0])
        raise UsageError(f"{where}: the file has no header line and its first column started like a pandas row "
                         f"index (integers counting up), but row {first_row + k} has {str(values[k])!r} there; {FLAGS}")
