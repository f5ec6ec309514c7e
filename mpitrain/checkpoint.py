"""Checkpoint files: written atomically by rank 0, verified strictly on load, never unpickled.

A checkpoint is a directory ``FOLDER/step-000000123/`` holding ``state.npz`` (plain arrays) and
``manifest.json`` (format version, step, run id, world size, run description, the SHA-256 of
``state.npz``, and the SHA-256 of all those fields, so that no field can change unnoticed). It is written under a temporary name, each file and the directory are fsynced,
it is renamed into place, the parent is fsynced, and only then does ``FOLDER/latest`` (written
the same way) point at it. Pruning keeps the newest ``keep`` checkpoints of the same run and
touches no other run's.

Loading accepts only what ``save`` writes: real directories and files (no symbolic links), a
sealed manifest that lists exactly ``state.npz``, finite numbers. Anything else is a CheckpointError,
so ``load_latest`` falls back to the previous checkpoint.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import UsageError
from .outputs import OutputError, describe_os_error, fsync_path, write_atomic, write_synced

FORMAT_VERSION = 3  # 2: a run id in every manifest, which names exactly the files it covers; 3: sealed manifest
STATE = "state.npz"
MANIFEST = "manifest.json"
SEAL = "manifest_sha256"  # the manifest's own field: the SHA-256 of all its other fields
LATEST = "latest"
_TEMPORARY = re.compile(r"^\.step-\d+\.tmp-(?P<host>.+)-(?P<pid>\d+)$")


class CheckpointError(UsageError):
    """A checkpoint that is missing, truncated, altered or written by an incompatible run."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: its directory, manifest and arrays."""

    path: str
    manifest: dict
    arrays: dict


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fields_digest(manifest: dict) -> str:
    """The SHA-256 of every manifest field but the seal, in one canonical JSON form."""
    fields = {k: v for k, v in manifest.items() if k != SEAL}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(manifest: dict) -> dict:
    """``manifest`` with its seal: loading refuses a manifest any of whose fields changed since."""
    return {**manifest, SEAL: _fields_digest(manifest)}


def _step_of(name: str) -> Optional[int]:
    """The step in a directory name ``step-NNNNNNNNN``, or None for any other name."""
    return int(name[5:]) if name.startswith("step-") and name[5:].isdigit() else None


def step_dirs(folder: str) -> list[str]:
    """Names of the checkpoint directories in ``folder``, newest step first."""
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder) if _step_of(n) is not None]
    return sorted(names, key=_step_of, reverse=True)


def run_of(path: str) -> Optional[str]:
    """The run id in a checkpoint's manifest, or None if it cannot be read."""
    try:
        with open(os.path.join(path, MANIFEST)) as f:
            run = json.load(f).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return run if isinstance(run, str) else None


def non_finite(arrays: dict) -> list[str]:
    """Names of the floating-point arrays in ``arrays`` that hold NaN or infinity."""
    return [k for k, v in arrays.items() if np.asarray(v).dtype.kind in "fc" and not np.isfinite(v).all()]


def save(folder: str, step: int, arrays: dict, meta: dict, keep: int = 3) -> str:
    """Write a checkpoint of ``arrays`` at ``step`` into ``folder``; return its directory.

    ``meta`` (JSON-serialisable, with the ``run_id`` of the run) goes into the manifest. Arrays
    with NaN or infinity are refused (CheckpointError): such a state cannot be resumed. Once the
    new checkpoint and the ``latest`` pointer are on disk, this run's other checkpoints are
    pruned: those past ``step`` (a timeline the run left when it resumed from an earlier one)
    and all but the newest ``keep - 1`` before it. OutputError names the checkpoint if the
    disk refuses it; the previous checkpoints are then untouched.
    """
    name = f"step-{step:09d}"
    bad = non_finite(arrays)
    if bad:
        raise CheckpointError(f"the state at step {step} holds NaN or infinity (in {', '.join(bad)}): it is not "
                              "saved as a checkpoint, and the previous checkpoints stay as they were")
    final = os.path.join(folder, name)
    tmp = os.path.join(folder, f".{name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        os.makedirs(folder, exist_ok=True)
        remove_stale_temporaries(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_synced(os.path.join(tmp, STATE), buf.getvalue())
        manifest = seal({"format_version": FORMAT_VERSION, "step": step, **meta,
                         "files": {STATE: _sha256(os.path.join(tmp, STATE))}})
        write_synced(os.path.join(tmp, MANIFEST), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        fsync_path(tmp)
        if os.path.lexists(final):  # the same step saved again (a resumed run): replace it whole
            _remove(final)
        os.rename(tmp, final)
        fsync_path(folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(describe_os_error(final, exc) + "; the previous checkpoints are intact") from None
    write_atomic(os.path.join(folder, LATEST), (name + "\n").encode())
    run = meta.get("run_id")
    older = [n for n in step_dirs(folder) if n != name and run_of(os.path.join(folder, n)) == run]
    for old in [n for n in older if _step_of(n) > step] + [n for n in older if _step_of(n) < step][keep - 1:]:
        _remove(os.path.join(folder, old))
    return final


def _remove(path: str) -> None:
    """Remove a directory tree, or just the link if ``path`` is a symbolic link."""
    if os.path.islink(path):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_temporaries(folder: str) -> list[str]:
    """Remove the half-written checkpoints (``.step-*.tmp-HOST-PID``) of dead processes on this host.

    Returns their names. Those of live processes, or of other hosts, stay.
    """
    removed = []
    host = socket.gethostname()
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        match = _TEMPORARY.match(name)
        if match and match["host"] == host and not pid_alive(int(match["pid"])):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            removed.append(name)
    return removed


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this host (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _plain(path: str, kind: str) -> None:
    """CheckpointError unless ``path`` is a real (not symbolic-link) file or directory."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete") from None
    if stat.S_ISLNK(mode):
        raise CheckpointError(f"{path} is a symbolic link (to {os.readlink(path)}); a checkpoint holds only "
                              "real files, so it is not followed")
    if not (stat.S_ISDIR(mode) if kind == "directory" else stat.S_ISREG(mode)):
        raise CheckpointError(f"{path} is not a {kind}: the checkpoint is damaged")


def _read_manifest(path: str) -> dict:
    """The manifest of checkpoint ``path``, checked to have the shape that ``save`` writes."""
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.lexists(manifest_path):
        raise CheckpointError(f"{path} is not a checkpoint: it has no {MANIFEST}")
    _plain(manifest_path, "file")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{manifest_path} is not valid JSON ({exc}): the checkpoint is damaged") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{manifest_path} is not a JSON object: the checkpoint is damaged")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {manifest.get('format_version')}; this mpitrain reads {FORMAT_VERSION}"
        )
    if manifest.get(SEAL) != _fields_digest(manifest):
        raise CheckpointError(f"{manifest_path} does not match the SHA-256 of its fields ({SEAL}): the manifest "
                              "was altered or damaged")
    step = manifest.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{manifest_path} has no valid step ({step!r}): the checkpoint is damaged")
    named = _step_of(os.path.basename(os.path.normpath(path)))
    if named is not None and named != step:
        raise CheckpointError(f"{manifest_path} says step {step} but its directory is step {named}: it was altered")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != {STATE} or not isinstance(files[STATE], str):
        listed = sorted(files) if isinstance(files, dict) else files
        raise CheckpointError(f"{manifest_path} lists the files {listed}; a checkpoint covers exactly "
                              f"['{STATE}']: the manifest was altered")
    if not isinstance(manifest.get("run_id"), str):
        raise CheckpointError(f"{manifest_path} names no run: it was altered")
    size, synced = manifest.get("world_size", 1), manifest.get("synced", True)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1 or not isinstance(synced, bool):
        raise CheckpointError(f"{manifest_path} has world_size {size!r} and synced {synced!r}: it was altered")
    return manifest


def load(path: str) -> Checkpoint:
    """Read and verify one checkpoint directory; CheckpointError says what is wrong with it."""
    _plain(path, "directory")
    manifest = _read_manifest(path)
    file = os.path.join(path, STATE)
    _plain(file, "file")
    if _sha256(file) != manifest["files"][STATE]:
        raise CheckpointError(f"{file} does not match the SHA-256 in its manifest: it was truncated or altered")
    try:
        with np.load(file, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"{file} cannot be read: {exc}") from None
    bad = non_finite(arrays)
    if bad:
        raise CheckpointError(f"{file} holds NaN or infinity (in {', '.join(bad)}): it cannot be resumed")
    return Checkpoint(path, manifest, arrays)


def load_latest(folder: str, run_id: Optional[str] = None) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint in ``folder`` that verifies, and a warning for each one skipped.

    Tries the one ``latest`` names first, then the others from the newest step down. With
    ``run_id``, checkpoints of other runs are skipped. Returns (None, warnings) when there is none.
    """
    candidates = step_dirs(folder)
    pointer = os.path.join(folder, LATEST)
    if os.path.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named in candidates:
            candidates.remove(named)
            candidates.insert(0, named)
    warnings = []
    for name in candidates:
        try:
            found = load(os.path.join(folder, name))
        except CheckpointError as exc:
            warnings.append(f"skipping checkpoint {name}: {exc}")
            continue
        if run_id is not None and found.manifest["run_id"] != run_id:
            warnings.append(f"skipping checkpoint {name}: it belongs to run {found.manifest['run_id']}, not to "
                            f"this run {run_id}")
            continue
        return found, warnings
    return None, warnings
