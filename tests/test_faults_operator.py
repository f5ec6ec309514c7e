"""Faults an operator meets on a shared cluster: one run per directory, full disks, file modes, outputs.

Each job is small (one or two ranks, a few hundred steps) and bounded by a timeout.
"""
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from launch import ENV, command, run, signal_once_training, start

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
    first = run(*SGD, "--steps", "60", "--checkpoint-every", "10", "--out", str(out), ranks=1, timeout=120)
    assert first.returncode == 0, first.stderr
    model = bits(out / "model.npz")
    other = [*SGD[:-3], "--lr", "0.01", "--quiet", "--checkpoint-every", "5", "--steps", "100", "--out", str(out)]
    refused = run(*other, ranks=1, timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "holds the outputs of another run" in refused.stderr
    assert all(way in refused.stderr for way in ("--resume auto", "a new --out", "--overwrite"))
    mixed = run(*other, "--resume", "auto", ranks=1, timeout=120)
    assert mixed.returncode == 2 and "resume with the same --lr" in mixed.stderr
    assert bits(out / "model.npz") == model and checkpoints(out) == [40, 50, 60]
    replaced = run(*other, "--overwrite", ranks=1, fault=["signal", "0", "15"], timeout=120)
    assert replaced.returncode == 75, replaced.stderr
    assert "removed" in replaced.stderr and not (out / "model.npz").exists()
    assert checkpoints(out) == [10, 15, 16]  # pruning kept this run's, and only this run's, newest
    resumed = run(*other, "--resume", "auto", ranks=1, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "step-000000016 (step 16)" in resumed.stderr


def test_a_checkpoint_past_the_last_step_is_refused(tmp_path):
    done = run(*SGD, "--steps", "60", "--checkpoint-every", "20", "--out", str(tmp_path), ranks=1, timeout=120)
    assert done.returncode == 0, done.stderr
    fewer = run(*SGD, "--steps", "40", "--checkpoint-every", "20", "--out", str(tmp_path), "--resume", "auto",
                ranks=1, timeout=120)
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
        second = run(*SGD, "--steps", "100", "--out", str(out), "--resume", "auto", ranks=1, timeout=120)
        assert second.returncode == 2
        assert f"in use by another mpitrain job (pid {pidfile.read_text()} on host" in second.stderr
        os.kill(int(pidfile.read_text()), signal.SIGKILL)  # rank 0, which holds the lock
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert (out / "mpitrain.lock").exists()
    after = run(*SGD, "--steps", "30", "--out", str(out), "--overwrite", ranks=1, timeout=120)
    assert after.returncode == 0, after.stderr
    assert "took over the lock" in after.stderr and "has ended" in after.stderr
    assert not (out / "mpitrain.lock").exists()


def test_a_full_disk_while_logging_metrics_gives_one_message(tmp_path):
    done = run(*SGD, "--steps", "400", "--out", str(tmp_path), ranks=2, fault=["full-disk", "0", "150"], timeout=120)
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
    done = run(*SGD, "--steps", "20", "--out", str(out), ranks=1, timeout=120)
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
    predict = run("predict", "--from", str(out / "model.npz"), "--data", "synthetic:regression,n=50,d=8",
                  "--out", str(out / "model.npz"), ranks=1)
    for refused, what in ((clobber, "--trace"), (data, "--trace"), (trace_is_own, "--trace"), (predict, "--out")):
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert f"{what} " in refused.stderr and "is the same file as" in refused.stderr
    assert "is the same file as --data" in data.stderr and "is the same file as the model" in predict.stderr
    assert bits(out / "model.npz") == model and csv.read_text().startswith("a,b,y\n")
    assert not (tmp_path / "S").exists()  # refused before anything was written


def wait_for(path, job, seconds=60):
    deadline = time.monotonic() + seconds
    while not path.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def act_while_loading(job, pidfile, act) -> str:
    """Once the faulty rank has written its pid (it is opening --data), ``act``; then the job's stderr."""
    try:
        wait_for(pidfile, job)
        time.sleep(0.5)  # the ranks are opening --data
        act()
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    return job.stderr.read()


@pytest.mark.parametrize("module", ["mpitrain.guard", "mpi4py.MPI"])
def test_a_stop_signal_before_mpi_starts_exits_resumably(tmp_path, module):
    # The signal arrives while the command imports the signal guard (its first import after the
    # signals are blocked) or mpi4py.MPI, the import that initialises MPI.
    code = ("import os, runpy, signal, sys\n"
            "class SignalAtMPIInit:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name == {module!r}:\n"
            "            os.kill(os.getpid(), signal.SIGUSR1)\n"
            "sys.meta_path.insert(0, SignalAtMPIInit())\n"
            "sys.argv = ['mpitrain', *sys.argv[1:]]\n"
            "runpy.run_module('mpitrain', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code, *SGD, "--steps", "10", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **ENV})
    assert done.returncode == 75, done.stderr
    assert done.stderr.count("stopped by SIGUSR1 during start-up: nothing was trained yet; the same command "
                             "with --resume auto starts it") == 1


@pytest.mark.parametrize("signals", [[signal.SIGUSR1], [signal.SIGTERM, signal.SIGINT]])
def test_stop_signals_while_loading_exit_75_saying_nothing_was_trained(tmp_path, signals):
    fifo = tmp_path / "blocked.csv"
    os.mkfifo(fifo)  # opening it blocks until a writer comes: loading never ends by itself
    out, pidfile = tmp_path / "R", tmp_path / "pid"
    job = start(*SGD[:7], "--data", str(fifo), *SGD[9:], "--steps", "10", "--out", str(out), ranks=2,
                fault=["pidfile-loading", "0", "0"], env={"FAULT_PIDFILE": str(pidfile)})

    def send() -> None:
        for sig in signals:
            job.send_signal(sig)
            time.sleep(0.02)

    err = act_while_loading(job, pidfile, send)
    assert job.returncode == 75, err
    assert err.count(f"stopped by {signals[0].name} on rank 0 during start-up: nothing was trained yet") == 1
    assert "Traceback" not in err and not (out / "mpitrain.lock").exists() and not (out / "checkpoints").exists()


def test_a_stop_signal_to_another_rank_alone_while_loading_is_named(tmp_path):
    fifo = tmp_path / "blocked.csv"
    os.mkfifo(fifo)
    out, pidfile = tmp_path / "R", tmp_path / "pid"
    job = start(*SGD[:7], "--data", str(fifo), *SGD[9:], "--steps", "10", "--out", str(out), ranks=2,
                fault=["pidfile-loading", "1", "0"], env={"FAULT_PIDFILE": str(pidfile)})
    # rank 1 only, a process this test started
    err = act_while_loading(job, pidfile, lambda: os.kill(int(pidfile.read_text()), signal.SIGUSR1))
    assert job.returncode == 75, err
    assert err.count("mpitrain: stopped by SIGUSR1 on rank 1 during start-up: nothing was trained yet") == 1, err
    assert err.count("mpitrain:") == 1 and not (out / "checkpoints").exists()


@pytest.mark.parametrize("fault", [None, ["stop-loading", "1", "0"]])
def test_the_watchdog_guards_start_up(tmp_path, fault):
    data = "synthetic:regression,n=300,d=4"
    if fault is None:  # every rank blocks opening a FIFO
        data = str(tmp_path / "blocked.csv")
        os.mkfifo(data)
    done = run(*SGD[:7], "--data", data, *SGD[9:], "--steps", "10", "--watchdog-seconds", "2",
               "--out", str(tmp_path / "R"), ranks=2, fault=fault, timeout=120)
    assert done.returncode == 4, done.stderr
    assert "start-up (loading and preparing the data, claiming --out, reading a checkpoint) has taken more than 2s" \
        in done.stderr
    assert not (tmp_path / "R" / "mpitrain.lock").exists()


@pytest.mark.parametrize("signals, status", [("INT", 75), ("TERM,INT", 75), ("INT,INT", 130)])
def test_ctrl_c_once_stops_gracefully_and_twice_aborts(tmp_path, signals, status):
    done = run(*SGD, "--steps", "300", "--checkpoint-every", "100", "--out", str(tmp_path), ranks=2,
               fault=["signal", "0", "150"], env={"FAULT_SIGNALS": signals}, timeout=120)
    assert done.returncode == status, done.stderr
    assert checkpoints(tmp_path) == ([100, 151] if status == 75 else [100])
    if status == 130:
        assert done.stderr.count("interrupted twice (SIGINT): aborting at once, without a checkpoint") == 1


def test_ctrl_c_forwarded_by_mpiexec_stops_the_job_resumably(tmp_path):
    job = start(*SGD, "--steps", "1000000", "--out", str(tmp_path), ranks=2)
    signal_once_training(job, tmp_path, signal.SIGINT)
    assert job.returncode == 75, job.stderr.read()
    assert (tmp_path / "checkpoints" / "latest").exists()
