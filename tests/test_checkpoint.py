"""Checkpoint files: atomic, verified, never unpickled, and the previous one survives damage."""
import json
import os

import numpy as np
import pytest

from mpitrain import checkpoint
from mpitrain.checkpoint import CheckpointError


def save(folder, step, keep=3, run="run-a"):
    return checkpoint.save(str(folder), step, {"rows": np.full((1, 4), float(step))},
                           {"model": "linear", "run_id": run}, keep)


def rewrite_manifest(path, change):
    """Change a manifest and seal it again, as someone who knows the format would: the checks
    behind the seal must catch it."""
    file = os.path.join(path, "manifest.json")
    manifest = json.loads(open(file).read())
    change(manifest)
    open(file, "w").write(json.dumps(checkpoint.seal(manifest)))


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
    with pytest.raises(checkpoint.OutputError, match="simulated crash"):
        save(tmp_path, 2)
    found, warnings = checkpoint.load_latest(str(tmp_path))
    assert found.manifest["step"] == 1 and not warnings
    assert (tmp_path / "latest").read_text().strip() == "step-000000001"


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "step-000000001"
    path.mkdir()
    np.savez(path / "state.npz", rows=np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    digest = checkpoint._sha256(str(path / "state.npz"))
    manifest = {"format_version": checkpoint.FORMAT_VERSION, "step": 1, "run_id": "r", "files": {"state.npz": digest}}
    (path / "manifest.json").write_text(json.dumps(checkpoint.seal(manifest)))
    with pytest.raises(CheckpointError, match="cannot be read"):
        checkpoint.load(str(path))


def test_missing_or_foreign_checkpoints(tmp_path):
    assert checkpoint.load_latest(str(tmp_path / "none")) == (None, [])
    with pytest.raises(CheckpointError, match="no manifest"):
        checkpoint.load(str(tmp_path))
    path = save(tmp_path, 3)
    rewrite_manifest(path, lambda m: m.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99"):
        checkpoint.load(path)


def test_a_manifest_must_cover_exactly_the_state_file(tmp_path):
    (tmp_path / "secret").write_text("not a checkpoint file")
    save(tmp_path, 1)
    path = save(tmp_path, 2)
    np.savez(os.path.join(path, "state.npz"), rows=np.full((1, 4), 666.0))  # altered state...
    digest = checkpoint._sha256(str(tmp_path / "secret"))
    rewrite_manifest(path, lambda m: m.update(files={"../../secret": digest}))  # ...and a manifest that skips it
    with pytest.raises(CheckpointError, match=r"lists the files \['../../secret'\]"):
        checkpoint.load(path)
    rewrite_manifest(path, lambda m: m["files"].update({"state.npz": checkpoint._sha256(os.path.join(path, "state.npz"))}))
    with pytest.raises(CheckpointError, match="covers exactly"):  # state.npz listed, plus a file outside
        checkpoint.load(path)
    found, warnings = checkpoint.load_latest(str(tmp_path))
    assert found.manifest["step"] == 1 and len(warnings) == 1
    np.testing.assert_array_equal(found.arrays["rows"], np.full((1, 4), 1.0))


@pytest.mark.parametrize("damage", ["[1, 2]", "{}", '{"format_version": 3, "step": "x"}', "null", "{\"step\": 1"])
def test_a_malformed_manifest_falls_back_to_the_previous_checkpoint(tmp_path, damage):
    save(tmp_path, 1)
    path = save(tmp_path, 2)
    open(os.path.join(path, "manifest.json"), "w").write(damage)
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    found, warnings = checkpoint.load_latest(str(tmp_path))
    assert found.manifest["step"] == 1 and len(warnings) == 1 and "step-000000002" in warnings[0]


def test_a_manifest_whose_step_is_not_its_directory_is_refused(tmp_path):
    path = save(tmp_path, 2)
    rewrite_manifest(path, lambda m: m.update(step=7))
    with pytest.raises(CheckpointError, match="says step 7 but its directory is step 2"):
        checkpoint.load(path)


def test_symbolic_links_are_never_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    outside = save(elsewhere, 50, run="run-a")  # a valid checkpoint outside the run, same run id
    run = tmp_path / "run"
    save(run, 1)
    os.symlink(outside, run / "step-000000050")
    (run / "latest").write_text("step-000000050\n")
    found, warnings = checkpoint.load_latest(str(run))
    assert found.manifest["step"] == 1
    assert len(warnings) == 1 and "symbolic link" in warnings[0] and "step-000000050" in warnings[0]
    inner = save(run, 2)
    os.replace(os.path.join(inner, "state.npz"), tmp_path / "moved.npz")
    os.symlink(tmp_path / "moved.npz", os.path.join(inner, "state.npz"))
    with pytest.raises(CheckpointError, match="symbolic link"):
        checkpoint.load(inner)


def test_non_finite_state_is_never_saved_or_loaded(tmp_path):
    save(tmp_path, 1)
    for bad in (np.nan, np.inf):
        with pytest.raises(CheckpointError, match="NaN or infinity"):
            checkpoint.save(str(tmp_path), 2, {"rows": np.array([[1.0, bad]])}, {"run_id": "run-a"})
    assert checkpoint.step_dirs(str(tmp_path)) == ["step-000000001"]
    assert (tmp_path / "latest").read_text().strip() == "step-000000001"
    path = tmp_path / "step-000000003"  # written by hand, hashes right, but not finite
    path.mkdir()
    np.savez(path / "state.npz", rows=np.array([[np.nan]]))
    manifest = {"format_version": checkpoint.FORMAT_VERSION, "step": 3, "run_id": "run-a",
                "files": {"state.npz": checkpoint._sha256(str(path / "state.npz"))}}
    (path / "manifest.json").write_text(json.dumps(checkpoint.seal(manifest)))
    (tmp_path / "latest").write_text("step-000000003\n")
    found, warnings = checkpoint.load_latest(str(tmp_path))
    assert found.manifest["step"] == 1 and "NaN or infinity" in warnings[0]


def test_pruning_touches_only_this_runs_checkpoints(tmp_path):
    for step in (40, 50, 60):
        save(tmp_path, step, run="old")
    for step in (5, 10, 15, 16):
        save(tmp_path, step, keep=2, run="new")
    assert checkpoint.step_dirs(str(tmp_path)) == [f"step-{s:09d}" for s in (60, 50, 40, 16, 15)]
    found, warnings = checkpoint.load_latest(str(tmp_path), run_id="new")
    assert found.manifest["step"] == 16 and not warnings  # latest names it
    (tmp_path / "latest").unlink()
    found, warnings = checkpoint.load_latest(str(tmp_path), run_id="new")
    assert found.manifest["step"] == 16 and len(warnings) == 3 and "belongs to run old" in warnings[0]


def test_a_save_after_resuming_from_an_earlier_step_keeps_the_new_checkpoint(tmp_path):
    for step in (10, 20, 30):
        save(tmp_path, step, keep=1)
    assert checkpoint.step_dirs(str(tmp_path)) == ["step-000000030"]
    save(tmp_path, 25, keep=1)  # resumed from an older copy: step 30 is a timeline left behind
    assert checkpoint.step_dirs(str(tmp_path)) == ["step-000000025"]


def test_temporaries_of_dead_jobs_are_removed(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = tmp_path / f".step-000000007.tmp-{host}-{int(dead.stdout)}"
    alive = tmp_path / f".step-000000008.tmp-{host}-{os.getppid()}"
    other = tmp_path / f".step-000000009.tmp-otherhost-{int(dead.stdout)}"
    for folder in (stale, alive, other):
        folder.mkdir()
    save(tmp_path, 10)
    assert not stale.exists() and alive.exists() and other.exists()


def test_a_full_disk_names_the_checkpoint_and_leaves_no_temporary(tmp_path, monkeypatch):
    import errno

    save(tmp_path, 1)

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_synced", full)
    with pytest.raises(checkpoint.OutputError, match=r"cannot write .*step-000000002: No space left on device "
                                                     r"\(the disk or your quota is full.*previous checkpoints are intact"):
        save(tmp_path, 2)
    assert sorted(os.listdir(tmp_path)) == ["latest", "step-000000001"]
