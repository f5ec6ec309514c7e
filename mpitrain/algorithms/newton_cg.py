"""Distributed truncated Newton (Newton-CG): conjugate gradients on Hessian-vector products.

Each outer iteration solves H p = -g approximately by conjugate gradients, where every product
H v is one Allreduce of n_params numbers (the model's ``hessian_product`` keeps the rows'
curvature weights for the whole solve), then takes a strong Wolfe line search along p from
step 1. All the vector arithmetic runs on every rank on the same reduced bits, so the
parameters stay identical everywhere. As in scikit-learn's newton-cg, the inner solve stops
when the residual's 1-norm falls below min(0.5, sqrt(|g|_1)) |g|_1, when it meets negative
curvature, or after ``max_inner`` products, and the run stops when the largest gradient entry
is at most ``tol``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .linesearch import Point, strong_wolfe
from .objective import Objective
from .solver import Solver


def conjugate_gradient(product: Callable[[np.ndarray], np.ndarray], g: np.ndarray, tolerance: float,
                       max_inner: int) -> tuple[np.ndarray, int]:
    """Approximately solve H p = -g (n,) with products v -> H v; return (p, products used).

    Stops when the residual's 1-norm is at most ``tolerance``, after ``max_inner`` products, or
    at a direction of non-positive curvature (p so far, or -g if that is the first direction).
    """
    p = np.zeros_like(g)
    r = -g
    d = r.copy()
    rr = float(r @ r)
    used = 0
    while used < max_inner and np.abs(r).sum() > tolerance:
        hd = product(d)
        used += 1
        curvature = float(d @ hd)
        if curvature <= 0:
            if used == 1:
                p = -g
            break
        alpha = rr / curvature
        p += alpha * d
        r -= alpha * hd
        rr, previous = float(r @ r), rr
        d *= rr / previous
        d += r
    return p, used


class NewtonCGSolver(Solver):
    """Truncated Newton state and iteration; every rank holds the same."""

    def __init__(self, objective: Objective, tol: float = 1e-4, max_inner: int = 200) -> None:
        super().__init__(objective, tol)
        if max_inner < 1:
            raise ValueError(f"max_inner must be at least 1, not {max_inner}")
        if not hasattr(objective.model, "hessian_product"):
            raise TypeError(f"newton-cg needs Hessian-vector products, which the {objective.model.name} model "
                            "does not have; use lbfgs for it")
        self.max_inner = max_inner

    def step(self) -> dict:
        """Collective: one Newton iteration (CG solve, then a line search); returns its record."""
        size = float(np.abs(self.gradient).sum())
        d, products = conjugate_gradient(self.objective.curvature(self.theta), self.gradient,
                                         min(0.5, size ** 0.5) * size, self.max_inner)
        slope = float(self.gradient @ d)
        if not slope < 0:
            d, slope = -self.gradient, -float(self.gradient @ self.gradient)
        outcome = strong_wolfe(lambda a: self.probe(d, a), Point(0.0, self.value, slope), 1.0)
        if outcome.point is None:
            self.done, self.message = True, "the line search found no step that decreases the objective"
            return self.record(step_size=0.0, evaluations=outcome.evaluations, products=products)
        self.move(outcome.point.value, outcome.point.payload)
        return self.record(step_size=outcome.point.step, evaluations=outcome.evaluations, products=products)
