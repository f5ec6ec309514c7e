"""The full-batch solvers (``LBFGS``, ``NewtonCG``, ``Normal`` options) driven by the one training loop.

Each step of the loop is one solver iteration (``normal``: its one solve). The loop logs every
step with the solver's own fields (largest gradient entry, gradient norm, step size, line-search
evaluations, Hessian-vector products), stops when the solver has converged, and checkpoints
theta with the solver's memory (the L-BFGS curvature pairs) as the optimizer state, so that a
resumed run takes the same steps bit for bit. Stop votes travel in the evaluations' own
Allreduce.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Union

import numpy as np

from .. import optim
from ..comm import as_comm
from ..data import Dataset
from ..models import Model
from ..timeline import Timeline
from . import loop as _loop
from .base import Hooks, Logger, State
from .config import LBFGS, NewtonCG, Normal, OptionError, _non_negative, _positive_int, solver_steps
from .lbfgs import LBFGSSolver
from .newton_cg import NewtonCGSolver
from .normal import solve_normal
from .objective import Objective
from .solver import Solver, SolverResult

if TYPE_CHECKING:
    from ..comm import Comm

DEFAULT_STEPS = solver_steps(LBFGS())  # scikit-learn's max_iter


class Iterations:
    """An iterative solver as an algorithm of ``loop.run``: one iteration per step."""

    log_every_sync = True
    per_rank_state = False

    def __init__(self, solver: Solver, state: State) -> None:
        self.solver, self.start = solver, np.array(state.theta, dtype=np.float64)
        if state.opt_state is not None:
            solver.memory = optim.unflatten(solver.memory, np.asarray(state.opt_state))
        self.theta = np.array(state.theta, dtype=solver.objective.dtype)
        self.idle = False  # the last step found the solver stopped at its start and took no iteration

    @property
    def opt_state(self) -> tuple:
        """The solver's memory (the L-BFGS pairs; nothing for Newton-CG)."""
        return self.solver.memory

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> _loop.Outcome:
        """Collective: one iteration (none if the solver had already stopped at its start)."""
        solver, objective = self.solver, self.solver.objective
        objective.vote = vote
        if self.start is not None:  # evaluated in the first step, so that the loop's clock counts it
            solver.start(self.start)
            self.start = None
        if solver.done:
            self.idle = True
            return _loop.Outcome(stop=False, totals=None, penalty=0.0, done=True)
        record = solver.step()
        self.theta[...] = solver.theta
        record.pop("loss"), record.pop("metric")
        totals = np.array([solver.sums[0], solver.sums[1], objective.data.n_total])
        return _loop.Outcome(stop=bool(objective.sums[2] > 0), totals=totals, penalty=objective.penalty(solver.theta),
                             done=solver.done, record=record)

    def snapshot(self, step: int, period: np.ndarray) -> State:
        """theta (float64) and the solver's memory after ``step`` iterations."""
        return State(step, self.solver.theta.copy(), period.copy(), self.opt_state)


class OneSolve:
    """``normal`` as an algorithm of ``loop.run``: the whole solve in the first step."""

    log_every_sync = True
    per_rank_state = False
    opt_state = ()

    def __init__(self, model: Model, data: Dataset, comm: "Comm", l2: float, memory_limit: int,
                 theta: np.ndarray, timeline: Timeline, algorithm: str = "native") -> None:
        self.args = model, data, comm, l2, memory_limit
        self.theta, self.timeline, self.algorithm = theta, timeline, algorithm
        self.objective, self.gradient_max = float("nan"), float("nan")

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> _loop.Outcome:
        """Collective: solve the normal equations."""
        theta, info = solve_normal(*self.args, self.timeline, self.algorithm)
        self.theta[...] = theta
        sums = info["sums"]
        self.objective, self.gradient_max = sums[0] / sums[2] + info["penalty"], info["gradient_max"]
        return _loop.Outcome(stop=False, totals=sums, penalty=info["penalty"], done=True,
                             record={"gradient_max": info["gradient_max"], "solve": info["solve"],
                                     "passes": info["passes"]})

    def snapshot(self, step: int, period: np.ndarray) -> State:
        """The solution."""
        return State(step, self.theta.copy(), period.copy(), ())


def fit_solver(model: Model, data: Dataset, comm: "Comm", options: Union[LBFGS, NewtonCG, Normal], steps: int,
               l2: float, seed: int, theta: Optional[np.ndarray], log: Optional[Logger], state: Optional[State] = None,
               hooks: Optional[Hooks] = None, timeline: Optional[Timeline] = None,
               algorithm: str = "native") -> SolverResult:
    """Collective: ``fit`` for the solver ``options``; ``steps`` is the most iterations.

    The start is ``theta``, or ``model.init(seed)`` from rank 0, or ``state`` when resuming;
    ``algorithm`` is the allreduce algorithm (``collectives.allreduce``) of the sums.
    """
    comm = as_comm(comm)
    _positive_int("steps", steps)
    _non_negative("l2", l2)
    comm.agree_int("parameter count", model.n_params, f"the {model.name} model")
    message = model.check_labels(data.y, data.start) if data.y is not None else "training needs labels"
    comm.raise_if_any(message or "")
    if state is None:
        state = State(0, comm.Bcast(model.init(seed)) if theta is None else np.array(theta, dtype=np.float64))
    if np.shape(state.theta) != (model.n_params,):
        raise OptionError(f"theta has shape {np.shape(state.theta)}; this model needs ({model.n_params},)")
    timeline = timeline or Timeline()
    driven: Union[Iterations, OneSolve]
    if isinstance(options, Normal):
        driven = OneSolve(model, data, comm, l2, options.memory_limit, np.array(state.theta, dtype=data.X.dtype),
                          timeline, algorithm)
    else:
        objective = Objective(model, data, comm, l2, timeline, algorithm)
        solver = (LBFGSSolver(objective, options.history, options.tol) if isinstance(options, LBFGS)
                  else NewtonCGSolver(objective, options.tol, options.max_inner))
        driven = Iterations(solver, state)
    result = _loop.run(driven, model, comm, state, steps, 1, data.n_total, log, hooks or Hooks(), timeline)
    out = SolverResult(theta=driven.theta, opt_state=result.opt_state, steps=result.steps, samples=result.samples,
                       stopped=result.stopped, ended_early=result.ended_early, timeline=timeline)
    if isinstance(driven, Iterations):
        solver, objective = driven.solver, driven.solver.objective
        out.steps -= int(driven.idle)  # iterations taken, not counting the step that found the start good enough
        if not solver.done:
            solver.message = f"{steps} steps done before the gradient test (tol = {solver.tol:g})"
        out.converged, out.message, out.objective = solver.converged, solver.message, solver.value
        out.gradient_max, out.evaluations, out.products = solver.gradient_max, objective.evaluations, objective.products
        out.samples = objective.evaluations * data.n_total
    else:
        out.converged, out.message = True, "solved exactly"
        out.objective, out.gradient_max = driven.objective, driven.gradient_max
    out.seconds, out.comm_seconds = result.seconds, result.comm_seconds
    if not out.stopped and not comm.identical(out.theta):
        raise RuntimeError("parameters differ between ranks after training: the MPI reduction is not "
                           "bitwise reproducible across ranks; please report this with `mpitrain info`")
    return out


def fit_lbfgs(model: Model, data: Dataset, comm: "Comm", l2: float = 0.0, *, history: int = 10, tol: float = 1e-4,
              max_iter: int = DEFAULT_STEPS, theta: Optional[np.ndarray] = None, seed: int = 0,
              log: Optional[Logger] = None, timeline: Optional[Timeline] = None) -> SolverResult:
    """Collective: minimise mean loss + (l2/2)||w||^2 over all ranks' rows by L-BFGS (``LBFGS`` options).

    Any model works (the MLP too, in full batch). ``history`` curvature pairs; stops when the
    largest gradient entry is at most ``tol`` (scikit-learn's meaning), when the objective stops
    moving, or after ``max_iter`` iterations. ``theta`` (n_params,) is the start (by default
    ``model.init(seed)`` from rank 0). ``log`` gets one record per iteration: step, epoch, loss (the
    objective), metric, gradient_max, gradient_norm, step_size, evaluations and seconds.
    ``result.theta`` holds the same bits on every rank.

    >>> result = mt.fit_lbfgs(mt.create_model("logistic", data.n_features), data, comm, l2=1e-4)  # doctest: +SKIP
    """
    return fit_solver(model, data, comm, LBFGS(history, tol), max_iter, l2, seed, theta, log, timeline=timeline)


def fit_newton_cg(model: Model, data: Dataset, comm: "Comm", l2: float = 0.0, *, tol: float = 1e-4,
                  max_iter: int = DEFAULT_STEPS, max_inner: int = 200, theta: Optional[np.ndarray] = None,
                  log: Optional[Logger] = None, timeline: Optional[Timeline] = None) -> SolverResult:
    """Collective: minimise mean loss + (l2/2)||w||^2 over all ranks' rows by truncated Newton (``NewtonCG``).

    For models with ``hessian_product`` (linear, logistic, softmax); TypeError for others.
    Stops as ``fit_lbfgs`` does; each iteration runs at most ``max_inner`` conjugate-gradient
    products. ``theta`` (n_params,) is the start (by default ``model.init(0)``: zeros for the
    built-in models). ``log`` records also carry ``products``. ``result.theta`` holds the same
    bits on every rank.
    """
    return fit_solver(model, data, comm, NewtonCG(tol, max_inner), max_iter, l2, 0, theta, log, timeline=timeline)


def fit_normal(model: Model, data: Dataset, comm: "Comm", l2: float = 0.0, *,
               memory_limit: int = Normal.memory_limit, log: Optional[Logger] = None,
               timeline: Optional[Timeline] = None) -> SolverResult:
    """Collective: the exact minimiser of mean((x.w + b - y)^2)/2 + (l2/2)||w||^2 over all ranks' rows.

    ``model`` must be a LinearModel (TypeError otherwise); ``memory_limit`` is the bytes a rank
    may spend on the d x d system (ValueError, with the MiB needed, when d is too large).
    ``result.theta`` (n_features + 1,) has the data's dtype and the same bits on every rank; ``log``
    gets one record with the objective (loss), the rmse (metric), the largest gradient entry and
    the solve used (cholesky or lstsq) and the passes over the rows (2 when large column means
    had to be taken out before summing).

    >>> result = mt.fit_normal(mt.create_model("linear", data.n_features), data, comm, l2=1e-3)  # doctest: +SKIP
    """
    return fit_solver(model, data, comm, Normal(memory_limit), 1, l2, 0, np.zeros(model.n_params), log,
                      timeline=timeline)
