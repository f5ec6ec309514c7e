"""NumPy files: a directory of X.npy and y.npy, or one .npz, memory-mapped where possible.

A member of an ``.npz`` stored without compression (``np.savez``) is memory-mapped at its
offset inside the zip file, so a rank touches only its own rows; a compressed member
(``np.savez_compressed``) is decompressed whole by every rank.
"""
from __future__ import annotations

import os
import zipfile
from typing import Optional

import numpy as np

from ..errors import UsageError


def npz_member(path: str, name: str) -> np.ndarray:
    """Array ``name`` of the .npz file ``path``: a read-only memory map when stored uncompressed."""
    fmt = np.lib.format
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        with archive.open(info) as f:
            version = fmt.read_magic(f)
            if info.compress_type != zipfile.ZIP_STORED or version not in readers:
                f.seek(0)
                return fmt.read_array(f, allow_pickle=False)
            shape, fortran, dtype = readers[version](f)
            header = f.tell()  # bytes of the npy header; the data follow
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the zip local file header: name and extra field lengths at bytes 26 and 28
    start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
    if dtype.hasobject:
        raise UsageError(f"{path}:{name} holds Python objects; save numbers or strings")
    return np.memmap(path, dtype=dtype, mode="r", offset=start + header, shape=shape, order="F" if fortran else "C")


def _open_npy(path: str) -> np.ndarray:
    """The array in the .npy file ``path`` as a read-only memory map; UsageError for a damaged file or objects."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as exc:  # Python objects, a bad header, or fewer bytes than the header promises
        if "Python objects" in str(exc) or "allow_pickle" in str(exc):
            raise UsageError(f"{path} holds Python objects (dtype object), which are never unpickled; save numbers "
                             f"or strings (np.save(path, array.astype(float)))") from None
        raise UsageError(f"{path} is not a complete .npy file ({exc}); write it again with np.save") from None


class NpySource:
    """``DIR`` holding X.npy of shape (n, d) and, optionally, y.npy of shape (n,); or ``FILE.npz[:X,y]``."""

    def __init__(self, path: str, names: Optional[list[str]] = None) -> None:
        if path.lower().endswith(".npz"):
            x_name, y_name = (names + [None])[:2] if names else ("X", "y")
            try:
                with np.load(path, allow_pickle=False) as f:
                    members = list(f.files)
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise UsageError(f"{path} is not a readable .npz file: {exc}") from None
            if x_name not in members:
                raise UsageError(f"{path} has no array {x_name!r}; it has {', '.join(members) or 'none'} "
                                 f"(name them as {path}:FEATURES,LABELS)")
            x_where, y_where = f"{path}:{x_name}", f"{path}:{y_name}"
            try:
                self._X = npz_member(path, x_name)
                self._y = npz_member(path, y_name) if y_name in members else None
            except (ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise UsageError(f"{path} is not a readable .npz file ({exc}); save numbers or strings with np.savez") from None
        else:
            x_where, y_where = os.path.join(path, "X.npy"), os.path.join(path, "y.npy")
            if not os.path.isfile(x_where):
                raise UsageError(f"data directory {path!r} has no X.npy (expected X.npy and y.npy)")
            self._X = _open_npy(x_where)
            self._y = _open_npy(y_where) if os.path.isfile(y_where) else None
        if self._X.dtype.kind not in "fiub":
            raise UsageError(f"{x_where} holds {self._X.dtype} values; the features must be numbers (save them as float64)")
        if self._y is not None and self._y.dtype.kind not in "fiubUS":
            raise UsageError(f"{y_where} holds {self._y.dtype} values; the labels must be numbers or strings")
        if self._X.ndim != 2:
            raise UsageError(f"{x_where} has shape {self._X.shape}; expected (n_samples, n_features)")
        if self._y is not None and self._y.shape != (self._X.shape[0],):
            raise UsageError(
                f"{y_where} has shape {self._y.shape}, but {x_where} has {self._X.shape[0]} rows; "
                f"expected y of shape ({self._X.shape[0]},)"
            )
        self.n_total, self.n_features = self._X.shape
        self.has_labels = self._y is not None

    def read(self, start: int, stop: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Rows [start, stop) as copies: X (stop-start, d) float64, y (stop-start,) float64 or text, or None."""
        X = np.array(self._X[start:stop], dtype=np.float64)
        if self._y is None:
            return X, None
        y = self._y[start:stop]
        return X, (np.array(y, dtype=str) if y.dtype.kind in "US" else np.array(y, dtype=np.float64))
