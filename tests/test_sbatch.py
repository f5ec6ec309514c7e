"""scripts/slurm/train.sbatch run by bash with stand-ins for srun, squeue and scontrol."""
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "slurm", "train.sbatch")
FAKES = {
    # srun: log its arguments; FAKE_SRUN=stop writes a newer checkpoint and exits 75, stall exits 75
    # without one, done exits 0, early writes its pid to $FAKE_SRUN_PIDFILE and dies of USR1 (as a task
    # does before mpitrain blocks the signal: status 128 + 10).
    "srun": 'echo "srun $*" >> "$LOG"\n'
            'case "$FAKE_SRUN" in\n'
            '  stop) mkdir -p "$MPITRAIN_RUN_DIR/checkpoints"; echo step-000000020 > "$MPITRAIN_RUN_DIR/checkpoints/latest"; exit 75;;\n'
            '  stall) exit 75;;\n'
            '  early) echo $$ > "$FAKE_SRUN_PIDFILE"; trap "exit 138" USR1; while :; do sleep 0.1; done;;\n'
            'esac\n',
    # squeue: FAKE_SIGNAL_PIDFILE makes it send USR1 to the pid written there, as Slurm would.
    "squeue": 'if [ -n "$FAKE_SIGNAL_PIDFILE" ]; then\n'
              '  while [ ! -s "$FAKE_SIGNAL_PIDFILE" ]; do sleep 0.1; done; kill -USR1 "$(cat "$FAKE_SIGNAL_PIDFILE")"\n'
              'fi\n'
              'echo "$FAKE_LIMIT"\n',
    "scontrol": 'echo "scontrol $*" >> "$LOG"\n',
}


@pytest.fixture
def job(tmp_path):
    """Start the script as Slurm would; returns a function(srun=, limit=, restart=, **env) -> Popen."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    run_dir = tmp_path / "run"

    def start(srun="done", limit="30:00", restart=0, checkpoint=None, **env):
        if checkpoint:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (run_dir / "checkpoints" / "latest").write_text(checkpoint + "\n")
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MPITRAIN_", "SLURM_"))}
        full = {**inherited, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(tmp_path / "log"),
                "FAKE_SRUN": srun, "FAKE_LIMIT": limit, "SLURM_JOB_ID": "42", "SLURM_RESTART_COUNT": str(restart),
                "SLURM_NTASKS": "4", "SLURM_JOB_NUM_NODES": "1", "SLURM_SUBMIT_DIR": str(tmp_path),
                "MPITRAIN_VENV": sys.prefix, "MPITRAIN_RUN_DIR": str(run_dir), **env}
        return subprocess.Popen(["bash", SCRIPT], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def log():
        path = tmp_path / "log"
        return path.read_text() if path.exists() else ""

    start.log = log
    return start


def finish(proc):
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def test_srun_gets_the_pmi_of_the_loaded_mpi_and_kill_on_bad_exit(job):
    from mpi4py import MPI

    status, out = finish(job())
    assert status == 0, out
    wanted = "pmix" if "Open MPI" in MPI.Get_library_version() else "pmi2"
    assert f"srun --mpi={wanted} --kill-on-bad-exit=1 " in job.log()
    status, out = finish(job(MPITRAIN_SRUN_MPI="pmi2"))
    assert job.log().splitlines()[-1].startswith("srun --mpi=pmi2 ")  # the override wins


def test_a_stop_with_progress_requeues(job):
    status, out = finish(job(srun="stop", restart=1, checkpoint="step-000000010"))
    assert status == 75 and "scontrol requeue 42" in job.log(), out


def test_a_requeued_job_that_made_no_progress_is_not_requeued_again(job):
    status, out = finish(job(srun="stall", restart=1, checkpoint="step-000000010"))
    assert status == 75 and "made no progress" in out, out
    assert "scontrol requeue" not in job.log()


def test_a_time_limit_not_well_above_the_signal_lead_is_refused(job):
    status, out = finish(job(limit="8:00"))
    assert status == 2 and "less than the 300s signal lead" in out, out
    assert "srun" not in job.log()
    status, out = finish(job(limit="15:00"))
    assert status == 0 and "warning: --time 15:00" in out, out


def test_a_signal_before_srun_starts_requeues_instead_of_killing_the_job(job, tmp_path):
    pidfile = tmp_path / "pid"
    proc = job(FAKE_SIGNAL_PIDFILE=str(pidfile))  # USR1 while the script asks squeue for its time limit
    pidfile.write_text(str(proc.pid))
    status, out = finish(proc)
    assert status == 75, out
    assert "scontrol requeue 42" in job.log() and "srun" not in job.log()


def test_tasks_killed_by_the_forwarded_signal_before_mpitrain_catches_it_requeue(job, tmp_path):
    pidfile = tmp_path / "srun.pid"
    proc = job(srun="early", checkpoint="step-000000010", FAKE_SRUN_PIDFILE=str(pidfile))
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)  # Slurm's time-limit signal to the batch shell, which forwards it to srun
    status, out = finish(proc)
    assert status == 75 and "a resumable stop" in out, out
    assert "scontrol requeue 42" in job.log()
