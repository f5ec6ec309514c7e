"""The checkpoint hash covers every stored array, and the newest k checkpoints survive, by name."""
import json
import os

import numpy as np
import pytest

from mpitrain import checkpoint
from mpitrain.checkpoint import CheckpointError
from mpitrain.outputs import OutputError

# What a training run stores (see supervisor.save): one row per rank of
# [theta | period | optimizer state | weight], and the metrics log as strings.
ARRAYS = {
    "rows": np.array([[0.125, -2.5, 3.75, 11.0, 12.0, 13.0, 0.25, 0.75, 0.4],
                      [0.625, -1.5, 2.75, 21.0, 22.0, 23.0, 0.5, 0.125, 0.6]]),
    "metrics": np.array(['{"step": 1, "loss": 0.5}', '{"step": 2, "loss": 0.25}']),
}
META = {"model": "linear", "algorithm": "local-sgd", "world_size": 2, "synced": False, "run_id": "run-a"}


def flip_inside(path: str, payload: bytes) -> None:
    """Flip one bit in the middle of the first occurrence of ``payload`` in the file at ``path``."""
    data = bytearray(open(path, "rb").read())
    at = data.find(payload)
    assert at >= 0, "the array's bytes are stored as they are (np.savez does not compress)"
    data[at + len(payload) // 2] ^= 0x04
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_a_flipped_bit_in_any_stored_array_is_caught(tmp_path, name):
    checkpoint.save(str(tmp_path), 7, ARRAYS, META)
    path = checkpoint.save(str(tmp_path), 8, ARRAYS, META)
    flip_inside(os.path.join(path, "state.npz"), ARRAYS[name].tobytes())
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        checkpoint.load(path)
    found, warnings = checkpoint.load_latest(str(tmp_path))
    assert found.manifest["step"] == 7 and len(warnings) == 1 and "step-000000008" in warnings[0]
    for key, value in ARRAYS.items():
        np.testing.assert_array_equal(found.arrays[key], value)


def test_every_array_and_manifest_field_round_trips(tmp_path):
    path = checkpoint.save(str(tmp_path), 12, ARRAYS, META)
    assert os.path.basename(path) == "step-000000012"
    found = checkpoint.load(path)
    assert sorted(found.arrays) == sorted(ARRAYS)
    for key, value in ARRAYS.items():
        assert found.arrays[key].dtype == value.dtype
        np.testing.assert_array_equal(found.arrays[key], value)
    assert {k: found.manifest[k] for k in META} == META
    assert found.manifest["step"] == 12 and found.manifest["format_version"] == checkpoint.FORMAT_VERSION
    on_disk = json.load(open(os.path.join(path, "manifest.json")))
    assert sorted(on_disk["files"]) == ["state.npz"]


def test_a_missing_state_file_is_named(tmp_path):
    path = checkpoint.save(str(tmp_path), 1, ARRAYS, META)
    os.remove(os.path.join(path, "state.npz"))
    with pytest.raises(CheckpointError, match="state.npz is missing"):
        checkpoint.load(path)


def test_a_damaged_manifest_is_named(tmp_path):
    path = checkpoint.save(str(tmp_path), 1, ARRAYS, META)
    with open(os.path.join(path, "manifest.json"), "w") as f:
        f.write('{"format_version": 1, "step": ')
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        checkpoint.load(path)


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_exactly_the_newest_keep_checkpoints_remain(tmp_path, keep):
    for step in (3, 9, 10, 100, 101):  # 9 < 10 < 100 numerically, not as text with fewer digits
        checkpoint.save(str(tmp_path), step, ARRAYS, META, keep=keep)
    expected = [f"step-{s:09d}" for s in (101, 100, 10)[:keep]]
    assert checkpoint.step_dirs(str(tmp_path)) == expected
    assert sorted(os.listdir(tmp_path)) == sorted(expected + ["latest"])


def test_step_dirs_ignores_names_that_are_not_steps(tmp_path):
    for name in ("step-000000005", "step-12", "step-3", "step-", "step-1a", "step-a1", "stepx-3",
                 ".step-000000009.tmp-1"):
        os.mkdir(tmp_path / name)
    assert checkpoint.step_dirs(str(tmp_path)) == ["step-12", "step-000000005", "step-3"]


def test_latest_pointer_wins_over_a_newer_step(tmp_path):
    """Another run's step 9 stays beside this run's step 5, which ``latest`` names."""
    checkpoint.save(str(tmp_path), 9, ARRAYS, {**META, "run_id": "run-b"}, keep=5)
    checkpoint.save(str(tmp_path), 5, ARRAYS, {**META, "synced": True}, keep=5)
    found, warnings = checkpoint.load_latest(str(tmp_path))
    assert found.manifest["step"] == 5 and found.manifest["synced"] is True and not warnings
    (tmp_path / "latest").write_text("step-000000077\n")  # names no checkpoint: the newest step is used
    found, _ = checkpoint.load_latest(str(tmp_path))
    assert found.manifest["step"] == 9


def test_a_manifest_whose_step_differs_from_its_directory_is_refused(tmp_path):
    path = checkpoint.save(str(tmp_path), 6, ARRAYS, META)
    file = os.path.join(path, "manifest.json")
    manifest = json.load(open(file))
    manifest["step"] = 5
    open(file, "w").write(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not match the SHA-256 of its fields"):
        checkpoint.load(path)
    open(file, "w").write(json.dumps(checkpoint.seal(manifest)))  # sealed again: the step check still holds
    with pytest.raises(CheckpointError, match="says step 5 but its directory is step 6"):
        checkpoint.load(path)


def tampered(value):
    """Another value of the same JSON type (a field changed by hand or by a damaged disk)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, 1]
    return {**value, "added": 1}


# What supervisor.save adds to the run's description (rundir.FIXED and the settings) in every manifest.
RUN_META = {**META, "shapes": [[3, 2], [2]], "model_options": {"hidden": [3]}, "n_features": 3, "n_samples": 40,
            "data_fingerprint": "ab12", "preparation": {"standardize": False}, "settings": {"lr": 0.05, "steps": 9}}


@pytest.mark.parametrize("field", sorted({*RUN_META, "step", "format_version", "files", checkpoint.SEAL}))
def test_every_manifest_field_is_sealed_and_a_changed_one_falls_back(tmp_path, field):
    checkpoint.save(str(tmp_path), 3, ARRAYS, RUN_META)
    path = checkpoint.save(str(tmp_path), 4, ARRAYS, RUN_META)
    file = os.path.join(path, "manifest.json")
    manifest = json.load(open(file))
    manifest[field] = tampered(manifest[field])
    open(file, "w").write(json.dumps(manifest))
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    found, warnings = checkpoint.load_latest(str(tmp_path), run_id="run-a")
    assert found.manifest["step"] == 3 and len(warnings) == 1 and "step-000000004" in warnings[0]
    if field not in ("format_version", "step"):
        assert "does not match the SHA-256 of its fields" in warnings[0]
    assert {k: found.manifest[k] for k in RUN_META} == RUN_META


@pytest.mark.parametrize("field, value", [("world_size", 0), ("world_size", "2"), ("synced", 1)])
def test_world_size_and_synced_must_be_what_save_writes_even_when_sealed(tmp_path, field, value):
    path = checkpoint.save(str(tmp_path), 4, ARRAYS, {**META, field: value})
    with pytest.raises(CheckpointError, match=f"{field} {value!r}"):
        checkpoint.load(path)


def test_saving_a_step_again_replaces_it_whole(tmp_path):
    checkpoint.save(str(tmp_path), 4, ARRAYS, META)
    other = {"rows": np.zeros((1, 3)), "metrics": np.array([], dtype=str)}
    path = checkpoint.save(str(tmp_path), 4, other, META)
    found = checkpoint.load(path)
    assert found.arrays["rows"].shape == (1, 3) and checkpoint.step_dirs(str(tmp_path)) == ["step-000000004"]


def test_pid_alive_tells_a_live_process_from_a_finished_one():
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert checkpoint.pid_alive(os.getpid()) is True
    assert checkpoint.pid_alive(int(child.stdout)) is False  # reaped: no such process (pids are not reused at once)


def test_pid_alive_only_asks_and_sends_the_process_no_signal():
    """A live process that exits on any catchable signal is still running after the question."""
    import signal
    import subprocess
    import sys

    script = ("import signal, sys, time\n"
              "for s in set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP}:\n"
              "    signal.signal(s, lambda *a: sys.exit(7))\n"
              "print('ready', flush=True)\n"
              "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert checkpoint.pid_alive(child.pid) is True
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=1.0)  # still running: it got no signal
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL


def test_a_checkpoint_at_step_zero_loads(tmp_path):
    path = checkpoint.save(str(tmp_path), 0, ARRAYS, META)
    assert checkpoint.load(path).manifest["step"] == 0


def reseal(path: str, **fields) -> None:  # type: ignore[no-untyped-def]
    """Change ``fields`` of the checkpoint's manifest and seal it again, as a careful hand would."""
    file = os.path.join(path, "manifest.json")
    manifest = {**json.load(open(file)), **fields}
    manifest.pop(checkpoint.SEAL)
    open(file, "w").write(json.dumps(checkpoint.seal(manifest)))


@pytest.mark.parametrize("step", [123_456_789, 1_234_567_890])
def test_steps_of_nine_digits_and_more_are_read_whole(tmp_path, step):
    checkpoint.save(str(tmp_path), 7, ARRAYS, META)
    checkpoint.save(str(tmp_path), step, ARRAYS, META)
    assert checkpoint.step_dirs(str(tmp_path)) == [f"step-{step:09d}", "step-000000007"]
    found, warnings = checkpoint.load_latest(str(tmp_path))
    assert found.manifest["step"] == step and not warnings


def test_three_checkpoints_are_kept_unless_told(tmp_path):
    for step in range(1, 6):
        checkpoint.save(str(tmp_path), step, ARRAYS, META)
    assert checkpoint.step_dirs(str(tmp_path)) == ["step-000000005", "step-000000004", "step-000000003"]


@pytest.mark.parametrize("value", [True, -1, 1.0])
def test_a_sealed_manifest_whose_step_is_not_a_whole_number_of_steps_is_refused(tmp_path, value):
    path = checkpoint.save(str(tmp_path), 1, ARRAYS, META)
    reseal(path, step=value)
    with pytest.raises(CheckpointError, match="step"):
        checkpoint.load(path)


def test_checkpoints_are_written_in_format_3_and_a_format_2_one_is_refused_by_name(tmp_path):
    """The format the README documents; an older mpitrain's checkpoint names its version in the refusal."""
    path = checkpoint.save(str(tmp_path), 2, ARRAYS, META)
    assert json.load(open(os.path.join(path, "manifest.json")))["format_version"] == 3
    reseal(path, format_version=2)
    with pytest.raises(CheckpointError, match="format version 2; this mpitrain reads 3"):
        checkpoint.load(path)


def test_a_checkpoint_renamed_by_hand_with_a_negative_step_is_refused(tmp_path):
    """--resume PATH may name a directory of any name; its manifest's step must still be >= 0."""
    path = checkpoint.save(str(tmp_path), 2, ARRAYS, META)
    best = str(tmp_path / "best")
    os.rename(path, best)
    reseal(best, step=-1)
    with pytest.raises(CheckpointError, match="step"):
        checkpoint.load(best)


def test_a_folder_that_cannot_be_made_is_an_output_error_naming_the_checkpoint(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match="step-000000001.*the previous checkpoints are intact"):
        checkpoint.save(str(tmp_path / "file" / "checkpoints"), 1, ARRAYS, META)


def test_removing_a_checkpoint_another_job_removed_first_is_not_an_error(tmp_path):
    """Two jobs pruning the same folder: the second finds the directory gone (checkpoint._remove)."""
    checkpoint._remove(str(tmp_path / "step-000000004"))
    assert not (tmp_path / "step-000000004").exists()
