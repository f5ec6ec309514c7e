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

import numpy as np

from .linesearch import Point, strong_wolfe
from .objective import Objective
from .solver import Solver


class LBFGSSolver(Solver):
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
        theta, gradient = outcome.point.payload[:2]
        self.remember(theta - self.theta, gradient - self.gradient)
        self.move(outcome.point.value, outcome.point.payload)
        return self.record(step_size=outcome.point.step, evaluations=evaluations)

    @property
    def memory(self) -> tuple:
        """(S, Y, pairs): the curvature pairs, kept by checkpoints so that a resumed run is bitwise the same."""
        return self.S, self.Y, self.pairs

    @memory.setter
    def memory(self, value: tuple) -> None:
        self.S[...], self.Y[...], self.pairs = value[0], value[1], int(value[2])

    def remember(self, s: np.ndarray, y: np.ndarray) -> None:
        """Keep the pair (s, y) unless its curvature s.y is not clearly positive (as L-BFGS-B)."""
        if s @ y <= np.finfo(float).eps * (y @ y):
            return
        self.S[:-1], self.Y[:-1] = self.S[1:], self.Y[1:]
        self.S[-1], self.Y[-1] = s, y
        self.pairs = min(self.pairs + 1, self.history)
