"""Stop signals, the watchdog and start-up warnings, on one process."""
import os
import signal
import subprocess
import sys

import pytest

from mpitrain import guard


def test_stop_signals_only_set_a_flag():
    stop = guard.StopRequest().install()
    try:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.requested and stop.signum == signal.SIGUSR1
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_watchdog_ends_a_stuck_step_with_its_stack():
    code = ("import time; from mpitrain.guard import Watchdog\n"
            "w = Watchdog(0.3, rank=5, in_collective=lambda: False, grace=0.0)\n"
            "w.arm(7)\n"
            "def stuck_here(): time.sleep(30)\n"
            "stuck_here()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert done.returncode == guard.EXIT_WATCHDOG
    assert "watchdog on rank 5: step 7 has taken more than 0.3s" in done.stderr
    assert "still computing" in done.stderr and "[rank 5]" in done.stderr and "stuck_here" in done.stderr


def test_watchdog_rearmed_every_step_does_not_fire():
    code = ("import time; from mpitrain.guard import Watchdog\n"
            "w = Watchdog(0.5, rank=0, in_collective=lambda: True)\n"
            "for step in range(10):\n    w.arm(step); time.sleep(0.1)\n"
            "w.stop(); time.sleep(0.7); print('done')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0 and done.stdout.strip() == "done"


LAUNCH_VARS = ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_PROCID", "OMPI_COMM_WORLD_SIZE",
               "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK", "PMIX_SIZE", "PMIX_RANK")


def test_a_launcher_that_started_more_tasks_than_the_mpi_world_is_a_mismatch(monkeypatch):
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    assert guard.launch_mismatch(1) == ("", True)
    monkeypatch.setenv("SLURM_NTASKS", "8")  # the batch shell of an 8-task job: one process is fine
    monkeypatch.setenv("SLURM_NPROCS", "8")
    assert guard.launch_mismatch(1) == ("", True)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")  # srun started 8 tasks
    message, first = guard.launch_mismatch(1)
    assert first and message.startswith("srun started 8 tasks (SLURM_STEP_NUM_TASKS=8) but MPI reports a world of 1")
    assert "srun --mpi=pmi2" in message and "srun --mpi=pmix" in message
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert guard.launch_mismatch(1)[1] is False  # only the first task needs to say it
    assert guard.launch_mismatch(8) == ("", True)  # the world matches the launcher: all is well
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    for size_var, launcher in (("OMPI_COMM_WORLD_SIZE", "Open MPI's mpirun"), ("PMI_SIZE", "A PMI launcher"),
                               ("PMIX_SIZE", "A PMIx launcher")):
        monkeypatch.setenv(size_var, "4")
        message, first = guard.launch_mismatch(1)
        assert message.startswith(f"{launcher}") and "started 4 tasks" in message and first
        assert "pip install --no-cache-dir --no-binary mpi4py mpi4py" in message
        monkeypatch.delenv(size_var)


def test_train_under_a_mismatched_launcher_exits_2_before_touching_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    args = [sys.executable, "-m", "mpitrain", "train", "--model", "linear", "--algorithm", "gd", "--lr", "0.1",
            "--steps", "2", "--data", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "out")]
    for extra, says in (({"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "0"}, True),
                        ({"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "2"}, False),
                        ({"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "0"}, True)):
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, env={**env, **extra})
        assert done.returncode == 2, done.stderr
        assert ("but MPI reports a world of 1" in done.stderr) is says, done.stderr
        assert "absent.csv" not in done.stderr  # nothing was read
        assert not (tmp_path / "out").exists()  # nothing was written
    done = subprocess.run([*args[:-4], "--data", "synthetic:regression,n=50", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60, env={**env, "SLURM_NTASKS": "4"})
    assert done.returncode == 0, done.stderr  # one process in a batch shell of a 4-task job trains


def test_nested_launches_drop_the_outer_jobs_variables():
    # as Open MPI's mpirun and singletons, and MPICH's Hydra, set them for their processes
    outer = {"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0", "OMPI_MCA_ess": "singleton",
             "OMPI_MCA_orte_hnp_uri": "1.0;tcp://127.0.0.1:1", "OMPI_MCA_pmix": "^s1,s2,cray,isolated",
             "OMPI_UNIVERSE_SIZE": "1", "PMIX_RANK": "0", "PMIX_NAMESPACE": "x", "PMIX_SERVER_URI41": "x",
             "PMI_RANK": "0", "PMI_SIZE": "1", "PMI_FD": "9"}
    own = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_btl": "self,vader",
           "HYDRA_LAUNCHER": "fork", "PATH": "/bin"}
    assert guard.launch_env({**outer, **own}) == own


def test_a_job_launched_from_an_mpi_process_is_a_job_of_its_own(tmp_path):
    """An Open MPI singleton puts its job in the C environment; `bench train` must not pass it on."""
    code = ("import subprocess, sys\n"
            "from mpi4py import MPI\n"
            "MPI.COMM_WORLD.Barrier()\n"
            "done = subprocess.run([sys.executable, '-m', 'mpitrain', 'bench', 'train', '--tiny', '--repeats', '1', "
            "'--workloads', 'linear-gd', '--impls', 'baseline', '--ranks', '1,2', '--out', sys.argv[1]], "
            "capture_output=True, text=True, timeout=250)\n"
            "print(done.returncode, done.stderr[-2000:])\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=280)
    assert done.stdout.startswith("0 "), done.stdout + done.stderr


def test_startup_warnings(monkeypatch):
    monkeypatch.delenv("MPIR_CVAR_CH4_PROGRESS_THROTTLE", raising=False)
    assert guard.startup_warnings(4, 1, 8) == []
    [threads] = guard.startup_warnings(4, 4, 8)
    assert "4 BLAS threads" in threads and "OMP_NUM_THREADS=2" in threads
    [cores] = guard.startup_warnings(4, 1, 2)
    assert "4 ranks share this node's 2 cores" in cores
    monkeypatch.setenv("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "true")
    assert guard.startup_warnings(4, 1, 2) == []


def test_each_rank_gets_its_share_of_the_cores_for_blas_unless_the_user_chose(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not any(p["user_api"] == "blas" for p in threadpoolctl.threadpool_info()):
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    original = threadpoolctl.threadpool_limits(limits=None)  # restores the limits afterwards
    try:
        for var in guard.THREAD_VARS:
            monkeypatch.delenv(var, raising=False)
        cores = guard.usable_cores()
        share = cores if cores < (os.cpu_count() or 1) else max(1, cores // 2)
        assert guard.limit_blas_threads(2) == share
        assert guard.blas_threads() == share
        assert guard.limit_blas_threads(4 * cores) == (cores if cores < (os.cpu_count() or 1) else 1)
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
        assert guard.limit_blas_threads(2) is None  # the user's choice stands
    finally:
        original.restore_original_limits()


class Left(Exception):
    """os._exit, caught."""


@pytest.fixture
def guard_exits(monkeypatch):
    def leave(status):
        raise Left(status)

    monkeypatch.setattr(guard.os, "_exit", leave)


def test_a_signal_during_start_up_cleans_up_and_exits_resumably(guard_exits, capsys):
    g = guard.SignalGuard()
    g.rank, cleaned = 0, []
    g.cleanups.append(lambda: cleaned.append(True))
    with pytest.raises(Left) as left:
        g.handle(signal.SIGTERM)
    assert left.value.args == (guard.EXIT_RESUMABLE,) and cleaned == [True]
    assert "stopped by SIGTERM during start-up: nothing was trained yet; the same command with --resume auto " \
           "starts it" in capsys.readouterr().err


@pytest.mark.parametrize("signals, status", [
    ((signal.SIGUSR1,), None), ((signal.SIGINT,), None),  # Ctrl-C once: a graceful stop
    ((signal.SIGTERM, signal.SIGINT), None), ((signal.SIGINT, signal.SIGTERM, signal.SIGUSR1), None),
    ((signal.SIGINT, signal.SIGINT), guard.EXIT_INTERRUPTED),  # Ctrl-C twice: abort
])
def test_signals_during_training_only_request_a_stop_unless_interrupted_twice(guard_exits, signals, status):
    g = guard.SignalGuard()
    stop = guard.StopRequest()
    g.listen(stop)
    try:
        for sig in signals:
            g.handle(sig)
    except Left as left:
        assert left.args == (status,)
    else:
        assert status is None
        g.listen(None)  # training over: a stop changes nothing any more
        g.handle(signal.SIGTERM)
    assert stop.signum == signals[0]  # the first signal is the one reported


def test_only_the_command_line_catches_signals_before_mpi_starts(monkeypatch):
    monkeypatch.setattr(guard.sys, "orig_argv", ["python", "-m", "pytest"], raising=False)
    monkeypatch.setattr(guard.sys, "argv", ["pytest"])
    assert not guard.launched_as_command() and guard.guard_signals() is None
    monkeypatch.setattr(guard.sys, "orig_argv", ["python", "-m", "mpitrain", "train"], raising=False)
    assert guard.launched_as_command()
    monkeypatch.setattr(guard.sys, "orig_argv", ["python", "/venv/bin/mpitrain", "train"], raising=False)
    monkeypatch.setattr(guard.sys, "argv", ["/venv/bin/mpitrain", "train"])
    assert guard.launched_as_command()
