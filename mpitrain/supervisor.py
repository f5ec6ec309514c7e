"""Supervising a training run: stop signals, the step watchdog, checkpoints and resuming.

The training loops call a Supervisor through the Hooks interface. A stop signal on any rank
becomes a vote carried by the next step's reduction, so every rank stops after the same step;
then a checkpoint is written and ``python -m mpitrain`` exits with status 75 (resumable).
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from . import checkpoint, optim, rundir
from .algorithms import Hooks, State
from .guard import StopRequest, Watchdog
from .outputs import MetricsLog
from .peers import PeerWatch
from .params import Layout
from .selection import Validation

if TYPE_CHECKING:
    from .comm import Comm

class Supervisor(Hooks):
    """Hooks for one run: checkpoints into ``folder`` every ``every`` steps (0: only on a stop).

    ``meta`` describes the run (its run id, model, shapes, data fingerprint, algorithm and settings;
    see ``rundir.check_resume``) and is stored in each manifest; a resumed run must match it.
    ``weight`` is this rank's share n_k/N of the data, used to average local models when a run
    saved between averagings resumes on another number of ranks. ``progress`` (a tqdm bar or
    None) advances by ``samples_per_step`` at every step.
    """

    listens = True

    def __init__(self, comm: "Comm", folder: str, meta: dict, *, every: int = 0, keep: int = 3, weight: float = 1.0,
                 metrics: Optional[MetricsLog] = None, watchdog_seconds: float = 0.0, progress: Any = None,
                 samples_per_step: int = 0, validation: Optional[Validation] = None) -> None:
        self.comm, self.folder, self.every, self.keep, self.meta = comm, folder, every, keep, meta
        self.metrics, self.progress, self.weight = metrics, progress, weight
        self.samples_per_step, self.validation = samples_per_step, validation
        self.stop = StopRequest().install()
        self.watchdog = Watchdog(watchdog_seconds, comm.rank, lambda: comm.busy) if watchdog_seconds > 0 else None
        self.peers = PeerWatch(comm, lambda: self.stop.requested, watchdog_seconds)
        self.last_saved = 0
        self.saved_path = ""

    def close(self) -> None:
        """Disarm the watchdog and restore the signal handlers."""
        if self.watchdog is not None:
            self.watchdog.stop()
        self.peers.stop()
        self.stop.uninstall()

    # -- Hooks ---------------------------------------------------------------------------------
    def begin_step(self, step: int) -> None:
        if self.watchdog is not None:
            self.watchdog.arm(step)
        self.peers.begin_step(step)
        if self.progress is not None:
            self.progress.update(self.samples_per_step)

    def stop_vote(self) -> float:
        return 1.0 if self.stop.requested else 0.0

    def stopped_by(self) -> str:
        """Collective, once the ranks agreed to stop: which signal reached which ranks ("SIGUSR1 on rank 1")."""
        got = self.comm.allgather_int(self.stop.signum)
        parts = []
        for signum in sorted(set(int(s) for s in got if s)):
            ranks = [r for r in range(self.comm.size) if got[r] == signum]
            where = (f"rank {ranks[0]}" if len(ranks) == 1 else
                     f"all {len(ranks)} ranks" if len(ranks) == self.comm.size else f"ranks {', '.join(map(str, ranks))}")
            parts.append(f"{signal.Signals(signum).name} on {where}")
        return " and ".join(parts) or "a signal"

    def evaluate(self, steps_done: int, theta: np.ndarray) -> bool:
        return self.validation is not None and self.validation.evaluate(steps_done, theta)

    def checkpoint_due(self, steps_done: int) -> bool:
        return self.every > 0 and steps_done - self.last_saved >= self.every

    def save(self, state: State, synced: bool) -> None:
        """Collective: rank 0 writes the state (every rank's record if the ranks are not in sync).

        The record's fields (``record_layout``) are saved as named arrays with one row per rank
        (one row in all when the ranks are in sync).
        """
        opt = optim.flatten(state.opt_state)
        layout = record_layout(state.theta.size, opt.size, state.residual is not None)
        row = layout.empty()[None]
        fields = layout.views(row[0])
        fields["theta"][...], fields["period"][...], fields["opt_state"][...] = state.theta, state.period, opt
        fields["weight"][...] = self.weight
        if state.residual is not None:
            fields["residual"][...] = state.residual
        rows = row if synced else self.comm.gather_rows(row)
        with self.peers.saving(), self.comm.together():
            if self.comm.rank == 0:
                lines = self.metrics.lines if self.metrics is not None else []
                arrays = {name: rows[:, a:b] for name, (a, b) in layout.offsets.items()}
                arrays["metrics"] = np.array(lines, dtype=str)
                if self.validation is not None:
                    arrays.update(self.validation.state(state.theta.size))
                meta = {**self.meta, "world_size": self.comm.size, "synced": synced}
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
        header = np.zeros(6, dtype=np.int64)  # found, step, world size, rows, optimizer state length, selection
        rows = np.empty((0, 0))
        found = None
        with self.comm.together():
            if self.comm.rank == 0:
                found, notes = self._read(how)
                if found is not None:
                    rundir.check_resume(found.path, found.manifest, self.meta)
                    rows = self._rows(found, n_params)
                    header[:5] = (1, found.manifest["step"], found.manifest["world_size"], rows.shape[0],
                                  found.arrays["opt_state"].shape[1])
                    if self.metrics is not None:
                        self.metrics.lines = [str(line) for line in found.arrays["metrics"]]
                    if self.validation is not None and "selection" in found.arrays:
                        header[-1] = 1
                    notes.append(f"resuming from {found.path} (step {found.manifest['step']})")
        self.comm.Bcast(header)
        if not header[0]:
            return None, notes
        _, step, saved_size, n_rows, n_opt, selection = map(int, header)
        if selection:  # the validation's best model and patience, as rank 0 read them
            arrays = found.arrays if self.comm.rank == 0 else {"selection": np.empty(4), "best_theta": np.empty(n_params)}
            self.validation.restore({k: self.comm.Bcast(np.ascontiguousarray(arrays[k], dtype=np.float64))
                                     for k in ("selection", "best_theta")}, np.dtype(np.float64))
        layout = record_layout(n_params, n_opt, True)
        rows = self.comm.Bcast(rows if self.comm.rank == 0 else layout.empty()[None].repeat(n_rows, 0))
        self.last_saved = step
        has_residual = bool(np.isfinite(rows[:, layout.offsets["residual"][0]]).all())
        residual = None
        if n_rows == 1 and not has_residual:
            row = rows[0]
        elif saved_size == self.comm.size:
            row = rows[self.comm.rank]
            residual = layout.views(row)["residual"].copy() if has_residual else None
        elif has_residual:  # synchronous rows differ only in their residuals, which belong to the old ranks
            row = rows[0]
            notes.append(f"the checkpoint was written by {saved_size} ranks: compression residuals start at zero")
        else:  # saved between averagings on another number of ranks: start from the average
            row = rows[:, layout.offsets["weight"][0]] @ rows
            layout.views(row)["period"][...] = 0
            notes.append(f"the checkpoint holds {saved_size} local models; starting from their weighted average")
        fields = layout.views(row)
        return State(step, fields["theta"].copy(), fields["period"].copy(), fields["opt_state"].copy(), residual), notes

    def _rows(self, found: checkpoint.Checkpoint, n_params: int) -> np.ndarray:
        """The checkpoint's records as rows of ``record_layout(n_params, ., True)`` (NaN residual if none)."""
        arrays = found.arrays
        missing = [name for name in RECORD if name != "residual" and name not in arrays]
        if missing:
            raise checkpoint.CheckpointError(
                f"{found.path} lacks {', '.join(missing)}: it was written by another version of mpitrain")
        n = arrays["theta"].shape[0]
        if n not in (1, found.manifest.get("world_size", 1)):
            raise checkpoint.CheckpointError(f"{found.path} holds {n} ranks' records but its manifest says world_size "
                                             f"{found.manifest.get('world_size')}: it was altered")
        saved = arrays.get("residual")
        residual = saved if saved is not None and saved.shape[1] else np.full((n, n_params), np.nan)
        return np.ascontiguousarray(np.hstack([arrays["theta"], arrays["period"], arrays["opt_state"], residual,
                                               arrays["weight"]]), dtype=np.float64)

    def _read(self, how: str) -> tuple[Optional[checkpoint.Checkpoint], list[str]]:
        if how != "auto":
            return checkpoint.load(how), []
        found, warnings = checkpoint.load_latest(self.folder, self.meta.get("run_id"))
        if found is None:
            warnings.append(f"no checkpoint in {self.folder}: starting from the beginning")
        return found, warnings


RECORD = ("theta", "period", "opt_state", "residual", "weight")


def record_layout(n_params: int, n_opt: int, residual: bool) -> Layout:
    """A checkpoint record: theta (n_params,), period (3,), the flat optimizer state (n_opt,), this
    rank's compression residual (n_params,) if any, and its data share n_k/N."""
    return Layout.record({"theta": (n_params,), "period": (3,), "opt_state": (n_opt,),
                          "residual": (n_params if residual else 0,), "weight": ()})
