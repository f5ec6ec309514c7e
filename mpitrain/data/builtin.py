"""The small classic data sets that scikit-learn ships inside its wheel, read offline.

``digits`` (1797 x 64, 10 classes), ``breast_cancer`` (569 x 30, 0 = malignant, 1 = benign),
``wine`` (178 x 13, 3 classes) and ``iris`` (150 x 4, 3 classes) are CSV files in
``sklearn/datasets/data/`` with the label in the last column. scikit-learn is located, never
imported, and nothing is downloaded. The plain CSV files begin with a line "n_samples,n_features,
class names"; a rank parses only the lines of its own rows. digits.csv.gz has no such line and,
being gzip, is decompressed whole on every rank (about 260 kB) before a rank parses its rows.
"""
from __future__ import annotations

import gzip
import importlib.util
import io
import os
from typing import Optional

import numpy as np

from ..errors import UsageError
from .byteranges import line_starts
from .csv import Columns, parse_block

FILES = {"digits": "digits.csv.gz", "breast_cancer": "breast_cancer.csv", "wine": "wine_data.csv", "iris": "iris.csv"}


def sklearn_data_dir(name: str) -> str:
    """The folder of scikit-learn's bundled data files; UsageError if scikit-learn is not installed."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            f"--data {name} reads the copy that scikit-learn ships, but scikit-learn is not installed; "
            "install it with: pip install 'mpitrain[datasets]' (or pip install scikit-learn)"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")


class BuiltinSource:
    """One of ``FILES`` by name: X of shape (n, d) and integer class labels y."""

    def __init__(self, name: str) -> None:
        self.name, self.path = name, os.path.join(sklearn_data_dir(name), FILES[name])
        if not os.path.isfile(self.path):
            raise UsageError(f"{self.path} is missing: this scikit-learn does not ship the {name} data set")
        self.has_labels = True
        self._lines: Optional[list[bytes]] = None
        if self.path.endswith(".gz"):
            with gzip.open(self.path, "rb") as f:
                self._lines = [line for line in f.read().splitlines() if line.strip()]
            self.n_total = len(self._lines)
            self.n_features = self._lines[0].count(b",") if self._lines else 0
        else:
            with open(self.path, "rb") as f:
                header = f.readline()
            try:
                self.n_total, self.n_features = (int(v) for v in header.split(b",")[:2])
            except ValueError:
                raise UsageError(f"{self.path}: the first line {header!r} does not start with n_samples,n_features") from None
            self.data_start, self.file_end = len(header), os.path.getsize(self.path)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Rows [start, stop): X of shape (stop-start, d) and y of shape (stop-start,)."""
        n_columns = self.n_features + 1
        if self._lines is not None:
            text = b"\n".join(self._lines[start:stop]).decode()
            rows = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2) if stop > start else np.empty((0, n_columns))
        else:
            starts = line_starts(self.path, self.data_start, self.file_end, self.data_start)
            if starts.size != self.n_total:
                raise UsageError(f"{self.path} has {starts.size} rows, but its first line says {self.n_total}")
            first = int(starts[start]) if stop > start else self.file_end
            last = int(starts[stop]) if stop < self.n_total else self.file_end
            with open(self.path, "rb") as f:
                f.seek(first)
                raw = f.read(last - first)
            columns = Columns(tuple(map(str, range(n_columns))), n_columns - 1)
            X, y = parse_block(raw, columns, stop - start, start, self.path)
            return X, y.astype(np.float64)
        if rows.shape != (stop - start, n_columns):
            raise UsageError(f"{self.path}: rows {start}-{stop} have shape {rows.shape}, expected {(stop - start, n_columns)}")
        return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, -1])
