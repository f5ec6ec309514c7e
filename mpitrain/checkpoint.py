"""Checkpoint files: written atomically by rank 0, verified by hash on load, never unpickled.

A checkpoint is a directory ``FOLDER/step-000000123/`` holding ``state.npz`` (plain arrays) and
``manifest.json`` (format version, step, world size, run description and the SHA-256 of every
other file). It is written under a temporary name, each file and the directory are fsynced,
it is renamed into place, the parent is fsynced, and only then does ``FOLDER/latest`` (written
the same way) point at it. The newest ``keep`` checkpoints are kept.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .outputs import fsync_path, write_atomic, write_synced

FORMAT_VERSION = 1
STATE = "state.npz"
MANIFEST = "manifest.json"
LATEST = "latest"


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


def step_dirs(folder: str) -> list[str]:
    """Names of the complete checkpoint directories in ``folder``, newest step first."""
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder) if n.startswith("step-") and n[5:].isdigit()]
    return sorted(names, key=lambda n: int(n[5:]), reverse=True)


def save(folder: str, step: int, arrays: dict, meta: dict, keep: int = 3) -> str:
    """Write a checkpoint of ``arrays`` at ``step`` into ``folder``; return its directory.

    ``meta`` (JSON-serialisable) goes into the manifest. Older checkpoints beyond the newest
    ``keep`` are removed once the new one and the ``latest`` pointer are safely on disk.
    """
    os.makedirs(folder, exist_ok=True)
    name = f"step-{step:09d}"
    final, tmp = os.path.join(folder, name), os.path.join(folder, f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_synced(os.path.join(tmp, STATE), buf.getvalue())
    manifest = {"format_version": FORMAT_VERSION, "step": step, **meta,
                "files": {STATE: _sha256(os.path.join(tmp, STATE))}}
    write_synced(os.path.join(tmp, MANIFEST), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    fsync_path(tmp)
    if os.path.exists(final):  # the same step saved again (a resumed run): replace it whole
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_path(folder)
    write_atomic(os.path.join(folder, LATEST), (name + "\n").encode())
    for old in step_dirs(folder)[keep:]:
        shutil.rmtree(os.path.join(folder, old), ignore_errors=True)
    return final


def load(path: str) -> Checkpoint:
    """Read and verify one checkpoint directory; CheckpointError says what is wrong with it."""
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.isfile(manifest_path):
        raise CheckpointError(f"{path} is not a checkpoint: it has no {MANIFEST}")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{manifest_path} is not valid JSON ({exc}): the checkpoint is damaged") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {manifest.get('format_version')}; this mpitrain reads {FORMAT_VERSION}"
        )
    for name, expected in manifest.get("files", {}).items():
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            raise CheckpointError(f"{file} is missing: the checkpoint is incomplete")
        if _sha256(file) != expected:
            raise CheckpointError(f"{file} does not match the SHA-256 in its manifest: it was truncated or altered")
    try:
        with np.load(os.path.join(path, STATE), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"{os.path.join(path, STATE)} cannot be read: {exc}") from None
    return Checkpoint(path, manifest, arrays)


def load_latest(folder: str) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint in ``folder`` that verifies, and a warning for each one skipped.

    Tries the one ``latest`` names first, then the others from the newest step down. Returns
    (None, warnings) when there is none.
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
            return load(os.path.join(folder, name)), warnings
        except CheckpointError as exc:
            warnings.append(f"skipping checkpoint {name}: {exc}")
    return None, warnings
