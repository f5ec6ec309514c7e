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

from typing import TYPE_CHECKING, Callable, Optional

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


class NewtonCG(Solver):
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
        theta, gradient, metric = outcome.point.payload
        self.move(theta, outcome.point.value, gradient, metric)
        return self.record(step_size=outcome.point.step, evaluations=outcome.evaluations, products=products)


def fit_newton_cg(
    model: Model,
    data: Dataset,
    comm: "Comm",
    l2: float = 0.0,
    *,
    tol: float = 1e-4,
    max_iter: int = 100,
    max_inner: int = 200,
    theta: Optional[np.ndarray] = None,
    log: Optional[Logger] = None,
    timeline: Optional[Timeline] = None,
) -> SolverResult:
    """Collective: minimise mean loss + (l2/2)||w||^2 over all ranks' rows by truncated Newton.

    For models with ``hessian_product`` (linear, logistic, softmax); TypeError for others.
    Stops when the largest gradient entry is at most ``tol``, when the objective stops moving, or
    after ``max_iter`` outer iterations; each runs at most ``max_inner`` conjugate-gradient
    products. ``theta`` (n_params,) is the start (zeros by default). ``log`` gets one record per
    iteration: step, loss, metric, gradient_max, gradient_norm, step_size, evaluations, products
    and seconds. ``result.theta`` holds the same bits on every rank.
    """
    solver = NewtonCG(Objective(model, data, comm, l2, timeline), tol, max_inner)
    return run(solver, model.init(0) if theta is None else theta, max_iter, log)
