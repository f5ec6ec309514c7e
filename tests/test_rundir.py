"""A run directory belongs to one run: run ids, the lock, and what a resumed run may change."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mpitrain import checkpoint, rundir
from mpitrain.checkpoint import CheckpointError
from mpitrain.rundir import RunDirError


def finished_pid() -> int:
    """The pid of a process that has ended."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_a_new_run_gets_an_id_and_a_lock_released_at_the_end(tmp_path):
    out = tmp_path / "run"
    claimed = rundir.claim(str(out))
    try:
        run = json.loads((out / "run.json").read_text())
        assert run["run_id"] == claimed.run_id and len(claimed.run_id) == 16
        lock = json.loads((out / "mpitrain.lock").read_text())
        assert lock["pid"] == os.getpid() and lock["host"] and lock["started"]
    finally:
        claimed.release()
    assert not (out / "mpitrain.lock").exists()
    again = rundir.claim(str(out), resume="auto")
    again.release()
    assert again.run_id == claimed.run_id


@pytest.mark.parametrize("leftover", ["model.npz", "metrics.jsonl", "summary.json", "run.json"])
def test_a_new_run_refuses_another_runs_outputs(tmp_path, leftover):
    rundir.claim(str(tmp_path)).release()
    if leftover != "run.json":
        (tmp_path / leftover).write_text("x")
    with pytest.raises(RunDirError, match=r"holds the outputs of another run \(run [0-9a-f]{16}: .*\). Continue "
                                          r"that run with --resume auto, give a new --out, or replace its "
                                          r"outputs with --overwrite"):
        rundir.claim(str(tmp_path))
    assert not (tmp_path / "mpitrain.lock").exists()  # a refused claim leaves no lock behind


def test_overwrite_removes_only_the_previous_runs_outputs(tmp_path):
    first = rundir.claim(str(tmp_path))
    first.release()
    checkpoint.save(str(tmp_path / "checkpoints"), 5, {"rows": np.zeros((1, 2))}, {"run_id": first.run_id})
    for name in ("model.npz", "metrics.jsonl", "summary.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    second = rundir.claim(str(tmp_path), overwrite=True)
    second.release()
    assert second.run_id != first.run_id and any("--overwrite: removed" in note for note in second.notes)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "run.json"]


def test_resume_from_a_checkpoint_of_another_run_is_refused(tmp_path):
    first = rundir.claim(str(tmp_path / "a"))
    first.release()
    path = checkpoint.save(str(tmp_path / "a" / "checkpoints"), 5, {"rows": np.zeros((1, 2))},
                           {"run_id": first.run_id})
    continued = rundir.claim(str(tmp_path / "b"), resume=path)  # an empty --out continues that run
    continued.release()
    assert continued.run_id == first.run_id
    rundir.claim(str(tmp_path / "c")).release()
    with pytest.raises(RunDirError, match=f"not to run {first.run_id} of the checkpoint"):
        rundir.claim(str(tmp_path / "c"), resume=path)


def test_a_second_job_is_refused_while_the_first_holds_the_lock(tmp_path):
    held = rundir.claim(str(tmp_path))
    try:
        with pytest.raises(RunDirError, match=rf"in use by another mpitrain job \(pid {os.getpid()} on host "):
            rundir.claim(str(tmp_path), resume="auto")
    finally:
        held.release()


def test_a_lock_left_by_a_dead_job_is_taken_over_with_a_note(tmp_path):
    lock = tmp_path / "mpitrain.lock"
    import socket

    lock.write_text(json.dumps({"pid": finished_pid(), "host": socket.gethostname(), "started": "then"}))
    claimed = rundir.claim(str(tmp_path))
    claimed.release()
    assert any("has ended" in note for note in claimed.notes)


def test_a_lock_from_another_host_is_stale_once_it_is_not_renewed(tmp_path, monkeypatch):
    lock = tmp_path / "mpitrain.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "then"}))
    with pytest.raises(RunDirError, match="pid 1 on host elsewhere"):
        rundir.claim(str(tmp_path))
    old = os.stat(lock).st_mtime - 2 * rundir.STALE_SECONDS
    os.utime(lock, (old, old))
    claimed = rundir.claim(str(tmp_path))
    claimed.release()
    assert any("last renewed" in note for note in claimed.notes)


RACER = """
import sys, time
from mpitrain import rundir
from mpitrain.rundir import RunDirError

judge = rundir.RunLock._stale


def slow_judge(self):  # a job that pauses between finding the lock stale and acting on it
    found = judge(self)
    time.sleep(float(sys.argv[2]))
    return found


rundir.RunLock._stale = slow_judge
print("ready", flush=True)
sys.stdin.readline()  # go: all racers start at once
try:
    rundir.RunLock(sys.argv[1]).acquire()
    print("won", flush=True)
except RunDirError as exc:
    print("refused:", exc, flush=True)
sys.stdin.read()  # a winner holds the lock (its process stays alive) until the others have decided
"""


@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_exactly_one_of_several_jobs_takes_over_a_stale_lock(tmp_path, pause):
    import socket

    lock = tmp_path / "mpitrain.lock"
    lock.write_text(json.dumps({"pid": finished_pid(), "host": socket.gethostname(), "started": "then"}))
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(lock), str(pause)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        assert [racer.stdout.readline() for racer in racers] == ["ready\n"] * 3
        for racer in racers:
            racer.stdin.write("go\n")
            racer.stdin.flush()
        outcomes = [racer.stdout.readline() for racer in racers]
    finally:
        for racer in racers:
            racer.stdin.close()
            racer.wait(timeout=60)
    assert sorted(line.split(":")[0].strip() for line in outcomes) == ["refused", "refused", "won"], outcomes
    assert all("in use by another mpitrain job" in line for line in outcomes if line.startswith("refused"))
    assert [name for name in os.listdir(tmp_path) if name != "mpitrain.lock"] == []  # no claim or temporary left


def test_the_holder_renews_its_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "HEARTBEAT_SECONDS", 0.05)
    held = rundir.claim(str(tmp_path))
    try:
        lock = tmp_path / "mpitrain.lock"
        os.utime(lock, (0, 0))
        import time

        deadline = time.monotonic() + 5
        while os.stat(lock).st_mtime == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.stat(lock).st_mtime > 0
    finally:
        held.release()


def test_leftover_temporaries_are_removed_when_a_run_starts(tmp_path):
    (tmp_path / "checkpoints" / ".step-000000005.tmp-otherhost-123").mkdir(parents=True)
    (tmp_path / ".model.npz.abc123.tmp").write_text("half")
    claimed = rundir.claim(str(tmp_path))
    claimed.release()
    assert os.listdir(tmp_path / "checkpoints") == [] and not (tmp_path / ".model.npz.abc123.tmp").exists()
    assert any("removed 2 temporary" in note for note in claimed.notes)


def meta(**changes):
    settings = {"steps": 100, "lr": 0.1, "batch_size": 30, "betas": (0.9, 0.999), "allreduce": "auto",
                "overlap": False, "optimizer": "sgd"}
    base = {"model": "softmax", "shapes": {"W": (5, 3), "b": (3,)}, "model_options": {"n_classes": 3},
            "algorithm": "sgd", "n_features": 5, "n_samples": 90, "data_fingerprint": "00ff",
            "preparation": {"standardize": False}, "settings": settings}
    for key, value in changes.items():
        (settings if key in settings else base)[key] = value
    return base


def saved(step=40, **changes):
    """A manifest as it reads back from disk."""
    return {**json.loads(json.dumps(meta(**changes))), "step": step}


def test_resume_allows_more_steps_and_another_reduction():
    rundir.check_resume("ck", saved(), meta(steps=500, allreduce="ring", overlap=True))


@pytest.mark.parametrize("change, field", [
    ({"shapes": {"W": (8, 2), "b": (2,)}}, "shapes"),  # 18 parameters either way
    ({"model_options": {"n_classes": 2}}, "model_options"),
    ({"data_fingerprint": "0100"}, "data_fingerprint"),
    ({"n_samples": 91}, "n_samples"),
    ({"algorithm": "gd"}, "algorithm"),
    ({"preparation": {"standardize": True}}, "preparation"),
    ({"lr": 0.2}, "--lr"),
    ({"batch_size": 31}, "--batch-size"),
    ({"betas": (0.8, 0.999)}, "--betas"),
])
def test_resume_refuses_a_checkpoint_of_another_run_naming_the_field(change, field):
    with pytest.raises(CheckpointError, match=f"written by a run with {field} "):
        rundir.check_resume("ck", saved(), meta(**change))


def test_a_checkpoint_past_the_last_step_is_refused():
    rundir.check_resume("ck", saved(step=100), meta(steps=100))
    with pytest.raises(CheckpointError, match="ck is at step 100, past the 60 steps of this run: give --steps 100 or"):
        rundir.check_resume("ck", saved(step=100), meta(steps=60))
