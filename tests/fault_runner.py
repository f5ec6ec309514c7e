"""Runs `python -m mpitrain` with one fault injected, for the fault-handling tests.

usage: fault_runner.py KIND RANK STEP -- ARGS...   (KIND: raise, hang, signal, pidfile, missing-data, full-disk)

The fault happens on rank RANK when it begins step STEP (counted from 0): raise an exception,
hang (sleep), send itself SIGUSR1, or write its pid to $FAULT_PIDFILE and then slow down so the
test can kill it. missing-data gives rank RANK a --data path that does not exist. full-disk
points every open file descriptor of metrics.jsonl at /dev/full, so the next write fails with
ENOSPC as on a full disk.
"""
import os
import signal
import sys
import time

from mpi4py import MPI

import mpitrain.cli
from mpitrain.supervisor import Supervisor

kind, rank, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
argv = sys.argv[sys.argv.index("--") + 1 :]
me = MPI.COMM_WORLD.Get_rank()
begin_step = Supervisor.begin_step


def faulty_begin_step(self, current):  # type: ignore[no-untyped-def]
    begin_step(self, current)
    if me == rank and current == step:
        if kind == "raise":
            raise RuntimeError(f"injected fault at step {current}")
        if kind == "hang":
            time.sleep(3600)
        if kind == "signal":
            os.kill(os.getpid(), signal.SIGUSR1)
        if kind == "pidfile":
            with open(os.environ["FAULT_PIDFILE"], "w") as f:
                f.write(str(os.getpid()))
        if kind == "full-disk":
            full = os.open("/dev/full", os.O_WRONLY)
            for fd in os.listdir("/proc/self/fd"):
                try:
                    target = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    continue
                if target.endswith("metrics.jsonl"):
                    os.dup2(full, int(fd))
    if kind == "pidfile" and current >= step:
        time.sleep(0.01)


Supervisor.begin_step = faulty_begin_step
if kind == "missing-data" and me == rank:
    argv[argv.index("--data") + 1] = "/nonexistent/rank-data.csv"
sys.exit(mpitrain.cli.main(argv))
