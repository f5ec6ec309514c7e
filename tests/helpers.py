"""Independent references for the tests: closed forms and plain NumPy, no mpitrain code."""
from __future__ import annotations

import numpy as np


def with_intercept(X: np.ndarray) -> np.ndarray:
    """[X, 1] of shape (n, d + 1)."""
    return np.hstack([X, np.ones((X.shape[0], 1))])


def linear_gradient(theta: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Gradient of mean((A theta - y)^2)/2 + (l2/2)||w||^2 with A = [X, 1]."""
    A = with_intercept(X)
    g = A.T @ (A @ theta - y) / len(y)
    g[:-1] += l2 * theta[:-1]
    return g


def logistic_gradient(theta: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Gradient of mean(log(1 + e^z) - y z) + (l2/2)||w||^2 with z = [X, 1] theta."""
    A = with_intercept(X)
    p = 1.0 / (1.0 + np.exp(-(A @ theta)))
    g = A.T @ (p - y) / len(y)
    g[:-1] += l2 * theta[:-1]
    return g


def ridge(X: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Minimiser of mean((A theta - y)^2)/2 + (l2/2)||w||^2 (intercept unpenalised), by lstsq."""
    A = with_intercept(X)
    n, p = A.shape
    if l2 == 0:
        return np.linalg.lstsq(A, y, rcond=None)[0]
    D = np.sqrt(n * l2) * np.eye(p)[:-1]  # stacked rows penalise w, not the intercept
    return np.linalg.lstsq(np.vstack([A, D]), np.concatenate([y, np.zeros(p - 1)]), rcond=None)[0]


def softmax_gradient(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of mean cross-entropy of softmax(X W + b) with respect to W (d, K) and b (K,)."""
    Z = X @ W + b
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    P[np.arange(len(y)), y.astype(int)] -= 1
    return X.T @ P / len(y), P.mean(axis=0)


def equal_shares(size: int) -> tuple[int, int]:
    """(rows, batch) whose rows and batch split evenly over ``size`` ranks: 1200 and 60 where they do.

    Local SGD with H=1 equals synchronous SGD only when every rank's batch share is in the same
    proportion to its rows as its averaging weight, n_k / N; the caller's premise is checked here.
    """
    batch = 60 if 60 % size == 0 else 4 * size
    rows = 20 * batch
    assert rows % size == 0 and batch % size == 0, f"{rows} rows or a batch of {batch} split unevenly over {size} ranks"
    return rows, batch
