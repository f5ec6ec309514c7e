"""What every training loop shares: its state, hooks and result, the objective and its evaluation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from .. import optim
from ..comm import as_comm
from ..data import Dataset
from ..models import Model
from ..timeline import REDUCE, Timeline

if TYPE_CHECKING:
    from ..comm import Comm

Record = dict
Logger = Callable[[Record], None]


@dataclass
class State:
    """Where a run stands, enough to resume it exactly.

    step : steps done; theta : (n_params,) this rank's parameters; period : (3,) loss sum,
    metric sum and samples since the last metrics record; opt_state : the optimizer's state, or
    its ``optim.flatten`` (from a checkpoint), or None to start the optimizer afresh;
    residual : (n_params,) this rank's unsent compression error (``compress``), or None for zeros;
    convergence : the tol test's (best loss, epochs without improvement) to resume with, or None.
    Sampling is a pure function of (seed, step), so no random-generator state is needed.
    """

    step: int
    theta: np.ndarray
    period: np.ndarray = field(default_factory=lambda: np.zeros(3))
    opt_state: Any = None
    residual: Optional[np.ndarray] = None
    convergence: Optional[np.ndarray] = None


class Hooks:
    """What a training loop reports to and asks of its supervisor; these defaults do nothing."""

    listens = False  # True: the loop must collect stop votes every step

    def begin_step(self, step: int) -> None:
        """Called on every rank before each step."""

    def stop_vote(self) -> float:
        """1.0 if this rank wants the run to stop at the end of this step, else 0.0."""
        return 0.0

    def checkpoint_due(self, steps_done: int) -> bool:
        """Whether to save a checkpoint after ``steps_done`` steps."""
        return False

    def save(self, state: State, synced: bool) -> None:
        """Collective: checkpoint ``state``; ``synced`` says theta is identical on every rank."""

    def evaluate(self, steps_done: int, theta: np.ndarray) -> bool:
        """Collective, where theta is identical on every rank: score it (validation); True to end the
        run here (early stopping). Every rank must return the same answer."""
        return False


@dataclass
class Result:
    """Parameters after training (identical on every rank) and what it took to get them.

    ``stopped`` is True when the ranks agreed to stop early (a stop signal) after ``steps``;
    ``ended_early`` when a hook ended the run as complete (early stopping); ``converged``: whether
    a convergence test (``tol``) passed before ``steps`` ran out, None when there was none.
    """

    theta: np.ndarray
    opt_state: optim.State = None
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    comm_seconds: float = 0.0
    stopped: bool = False
    ended_early: bool = False
    converged: Optional[bool] = None
    timeline: Timeline = field(default_factory=Timeline)

    def finish(self) -> "Result":
        """Take the timings from the timeline; return self."""
        self.seconds = self.timeline.elapsed()
        self.comm_seconds = self.timeline.totals[REDUCE]
        return self


def penalty(theta: np.ndarray, l2: float, n_penalized: int) -> float:
    """(l2 / 2) ||w||^2 with w = theta[:n_penalized]: biases are not penalised."""
    if not l2:
        return 0.0
    w = theta[:n_penalized]
    return 0.5 * l2 * float(w @ w)


def add_penalty_gradient(theta: np.ndarray, grad: np.ndarray, l2: float, n_penalized: int) -> None:
    """grad[:n_penalized] += l2 * w, in place."""
    if l2:
        grad[:n_penalized] += l2 * theta[:n_penalized]


def evaluate(model: Model, theta: np.ndarray, data: Dataset, comm: "Comm", l2: float = 0.0) -> tuple[float, float]:
    """Collective: (objective, metric) of ``theta`` over all ranks' rows of ``data``.

    objective = mean loss over all n_total rows (weighted by ``data.weight`` if set) + (l2/2)||w||^2.
    """
    weighted = {} if data.weight is None else {"weight": data.weight}
    sums = np.array(model.sums(theta, data.X, data.y, **weighted))
    as_comm(comm).Allreduce(sums)
    return sums[0] / data.n_total + penalty(theta, l2, model.n_penalized), model.metric(sums[1], data.n_total)


def check_finite(values: np.ndarray, step: int) -> None:
    """JobError if ``values`` hold NaN or infinity; call it on arrays every rank holds alike.

    One sum instead of an elementwise test: NaN and infinity propagate into it (a sum that
    overflows from finite values means divergence all the same).
    """
    if not np.isfinite(np.add.reduce(values)):
        from ..errors import JobError

        kind = "nan" if np.isnan(values).any() else "infinite"
        if step == 0:  # before any update: the step size cannot be the cause
            raise JobError(
                f"the loss or gradient is {kind} at the first step, before any update: the data hold values too "
                "large for the model to compute with (or labels it cannot take); check the data for huge values "
                "(standardize the features: --standardize); --lr is not the cause"
            )
        raise JobError(
            f"the loss or gradient became {kind} at step {step + 1}; "
            "the run diverged: lower --lr (or add --l2); checkpoints written so far are intact"
        )


def steps_per_epoch(n_total: int, batch_size: Optional[int]) -> int:
    """Steps that visit about n_total samples: ceil(n_total / batch_size), or 1 for full batch."""
    return 1 if batch_size is None else -(-n_total // batch_size)
