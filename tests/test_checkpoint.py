"""Checkpoint files: atomic, verified, never unpickled, and the previous one survives damage."""
import json
import os

import numpy as np
import pytest

from mpitrain import checkpoint
from mpitrain.checkpoint import CheckpointError


def save(folder, step, keep=3):
    return checkpoint.save(str(folder), step, {"rows": np.full((1, 4), float(step))}, {"model": "linear"}, keep)


def test_round_trip_and_latest(tmp_path):
    save(tmp_path, 10)
    path = save(tmp_path, 20)
    found, warnings = checkpoint.load_latest(str(tmp_path))
    assert found.path == path and not warnings
    assert found.manifest["step"] == 20 and found.manifest["model"] == "linear"
    np.testing.assert_array_equal(found.arrays["rows"], np.full((1, 4), 20.0))
    assert (tmp_path / "latest").read_text().strip() == "step-000000020"


def test_keeps_the_newest_k(tmp_path):
    for step in (1, 2, 3, 4, 5):
        save(tmp_path, step, keep=2)
    assert checkpoint.step_dirs(str(tmp_path)) == ["step-000000005", "step-000000004"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_is_rejected_and_the_previous_one_used(tmp_path, damage):
    save(tmp_path, 1)
    path = save(tmp_path, 2)
    state = os.path.join(path, "state.npz")
    data = bytearray(open(state, "rb").read())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    open(state, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or altered"):
        checkpoint.load(path)
    found, warnings = checkpoint.load_latest(str(tmp_path))
    assert found.manifest["step"] == 1
    assert len(warnings) == 1 and "step-000000002" in warnings[0]


def test_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    save(tmp_path, 1)
    real = checkpoint.write_synced

    def crash_on_manifest(path, data):
        if path.endswith("manifest.json"):
            raise OSError("simulated crash")
        real(path, data)

    monkeypatch.setattr(checkpoint, "write_synced", crash_on_manifest)
    with pytest.raises(OSError):
        save(tmp_path, 2)
    found, warnings = checkpoint.load_latest(str(tmp_path))
    assert found.manifest["step"] == 1 and not warnings
    assert (tmp_path / "latest").read_text().strip() == "step-000000001"


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "step-000000001"
    path.mkdir()
    np.savez(path / "state.npz", rows=np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    digest = checkpoint._sha256(str(path / "state.npz"))
    manifest = {"format_version": 1, "step": 1, "files": {"state.npz": digest}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="cannot be read"):
        checkpoint.load(str(path))


def test_missing_or_foreign_checkpoints(tmp_path):
    assert checkpoint.load_latest(str(tmp_path / "none")) == (None, [])
    with pytest.raises(CheckpointError, match="no manifest"):
        checkpoint.load(str(tmp_path))
    path = save(tmp_path, 3)
    manifest = json.loads(open(os.path.join(path, "manifest.json")).read())
    manifest["format_version"] = 99
    open(os.path.join(path, "manifest.json"), "w").write(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="format version 99"):
        checkpoint.load(path)
