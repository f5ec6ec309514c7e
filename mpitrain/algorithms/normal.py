"""Exact ridge regression in one pass over the data: the normal equations, summed over ranks.

The intercept is unpenalised, so it is eliminated exactly by centring: with the global means
m = mean(X) and ybar = mean(y), the weights solve

    (Xc^T Xc / N + l2 I) w = Xc^T yc / N,    Xc = X - m, yc = y - ybar,

and the intercept is ybar - m.w. Two reductions: the first (d + 2 numbers) gives N, the
column sums and the label sum; each rank then sums its centred Gram matrix (in blocks of rows,
so centring never copies the whole partition) and one Allreduce adds the upper triangles,
packed row by row (d(d+1)/2 + d + 1 numbers). Centring before summing avoids the cancellation
of X^T X - N m m^T when the means are large. Every rank then solves the same d x d system from the
same bits (Cholesky, or least squares when the matrix is singular), so the parameters are
identical without a broadcast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..data import Dataset
from ..models import LinearModel, Model
from ..timeline import COMPUTE, REDUCE, UPDATE, Timeline

if TYPE_CHECKING:
    from ..comm import Comm

CHUNK_ROWS = 4096  # rows centred at a time
CONDITION_LIMIT = 1e12  # Cholesky is trusted below this estimate of the condition number


def memory_needed(n_features: int, chunk_rows: int = CHUNK_ROWS) -> int:
    """Bytes one rank needs for the normal equations of ``n_features`` columns (float64).

    The Gram matrix, its packed upper triangle (the reduction buffer), the matrix to factor and
    its factor, and one centred block of rows.
    """
    d = n_features
    return 8 * (3 * d * d + d * (d + 1) // 2 + 2 * d + chunk_rows * (d + 1))


def pack_upper(G: np.ndarray, out: np.ndarray) -> None:
    """Write the upper triangle of G (d, d), row by row, into out[:d(d+1)/2]."""
    at = 0
    for i in range(G.shape[0]):
        out[at:at + G.shape[0] - i] = G[i, i:]
        at += G.shape[0] - i


def unpack_symmetric(packed: np.ndarray, d: int) -> np.ndarray:
    """The symmetric (d, d) matrix whose upper triangle ``pack_upper`` wrote into ``packed``."""
    G = np.empty((d, d))
    at = 0
    for i in range(d):
        G[i, i:] = packed[at:at + d - i]
        G[i:, i] = packed[at:at + d - i]
        at += d - i
    return G


def solve_spd(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, str]:
    """Solve A x = b for symmetric positive semi-definite A (d, d): (x, "cholesky" or "lstsq").

    Cholesky when A factors and its diagonal says the condition number is below
    ``CONDITION_LIMIT``; otherwise the minimum-norm least-squares solution (SVD).
    """
    try:
        L = np.linalg.cholesky(A)
        diag = np.diag(L)
        if diag.min() > 0 and (diag.max() / diag.min()) ** 2 < CONDITION_LIMIT:
            return np.linalg.solve(L.T, np.linalg.solve(L, b)), "cholesky"
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(A, b, rcond=None)[0], "lstsq"


def solve_normal(model: Model, data: Dataset, comm: "Comm", l2: float, memory_limit: int,
                 timeline: Timeline, algorithm: str = "native") -> tuple[np.ndarray, dict]:
    """Collective: (theta (n_params,) float64, what to log) for ``fit_normal``; the log's ``sums``
    are the reduced (loss sum, squared-error sum, rows) at theta and ``penalty`` the L2 term."""
    if not isinstance(model, LinearModel):
        raise TypeError(f"the normal equations solve linear regression only, not the {model.name} model; "
                        "use lbfgs or newton-cg for it")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, not {l2}")
    d = model.n_features
    need = memory_needed(d)
    if need > memory_limit:
        raise ValueError(f"the normal equations of {d} features need {need / 2**20:.0f} MiB per rank, more than "
                         f"the limit of {memory_limit / 2**20:.0f} MiB; raise memory_limit or use lbfgs")
    if data.n_features != d:
        raise ValueError(f"the data has {data.n_features} features, but the model expects {d}")
    if data.y is None:
        raise ValueError("the normal equations need labels y, and this data set has none")
    X, y = data.X, data.y
    totals = np.empty(d + 2)
    totals[0] = data.n_local
    np.sum(X, axis=0, dtype=np.float64, out=totals[1:d + 1])
    totals[d + 1] = np.sum(y, dtype=np.float64)
    timeline.mark(COMPUTE)
    comm.Allreduce(totals, algorithm=algorithm)
    timeline.mark(REDUCE)
    n = totals[0]
    if n == 0:
        raise ValueError("the normal equations need at least one row, and no rank has any")
    mean, ybar = totals[1:d + 1] / n, totals[d + 1] / n

    G, xty, yy = np.zeros((d, d)), np.zeros(d), 0.0
    for i in range(0, data.n_local, CHUNK_ROWS):
        Xc = np.subtract(X[i:i + CHUNK_ROWS], mean, dtype=np.float64)
        yc = np.subtract(y[i:i + CHUNK_ROWS], ybar, dtype=np.float64)
        G += Xc.T @ Xc
        xty += yc @ Xc
        yy += float(yc @ yc)
    n_packed = d * (d + 1) // 2
    buf = np.empty(n_packed + d + 1)
    pack_upper(G, buf)
    buf[n_packed:n_packed + d] = xty
    buf[-1] = yy
    timeline.mark(COMPUTE)
    comm.Allreduce(buf, algorithm=algorithm)
    timeline.mark(REDUCE)

    G = unpack_symmetric(buf, d)
    xty, yy = buf[n_packed:n_packed + d], buf[-1]
    A = G / n
    A[np.diag_indices(d)] += l2
    w, method = solve_spd(A, xty / n)
    theta = np.empty(model.n_params)
    p = model.layout.views(theta)
    p["coef"][...] = w
    p["intercept"][...] = ybar - mean @ w
    gradient = G @ w / n - xty / n + l2 * w  # the intercept's gradient is zero: y - Xw - b has mean 0
    squares = max(yy - 2 * xty @ w + w @ G @ w, 0.0)  # the sum of squared residuals
    timeline.mark(UPDATE)
    return theta, {"sums": np.array([squares / 2, squares, n]), "penalty": float(0.5 * l2 * w @ w),
                   "gradient_max": float(np.abs(gradient).max(initial=0.0)), "solve": method}
