"""The one training loop: stepping, the logging cadence, stop votes, checkpoints and final checks.

An algorithm supplies only its maths, as an object with

- ``log_every_sync`` : True to log at every report (averaging algorithms), False at epoch ends;
- ``step(step, vote, listens) -> Outcome`` : one step on every rank, collective. ``vote()`` is this
  rank's stop vote (1.0 to stop), to be summed over ranks in the step's own reduction when it has
  one, or in an 8-byte one when ``listens`` (a supervisor waits for votes) and it has none;
- ``snapshot(step, period) -> State`` : what a checkpoint after ``step`` steps keeps;
- ``theta`` (the parameters, updated in place) and ``opt_state``;
- ``per_rank_state`` : True when the optimizer state differs between ranks even where the
  parameters agree (local SGD keeping each rank's momentum), so a checkpoint keeps every rank's.

The loop calls them in this order on every rank, so every rank issues the same collectives:

    for each step: hooks.begin_step -> algorithm.step -> log (rank 0 writes) -> hooks.evaluate
    where the parameters agree (validation; it may end the run) -> checkpoint if stopping or due
    -> stop if the ranks voted so
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Protocol

import numpy as np

from ..errors import JobError
from ..models import Model
from ..timeline import CHECKPOINT, Timeline
from .base import Hooks, Logger, Result, State, check_finite

if TYPE_CHECKING:
    from ..comm import Comm


@dataclass
class Outcome:
    """What one step produced.

    stop : the ranks agreed to stop (their votes summed > 0); totals : (loss sum, metric sum,
    samples) over all ranks since the previous report, or None when this step reduced none;
    penalty : the L2 term to add to the logged mean loss; synced : the parameters are identical
    on every rank (false between the averagings of local SGD); done : the algorithm has finished
    before ``steps`` (a solver that converged); record : more fields for this step's log record
    (e.g. the replicas' drift at an averaging).
    """

    stop: bool
    totals: Optional[np.ndarray]
    penalty: float
    synced: bool = True
    done: bool = False
    record: Optional[dict] = None


@dataclass
class Convergence:
    """scikit-learn's stopping rule of ``SGDClassifier``/``SGDRegressor`` (``tol``, ``n_iter_no_change``),
    applied to each logged loss: the mean training loss of an epoch of sgd, or the objective of a step
    of gd (gd logs every step, one epoch each).

    A loss above ``best - tol`` counts as no improvement; ``n_iter_no_change`` in a row means converged.
    ``best`` is the lowest loss so far. The loss includes the L2 term, as scikit-learn (1.9) tests its
    ``objective_sum``. Every rank sees the same reduced loss, so every rank stops alike. A run
    resumed by ``mpitrain.train`` replays the logged losses its checkpoint keeps, so the count goes on.
    """

    tol: float
    n_iter_no_change: int = 5
    best: float = float("inf")
    count: int = 0

    def update(self, loss: float) -> bool:
        """Record one epoch's loss; True once converged."""
        self.count = self.count + 1 if loss > self.best - self.tol else 0
        self.best = min(self.best, loss)
        return self.count >= self.n_iter_no_change


class Algorithm(Protocol):
    """The maths of one training algorithm, driven by ``run``."""

    log_every_sync: bool
    per_rank_state: bool
    theta: np.ndarray
    opt_state: object

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> Outcome:
        """One step on this rank (collective)."""

    def snapshot(self, step: int, period: np.ndarray) -> State:
        """The state after ``step`` steps; ``period`` holds the loop's totals since the last log."""


def run(algorithm: Algorithm, model: Model, comm: "Comm", state: State, steps: int, per_epoch: int,
        samples_per_step: int, log: Optional[Logger], hooks: Hooks, timeline: Timeline,
        convergence: Optional[Convergence] = None) -> Result:
    """Collective: drive ``algorithm`` from ``state.step`` to ``steps``; the Result of the run.

    With ``convergence``, each logged loss is tested, and the run ends once it has converged
    (``result.converged`` then True; False if ``steps`` ran out first)."""
    # Totals since the last log; an averaging algorithm keeps its own until it reduces them.
    period = np.zeros(3) if algorithm.log_every_sync else state.period.copy()
    first_loss: Optional[float] = None
    result = Result(algorithm.theta, steps=state.step, timeline=timeline,
                    converged=None if convergence is None else False)
    timeline.start()
    for step in range(state.step, steps):
        hooks.begin_step(step)
        outcome = algorithm.step(step, hooks.stop_vote, hooks.listens)
        result.steps, result.samples = step + 1, result.samples + samples_per_step
        if outcome.totals is not None:
            period += outcome.totals
            if algorithm.log_every_sync or (step + 1) % per_epoch == 0 or step + 1 == steps:
                loss = period[0] / period[2] + outcome.penalty
                first_loss = loss if first_loss is None else first_loss
                if log is not None:
                    log({
                        "step": step + 1,
                        "epoch": (step + 1) / per_epoch,
                        "loss": loss,
                        "metric": model.metric(period[1], int(period[2])),
                        **(outcome.record or {}),
                        "seconds": timeline.elapsed(),
                    })
                _check_growth(first_loss, loss, step)
                if convergence is not None and convergence.update(loss):
                    result.converged = True
                period[:] = 0
                timeline.skip()
        result.stopped = outcome.stop and step + 1 < steps
        if outcome.synced and not result.stopped and hooks.evaluate(step + 1, algorithm.theta) and step + 1 < steps:
            result.ended_early = True
            break
        if result.stopped or (outcome.synced and hooks.checkpoint_due(step + 1)):
            snapshot = algorithm.snapshot(step + 1, period)
            _check_resumable(snapshot.theta, outcome.synced, step, comm)
            same = outcome.synced and snapshot.residual is None and not algorithm.per_rank_state
            hooks.save(snapshot, synced=same)
            timeline.mark(CHECKPOINT)
        if result.stopped or outcome.done or result.converged:
            break
    if not result.stopped:
        check_finite(algorithm.theta, steps - 1)
    result.opt_state = algorithm.opt_state
    return result.finish()


DIVERGED = 1e6  # a logged loss this many times the first one (or 1, if larger) means divergence


def _check_growth(first: float, loss: float, step: int) -> None:
    """JobError when the loss has grown by orders of magnitude: a run diverging without overflowing yet.

    Every rank logs the same reduced loss, so every rank raises alike.
    """
    if loss > DIVERGED * max(first, 1.0):
        raise JobError(
            f"the loss grew from {first:.3g} to {loss:.3g} by step {step + 1}, more than {DIVERGED:g} times: the run "
            "diverged; lower --lr (or add --l2); checkpoints written so far are intact"
        )


def _check_resumable(theta: np.ndarray, synced: bool, step: int, comm: "Comm") -> None:
    """JobError on every rank if a checkpoint would hold non-finite parameters.

    Synchronised parameters are the same everywhere, so each rank checks its own; local models
    differ, so the ranks agree on the outcome first.
    """
    if synced:
        check_finite(theta, step)
        return
    try:
        check_finite(theta, step)
        error = ""
    except JobError as exc:
        error = f"its local model is not finite: {exc}"
    comm.raise_if_any(error)
