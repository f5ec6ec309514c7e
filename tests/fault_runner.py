"""Runs `python -m mpitrain` with one fault injected, for the fault-handling tests.

usage: fault_runner.py KIND RANK STEP -- ARGS...
(KIND: raise, hang, signal, pidfile, missing-data, full-disk, stop-loading, pidfile-loading)

The fault happens on rank RANK when it begins step STEP (counted from 0): raise an exception,
hang (sleep), send itself SIGUSR1, or write its pid to $FAULT_PIDFILE and then slow down so the
test can kill it. missing-data gives rank RANK a --data path that does not exist. full-disk
points every open file descriptor of metrics.jsonl at /dev/full, so the next write fails with
ENOSPC as on a full disk. stop-loading makes rank RANK stop itself with SIGSTOP as it starts
loading --data; pidfile-loading makes it write its pid to $FAULT_PIDFILE then.
FAULT_HOSTS=apart makes every rank seem to run on a host of its own (no peer pids to watch),
with the least wait for a stop vote set to $FAULT_STOP_WAIT seconds (default 3).
"""
import os
import signal
import sys
import time

sys.argv[0] = "mpitrain"  # run as the `mpitrain` script does: stop signals are caught before MPI starts
import mpitrain.cli  # noqa: E402
from mpitrain.commands import train as train_command  # noqa: E402
from mpitrain._mpi import init  # noqa: E402
from mpitrain.supervisor import Supervisor  # noqa: E402

MPI = init()  # as the command starts it: its thread level, and the signal handlers after MPI's

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
        if kind == "signal":  # $FAULT_SIGNALS: the signals to send, e.g. TERM,INT (default USR1)
            for name in os.environ.get("FAULT_SIGNALS", "USR1").split(","):
                os.kill(os.getpid(), getattr(signal, "SIG" + name))
                time.sleep(0.02)
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
if os.environ.get("FAULT_HOSTS") == "apart":  # each rank seems alone on its host: peers are not watched by pid
    import mpitrain.peers

    mpitrain.peers.host_key = lambda: me
    mpitrain.peers.STOP_WAIT_MIN = float(os.environ.get("FAULT_STOP_WAIT", "3"))
if kind in ("stop-loading", "pidfile-loading") and me == rank:
    real_load = train_command.load

    def faulty_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kind == "stop-loading":
            os.kill(os.getpid(), signal.SIGSTOP)
        else:
            with open(os.environ["FAULT_PIDFILE"], "w") as f:
                f.write(str(os.getpid()))
        return real_load(*args, **kwargs)

    train_command.load = faulty_load
if kind == "missing-data" and me == rank:
    argv[argv.index("--data") + 1] = "/nonexistent/rank-data.csv"
sys.exit(mpitrain.cli.main(argv))
