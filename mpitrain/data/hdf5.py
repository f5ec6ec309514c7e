"""HDF5 through h5py: a rank reads a hyperslab (its rows) of the named datasets."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import UsageError
from .extras import require


class Hdf5Source:
    """``FILE.h5:X,y``: a 2-D dataset of features and, optionally, a 1-D dataset of labels.

    Without names, the datasets ``X`` and (if present) ``y`` are read. Labels may be numbers
    or strings.
    """

    def __init__(self, path: str, names: Optional[list[str]] = None) -> None:
        h5py = require("h5py", "hdf5", f"{path} (HDF5)")
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise UsageError(f"{path} is not a readable HDF5 file: {exc}") from None
        x_name, y_name = (names + [None])[:2] if names else ("X", "y" if "y" in self._file else None)
        for name in (x_name, y_name):
            if name is not None and name not in self._file:
                raise UsageError(f"{path} has no dataset {name!r}; it has {', '.join(self._file.keys()) or 'none'} "
                                 f"(name them as {path}:FEATURES,LABELS)")
        self._X, self._y = self._file[x_name], (self._file[y_name] if y_name else None)
        if self._X.ndim != 2:
            raise UsageError(f"{path}:{x_name} has shape {self._X.shape}; expected (n_samples, n_features)")
        if self._y is not None and self._y.shape != (self._X.shape[0],):
            raise UsageError(f"{path}:{y_name} has shape {self._y.shape}, but {x_name} has {self._X.shape[0]} rows")
        self.path, (self.n_total, self.n_features) = path, self._X.shape
        self.has_labels, self.label_name = self._y is not None, y_name

    def read(self, start: int, stop: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Rows [start, stop) as a hyperslab: X (stop-start, d) float64 and y (stop-start,) or None."""
        X = np.asarray(self._X[start:stop], dtype=np.float64)
        if self._y is None:
            return X, None
        y = self._y[start:stop]
        if y.dtype.kind in "SO":
            return X, np.array([v.decode() if isinstance(v, bytes) else str(v) for v in y], dtype=str)
        return X, np.asarray(y, dtype=np.float64)
