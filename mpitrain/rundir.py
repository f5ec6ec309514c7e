"""A run directory belongs to one run: its run id, its lock, and the checks that keep runs apart.

``claim`` (rank 0) takes the lock file ``OUT/mpitrain.lock`` (pid, host and start time; a
lock whose process is gone, or that has not been renewed for ``STALE_SECONDS``, is taken over
with a note, by exactly one job when several find it stale at once), reads or creates ``OUT/run.json`` (the run id, which every checkpoint manifest
repeats) and refuses to mix a new run into a directory that holds another run's outputs.
``check_resume`` compares a checkpoint with the run that wants to continue it, and
``data_fingerprint`` identifies the training rows however they are split over ranks.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import numpy as np

from ._version import __version__
from .checkpoint import CheckpointError, pid_alive, run_of, step_dirs
from .errors import UsageError
from .guard import guard_signals
from .outputs import umask, write_json, writing

if TYPE_CHECKING:
    from .comm import Comm

RUN_FILE = "run.json"
LOCK_FILE = "mpitrain.lock"
TAKEOVER = ".takeover-"  # LOCK_FILE + this + the stale lock's identity: the one job taking it over
CHECKPOINTS = "checkpoints"
OUTPUTS = ("model.npz", "metrics.jsonl", "summary.json", RUN_FILE, CHECKPOINTS)
HEARTBEAT_SECONDS = 15.0  # the lock holder renews the lock file's time this often
STALE_SECONDS = 120.0  # a lock not renewed for this long belongs to a job that is gone
_LEFTOVER = re.compile(r"^\..+\.tmp(-.+)?$")  # write_atomic's and checkpoint.save's temporaries


class RunDirError(UsageError):
    """An output directory that another run owns or another job is using."""


class RunLock:
    """The lock file of an output directory, held by one job (rank 0) and renewed while it runs."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": secrets.token_hex(8)}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def acquire(self) -> list[str]:
        """Take the lock, or RunDirError naming the job that holds it; return notes to print.

        The lock file appears whole (a hard link to a written temporary file). A stale lock is
        taken over atomically: the jobs that found it stale race to create a claim file named
        after that lock's identity (content, inode and time); the one that creates it checks that
        the lock is still the same and renames its own lock file over it. Exactly one job wins;
        the others find a live lock and are refused.
        """
        notes = []
        for attempt in range(5):
            with writing(self.path):
                new = self._write_temporary()
                try:
                    os.link(new, self.path)
                    taken = True
                except FileExistsError:
                    taken = False
                    found = self._stale()
                    if found is not None:
                        why, identity = found
                        taken = self._take_over(identity, new)
                        if taken:
                            notes.append(f"took over the lock {self.path}: {why}")
                finally:
                    if os.path.lexists(new):
                        os.unlink(new)
            if taken:
                self._thread = threading.Thread(target=self._renew, name="mpitrain-lock", daemon=True)
                self._thread.start()
                if guard_signals() is not None:  # a job ended early by a signal or its watchdog releases it too
                    guard_signals().cleanups.append(self.release)
                return notes
            time.sleep(0.05 * (attempt + 1))
        raise RunDirError(f"cannot take the lock {self.path}: other jobs keep taking it. If no other job is "
                          f"starting, a claim file {self.path}{TAKEOVER}* was left by a job that died while taking "
                          "the lock over: remove it")

    def _write_temporary(self) -> str:
        """A new file holding this job's lock record, next to the lock (a leftover name if we die)."""
        new = os.path.join(os.path.dirname(self.path), f".{os.path.basename(self.path)}.{secrets.token_hex(6)}.tmp")
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~umask())
        with os.fdopen(fd, "w") as f:
            json.dump(self.holder, f)
            f.flush()
            os.fsync(f.fileno())
        return new

    def _identity(self) -> Optional[tuple[dict, float, str]]:
        """(holder record, age in seconds, identity) of the lock in place; None if there is none."""
        try:
            with open(self.path, "rb") as f:
                raw, st = f.read(), os.fstat(f.fileno())
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(raw)
        except ValueError:
            holder = {}
        identity = hashlib.sha256(raw + f"/{st.st_ino}/{st.st_mtime_ns}".encode()).hexdigest()[:16]
        return holder if isinstance(holder, dict) else {}, time.time() - st.st_mtime, identity

    def _take_over(self, identity: str, new: str) -> bool:
        """Replace the stale lock ``identity`` by ``new``; False if another job claimed or renewed it first."""
        claim = f"{self.path}{TAKEOVER}{identity}"
        try:
            os.close(os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~umask()))
        except FileExistsError:
            return False  # another job is taking it over this very moment
        try:
            current = self._identity()
            if current is None or current[2] != identity:
                return False  # taken over (and the claim removed) before we claimed, or renewed
            os.rename(new, self.path)
            return True
        finally:
            os.unlink(claim)

    def _stale(self) -> Optional[tuple[str, str]]:
        """(why, identity) if the lock in place may be taken over; RunDirError if its holder is alive; None if gone."""
        found = self._identity()
        if found is None:
            return None
        holder, age, identity = found
        pid, host = holder.get("pid"), holder.get("host")
        if host == self.holder["host"] and isinstance(pid, int) and not pid_alive(pid):
            return f"its job (pid {pid} on {host}, started {holder.get('started')}) has ended", identity
        if age > STALE_SECONDS:
            return f"it was last renewed {age:.0f}s ago by pid {pid} on {host}, so that job is gone", identity
        who = f"pid {pid} on host {host}, started {holder.get('started')}" if holder else "a job that is starting"
        raise RunDirError(
            f"{os.path.dirname(self.path)} is in use by another mpitrain job ({who}; lock file {self.path}): "
            "wait for it to end or give another --out. A lock whose job has died is taken over "
            f"automatically (at once on the same host, after {STALE_SECONDS:.0f}s from another host)"
        )

    def _renew(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                pass  # the directory vanished or the disk is gone: the run will report that itself

    def release(self) -> None:
        """Stop renewing and remove the lock file if it is still ours."""
        self._stop.set()
        try:
            with open(self.path) as f:
                ours = json.load(f) == self.holder
        except (OSError, ValueError):
            ours = False
        if ours:
            os.unlink(self.path)


@dataclass
class RunDir:
    """An output directory claimed by this job: its run id, lock and notes for rank 0 to print."""

    path: str
    run_id: str
    lock: RunLock
    notes: list[str] = field(default_factory=list)

    def release(self) -> None:
        """Give up the lock (the run's files stay)."""
        self.lock.release()


def _outputs_present(path: str) -> list[str]:
    """The run outputs found in ``path`` (a checkpoints folder counts if it holds a checkpoint)."""
    found = []
    for name in OUTPUTS:
        full = os.path.join(path, name)
        if name == CHECKPOINTS:
            if step_dirs(full):
                found.append(name)
        elif os.path.lexists(full):
            found.append(name)
    return found


def _read_run_id(path: str) -> Optional[str]:
    """The run id in ``path``'s run file, None if there is none; RunDirError if it is unreadable."""
    file = os.path.join(path, RUN_FILE)
    if not os.path.lexists(file):
        return None
    try:
        with open(file) as f:
            run = json.load(f).get("run_id")
    except (OSError, ValueError, AttributeError) as exc:
        raise RunDirError(f"{file} cannot be read ({exc}): remove it, give another --out, or use --overwrite") from None
    if not isinstance(run, str) or not run:
        raise RunDirError(f"{file} names no run: remove it, give another --out, or use --overwrite")
    return run


def _remove_leftovers(path: str) -> int:
    """Remove the temporary files and directories of interrupted jobs in ``path`` and its checkpoints."""
    removed = 0
    for folder in (path, os.path.join(path, CHECKPOINTS)):
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            if _LEFTOVER.match(name):
                full = os.path.join(folder, name)
                shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.unlink(full)
                removed += 1
    return removed


def claim(path: str, resume: Optional[str] = None, overwrite: bool = False) -> RunDir:
    """Rank 0: make ``path`` the directory of this run, locked against other jobs.

    ``resume`` is None (a new run), ``"auto"`` (continue the run that owns ``path``) or the path
    of a checkpoint (continue its run). A new run refuses a directory that holds another run's
    outputs unless ``overwrite``, which removes them (model.npz, metrics.jsonl, summary.json,
    run.json, checkpoints; nothing else). RunDirError says what to do instead.
    """
    with writing(path):
        os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise RunDirError(f"output directory {path!r} is not writable")
    lock = RunLock(os.path.join(path, LOCK_FILE))
    notes = lock.acquire()
    try:
        with writing(path):
            leftovers = _remove_leftovers(path)
        if leftovers:
            notes.append(f"removed {leftovers} temporary file(s) left in {path} by interrupted jobs")
        owner, present = _read_run_id(path), _outputs_present(path)
        wanted = owner if resume == "auto" else (run_of(resume) if resume else None)
        if overwrite and present:
            with writing(path):
                for name in present:
                    full = os.path.join(path, name)
                    shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.unlink(full)
            notes.append(f"--overwrite: removed {', '.join(present)} of the previous run in {path}")
        elif present and (owner is None or owner != wanted):
            whose = f"run {owner}" if owner else "a run without a run file"
            if resume and resume != "auto" and owner and wanted:
                whose += f", not to run {wanted} of the checkpoint {resume}"
            raise RunDirError(
                f"{path} holds the outputs of another run ({whose}: {', '.join(present)}). Continue that run "
                "with --resume auto, give a new --out, or replace its outputs with --overwrite"
            )
        run_id = wanted or secrets.token_hex(8)
        if owner != run_id or overwrite:
            write_json(os.path.join(path, RUN_FILE), {"run_id": run_id, "created": lock.holder["started"],
                                                      "host": lock.holder["host"], "mpitrain_version": __version__})
    except BaseException:
        lock.release()
        raise
    return RunDir(path, run_id, lock, notes)


# -- resuming: which checkpoint belongs to which run ------------------------------------------

# Manifest entries a resumed run must share with its checkpoint, and how the user sets them.
FIXED = {
    "model": "--model",
    "shapes": "model options (--hidden, the number of features and classes)",
    "model_options": "model options (--hidden, --activation, --loss, classes in the labels)",
    "algorithm": "--algorithm",
    "n_features": "--data (its number of features)",
    "n_samples": "--data (its number of rows)",
    "data_fingerprint": "--data (its content)",
    "preparation": "--test-fraction, --split-seed, --standardize and --dtype",
}
# Settings that a resumed run may change: how far it goes and how its sums are reduced.
CHANGEABLE = ("steps", "allreduce", "overlap")


def _as_json(value: object) -> object:
    """``value`` as it reads back from a manifest (tuples become lists, NumPy scalars plain)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def check_resume(path: str, saved: dict, run: dict) -> None:
    """CheckpointError naming the first field in which checkpoint ``path`` (manifest ``saved``) and this run differ.

    ``run`` is this run's manifest entries (``FIXED`` and ``settings``). Only ``CHANGEABLE``
    settings may differ; a checkpoint past this run's ``settings["steps"]`` is refused too.
    """
    run = _as_json(run)
    for key, how in FIXED.items():
        if saved.get(key) != run.get(key):
            raise CheckpointError(f"{path} was written by a run with {key} {saved.get(key)}; this run has "
                                  f"{run.get(key)}: resume with the same {how}, or start a new run with another --out")
    was, now = saved.get("settings", {}), run["settings"]
    for key in sorted(set(was) | set(now)):
        if key not in CHANGEABLE and was.get(key) != now.get(key):
            flag = "--" + key.replace("_", "-")
            raise CheckpointError(f"{path} was written by a run with {flag} {was.get(key)}; this run uses "
                                  f"{now.get(key)}: resume with the same {flag}, or start a new run with another --out")
    if saved["step"] > now["steps"]:
        raise CheckpointError(f"{path} is at step {saved['step']}, past the {now['steps']} steps of this run: "
                              f"give --steps {saved['step']} or more to continue it")


def _row_bits(X, lo: int, hi: int, mult: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """For rows [lo, hi) of X (dense, or scipy.sparse CSR): the sum of each cell's bits times its
    column's multiplier, shape (hi - lo,) uint64 (wrapping). Zero cells add nothing, so a sparse
    matrix and its dense copy give the same sums."""
    if isinstance(X, np.ndarray):
        block = np.ascontiguousarray(X[lo:hi], dtype=np.float64).view(np.uint64)
        return (block * mult).sum(axis=1, dtype=np.uint64)
    rows = X[lo:hi]
    h = np.zeros(hi - lo, dtype=np.uint64)
    cells = np.ascontiguousarray(rows.data, dtype=np.float64).view(np.uint64) * mult[rows.indices]
    np.add.at(h, np.repeat(np.arange(hi - lo), np.diff(rows.indptr)), cells)
    return h


def data_fingerprint(X: np.ndarray, y: Optional[np.ndarray], start: int, comm: "Comm",
                     weight: Optional[np.ndarray] = None) -> str:
    """Collective: a 64-bit hex digest of every rank's rows (X (n_local, d), dense or sparse CSR; y and
    the row weights ``weight`` (n_local,), when given).

    Each row's bits are hashed with its global index and the hashes summed modulo 2**64, so
    the digest is the same however the rows are split over ranks.
    """
    mult = (np.arange(X.shape[1] + 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    total = np.zeros(1, dtype=np.uint64)
    for lo in range(0, X.shape[0], 1 << 16):
        hi = min(lo + (1 << 16), X.shape[0])
        h = _row_bits(X, lo, hi, mult[:-2])
        if y is not None:
            h += np.ascontiguousarray(y[lo:hi], dtype=np.float64).view(np.uint64) * mult[-2]
        if weight is not None:
            h += np.ascontiguousarray(weight[lo:hi], dtype=np.float64).view(np.uint64) * mult[-1]
        h ^= np.arange(start + lo, start + hi, dtype=np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):  # splitmix64's mixer
            h ^= h >> np.uint64(shift)
            h *= np.uint64(factor)
        h ^= h >> np.uint64(31)
        total += h.sum(dtype=np.uint64)
    return f"{int(comm.Allreduce(total)[0]):016x}"
