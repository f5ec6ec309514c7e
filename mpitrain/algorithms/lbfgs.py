"""Distributed L-BFGS: full-batch quasi-Newton steps with one Allreduce per evaluation.

Every rank holds the same history of the last ``history`` curvature pairs (s = step,
y = change of gradient). The gradient comes from one Allreduce of [gradient sums | loss sum |
metric sum] (``objective.Objective``); the two-loop recursion and the strong Wolfe line search
then run on every rank on the same bits, so the parameters stay identical everywhere with no
other communication, and the iterates are those of serial L-BFGS on all the rows (up to the
rounding of the reduction).

Stopping follows scikit-learn's ``LogisticRegression(solver="lbfgs")`` (SciPy's L-BFGS-B):
the largest gradient entry at most ``tol``, or a relative decrease of the objective below
64 machine epsilons, or ``max_iter`` iterations. The first step is 1/||g|| along -g, later
ones start at 1.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from ..data import Dataset
from ..models import Model
from ..timeline import Timeline
from .base import Logger
from .linesearch import Point, strong_wolfe
from .objective import Objective
from .solver import Solver, SolverResult, run

if TYPE_CHECKING:
    from ..comm import Comm


class LBFGS(Solver):
    """L-BFGS state and iteration; every rank holds the same.

    S, Y : (history, n_params), the newest curvature pair last, ``pairs`` of them in use.
    """

    def __init__(self, objective: Objective, history: int = 10, tol: float = 1e-4) -> None:
        super().__init__(objective, tol)
        if history < 1:
            raise ValueError(f"history must be at least 1 pair, not {history}")
        self.history = history
        n = objective.model.n_params
        self.S, self.Y = np.zeros((history, n)), np.zeros((history, n))
        self.pairs = 0

    def direction(self) -> np.ndarray:
        """-H g by the two-loop recursion over the stored pairs (-g without any)."""
        q = -self.gradient
        if not self.pairs:
            return q
        S, Y = self.S[self.history - self.pairs:], self.Y[self.history - self.pairs:]
        rho = 1.0 / np.einsum("ij,ij->i", S, Y)
        alpha = np.empty(self.pairs)
        for i in range(self.pairs - 1, -1, -1):
            alpha[i] = rho[i] * (S[i] @ q)
            q -= alpha[i] * Y[i]
        q *= (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1])
        for i in range(self.pairs):
            q += (alpha[i] - rho[i] * (Y[i] @ q)) * S[i]
        return q

    def step(self) -> dict:
        """Collective: one iteration (a line search along the L-BFGS direction); returns its record."""
        evaluations = 0
        while True:
            d = self.direction()
            slope = float(self.gradient @ d)
            if not slope < 0:
                if not self.pairs:
                    self.done, self.message = True, f"-gradient is no descent direction (slope {slope})"
                    return self.record(step_size=0.0, evaluations=evaluations)
                self.pairs = 0  # the pairs no longer give a descent direction: start again from -g
                continue
            first = 1.0 if self.pairs else min(1.0, 1.0 / float(np.linalg.norm(d)))
            outcome = strong_wolfe(lambda a: self.probe(d, a), Point(0.0, self.value, slope), first)
            evaluations += outcome.evaluations
            if outcome.point is not None or not self.pairs:
                break
            self.pairs = 0  # the search failed with the history: try once more along -g
        if outcome.point is None:
            self.done, self.message = True, "the line search found no step that decreases the objective"
            return self.record(step_size=0.0, evaluations=evaluations)
        theta, gradient, metric = outcome.point.payload
        self.remember(theta - self.theta, gradient - self.gradient)
        self.move(theta, outcome.point.value, gradient, metric)
        return self.record(step_size=outcome.point.step, evaluations=evaluations)

    def remember(self, s: np.ndarray, y: np.ndarray) -> None:
        """Keep the pair (s, y) unless its curvature s.y is not clearly positive (as L-BFGS-B)."""
        if s @ y <= np.finfo(float).eps * (y @ y):
            return
        self.S[:-1], self.Y[:-1] = self.S[1:], self.Y[1:]
        self.S[-1], self.Y[-1] = s, y
        self.pairs = min(self.pairs + 1, self.history)


def fit_lbfgs(
    model: Model,
    data: Dataset,
    comm: "Comm",
    l2: float = 0.0,
    *,
    history: int = 10,
    tol: float = 1e-4,
    max_iter: int = 100,
    theta: Optional[np.ndarray] = None,
    seed: int = 0,
    log: Optional[Logger] = None,
    timeline: Optional[Timeline] = None,
) -> SolverResult:
    """Collective: minimise mean loss + (l2/2)||w||^2 over all ranks' rows by L-BFGS.

    Any model works (the MLP too, in full batch). ``history`` curvature pairs; stops when the
    largest gradient entry is at most ``tol`` (scikit-learn's meaning), when the objective stops
    moving, or after ``max_iter`` iterations. ``theta`` (n_params,) is the start (by default
    ``model.init(seed)`` from rank 0). ``log`` gets one record per iteration: step, loss (the
    objective), metric, gradient_max, gradient_norm, step_size, evaluations and seconds.
    ``result.theta`` holds the same bits on every rank.

    >>> result = fit_lbfgs(mt.create_model("logistic", data.n_features), data, comm, l2=1e-4)  # doctest: +SKIP
    """
    solver = LBFGS(Objective(model, data, comm, l2, timeline), history, tol)
    return run(solver, comm.Bcast(model.init(seed)) if theta is None else theta, max_iter, log)
