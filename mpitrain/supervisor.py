"""Supervising a training run: stop signals, the step watchdog, checkpoints and resuming.

The training loops call a Supervisor through the Hooks interface. A stop signal on any rank
becomes a vote carried by the next step's reduction, so every rank stops after the same step;
then a checkpoint is written and ``python -m mpitrain`` exits with status 75 (resumable).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from . import checkpoint, optim, rundir
from .algorithms import Hooks, State
from .guard import StopRequest, Watchdog
from .outputs import MetricsLog

if TYPE_CHECKING:
    from .comm import Comm

_PERIOD = 3  # State.period entries stored after theta in each checkpoint row


class Supervisor(Hooks):
    """Hooks for one run: checkpoints into ``folder`` every ``every`` steps (0: only on a stop).

    ``meta`` describes the run (model, n_params, algorithm, settings) and is stored in each
    manifest; a resumed run must match its model, parameter count, algorithm and optimizer.
    ``weight`` is this rank's share n_k/N of the data, used to average local models when a run
    saved between averagings resumes on another number of ranks. ``progress`` (a tqdm bar or
    None) advances by one step's samples at every step.
    """

    listens = True

    def __init__(self, comm: "Comm", folder: str, every: int, keep: int, meta: dict, weight: float,
                 metrics: Optional[MetricsLog], watchdog_seconds: float = 0.0, progress: Any = None) -> None:
        self.comm, self.folder, self.every, self.keep, self.meta = comm, folder, every, keep, meta
        self.metrics, self.progress, self.weight = metrics, progress, weight
        self.samples_per_step = int(meta["settings"].get("batch_size") or meta["n_samples"])
        self.stop = StopRequest().install()
        self.watchdog = Watchdog(watchdog_seconds, comm.rank, lambda: comm.busy) if watchdog_seconds > 0 else None
        self.last_saved = 0
        self.saved_path = ""

    def close(self) -> None:
        """Disarm the watchdog and restore the signal handlers."""
        if self.watchdog is not None:
            self.watchdog.stop()
        self.stop.uninstall()

    # -- Hooks ---------------------------------------------------------------------------------
    def begin_step(self, step: int) -> None:
        if self.watchdog is not None:
            self.watchdog.arm(step)
        if self.progress is not None:
            self.progress.update(self.samples_per_step)

    def stop_vote(self) -> float:
        return 1.0 if self.stop.requested else 0.0

    def checkpoint_due(self, steps_done: int) -> bool:
        return self.every > 0 and steps_done - self.last_saved >= self.every

    def save(self, state: State, synced: bool) -> None:
        """Collective: rank 0 writes the state (every rank's row if the ranks are not in sync).

        A row is [theta | period (3) | optimizer state vector | compression residual (n_params, if
        any) | this rank's weight n_k/N].
        """
        residual = [] if state.residual is None else [state.residual]
        row = np.concatenate([state.theta, state.period, optim.state_vector(state.opt_state), *residual,
                              [self.weight]])[None]
        rows = row if synced else self.comm.gather_rows(row)
        with self.comm.together():
            if self.comm.rank == 0:
                lines = self.metrics.lines if self.metrics is not None else []
                arrays = {"rows": rows, "metrics": np.array(lines, dtype=str)}
                meta = {**self.meta, "world_size": self.comm.size, "synced": synced, "residual": bool(residual)}
                self.saved_path = checkpoint.save(self.folder, state.step, arrays, meta, self.keep)
                if self.metrics is not None:
                    self.metrics.close()
        self.last_saved = state.step

    # -- resuming ------------------------------------------------------------------------------
    def resume(self, how: str, n_params: int) -> tuple[Optional[State], list[str]]:
        """Collective: the State to resume from (None: start afresh) and notes for rank 0 to print.

        ``how`` is ``auto`` (the newest checkpoint in the folder that verifies, if any) or the
        path of one checkpoint directory. Rank 0 reads and verifies it, then broadcasts it.
        """
        notes: list[str] = []
        header = np.zeros(6, dtype=np.int64)  # found, step, world size when saved, rows, row length, residual
        rows = np.empty((0, 0))
        with self.comm.together():
            if self.comm.rank == 0:
                found, notes = self._read(how)
                if found is not None:
                    rundir.check_resume(found.path, found.manifest, self.meta)
                    rows = np.ascontiguousarray(found.arrays["rows"], dtype=np.float64)
                    header[:] = (1, found.manifest["step"], found.manifest["world_size"], *rows.shape,
                                 found.manifest.get("residual", False))
                    if self.metrics is not None:
                        self.metrics.lines = [str(line) for line in found.arrays["metrics"]]
                    notes.append(f"resuming from {found.path} (step {found.manifest['step']})")
        self.comm.Bcast(header)
        if not header[0]:
            return None, notes
        _, step, saved_size, n_rows, row_length, has_residual = map(int, header)
        rows = self.comm.Bcast(rows if self.comm.rank == 0 else np.empty((n_rows, row_length)))
        self.last_saved = step
        residual = None
        if n_rows == 1 and not has_residual:
            row = rows[0]
        elif saved_size == self.comm.size:
            row = rows[self.comm.rank]
            residual = row[-1 - n_params : -1].copy() if has_residual else None
        elif has_residual:  # synchronous rows differ only in their residuals, which belong to the old ranks
            row = rows[0]
            notes.append(f"the checkpoint was written by {saved_size} ranks: compression residuals start at zero")
        else:  # saved between averagings on another number of ranks: start from the average
            row = rows[:, -1] @ rows
            row[n_params : n_params + _PERIOD] = 0
            notes.append(f"the checkpoint holds {saved_size} local models; starting from their weighted average")
        theta, period = row[:n_params].copy(), row[n_params : n_params + _PERIOD].copy()
        opt = row[n_params + _PERIOD : -1 - (n_params if has_residual else 0)].copy()
        return State(step, theta, period, opt, residual), notes

    def _read(self, how: str) -> tuple[Optional[checkpoint.Checkpoint], list[str]]:
        if how != "auto":
            return checkpoint.load(how), []
        found, warnings = checkpoint.load_latest(self.folder, self.meta.get("run_id"))
        if found is None:
            warnings.append(f"no checkpoint in {self.folder}: starting from the beginning")
        return found, warnings
