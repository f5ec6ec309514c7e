"""A directory with X.npy (and y.npy): memory-mapped, so a rank touches only its own rows."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ..errors import UsageError


class NpySource:
    """``DIR`` holding X.npy of shape (n, d) and, optionally, y.npy of shape (n,)."""

    def __init__(self, path: str) -> None:
        x_path, y_path = os.path.join(path, "X.npy"), os.path.join(path, "y.npy")
        if not os.path.isfile(x_path):
            raise UsageError(f"data directory {path!r} has no X.npy (expected X.npy and y.npy)")
        self._X = np.load(x_path, mmap_mode="r", allow_pickle=False)
        if self._X.ndim != 2:
            raise UsageError(f"{x_path} has shape {self._X.shape}; expected (n_samples, n_features)")
        self._y = np.load(y_path, mmap_mode="r", allow_pickle=False) if os.path.isfile(y_path) else None
        if self._y is not None and self._y.shape != (self._X.shape[0],):
            raise UsageError(
                f"{y_path} has shape {self._y.shape}, but X.npy has {self._X.shape[0]} rows; "
                f"expected y of shape ({self._X.shape[0]},)"
            )
        self.n_total, self.n_features = self._X.shape
        self.has_labels = self._y is not None

    def read(self, start: int, stop: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Rows [start, stop) as float64 copies: X (stop-start, d), y (stop-start,) or None."""
        X = np.array(self._X[start:stop], dtype=np.float64)
        y = None if self._y is None else np.array(self._y[start:stop], dtype=np.float64)
        return X, y
