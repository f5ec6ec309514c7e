"""`mpitrain doctor`: each check's verdict on made-up rank facts, and the command under mpiexec."""
import os

import pytest

from launch import run
from mpitrain import doctor

FACTS = {"host": "n1", "ranks_on_node": 4, "cores": 8, "threads": 2, "umask": 0o022, "write_error": "",
         "sizes": {"PMI_SIZE": "4"}}
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_STEPID", "SLURM_MPI_TYPE", "MPITRAIN_BATCH_FORWARDS",
              "MPITRAIN_TIME_LIMIT", "MPITRAIN_SIGNAL_LEAD", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE",
              "PMI_SIZE", "PMIX_SIZE", "MPIR_CVAR_CH4_PROGRESS_THROTTLE")


@pytest.fixture
def clean(monkeypatch):
    for var in SLURM_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_launch_check(clean):
    assert doctor.check_launch(4, [FACTS] * 4, "MPICH Version: 5.0.2")[0] == doctor.PASS
    status, text = doctor.check_launch(4, [FACTS] * 3 + [{**FACTS, "sizes": {"PMI_SIZE": "2"}}], "MPICH")
    assert status == doctor.FAIL and "differ from the world of 4" in text
    clean.setenv("SLURM_STEP_NUM_TASKS", "4")
    status, text = doctor.check_launch(1, [FACTS], "Open MPI v4.1.4")
    assert status == doctor.FAIL and "srun --mpi=pmix" in text


def test_threads_check(clean):
    assert doctor.check_threads([FACTS] * 4) == (doctor.PASS, "n1: 4 rank(s) x 2 BLAS thread(s) on 8 core(s)")
    status, text = doctor.check_threads([FACTS, {**FACTS, "host": "n2", "threads": 4}])
    assert status == doctor.WARN and text.startswith("n2:") and "OMP_NUM_THREADS=2" in text
    status, text = doctor.check_threads([{**FACTS, "ranks_on_node": 16, "threads": 1}])
    assert status == doctor.WARN and "MPIR_CVAR_CH4_PROGRESS_THROTTLE=true" in text


def test_slurm_checks(clean):
    assert doctor.check_slurm_pmi("MPICH") is None and doctor.check_time_limit() is None  # not under Slurm
    clean.setenv("SLURM_JOB_ID", "7")
    clean.setenv("SLURM_STEP_ID", "0")
    clean.setenv("SLURM_MPI_TYPE", "none")
    status, text = doctor.check_slurm_pmi("MPICH Version: 5.0.2")
    assert status == doctor.FAIL and "use srun --mpi=pmi2" in text
    clean.setenv("SLURM_MPI_TYPE", "pmix_v4")
    assert doctor.check_slurm_pmi("Open MPI v4.1.4")[0] == doctor.PASS
    assert doctor.check_slurm_signals()[0] == doctor.WARN
    clean.setenv("MPITRAIN_BATCH_FORWARDS", "USR1")
    assert doctor.check_slurm_signals()[0] == doctor.PASS
    for limit, verdict in ((500, doctor.FAIL), (900, doctor.WARN), (1800, doctor.PASS)):
        clean.setenv("MPITRAIN_TIME_LIMIT", str(limit))
        assert doctor.check_time_limit()[0] == verdict, limit
    clean.setenv("MPITRAIN_SIGNAL_LEAD", "60")
    assert doctor.check_time_limit()[0] == doctor.PASS


def test_out_check():
    assert doctor.check_out("o", [FACTS] * 2)[0] == doctor.PASS
    status, text = doctor.check_out("o", [FACTS, {**FACTS, "write_error": "Permission denied"}])
    assert status == doctor.WARN and "rank 1 on n1: Permission denied" in text
    assert doctor.check_out("o", [{**FACTS, "write_error": "Read-only file system"}])[0] == doctor.FAIL
    assert doctor.check_out("o", [{**FACTS, "umask": 0o277}])[0] == doctor.FAIL


def test_doctor_under_mpiexec(tmp_path):
    done = run("doctor", "--out", str(tmp_path / "out"), "--params", "1000", "--seconds", "0.2", ranks=2, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("mpitrain doctor: 2 rank(s) on 1 node(s)")
    verdicts = {line.split()[1]: line.split()[0] for line in lines[1:]}
    assert verdicts["launch"] == verdicts["out"] == verdicts["allreduce"] == "PASS", done.stdout
    assert "auto picks" in done.stdout and os.path.isdir(tmp_path / "out")
    assert not os.listdir(tmp_path / "out")  # the probe files are gone
    done = run("doctor", "--out", "/proc/no-such-dir", "--params", "10", "--seconds", "0.01", ranks=2, timeout=60)
    assert done.returncode == 2 and "FAIL out" in done.stdout
