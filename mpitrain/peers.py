"""Ending a job promptly when a rank is gone and the launcher does not end the others.

Under Hydra (MPICH's ``mpiexec``) a rank that dies takes the job with it at once. Under plain
``srun`` (without ``--kill-on-bad-exit``), or any launcher that does not end the step, the
other ranks wait for it inside their next collective until ``--watchdog-seconds`` (900 s by
default). MPI (the MPICH wheel, no ULFM) gives no error there, and the main thread is blocked in
the call, so a thread of each rank watches instead:

- the ranks on its own host: their pids, exchanged once at start-up (within the same pid
  namespace of the same boot). A pid that no longer exists is a rank that is gone: the lowest
  surviving rank on that host names it, and the ranks on that host exit at once.
- a stop that cannot complete: once a stop signal was requested on this rank, the step that
  carries the vote may take at most ``max(STOP_WAIT_MIN, 3 x the longest step so far)``; a vote
  still waiting then means that a rank (on another host) is gone or stuck, and the job ends
  without waiting for the watchdog.

Both end the process with status 4, as the watchdog does.
"""
from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from .checkpoint import pid_alive
from .guard import EXIT_WATCHDOG, guard_signals

if TYPE_CHECKING:
    from .comm import Comm

POLL_SECONDS = 1.0  # how often each rank looks at its peers
STOP_WAIT_MIN = 30.0  # a stop vote may always take this long


def host_key() -> int:
    """A number shared by exactly the processes whose pids can be compared: same host, boot and pid namespace."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(open(path).read().strip() if "boot" in path else str(os.stat(path).st_ino))
        except OSError:
            parts.append("")
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:7], "big")


class PeerWatch:
    """Collective at creation (the pids are exchanged); from the first step on, watch the ranks on this
    host and bound a stop vote (see the module)."""

    def __init__(self, comm: "Comm", stop_requested: Callable[[], bool], limit: float = 0.0) -> None:
        self.rank, self.stop_requested, self.limit = comm.rank, stop_requested, limit
        key = host_key()
        pids, keys = comm.allgather_int(os.getpid()), comm.allgather_int(key)
        self.peers = {r: int(pids[r]) for r in range(comm.size) if r != comm.rank and int(keys[r]) == key}
        self.step, self.began, self.longest, self.stop_seen = -1, time.monotonic(), 0.0, 0.0
        self._saving = False  # a checkpoint is being written: its time is the watchdog's business, not a stuck vote
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mpitrain-peers", daemon=True) if comm.size > 1 else None

    def begin_step(self, step: int) -> None:
        """A step begins on this rank: the previous one completed. The first starts the watch (training
        runs inside ``fit``, whose caller stops it on the way out, however it leaves)."""
        if self._thread is not None and self._thread.ident is None and not self._stopped.is_set():
            self._thread.start()
        now = time.monotonic()
        if self.step >= 0:
            self.longest = max(self.longest, now - self.began)
        self.step, self.began = step, now

    @contextmanager
    def saving(self) -> Iterator[None]:
        """A checkpoint is written meanwhile (by rank 0; the others wait for it): no stop bound."""
        self._saving = True
        try:
            yield
        finally:
            self._saving, self.began = False, time.monotonic()

    def stop(self) -> None:
        """Stop watching (training is over on this rank)."""
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(POLL_SECONDS):
            gone = [r for r, pid in self.peers.items() if not pid_alive(pid)]
            if gone and not self._stopped.is_set():
                ranks = ", ".join(f"{r} (pid {self.peers[r]})" for r in gone)
                self._end(self._speaks(set(gone)),
                          f"rank{'s' if len(gone) > 1 else ''} {ranks} on host {socket.gethostname()} "
                          f"{'are' if len(gone) > 1 else 'is'} gone (killed, or crashed) and the launcher did not "
                          "end the job: the other ranks cannot continue without it")
            self._check_stop()

    def _check_stop(self) -> None:
        now = time.monotonic()
        if not self.stop_requested() or self._saving:
            return
        if not self.stop_seen:
            self.stop_seen = now
        if self.step < 0:
            return
        wait = max(STOP_WAIT_MIN, 3 * self.longest)
        if self.limit:
            wait = min(wait, self.limit)
        waited = now - max(self.began, self.stop_seen)
        if waited > wait and not self._stopped.is_set():
            self._end(self._speaks(set()), f"a stop was requested, but step {self.step} has not completed {waited:.0f}s later "
                            f"(its steps took at most {self.longest:.2g}s): another rank is gone or stuck, so the "
                            "ranks cannot vote to stop together")

    def _speaks(self, gone: set) -> bool:
        """True on the lowest surviving rank of this host: one message per host."""
        return min(set(self.peers) - gone | {self.rank}) == self.rank

    def _end(self, speak: bool, message: str) -> None:
        if not speak:  # the rank that speaks must see the lost rank before it sees this one leave too
            time.sleep(3 * POLL_SECONDS)
        else:
            sys.stderr.write(f"mpitrain: rank {self.rank}: {message}; ending the job without a checkpoint (exit "
                             f"status {EXIT_WATCHDOG}); continue from the last checkpoint with --resume auto\n")
        sys.stderr.flush()
        if guard_signals() is not None:
            guard_signals().run_cleanups()
        os._exit(EXIT_WATCHDOG)
