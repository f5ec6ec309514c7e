"""What the full-batch solvers (L-BFGS, Newton-CG) share: their state, the stopping tests, the result.

A solver holds theta, the objective and gradient there (float64, the same bits on every rank)
and does one iteration per ``step()``; ``solve.fit_solver`` drives it with the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Result
from .objective import Objective

FTOL = 64 * np.finfo(float).eps  # scikit-learn's ftol for L-BFGS-B: stop when the objective no longer moves
STALLED = "the relative decrease of the objective fell below 64 machine epsilons"  # the message of that stop


@dataclass
class SolverResult(Result):
    """A Result with how the solver ended: ``converged`` (the gradient test passed), ``message``,
    the final ``objective`` and largest gradient entry, and the gradient ``evaluations`` and
    Hessian-vector ``products`` it took (one Allreduce each)."""

    converged: bool = False
    message: str = ""
    objective: float = float("nan")
    gradient_max: float = float("nan")
    evaluations: int = 0
    products: int = 0


class Solver:
    """An iterative solver's state: theta, value, gradient (n_params,) and metric at theta.

    ``done`` says it has stopped, ``converged`` that it stopped because the largest gradient
    entry is at most ``tol``; ``message`` says why it stopped.
    """

    def __init__(self, objective: Objective, tol: float) -> None:
        if not tol >= 0:
            raise ValueError(f"tol must be >= 0, not {tol}")
        self.objective, self.tol = objective, tol
        self.done, self.converged, self.message = False, False, ""

    def start(self, theta: np.ndarray) -> None:
        """Collective: evaluate the starting point theta (n_params,)."""
        self.theta = np.array(theta, dtype=np.float64)
        self.value, self.gradient, self.metric = self.objective(self.theta)
        self.sums = self.objective.sums.copy()
        if not np.isfinite(self.value + np.add.reduce(self.gradient)):
            raise ValueError(f"the objective or its gradient is not finite at the start (objective {self.value})")
        self.check_gradient()

    def check_gradient(self) -> None:
        """Stop when the largest gradient entry is at most tol."""
        self.gradient_max = float(np.abs(self.gradient).max(initial=0.0))
        if self.gradient_max <= self.tol:
            self.done, self.converged = True, True
            self.message = f"the largest gradient entry {self.gradient_max:.3g} is at most tol = {self.tol:g}"

    def move(self, value: float, payload: tuple) -> None:
        """Accept the point a probe returned; stop if the gradient is small or the objective stopped moving."""
        previous = self.value
        self.theta, self.gradient, self.metric, self.sums = payload
        self.value = value
        self.check_gradient()
        if not self.done and (previous - value) <= FTOL * max(abs(previous), abs(value), 1.0):
            self.done, self.message = True, STALLED

    def probe(self, d: np.ndarray, a: float) -> tuple[float, float, tuple]:
        """Collective: the objective and its slope along d at theta + a d, and what to keep."""
        theta = self.theta + a * d
        value, gradient, metric = self.objective(theta)
        return value, float(gradient @ d), (theta, gradient, metric, self.objective.sums.copy())

    def record(self, **extra: float) -> dict:
        """What one iteration logs: the objective (as loss), metric, gradient size and ``extra``."""
        return {"loss": self.value, "metric": self.metric, "gradient_max": self.gradient_max,
                "gradient_norm": float(np.linalg.norm(self.gradient)), **extra}

    def step(self) -> dict:
        """Collective: one iteration; returns its record."""
        raise NotImplementedError

    @property
    def memory(self) -> tuple:
        """What the solver carries from one iteration to the next besides theta (checkpointed)."""
        return ()

    @memory.setter
    def memory(self, value: tuple) -> None:
        """Restore ``memory`` (from a checkpoint)."""
