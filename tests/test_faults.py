"""Faults in a running job: the job ends quickly with one message, or stops resumably.

Each test bounds its job with a timeout, so a hang fails the test instead of blocking it.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from launch import ENV, mpiexec, run, signal_once_training, start

pytestmark = pytest.mark.e2e

SGD = ["train", "--model", "linear", "--algorithm", "sgd", "--batch-size", "30",
       "--data", "synthetic:regression,n=3000,d=8", "--lr", "0.05", "--quiet"]


def model_bits(path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k].tobytes() for k in f.files}


@pytest.mark.parametrize("rank", [0, 1])
def test_exception_on_one_rank_ends_the_job_naming_the_rank(tmp_path, rank):
    # Without the abort, the other ranks would wait in their collective until the watchdog (600 s):
    # ending well inside the 300 s bound, with no watchdog report, means the abort ended them.
    done = run(*SGD, "--steps", "100000", "--watchdog-seconds", "600", "--out", str(tmp_path), ranks=3,
               fault=["raise", str(rank), "3"], timeout=300)
    assert done.returncode != 0 and "watchdog" not in done.stderr
    assert f"unexpected error on rank {rank} of 3" in done.stderr
    assert done.stderr.count("RuntimeError: injected fault at step 3") == 1


def test_killed_rank_ends_the_job(tmp_path):
    # As above: the survivors would otherwise wait for the watchdog (600 s), past the 300 s bound.
    pidfile = tmp_path / "pid"
    job = start(*SGD, "--steps", "100000", "--watchdog-seconds", "600", "--out", str(tmp_path / "run"), ranks=3,
                fault=["pidfile", "1", "3"], env={"FAULT_PIDFILE": str(pidfile)})
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)  # rank 1, a process this test started
        _, err = job.communicate(timeout=300)
        assert job.returncode != 0 and "watchdog" not in err, err
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()


# Each rank runs under a shell that outlives a rank killed by SIGKILL, as plain srun (without
# --kill-on-bad-exit) keeps the step alive: Hydra then does not end the other ranks. The shell
# forwards SIGUSR1 to its rank, as srun does.
LINGER = ('trap \'kill -USR1 $child 2>/dev/null\' USR1; "$@" & child=$!; '
          'while :; do wait $child; status=$?; kill -0 $child 2>/dev/null || break; done; '
          'if [ $status -eq 137 ]; then trap "" USR1; sleep 300; fi; exit $status')


@pytest.mark.parametrize("hosts", ["same", "apart"])
def test_a_lost_rank_that_the_launcher_does_not_notice_ends_the_job_promptly(tmp_path, hosts):
    """A rank killed while the launcher keeps its task alive. On the same host its pid is gone: the job
    ends naming it. Across hosts (simulated), a stop requested then cannot be voted: the job ends after
    the stop wait (3 s here). Either way well before --watchdog-seconds (100)."""
    from launch import mpiexec
    from mpitrain import guard

    pidfile, out = tmp_path / "pid", tmp_path / "run"
    args = [*SGD, "--steps", "100000", "--watchdog-seconds", "100", "--out", str(out)]
    job = subprocess.Popen([*mpiexec(), "-n", "3", "sh", "-c", LINGER, "sh", sys.executable,
                            os.path.join(os.path.dirname(__file__), "fault_runner.py"), "pidfile", "1", "3", "--",
                            *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=guard.launch_env({**os.environ, **ENV, "FAULT_PIDFILE": str(pidfile),
                                                 "FAULT_HOSTS": hosts}))
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()) and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGKILL)  # rank 1, a process this test started
        if hosts == "apart":
            time.sleep(0.5)
            job.send_signal(signal.SIGUSR1)  # a stop (Slurm's time limit, say), forwarded to the ranks left
        _, err = job.communicate(timeout=90)  # the watchdog would end it after 100 s
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode != 0 and "watchdog" not in err, err
    if hosts == "same":
        assert err.count("is gone (killed, or crashed)") == 1, err
        assert f"mpitrain: rank 0: rank 1 (pid {pid}) on host " in err, err
    else:
        # Each rank left bounds the vote on its own; the first to reach the bound speaks (any of 0 and 2)
        assert re.search(r"mpitrain: rank [02]: a stop was requested, but step ", err), err
        assert "another rank is gone or stuck, so the ranks cannot vote to stop together" in err, err


def test_watchdog_ends_a_hung_job_and_tells_who_never_arrived(tmp_path):
    # Rank 1 sleeps for an hour: only the watchdog can end the job inside the 300 s bound.
    done = run(*SGD, "--steps", "1000", "--watchdog-seconds", "2", "--out", str(tmp_path), ranks=2,
               fault=["hang", "1", "3"], timeout=300)
    assert done.returncode != 0
    assert "watchdog on rank 1: step 3" in done.stderr and "still computing" in done.stderr
    assert "watchdog on rank 0: step 3" not in done.stderr or "waiting in a collective" in done.stderr


def test_a_rank_that_never_reaches_mpi_init_does_not_hang_the_others(tmp_path):
    """Rank 0 stalls before MPI starts (a lost node at start-up): rank 1 waits inside MPI_Init, which
    holds the GIL, so only the start-up watchdog's faulthandler backstop (1.5 x 2 s + 15 s) can end it."""
    script = tmp_path / "stall.py"
    script.write_text("import os, sys, time\n"
                      "sys.argv[0] = 'mpitrain'\n"
                      "if os.environ.get('PMI_RANK') == '0':\n"
                      "    time.sleep(3600)\n"
                      "import mpitrain.cli\n"
                      "sys.exit(mpitrain.cli.main(sys.argv[1:]))\n")
    done = subprocess.run([*mpiexec(), "-n", "2", sys.executable, str(script), *SGD, "--steps", "5",
                           "--watchdog-seconds", "2", "--out", str(tmp_path / "r")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **ENV})
    assert done.returncode != 0
    assert "Timeout" in done.stderr and "PMPI_Init" not in done.stdout  # faulthandler's report of the stuck rank
    assert not (tmp_path / "r").exists()  # nothing was written


def test_data_missing_on_one_rank_gives_one_message(tmp_path):
    done = run(*SGD, "--steps", "10", "--out", str(tmp_path), ranks=3, fault=["missing-data", "2", "0"], timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("rank 2: data '/nonexistent/rank-data.csv' does not exist") == 1
    assert "Traceback" not in done.stderr


def test_divergence_stops_with_a_message_and_keeps_the_checkpoint(tmp_path):
    done = run(*SGD[:-3], "--lr", "1e6", "--steps", "200", "--checkpoint-every", "1", "--keep-checkpoints", "1",
               "--out", str(tmp_path), timeout=60)
    assert done.returncode == 2 and done.stderr.count("diverged") == 1
    from mpitrain import checkpoint

    found, warnings = checkpoint.load_latest(str(tmp_path / "checkpoints"))
    assert found is not None and not warnings and np.isfinite(found.arrays["theta"]).all()


@pytest.mark.parametrize("algorithm", [["--algorithm", "sgd"], ["--algorithm", "local-sgd", "--sync-every", "7"],
                                       ["--algorithm", "sgd", "--compress", "bf16"],
                                       ["--algorithm", "sgd", "--overlap"]])
def test_stop_signal_checkpoints_and_resume_is_bitwise_identical(tmp_path, algorithm):
    args = [*SGD, *algorithm, "--steps", "300", "--checkpoint-every", "100"]
    full = run(*args, "--out", str(tmp_path / "full"), timeout=60)
    assert full.returncode == 0, full.stderr
    stopped = run(*args, "--out", str(tmp_path / "cut"), fault=["signal", "1", "150"], timeout=60)
    assert stopped.returncode == 75, stopped.stderr
    assert stopped.stderr.count("mpitrain: stopped by SIGUSR1 on rank 1 after step 151 of 300; checkpoint ") == 1
    assert not (tmp_path / "cut" / "model.npz").exists()
    resumed = run(*args, "--out", str(tmp_path / "cut"), "--resume", "auto", timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    assert model_bits(tmp_path / "cut" / "model.npz") == model_bits(tmp_path / "full" / "model.npz")
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("wire", [[], ["--compress", "bf16"]])
def test_resume_on_another_number_of_ranks_reaches_the_same_loss(tmp_path, wire):
    args = [*SGD, "--steps", "600", *wire]
    full = run(*args, "--out", str(tmp_path / "full"), ranks=2, timeout=60)
    stopped = run(*args, "--out", str(tmp_path / "cut"), ranks=2, fault=["signal", "0", "200"], timeout=60)
    assert full.returncode == 0 and stopped.returncode == 75, stopped.stderr
    resumed = run(*args, "--out", str(tmp_path / "cut"), "--resume", "auto", ranks=3, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert ("written by 2 ranks: compression residuals start at zero" in resumed.stderr) == bool(wire)
    loss = [json.loads((tmp_path / d / "summary.json").read_text())["final_train_loss"] for d in ("full", "cut")]
    # Both runs end at the noise floor (loss ~ noise^2/2 = 0.005); other batches change it by < 5%.
    assert loss[1] == pytest.approx(loss[0], rel=0.05)


def test_signal_forwarded_by_mpiexec_stops_the_job_resumably(tmp_path):
    job = start(*SGD, "--steps", "1000000", "--out", str(tmp_path), ranks=2)
    signal_once_training(job, tmp_path, signal.SIGUSR1, settle=0.2, wait=30)  # after an epoch (100 steps)
    assert job.returncode == 75, job.stderr.read()
    assert (tmp_path / "checkpoints" / "latest").exists()


def test_exception_in_a_python_script_aborts_the_job(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import mpitrain as mt\n"
        "comm = mt.world()\n"
        "data = mt.load('synthetic:regression,n=500,d=3', comm)\n"
        "model = mt.create_model('linear', 3)\n"
        "def log(record):\n"
        "    if comm.rank == 1 and record['step'] == 3:\n"
        "        raise ValueError('user callback failed')\n"
        "mt.fit(model, data, comm, 'gd', mt.Settings(steps=100000, lr=0.1), log=log)\n"
    )
    # Without the abort the other ranks would wait in their collective for ever (fit has no watchdog):
    # ending inside the 300 s bound means the abort ended them.
    done = subprocess.run([*mpiexec(), "-n", "3", sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **ENV})
    assert done.returncode != 0
    assert "unexpected error on rank 1 of 3" in done.stderr
    assert done.stderr.count("ValueError: user callback failed") == 1


@pytest.mark.parametrize("optimizer, dtype", [("adam", "float64"), ("nesterov", "float64"), ("adam", "float32")])
def test_resume_restores_the_optimizer_state_bitwise(tmp_path, optimizer, dtype):
    args = [*SGD[:-3], "--lr", "0.01", "--quiet", "--dtype", dtype, "--optimizer", optimizer, "--steps", "200"]
    full = run(*args, "--out", str(tmp_path / "full"), timeout=60)
    stopped = run(*args, "--out", str(tmp_path / "cut"), fault=["signal", "1", "90"], timeout=60)
    assert full.returncode == 0 and stopped.returncode == 75, stopped.stderr
    resumed = run(*args, "--out", str(tmp_path / "cut"), "--resume", "auto", timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert model_bits(tmp_path / "cut" / "model.npz") == model_bits(tmp_path / "full" / "model.npz")
    other = run(*args[:-4], "--optimizer", "sgd", "--steps", "200", "--out", str(tmp_path / "cut"),
                "--resume", "auto", timeout=60)
    assert other.returncode == 2 and "resume with the same --optimizer" in other.stderr
