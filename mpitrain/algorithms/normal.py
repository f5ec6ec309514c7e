"""Exact ridge regression in one pass over the data: the normal equations, summed over ranks.

Each rank sums, in one pass over its rows (blocks of ``CHUNK_ROWS``, no copy of float64 rows),
its Gram matrix X_k^T X_k (a symmetric rank-k product: BLAS ``syrk``), and [1; y]^T X_k (the
column sums and X_k^T y) with the same block still in cache, plus sum(y), y.y and n_k. One
Allreduce adds the upper triangles, packed row by row, with those (d(d+1)/2 + 2d + 3 numbers).
The intercept is unpenalised, so it is eliminated exactly: with the global means m = s/N and
ybar, the weights solve

    (Xc^T Xc / N + l2 I) w = Xc^T yc / N,    Xc^T Xc = X^T X - N m m^T,  Xc^T yc = X^T y - N m ybar,

and the intercept is ybar - m.w. Forming Xc^T Xc from X^T X cancels digits when a column's mean
is large against its spread: when a column (or y) would lose more than ``CANCEL_LIMIT`` in
relative precision, a second pass sums the rows shifted by the global means (one more
Allreduce), which loses none. Every rank then solves the same d x d system from the same bits
(Cholesky, or least squares when the matrix is singular), so the parameters are identical
without a broadcast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from .. import collectives
from ..data import Dataset
from ..models import LinearModel, Model
from ..timeline import COMPUTE, REDUCE, UPDATE, Timeline

if TYPE_CHECKING:
    from ..comm import Comm

CHUNK_ROWS = 1024  # rows summed at a time, in cache for the sums after the Gram product (float32 or sparse rows are converted one block at a time)
CONDITION_LIMIT = 1e12  # Cholesky is trusted below this estimate of the condition number
CANCEL_LIMIT = 1e3  # a sum of squares at most this many times its centred value is centred after the sums


def memory_needed(n_features: int, chunk_rows: int = CHUNK_ROWS) -> int:
    """Bytes one rank needs for the normal equations of ``n_features`` columns (float64).

    The Gram matrix and a product's scratch, the packed reduction buffer, the matrix to factor
    and its factor, and one converted (or shifted) block of rows.
    """
    d = n_features
    return 8 * (4 * d * d + d * (d + 1) // 2 + 4 * d + chunk_rows * (d + 2))


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


def local_moments(X, y: np.ndarray, x_shift: Optional[np.ndarray] = None,  # type: ignore[no-untyped-def]
                  y_shift: float = 0.0) -> np.ndarray:
    """This rank's sums of its rows X (n_k, d) (dense or CSR) and labels y (n_k,), shifted by
    ``x_shift`` (d,) and ``y_shift`` when given, as one float64 buffer: [upper triangle of the Gram
    matrix, packed | X^T y (d,) | column sums (d,) | sum(y) | y.y | n_k]."""
    n, d = X.shape
    G, tmp = np.zeros((d, d)), np.empty((d, d))
    xty, sums, part = np.zeros(d), np.zeros(d), np.empty(d)
    ones, yc = np.ones(min(CHUNK_ROWS, n)), np.subtract(y, y_shift, dtype=np.float64)
    for i in range(0, n, CHUNK_ROWS):
        block = X[i:i + CHUNK_ROWS]
        if hasattr(block, "toarray"):  # sparse rows: one dense block at a time
            block = block.toarray()
        if x_shift is not None:
            block = np.subtract(block, x_shift, dtype=np.float64)
        elif block.dtype != np.float64:
            block = block.astype(np.float64)
        rows = len(block)
        np.matmul(block.T, block, out=tmp)  # the same buffer on both sides: NumPy calls BLAS syrk
        G += tmp
        np.matmul(ones[:rows], block, out=part)  # while the block is in cache (faster than block.sum)
        sums += part
        np.matmul(yc[i:i + rows], block, out=part)
        xty += part
    n_packed = d * (d + 1) // 2
    buf = np.empty(n_packed + 2 * d + 3)
    pack_upper(G, buf)
    buf[n_packed:n_packed + d], buf[n_packed + d:n_packed + 2 * d] = xty, sums
    buf[-3], buf[-2], buf[-1] = yc.sum(), yc @ yc, n
    return buf


def centred(buf: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, float, float]:
    """From reduced ``local_moments``: (Xc^T Xc (d, d), Xc^T yc (d,), yc.yc, column means (d,), mean of y, N),
    centred about the means, and the largest factor by which centring shrank a sum of squares."""
    n_packed = d * (d + 1) // 2
    G = unpack_symmetric(buf, d)
    xty, s, sy, yy, n = buf[n_packed:n_packed + d], buf[n_packed + d:n_packed + 2 * d], buf[-3], buf[-2], buf[-1]
    mean, ybar = s / n, sy / n
    A = G - n * np.outer(mean, mean)
    b = xty - n * mean * ybar
    yy_c = yy - n * ybar * ybar
    squares, kept = np.append(np.diag(G), yy), np.append(np.diag(A), yy_c)
    shrink = float(np.max(np.where(squares > 0, squares / np.maximum(kept, np.finfo(float).tiny), 1.0)))
    return A, b, yy_c, mean, ybar, max(shrink, 1.0) if n > 0 else 1.0


def solve_normal(model: Model, data: Dataset, comm: "Comm", l2: float, memory_limit: int,
                 timeline: Timeline, algorithm: str = "native") -> tuple[np.ndarray, dict]:
    """Collective: (theta (n_params,) float64, what to log) for ``fit_normal``; the log's ``sums``
    are the reduced (loss sum, squared-error sum, rows) at theta, ``penalty`` the L2 term and
    ``passes`` the passes over the rows (1, or 2 when the means had to be taken out first)."""
    if not isinstance(model, LinearModel):
        raise TypeError(f"the normal equations solve linear regression only, not the {model.name} model; "
                        "use lbfgs or newton-cg for it")
    d = model.n_features
    need = memory_needed(d)
    if need > memory_limit:
        raise ValueError(f"the normal equations of {d} features need {need / 2**20:.0f} MiB per rank, more than "
                         f"the limit of {memory_limit / 2**20:.0f} MiB; raise memory_limit or use lbfgs")
    if data.n_features != d:
        raise ValueError(f"the data has {data.n_features} features, but the model expects {d}")
    if data.y is None:
        raise ValueError("the normal equations need labels y, and this data set has none")
    buf = local_moments(data.X, data.y)
    timeline.mark(COMPUTE)
    collectives.allreduce(buf, algorithm=algorithm, comm=comm)
    timeline.mark(REDUCE)
    n = buf[-1]
    if n == 0:
        raise ValueError("the normal equations need at least one row, and no rank has any")
    A, b, yy, mean, ybar, shrink = centred(buf, d)
    passes = 1
    if shrink > CANCEL_LIMIT:  # large means: sum again about them (the same decision on every rank)
        buf = local_moments(data.X, data.y, mean, ybar)
        timeline.mark(COMPUTE)
        collectives.allreduce(buf, algorithm=algorithm, comm=comm)
        timeline.mark(REDUCE)
        A, b, yy, shift, yshift, _ = centred(buf, d)
        mean, ybar, passes = mean + shift, ybar + yshift, 2
    M = A / n
    M[np.diag_indices(d)] += l2
    w, method = solve_spd(M, b / n)
    theta = np.empty(model.n_params)
    p = model.layout.views(theta)
    p["coef"][...] = w
    p["intercept"][...] = ybar - mean @ w
    gradient = A @ w / n - b / n + l2 * w  # the intercept's gradient is zero: y - Xw - b has mean 0
    squares = max(yy - 2 * b @ w + w @ A @ w, 0.0)  # the sum of squared residuals
    timeline.mark(UPDATE)
    return theta, {"sums": np.array([squares / 2, squares, n]), "penalty": float(0.5 * l2 * w @ w),
                   "gradient_max": float(np.abs(gradient).max(initial=0.0)), "solve": method, "passes": passes}
