"""Keeping a job from hanging or losing work: stop signals, a step watchdog, start-up checks.

Exit statuses of ``python -m mpitrain``: 0 done; 1 unexpected error (the job was aborted);
2 bad input or a failed run (one message from rank 0); 4 a step (or start-up) exceeded
--watchdog-seconds; 75 stopped by SIGUSR1, SIGTERM or SIGINT, resumable with ``--resume auto``;
130 a second SIGINT (Ctrl-C) aborted the job.

The command line (not a program that imports mpitrain) catches the stop signals from before MPI
starts: see SignalGuard.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from typing import Callable, Mapping, Optional

from . import _mpi
from ._startup import COMMAND_SIGNALS, launched_as_command

EXIT_WATCHDOG = 4
EXIT_RESUMABLE = 75  # EX_TEMPFAIL: try again later
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
# Launchers and the variables with which they tell each task the number of tasks and its rank.
# srun sets SLURM_STEP_NUM_TASKS in each task of a step (not in the batch shell, where one
# process with SLURM_NTASKS or SLURM_NPROCS > 1 is a legitimate serial run).
LAUNCHERS = (("srun", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID"),
             ("Open MPI's mpirun", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
             ("A PMI launcher (MPICH's mpiexec, Intel MPI)", "PMI_SIZE", "PMI_RANK"),
             ("A PMIx launcher", "PMIX_SIZE", "PMIX_RANK"))
EXIT_USAGE = 2
LONE_SIGNAL_GRACE = 2.0  # seconds a rank other than 0, signalled during start-up, waits before it says so


class StopRequest:
    """Records SIGUSR1/SIGTERM in a flag; the ranks act on it together at the next step.

    On the command line, the process's SignalGuard sets the flag (SIGINT too) instead.
    """

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict = {}

    def install(self) -> "StopRequest":
        """Catch the stop signals (main thread only); return self."""
        if _guard is not None:
            _guard.listen(self)
            return self
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum

    def uninstall(self) -> None:
        """Restore the previous handlers."""
        if _guard is not None:
            _guard.listen(None)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        """True once a stop signal has arrived on this rank."""
        return self.signum != 0


class SignalGuard:
    """The stop signals of the command line, from before MPI starts until the process ends.

    SIGUSR1, SIGTERM and SIGINT are blocked in the main thread before MPI (or NumPy's BLAS)
    starts threads, so every thread inherits the block, and one thread takes them with sigwait,
    whatever the main thread is doing (reading a file, waiting in a collective). Python handlers
    catch them too, for threads started earlier. What a signal does depends on the phase:

    - start-up (before training): run the cleanups, say that nothing was trained, exit 75 at once;
    - training (a StopRequest listens): the flag is set, the ranks stop together after the
      next step, write a checkpoint and exit 75; repeats change nothing;
    - finishing (training is over): the run completes (a stop is no longer needed).

    A second SIGINT (Ctrl-C twice) aborts at any moment with status 130, without a checkpoint.
    """

    def __init__(self) -> None:
        self.rank, self.size = (next((int(os.environ[v]) for v in names if os.environ.get(v, "").isdigit()), default)
                                for names, default in ((("PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"), 0),
                                                       (("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"), 1)))
        self.phase = "start-up"
        self.cleanups: list[Callable[[], None]] = []
        self._listener: Optional[StopRequest] = None
        self._interrupts = 0
        self._lock = threading.RLock()  # a Python handler may run while the main thread holds it

    def install(self) -> "SignalGuard":
        """Catch the command's signals in this process (main thread, before other threads start)."""
        self.catch()
        _mpi.after_init.append(self.catch)  # MPI's initialisation replaces SIGUSR1's handler with its own
        signal.pthread_sigmask(signal.SIG_BLOCK, COMMAND_SIGNALS)
        threading.Thread(target=self._wait, name="mpitrain-signals", daemon=True).start()
        return self

    def catch(self) -> None:
        """(Re-)install the Python handlers: MPI's initialisation replaces SIGUSR1's with its own."""
        for sig in COMMAND_SIGNALS:
            signal.signal(sig, lambda signum, frame: self.handle(signum))

    def restore(self) -> None:
        """Give the signals back their default actions (commands other than train)."""
        for sig in COMMAND_SIGNALS:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, COMMAND_SIGNALS)

    def _wait(self) -> None:
        while True:
            self.handle(signal.sigwait(COMMAND_SIGNALS))

    def listen(self, stop: Optional[StopRequest]) -> None:
        """Training starts (``stop`` receives the signals) or ends (None)."""
        with self._lock:
            self._listener = stop
            self.phase = "training" if stop is not None else "finishing"

    def handle(self, signum: int) -> None:
        """Act on one stop signal (from the signal thread or a Python handler)."""
        name = signal.Signals(signum).name
        with self._lock:
            self._interrupts += signum == signal.SIGINT
            if self._interrupts >= 2:
                self._leave(EXIT_INTERRUPTED, "interrupted twice (SIGINT): aborting at once, without a checkpoint")
            if self.phase == "start-up":
                where = f" on rank {self.rank}" if self.size > 1 else ""
                self._leave(EXIT_RESUMABLE, f"stopped by {name}{where} during start-up: nothing was trained yet; the "
                                            f"same command with --resume auto starts it (exit status {EXIT_RESUMABLE})",
                            alone=True)
            if self._listener is not None and not self._listener.signum:
                self._listener.signum = signum

    def run_cleanups(self) -> None:
        """Run the cleanups (release the lock of --out) before the process ends abruptly."""
        for cleanup in self.cleanups:
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - leaving anyway; the next job copes with what is left
                pass

    def _leave(self, status: int, message: str, alone: bool = False) -> None:
        """Exit with ``status``; rank 0 says why, and so does another rank (``alone``) still running after a grace.

        The launcher ends the other ranks when one exits: when rank 0 got the signal too (mpiexec
        and srun forward it to every rank), it leaves first and the others never speak.
        """
        self.run_cleanups()
        if alone and self.rank != 0:
            time.sleep(LONE_SIGNAL_GRACE)
        if self.rank == 0 or alone:
            sys.stderr.write(f"mpitrain: {message}\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(status)


_guard: Optional[SignalGuard] = None


def guard_signals() -> Optional[SignalGuard]:
    """The command line's SignalGuard, installed on the first call; None when not the command line."""
    global _guard
    if _guard is None and launched_as_command() and threading.current_thread() is threading.main_thread():
        _guard = SignalGuard().install()
    return _guard


class Watchdog:
    """Ends the job when one step takes longer than ``seconds`` on this rank.

    Before exiting it prints what this rank was doing (computing, or waiting in a collective:
    ranks still computing are the ones that never reached it) and the stack of every thread.
    A fault handler armed a little later ends the process even if Python cannot run.
    """

    def __init__(self, seconds: float, rank: int, in_collective: Callable[[], bool], grace: float = 1.0) -> None:
        self.seconds, self.rank, self.in_collective, self.grace = seconds, rank, in_collective, grace
        self.step = -1
        self._deadline = float("inf")
        self._backstop_armed = -float("inf")
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._armed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mpitrain-watchdog", daemon=True)
        self._thread.start()

    def arm(self, step: int | str) -> None:
        """Start the clock for ``step`` (a step number, or a phase such as "start-up"); the start-up watchdog stops."""
        global _start_up
        if _start_up is not None and _start_up is not self:
            _start_up.stop()
            _start_up = None
        now = time.monotonic()
        with self._lock:
            self.step, self._deadline = step, now + self.seconds
        if not self._armed.is_set():
            self._armed.set()
        # Re-arming faulthandler starts a thread, too slow for every step: re-arm it when half a
        # period has passed. Its deadline then always falls after the watchdog's own.
        if now - self._backstop_armed > self.seconds / 2:
            faulthandler.dump_traceback_later(1.5 * self.seconds + 10 * self.grace + 5, exit=True)
            self._backstop_armed = now

    def stop(self) -> None:
        """Disarm for good."""
        self._stopped.set()
        self._armed.set()
        faulthandler.cancel_dump_traceback_later()

    def _watch(self) -> None:
        # Deadlines only move later, so sleeping until the current one and checking again costs
        # one wake-up per period, however many steps re-arm it meanwhile.
        self._armed.wait()
        while not self._stopped.is_set():
            with self._lock:
                remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self._fire()
            self._stopped.wait(remaining)

    def _fire(self) -> None:
        where = ("waiting in a collective for the other ranks" if self.in_collective()
                 else "still computing: it has not reached the step's collective" if isinstance(self.step, int)
                 else "not in a collective: blocked in its own work (reading a file?) or stopped")
        prefix = f"[rank {self.rank}] "
        stacks = [traceback.format_stack(frame) for ident, frame in sys._current_frames().items()
                  if ident != threading.get_ident()]
        lines = "".join(prefix + line for stack in stacks for entry in stack for line in entry.splitlines(True))
        what = f"step {self.step}" if isinstance(self.step, int) else self.step
        sys.stderr.write(
            f"mpitrain: watchdog on rank {self.rank}: {what} has taken more than {self.seconds:g}s; "
            f"this rank is {where}. Stack:\n{lines}"
        )
        sys.stderr.flush()
        time.sleep(self.grace)  # let the other ranks' watchdogs report too
        if _guard is not None:
            _guard.run_cleanups()
        os._exit(EXIT_WATCHDOG)


_start_up: Optional[Watchdog] = None
START_UP = "start-up (loading and preparing the data, claiming --out, reading a checkpoint)"


def start_up_watchdog(seconds: float, rank: int, in_collective: Callable[[], bool], phase: str = START_UP) -> None:
    """Guard start-up (``phase``) with a watchdog of ``seconds`` (0: stop it) until another watchdog arms a step.

    Where a call holds the GIL (MPI_Init) the watchdog's thread cannot run; its faulthandler
    backstop still ends the process, after 1.5 x ``seconds`` + 15 s, printing every thread's stack.
    """
    global _start_up
    if _start_up is not None:
        _start_up.stop()
        _start_up = None
    if seconds > 0:
        _start_up = Watchdog(seconds, rank, in_collective)
        _start_up.arm(phase)


THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def limit_blas_threads(ranks_on_node: int) -> Optional[int]:
    """Give this rank's BLAS its share of the node's cores; return that number, or None if left alone.

    A share is ``cores // ranks_on_node`` (at least 1), or the rank's own cores when the launcher
    bound it to fewer than the node has. Left alone when the user set one of ``THREAD_VARS``
    (their choice wins) or threadpoolctl is missing. Without this, every rank's BLAS starts a
    thread per core: measured here, 2 ranks on 2 cores ran the MLP step 10-20x slower.
    """
    if any(os.environ.get(var) for var in THREAD_VARS):
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    cores, node = usable_cores(), os.cpu_count() or 1
    share = cores if cores < node else max(1, node // max(1, ranks_on_node))
    threadpool_limits(limits=share, user_api="blas")
    return share


def blas_threads() -> int:
    """Threads the BLAS library of this process will use (threadpoolctl if present, else env)."""
    try:
        from threadpoolctl import threadpool_info

        counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        if counts:
            return max(counts)
    except ImportError:
        pass
    for var in THREAD_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def launch_mismatch(world_size: int) -> tuple[str, bool]:
    """(message, first task) when a launcher started N > 1 tasks but MPI sees a world of 1, else ("", True).

    Each task then trains its own model and they overwrite each other's outputs: the launcher
    does not belong to the MPI that mpi4py loads. ``first task`` is False on the tasks whose
    launcher rank is not 0, so that only one of the N lone tasks needs to say it.
    """
    if world_size != 1:
        return "", True
    for launcher, size_var, rank_var in LAUNCHERS:
        tasks = os.environ.get(size_var, "")
        if tasks.isdigit() and int(tasks) > 1:
            message = (
                f"{launcher} started {tasks} tasks ({size_var}={tasks}) but MPI reports a world of 1: each task "
                f"would train alone and overwrite the others' outputs. {launch_fix(launcher)}"
            )
            return message, os.environ.get(rank_var, "0") == "0"
    return "", True


def launch_fix(launcher: str) -> str:
    """How to start the ranks with the launcher of the MPI that mpi4py loads."""
    if launcher == "srun":
        return ("Give srun the PMI of your MPI: `srun --mpi=pmi2` for the MPICH wheel (pip's mpich) or MPICH, "
                "`srun --mpi=pmix` for Open MPI (`srun --mpi=list` shows what Slurm has; "
                "`mpitrain doctor` checks a launch).")
    return ("Start the job with the mpiexec of the MPI that mpi4py loads (`python -m mpitrain info` names it; "
            "with `make install` it is .venv/bin/mpiexec), or rebuild mpi4py against this launcher's MPI: "
            "`pip install --no-cache-dir --no-binary mpi4py mpi4py`.")


def refuse_mismatched_launch(world_size: int) -> None:
    """Exit with status 2 (the first task printing why) if ``launch_mismatch`` finds one; else return."""
    message, first = launch_mismatch(world_size)
    if message:
        if first:
            print(f"mpitrain: error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USAGE)


# What a launcher or an MPI singleton tells its processes about their job: a launch started from
# such a process must not inherit it (a nested Open MPI mpirun joins the outer job and exits 1).
OUTER_JOB_PREFIXES = ("PMIX_", "PMI_", "OMPI_COMM_WORLD_", "OMPI_MCA_ess", "OMPI_MCA_orte_", "OMPI_MCA_pmix",
                      "OMPI_MCA_initial_wdir", "OMPI_MCA_shmem_RUNTIME_QUERY_hint", "OMPI_APP_CTX_", "OMPI_FIRST_RANKS",
                      "OMPI_FILE_LOCATION", "OMPI_NUM_APP_CTX", "OMPI_UNIVERSE_SIZE", "OMPI_COMMAND", "ORTE_SCHIZO_")


def launch_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for starting another MPI job from inside one: without the outer job's launch variables.

    The user's own settings (``OMPI_ALLOW_RUN_AS_ROOT``, other ``OMPI_MCA_*``, ``HYDRA_*``) stay.
    """
    return {k: v for k, v in env.items() if not k.startswith(OUTER_JOB_PREFIXES)}


def startup_warnings(ranks_on_node: int, threads: int, cores: Optional[int]) -> list[str]:
    """Warnings about a launch that is probably slow: ranks x BLAS threads above the cores."""
    warnings = []
    if cores and ranks_on_node > cores and not os.environ.get("MPIR_CVAR_CH4_PROGRESS_THROTTLE"):
        warnings.append(
            f"{ranks_on_node} ranks share this node's {cores} cores: busy-polling MPI libraries slow down badly; "
            "with MPICH set MPIR_CVAR_CH4_PROGRESS_THROTTLE=true MPIR_CVAR_POLLS_BEFORE_YIELD=1"
        )
    elif cores and threads > 1 and ranks_on_node * threads > cores:
        warnings.append(
            f"{ranks_on_node} ranks on this node x {threads} BLAS threads each > {cores} cores: the ranks will "
            f"compete for cores; set OMP_NUM_THREADS={max(1, cores // ranks_on_node)} (and OPENBLAS_NUM_THREADS)"
        )
    return warnings
