"""Starting `python -m mpitrain` (or a script) under mpiexec from a serial test."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mpitrain import guard
from mpitrain.bench import train as bench_train

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true", "MPIR_CVAR_POLLS_BEFORE_YIELD": "1", "OMP_NUM_THREADS": "1"}


def mpiexec() -> list[str]:
    """The launcher of the MPI that mpi4py uses (as ``bench train`` finds it); fail the test without one."""
    try:
        return bench_train.mpiexec()
    except SystemExit as exc:
        pytest.fail(str(exc))


def command(args: list[str], ranks: int, fault: list[str] | None = None) -> list[str]:
    """mpiexec -n RANKS python -m mpitrain ARGS, or through tests/fault_runner.py with FAULT."""
    program = ["-m", "mpitrain"] if fault is None else [os.path.join(HERE, "fault_runner.py"), *fault, "--"]
    return [*mpiexec(), "-n", str(ranks), sys.executable, *program, *args]


def run(*args: str, ranks: int = 2, timeout: float = 120, fault: list[str] | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run to completion; the result holds the exit status and the output."""
    return subprocess.run(command(list(args), ranks, fault), capture_output=True, text=True, timeout=timeout,
                          env=guard.launch_env({**os.environ, **ENV, **(env or {})}))


def start(*args: str, ranks: int = 2, fault: list[str] | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start in the background."""
    return subprocess.Popen(command(list(args), ranks, fault), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=guard.launch_env({**os.environ, **ENV, **(env or {})}))


def signal_once_training(job: subprocess.Popen, out, sig: int, settle: float = 0.0, wait: float = 60) -> None:
    """Once OUT/metrics.jsonl holds a record (training is under way), wait ``settle`` seconds, send
    ``sig`` to the launcher and wait up to ``wait`` seconds for the job to end; kill it if it has not."""
    try:
        metrics, deadline = out / "metrics.jsonl", time.monotonic() + 60
        while not (metrics.exists() and metrics.stat().st_size) and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(settle)
        job.send_signal(sig)
        job.wait(timeout=wait)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
