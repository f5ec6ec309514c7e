"""The training loop's driver (``algorithms/loop.py``) against its documented contract, with a
scripted algorithm: which steps log and with what numbers, when it checkpoints, stops, ends early
or converges, and the checks of the loss's growth and of the final parameters.

Serial (one rank); the expected records are computed here from the scripted totals.
"""
import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain.algorithms.base import Hooks, State
from mpitrain.algorithms.loop import DIVERGED, Convergence, Outcome, run
from mpitrain.timeline import Timeline


class Metric:
    """A model as the loop sees it: only ``metric(sum, n)``."""

    def metric(self, total, n):
        return total / n


class Scripted:
    """An algorithm whose step t returns ``outcomes[t]``; theta counts the steps taken."""

    def __init__(self, outcomes, log_every_sync=False, per_rank_state=False, residual=None):
        self.outcomes, self.log_every_sync, self.per_rank_state = outcomes, log_every_sync, per_rank_state
        self.residual = residual
        self.theta, self.opt_state = np.zeros(2), {"m": 1}
        self.taken, self.votes, self.snapshots = [], [], []

    def step(self, step, vote, listens):
        self.taken.append(step)
        self.votes.append((vote(), listens))
        self.theta += 1.0
        return self.outcomes[step]

    def snapshot(self, step, period):
        self.snapshots.append((step, period.copy()))
        return State(step, self.theta.copy(), period.copy(), residual=self.residual)


class Recorder(Hooks):
    """Hooks that record every call; ``due``, ``end_at`` and ``vote_at`` script the answers."""

    def __init__(self, due=(), end_at=None, vote_at=None, listens=False):
        self.due, self.end_at, self.vote_at, self.listens = set(due), end_at, vote_at, listens
        self.begun, self.saved, self.evaluated = [], [], []

    def begin_step(self, step):
        self.begun.append(step)

    def stop_vote(self):
        return 1.0 if self.begun[-1] == self.vote_at else 0.0

    def checkpoint_due(self, steps_done):
        return steps_done in self.due

    def save(self, state, synced):
        self.saved.append((state.step, synced))

    def evaluate(self, steps_done, theta):
        self.evaluated.append(steps_done)
        return steps_done == self.end_at


def totals(t):
    """Step t's scripted (loss sum, metric sum, samples)."""
    return np.array([3.0 + t, 0.5 * t, 4.0])


def drive(outcomes, steps, per_epoch=3, hooks=None, start=0, period=None, convergence=None, kind=Scripted, **kw):
    algorithm, logs = kind(outcomes, **kw), []
    state = State(start, algorithm.theta, np.zeros(3) if period is None else period)
    result = run(algorithm, Metric(), mt.Comm(MPI.COMM_SELF), state, steps, per_epoch, 4, logs.append,
                 hooks or Recorder(), Timeline(), convergence)
    return result, logs, algorithm


def expected_record(steps_in_period, step, per_epoch, penalty, carried=np.zeros(3)):
    total = carried + sum(totals(t) for t in steps_in_period)
    return {"step": step, "epoch": step / per_epoch, "loss": total[0] / total[2] + penalty,
            "metric": total[1] / total[2]}


def strip(logs):
    return [{k: r[k] for k in ("step", "epoch", "loss", "metric")} for r in logs]


def test_logs_at_epoch_ends_and_the_last_step_with_the_period_means():
    outcomes = [Outcome(False, totals(t), 0.25) for t in range(7)]
    result, logs, algorithm = drive(outcomes, 7)
    assert strip(logs) == [expected_record(range(0, 3), 3, 3, 0.25), expected_record(range(3, 6), 6, 3, 0.25),
                           expected_record(range(6, 7), 7, 3, 0.25)]
    assert all(r["seconds"] >= 0 for r in logs)
    assert algorithm.taken == list(range(7)) and result.steps == 7 and result.samples == 28
    assert result.stopped is result.ended_early is False and result.converged is None
    assert result.opt_state == {"m": 1} and np.array_equal(result.theta, [7.0, 7.0])


def test_a_resumed_run_carries_its_period_unless_it_logs_every_sync():
    carried = np.array([10.0, 2.0, 8.0])
    outcomes = [Outcome(False, totals(t), 0.0) for t in range(6)]
    _, logs, algorithm = drive(outcomes, 6, start=4, period=carried)
    assert algorithm.taken == [4, 5]
    assert strip(logs) == [expected_record([4, 5], 6, 3, 0.0, carried)]
    _, logs, _ = drive(outcomes, 6, start=4, period=carried, log_every_sync=True)
    assert strip(logs) == [expected_record([4], 5, 3, 0.0), expected_record([5], 6, 3, 0.0)]


def test_a_run_resumed_at_its_last_step_takes_none_and_reports_them_all():
    result, logs, algorithm = drive([], 5, start=5)
    assert algorithm.taken == [] and logs == []
    assert result.steps == 5 and result.samples == 0 and result.stopped is result.ended_early is False


def test_the_default_hooks_ask_for_no_vote_checkpoint_or_end():
    outcomes = [Outcome(False, totals(t), 0.0) for t in range(4)]
    result, _, algorithm = drive(outcomes, 4, hooks=Hooks())
    assert algorithm.votes == [(0.0, False)] * 4 and algorithm.snapshots == []
    assert result.steps == 4 and result.stopped is result.ended_early is False


@pytest.mark.parametrize("n, batch, steps", [(10, None, 1), (10, 3, 4), (9, 3, 3), (2, 5, 1)])
def test_an_epoch_is_ceil_n_over_the_batch_in_steps(n, batch, steps):
    from mpitrain.algorithms import steps_per_epoch

    assert steps_per_epoch(n, batch) == steps


def test_logging_every_sync_logs_each_step_with_totals_and_adds_its_record():
    outcomes = [Outcome(False, totals(t) if t % 2 else None, 0.5, synced=t % 2 == 1,
                        record={"drift_rms": float(t)} if t % 2 else None) for t in range(6)]
    _, logs, _ = drive(outcomes, 6, per_epoch=100, log_every_sync=True)
    assert strip(logs) == [expected_record([t], t + 1, 100, 0.5) for t in (1, 3, 5)]
    assert [r["drift_rms"] for r in logs] == [1.0, 3.0, 5.0]


def test_steps_without_totals_log_nothing_and_keep_the_period():
    outcomes = [Outcome(False, totals(t) if t in (0, 4) else None, 0.0) for t in range(10)]
    _, logs, _ = drive(outcomes, 10, per_epoch=5)
    assert strip(logs) == [expected_record([4], 5, 5, 0.0, totals(0))]  # the last step had none


def test_a_stop_vote_saves_the_period_since_the_last_log_and_stops():
    hooks = Recorder(vote_at=4, listens=True)
    outcomes = [Outcome(t == 4, totals(t), 0.0) for t in range(9)]
    result, logs, algorithm = drive(outcomes, 9, hooks=hooks)
    assert algorithm.votes == [(0.0, True)] * 4 + [(1.0, True)]
    assert result.stopped and result.steps == 5 and algorithm.taken == list(range(5))
    assert [s for s, _ in algorithm.snapshots] == [5]
    np.testing.assert_array_equal(algorithm.snapshots[0][1], totals(3) + totals(4))
    assert hooks.saved == [(5, True)] and hooks.evaluated == [1, 2, 3, 4]  # not evaluated when stopping
    assert [r["step"] for r in logs] == [3]


def test_a_stop_at_the_last_step_is_a_finished_run():
    hooks = Recorder()
    result, _, algorithm = drive([Outcome(t == 3, totals(t), 0.0) for t in range(4)], 4, hooks=hooks)
    assert not result.stopped and result.steps == 4 and hooks.saved == [] and algorithm.snapshots == []


@pytest.mark.parametrize("per_rank_state, residual, synced", [(False, None, True), (True, None, False),
                                                             (False, np.zeros(2), False)])
def test_checkpoints_when_due_where_the_ranks_agree(per_rank_state, residual, synced):
    hooks = Recorder(due={2, 3, 4, 6})
    outcomes = [Outcome(False, totals(t), 0.0, synced=t != 2) for t in range(6)]
    drive(outcomes, 6, hooks=hooks, per_rank_state=per_rank_state, residual=residual)
    assert hooks.saved == [(2, synced), (4, synced), (6, synced)]  # not after step 3: unsynced there
    assert hooks.evaluated == [1, 2, 4, 5, 6]


def test_an_evaluation_may_end_the_run_before_its_last_step_only():
    hooks = Recorder(end_at=3)
    result, _, algorithm = drive([Outcome(False, totals(t), 0.0) for t in range(6)], 6, hooks=hooks)
    assert result.ended_early and result.steps == 3 and algorithm.taken == [0, 1, 2]
    hooks = Recorder(end_at=6)
    result, _, _ = drive([Outcome(False, totals(t), 0.0) for t in range(6)], 6, hooks=hooks)
    assert not result.ended_early and result.steps == 6
    result, _, _ = drive([Outcome(False, totals(t), 0.0) for t in range(6)], 6, hooks=Recorder(end_at=5))
    assert result.ended_early and result.steps == 5


def test_an_algorithm_that_is_done_ends_the_run_after_saving_a_due_checkpoint():
    hooks = Recorder(due={3})
    result, logs, algorithm = drive([Outcome(False, totals(t), 0.0, done=t == 2) for t in range(6)], 6, hooks=hooks)
    assert algorithm.taken == [0, 1, 2] and result.steps == 3 and hooks.saved == [(3, True)]
    assert not result.stopped and [r["step"] for r in logs] == [3]


def reference_convergence(losses, tol, patience):
    """scikit-learn's rule, written out: the index of the loss at which it stops, or None."""
    best, count = np.inf, 0
    for i, loss in enumerate(losses):
        count = count + 1 if loss > best - tol else 0
        best = min(best, loss)
        if count >= patience:
            return i
    return None


@pytest.mark.parametrize("losses, tol, patience", [
    ([5.0, 4.0, 3.9, 3.85, 3.84, 3.84, 3.9], 0.1, 3),
    ([5.0, 4.9, 4.8, 4.7, 4.6], 0.1, 2),   # improvements of exactly tol count (4.9 is not above 5 - 0.1)
    ([5.0, 5.0, 4.0, 4.0, 4.0, 4.0, 4.0], 0.0, 5),
    ([3.0, 2.0, 1.0], 0.5, 1),
])
def test_convergence_follows_scikit_learns_rule(losses, tol, patience):
    rule = Convergence(tol, patience)
    stops = [rule.update(loss) for loss in losses]
    at = reference_convergence(losses, tol, patience)
    assert stops.index(True) == at if at is not None else not any(stops)


def test_convergence_waits_five_epochs_by_default():
    rule = Convergence(0.1)
    assert [rule.update(1.0) for _ in range(6)] == [False] * 5 + [True]


def test_a_converged_run_ends_at_the_epoch_that_converged():
    losses = [8.0, 7.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0]
    outcomes = [Outcome(False, np.array([losses[t] * 4.0, 0.0, 4.0]), 0.0) for t in range(8)]
    result, logs, _ = drive(outcomes, 8, per_epoch=1, convergence=Convergence(0.5, 2))
    assert result.converged is True and result.steps == 5 and len(logs) == 5
    result, _, _ = drive(outcomes, 8, per_epoch=1, convergence=Convergence(0.5, 9))
    assert result.converged is False and result.steps == 8


@pytest.mark.parametrize("first, factor, diverged", [(2.0, 1.0, False), (2.0, 1 + 5e-7, True), (0.01, 1.0, False),
                                                      (0.01, 1 + 5e-7, True)])
def test_a_loss_grown_more_than_a_million_times_is_divergence(first, factor, diverged):
    """The bound is a million times the first logged loss, or times 1 when that is smaller."""
    assert DIVERGED == 1e6
    last = 1e6 * max(first, 1.0) * factor
    outcomes = [Outcome(False, np.array([loss, 0.0, 1.0]), 0.0) for loss in (first, 3.0 * first, last)]
    if diverged:
        with pytest.raises(mt.JobError, match=r"the loss grew from .* by step 3, more than 1e\+06 times"):
            drive(outcomes, 3, per_epoch=1)
    else:
        assert drive(outcomes, 3, per_epoch=1)[0].steps == 3


def test_non_finite_parameters_fail_the_run_or_its_checkpoint():
    class Blowup(Scripted):
        def step(self, step, vote, listens):
            outcome = super().step(step, vote, listens)
            if step == 2:
                self.theta[0] = np.inf
            return outcome

    outcomes = [Outcome(t == 2, totals(t), 0.0, synced=t != 2) for t in range(4)]
    message = "its local model is not finite: the loss or gradient became infinite at step 3"
    with pytest.raises(mt.JobError, match=message):
        drive(outcomes, 4, kind=Blowup)
    with pytest.raises(mt.JobError, match="became infinite at step 4"):  # checked once, after the last step
        drive([Outcome(False, totals(t), 0.0) for t in range(4)], 4, kind=Blowup)
