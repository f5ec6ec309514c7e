"""How a run shows its progress on rank 0: a tqdm bar when a person watches, plain lines otherwise.

Under ``mpiexec`` or ``srun`` every rank's stderr is a pipe to the launcher, so "stderr is a
terminal" is never true there. The launcher's own stderr tells instead: an interactive
``mpiexec`` (MPICH's Hydra or Open MPI's mpirun, started from a shell) writes to the person's
terminal, while in a batch job (``sbatch``, ``nohup``, cron) it writes to a file, and
``srun``'s step daemon to none. So rank 0 looks up the launcher among its nearest ancestors and
draws a bar when the launcher's stderr is a terminal (``srun --pty`` gives the task a terminal
of its own). Otherwise it prints a plain progress line every 30 s.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Optional, TextIO


def has_terminal(generations: int = 2) -> bool:
    """True when a person watches: this process's stderr is a terminal, or the launcher's is.

    The launcher is found by walking up at most ``generations`` parents (MPICH: the proxy, then
    mpiexec; Open MPI: mpirun) through those whose stderr is a pipe or socket (the launcher's
    output plumbing); the first stderr that is neither decides.
    """
    if sys.stderr.isatty():
        return True
    pid = os.getppid()
    for _ in range(generations):
        if pid <= 1:
            return False
        try:
            target = os.readlink(f"/proc/{pid}/fd/2")
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # no /proc (macOS), another user's process, or gone
            return False
        if not target.startswith(("pipe:", "socket:")):
            return target.startswith(("/dev/pts/", "/dev/tty"))
        pid = parent
    return False


class PlainProgress:
    """A progress line every ``every`` seconds: samples done of ``total``, the rate and the last loss."""

    def __init__(self, total: int, every: float = 30.0, stream: Optional[TextIO] = None) -> None:
        self.total, self.every, self.stream = total, every, stream or sys.stderr
        self.done, self.postfix = 0, ""
        self.start = self.last = time.monotonic()

    def update(self, samples: int) -> None:
        """Count ``samples`` more; print a line if ``every`` seconds have passed since the last."""
        self.done += samples
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"progress {100 * self.done / max(self.total, 1):5.1f}%  {self.done:,}/{self.total:,} samples  "
                  f"{rate:,.0f} samples/s  about {left:.0f}s left{self.postfix}", file=self.stream, flush=True)

    def set_postfix(self, **values: Any) -> None:
        """Show these values (the last logged loss and metric) on the next line."""
        self.postfix = "".join(f"  {k} {v}" for k, v in values.items())

    def close(self) -> None:
        """Nothing to clean up."""
