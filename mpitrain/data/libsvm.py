"""LIBSVM / svmlight files (``label index:value ...``), read in byte ranges like CSV.

Each rank parses exactly its row block with scikit-learn's ``load_svmlight_file`` into a CSR
matrix. Whether indices start at 0 or 1 and how many features there are is decided over all
ranks together (the smallest and the largest index anywhere), as scikit-learn decides it for a
whole file. Labels may be numbers (+1/-1, 0..K-1, gaps) or class names.
"""
from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import UsageError
from .byteranges import ByteRanges
from .csv import not_utf8
from .extras import require

if TYPE_CHECKING:
    from ..comm import Comm


class LibsvmSource(ByteRanges):
    """A LIBSVM file; ``n_features`` fixes the width (prediction), else the largest index decides."""

    quote = None  # LIBSVM has no quoted fields

    def __init__(self, path: str, n_features: Optional[int] = None) -> None:
        require("sklearn.datasets", "libsvm", f"{path} (LIBSVM)", "scikit-learn")
        super().__init__(path, 0, os.path.getsize(path))
        self.fixed_width = n_features
        self.n_features = -1  # known after ``width``
        self.has_labels, self.feature_names, self.label_name, self.notes = True, None, None, []

    def read_block(self, start_byte: int, stop_byte: int, first_row: int, n_rows: int):  # type: ignore[no-untyped-def]
        """Parse one row block: X as CSR (n_rows, largest index in the block + 1), indices as written, and y."""
        from sklearn.datasets import load_svmlight_file

        with open(self.path, "rb") as f:
            f.seek(start_byte)
            raw = f.read(stop_byte - start_byte)
        labels = None
        try:
            X, y = load_svmlight_file(io.BytesIO(raw), zero_based=True, dtype=np.float64)
        except ValueError as exc:
            if "could not convert" not in str(exc):
                raise UsageError(f"{self.path}: rows {first_row}-{first_row + n_rows - 1}: {exc}") from None
            # Class names as labels: scikit-learn reads numbers only, so read the names here.
            lines = [line.split(None, 1) for line in raw.splitlines() if line.strip()]
            try:
                labels = np.array([parts[0].decode() for parts in lines], dtype=str)
            except UnicodeDecodeError:
                raise not_utf8(raw, self.path, first_row) from None
            body = b"\n".join(b"0 " + (parts[1] if len(parts) > 1 else b"") for parts in lines)
            try:
                X, _ = load_svmlight_file(io.BytesIO(body), zero_based=True, dtype=np.float64)
            except ValueError as inner:
                raise UsageError(f"{self.path}: rows {first_row}-{first_row + n_rows - 1}: {inner}") from None
        if X.shape[0] != n_rows:
            raise UsageError(f"{self.path}: rows {first_row}-{first_row + n_rows - 1} hold {X.shape[0]} rows, expected "
                             f"{n_rows} (comment lines are not allowed between rows)")
        return X, (labels if labels is not None else y)

    def width(self, X, comm: "Comm"):  # type: ignore[no-untyped-def]
        """Collective: X with 0-based indices and the agreed number of columns (CSR)."""
        import scipy.sparse

        low = comm.Allreduce(np.array([X.indices.min() if X.nnz else np.iinfo(np.int64).max], dtype=np.int64), "min")
        high = comm.Allreduce(np.array([X.indices.max() if X.nnz else -1], dtype=np.int64), "max")
        one_based = int(low[0]) >= 1
        indices = X.indices - 1 if one_based else X.indices
        top = int(high[0]) - (1 if one_based else 0)
        self.n_features = self.fixed_width if self.fixed_width is not None else max(top + 1, 0)
        if top >= self.n_features:
            raise UsageError(f"{self.path} has feature index {top + (1 if one_based else 0)}, but the model has "
                             f"{self.n_features} features")
        self.notes = [f"feature indices start at {1 if one_based else 0}"]
        return scipy.sparse.csr_matrix((X.data, indices, X.indptr), shape=(X.shape[0], self.n_features))
