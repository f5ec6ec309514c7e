"""Faults an operator meets on a shared cluster: one run per directory, full disks, file modes, outputs.

Each job is small (one or two ranks, a few hundred steps) and bounded by a timeout.
"""
import json
import os
import signal
import stat
import subprocess
import time

import numpy as np
import pytest

from launch import ENV, command, run, start

pytestmark = pytest.mark.e2e

SGD = ["train", "--model", "linear", "--algorithm", "sgd", "--batch-size", "30",
       "--data", "synthetic:regression,n=3000,d=8", "--lr", "0.05", "--quiet"]


def bits(path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k].tobytes() for k in f.files}


def checkpoints(out) -> list[int]:
    return sorted(int(n[5:]) for n in os.listdir(out / "checkpoints") if n.startswith("step-"))


def test_another_run_into_the_same_out_is_refused_until_overwrite(tmp_path):
    out = tmp_path / "R"
    first = run(*SGD, "--steps", "60", "--checkpoint-every", "10", "--out", str(out), ranks=1, timeout=60)
    assert first.returncode == 0, first.stderr
    model = bits(out / "model.npz")
    other = [*SGD[:-3], "--lr", "0.01", "--quiet", "--checkpoint-every", "5", "--steps", "100", "--out", str(out)]
    refused = run(*other, ranks=1, timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "holds the outputs of another run" in refused.stderr
    assert all(way in refused.stderr for way in ("--resume auto", "a new --out", "--overwrite"))
    mixed = run(*other, "--resume", "auto", ranks=1, timeout=60)
    assert mixed.returncode == 2 and "resume with the same --lr" in mixed.stderr
    assert bits(out / "model.npz") == model and checkpoints(out) == [40, 50, 60]
    replaced = run(*other, "--overwrite", ranks=1, fault=["signal", "0", "15"], timeout=60)
    assert replaced.returncode == 75, replaced.stderr
    assert "removed" in replaced.stderr and not (out / "model.npz").exists()
    assert checkpoints(out) == [10, 15, 16]  # pruning kept this run's, and only this run's, newest
    resumed = run(*other, "--resume", "auto", ranks=1, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert "step-000000016 (step 16)" in resumed.stderr


def test_a_checkpoint_past_the_last_step_is_refused(tmp_path):
    done = run(*SGD, "--steps", "60", "--checkpoint-every", "20", "--out", str(tmp_path), ranks=1, timeout=60)
    assert done.returncode == 0, done.stderr
    fewer = run(*SGD, "--steps", "40", "--checkpoint-every", "20", "--out", str(tmp_path), "--resume", "auto",
                ranks=1, timeout=60)
    assert fewer.returncode == 2 and "Traceback" not in fewer.stderr
    assert "is at step 60, past the 40 steps of this run: give --steps 60 or more" in fewer.stderr


def test_a_second_job_on_the_same_out_is_refused_and_a_dead_jobs_lock_taken_over(tmp_path):
    pidfile = tmp_path / "pid"
    out = tmp_path / "R"
    job = start(*SGD, "--steps", "100000", "--checkpoint-every", "50", "--out", str(out), ranks=2,
                fault=["pidfile", "0", "20"], env={"FAULT_PIDFILE": str(pidfile)})
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = run(*SGD, "--steps", "100", "--out", str(out), "--resume", "auto", ranks=1, timeout=60)
        assert second.returncode == 2
        assert f"in use by another mpitrain job (pid {pidfile.read_text()} on host" in second.stderr
        os.kill(int(pidfile.read_text()), signal.SIGKILL)  # rank 0, which holds the lock
        job.wait(timeout=20)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert (out / "mpitrain.lock").exists()
    after = run(*SGD, "--steps", "30", "--out", str(out), "--overwrite", ranks=1, timeout=60)
    assert after.returncode == 0, after.stderr
    assert "took over the lock" in after.stderr and "has ended" in after.stderr
    assert not (out / "mpitrain.lock").exists()


def test_a_full_disk_while_logging_metrics_gives_one_message(tmp_path):
    done = run(*SGD, "--steps", "400", "--out", str(tmp_path), ranks=2, fault=["full-disk", "0", "150"], timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.count(f"cannot write {tmp_path / 'metrics.jsonl'}: No space left on device") == 1


def test_outputs_follow_the_umask(tmp_path):
    out = tmp_path / "R"
    job = command([*SGD, "--steps", "40", "--checkpoint-every", "20", "--out", str(out), "--trace",
                   str(tmp_path / "t.json")], ranks=1)
    done = subprocess.run(["sh", "-c", 'umask 027 && exec "$@"', "sh", *job], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **ENV})
    assert done.returncode == 0, done.stderr
    files = [out / n for n in ("model.npz", "metrics.jsonl", "summary.json", "run.json")]
    files += [tmp_path / "t.json", *(out / "checkpoints").glob("step-*/*")]
    assert {f.name: stat.S_IMODE(os.stat(f).st_mode) for f in files} == {f.name: 0o640 for f in files}


def test_outputs_never_overwrite_inputs_or_the_model(tmp_path):
    out = tmp_path / "R"
    done = run(*SGD, "--steps", "20", "--out", str(out), ranks=1, timeout=60)
    assert done.returncode == 0, done.stderr
    model = bits(out / "model.npz")
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{2 * i},{i % 3}\n" for i in range(30)))
    clobber = run(*SGD, "--steps", "20", "--out", str(tmp_path / "S"), "--trace", str(tmp_path / "S" / "model.npz"),
                  ranks=1)
    data = run(*SGD[:7], "--data", str(csv), *SGD[9:], "--steps", "20", "--out", str(tmp_path / "T"),
               "--trace", str(csv), ranks=1)
    trace_is_own = run(*SGD, "--steps", "20", "--out", str(tmp_path / "U"), "--trace",
                       str(tmp_path / "U" / "summary.json"), ranks=1)
    predict = run("predict", "--model", str(out / "model.npz"), "--data", "synthetic:regression,n=50,d=8",
                  "--out", str(out / "model.npz"), ranks=1)
    for refused, what in ((clobber, "--trace"), (data, "--trace"), (trace_is_own, "--trace"), (predict, "--out")):
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert f"{what} " in refused.stderr and "is the same file as" in refused.stderr
    assert "is the same file as --data" in data.stderr and "is the same file as --model" in predict.stderr
    assert bits(out / "model.npz") == model and csv.read_text().startswith("a,b,y\n")
    assert not (tmp_path / "S").exists()  # refused before anything was written
