"""Files rank 0 writes: always to a temporary name first, then renamed, so none is ever half-written."""
from __future__ import annotations

import io
import json
import os
import tempfile
import time

import numpy as np


def fsync_path(path: str) -> None:
    """Flush a file or directory (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to disk (not atomic by itself)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync and rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write_synced(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_path(folder)


def write_json(path: str, obj: object) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_npz(path: str, arrays: dict) -> None:
    """Atomically write plain arrays as an uncompressed .npz (readable with allow_pickle=False)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def write_npy(path: str, array: np.ndarray) -> None:
    """Atomically write one array as .npy."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_atomic(path, buf.getvalue())


class MetricsLog:
    """metrics.jsonl: one JSON object per line, rewritten atomically at most every ``every`` seconds."""

    def __init__(self, path: str, every: float = 5.0) -> None:
        self.path, self.every, self.lines = path, every, []
        self._written = time.monotonic()

    def append(self, record: dict) -> None:
        """Add one record; the file catches up when ``every`` seconds have passed or on close()."""
        self.lines.append(json.dumps(record, sort_keys=True))
        if time.monotonic() - self._written >= self.every:
            self.close()

    def close(self) -> None:
        """Write every record so far."""
        write_atomic(self.path, ("\n".join(self.lines) + "\n").encode() if self.lines else b"")
        self._written = time.monotonic()
