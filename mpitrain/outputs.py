"""Files rank 0 writes: always to a temporary name first, then renamed, so none is ever half-written.

Every file follows the process umask (as ``open`` would create it), and a failed write raises
OutputError naming the file the user asked for, never a temporary name.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional

import numpy as np

from .errors import UsageError


class OutputError(UsageError):
    """A file that cannot be written (full disk, no permission): the message names the file."""


def describe_os_error(path: str, exc: OSError) -> str:
    """'cannot write PATH: REASON', with what to do for the usual reasons."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (the disk or your quota is full: free space, or write to another --out)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += " (choose a directory you can write to)"
    return f"cannot write {path}: {reason}"


@contextmanager
def writing(path: str) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into an OutputError that names it."""
    try:
        yield
    except OSError as exc:
        raise OutputError(describe_os_error(path, exc)) from None


_UMASK: Optional[int] = None


def umask() -> int:
    """The process umask (read once; os.umask can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


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
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync and rename.

    The file gets mode 0666 less the umask, as a plain ``open`` would give it (mkstemp alone
    gives 0600). OutputError names ``path`` if it cannot be written.
    """
    folder = os.path.dirname(os.path.abspath(path))
    with writing(path):
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        os.close(fd)
        try:
            os.chmod(tmp, 0o666 & ~umask())
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


TABLES = (".npy", ".csv", ".tsv", ".parquet")  # the files write_table writes, by extension


def write_table(path: str, values: np.ndarray, names: list[str]) -> None:
    """Atomically write ``values`` (shape (n,) or (n, k), numbers or strings) by ``path``'s extension.

    .npy holds the bare array; .csv and .tsv have a header of ``names`` (one per column) and
    numbers that read back exactly; .parquet (needs pyarrow, the ``parquet`` extra) has the
    columns ``names``.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npy":
        return write_npy(path, values)
    columns = values.reshape(len(values), -1).T
    if extension == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UsageError(f"writing {path} needs pyarrow: pip install 'mpitrain[parquet]', or write .csv or .npy") \
                from None
        buf = io.BytesIO()
        pq.write_table(pa.table({name: column for name, column in zip(names, columns)}), buf)
        return write_atomic(path, buf.getvalue())
    if extension not in (".csv", ".tsv"):
        raise UsageError(f"cannot tell the format of {path} from its extension; use one of {', '.join(TABLES)}")
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t" if extension == ".tsv" else ",", lineterminator="\n")
    writer.writerow(names)
    cells = [column.tolist() for column in columns]  # Python floats print their shortest exact form
    writer.writerows(zip(*cells))
    write_atomic(path, text.getvalue().encode())


class MetricsLog:
    """metrics.jsonl: one JSON object per line, appended and flushed as each record comes.

    ``tail -f`` follows it. ``lines`` holds every line so far (a checkpoint stores them);
    assigning it (on resume) rewrites the file to exactly those lines, so the file always
    matches the step the run continues from. The file starts empty.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Optional[io.TextIOWrapper] = None
        self.lines = []

    @property
    def lines(self) -> list[str]:
        """The JSON lines written so far, in order."""
        return self._lines

    @lines.setter
    def lines(self, lines: list[str]) -> None:
        self.close()
        self._lines = list(lines)
        write_atomic(self.path, "".join(line + "\n" for line in self._lines).encode())

    def append(self, record: dict) -> None:
        """Add one record to the file and flush it (OutputError names the file if it cannot)."""
        line = json.dumps(record, sort_keys=True)
        self._lines.append(line)
        with writing(self.path):
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open between records
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        """Flush the file to disk and close it (the next append reopens it)."""
        if self._file is None:
            return
        file, self._file = self._file, None
        with writing(self.path):
            try:
                file.flush()
                os.fsync(file.fileno())
            finally:
                file.close()


def resolved(path: str) -> str:
    """``path`` with symbolic links and relative parts resolved (the file it would name)."""
    return os.path.realpath(os.path.abspath(path))


def check_distinct(outputs: Mapping[str, str], inputs: Mapping[str, str]) -> None:
    """OutputError unless every output names a file of its own: no input and no other output.

    ``outputs`` and ``inputs`` map a description (a flag, "the model file") to a path; paths
    are compared after resolving symbolic links, so a link to an input counts as that input.
    """
    seen: dict[str, str] = {}
    for what, path in inputs.items():
        seen.setdefault(resolved(path), what)
    for what, path in outputs.items():
        real = resolved(path)
        if real in seen:
            raise OutputError(f"{what} {path} is the same file as {seen[real]}: writing it would destroy that "
                              f"file; give {what} another path")
        seen[real] = what


def spec_files(spec: str) -> list[str]:
    """The files a data SPEC reads from disk: X.npy and y.npy or the part files of a directory, or the file itself."""
    from .data.parts import part_files

    base, colon, _ = spec.rpartition(":")
    if colon and base.lower().endswith((".h5", ".hdf5", ".npz")):
        spec = base  # FILE.h5:X,y names datasets inside the file
    if os.path.isdir(spec):
        return [os.path.join(spec, name) for name in ("X.npy", "y.npy")] + part_files(spec)
    return [spec] if os.path.exists(spec) else []
