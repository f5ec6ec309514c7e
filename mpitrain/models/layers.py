"""Layers and output losses, each forward beside its backward. NumPy only.

Shapes: X (n, d_in), W (d_in, d_out), b (d_out,), Z and A (n, d_out). A backward function takes
the gradient of the loss sum with respect to its output and returns it with respect to its input.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Optional

import numpy as np


def dense(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Z = X W + b, shape (n, d_out), a new array."""
    Z = X @ W
    Z += b
    return Z


Ready = Callable[[np.ndarray], None]
TALL = 1 << 20  # inputs of at least this many entries take their weight gradient as (dZ^T X)^T


def row_sums(r: np.ndarray, X, out: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """out = r @ X (= X^T r) for X dense (n, d) or scipy.sparse CSR, without densifying a sparse X."""
    if isinstance(X, np.ndarray):
        np.matmul(r, X, out=out)
    else:
        out[...] = X.T @ r


def dense_backward(
    X: np.ndarray, W: np.ndarray, dZ: np.ndarray, gW: np.ndarray, gb: np.ndarray, input_grad: bool = True,
    ready: Optional[Ready] = None,
) -> Optional[np.ndarray]:
    """Write dL/dW = X^T dZ into gW (d_in, d_out) and dL/db into gb (d_out,); return dL/dX (n, d_in).

    The first layer passes ``input_grad=False`` and gets None: nothing needs dL/dX there.
    ``ready`` gets gW, then gb, as soon as each is written (the reduction can start then).
    """
    if isinstance(X, np.ndarray) and X.size >= TALL and dZ.shape[1] < X.shape[1]:
        np.copyto(gW, (dZ.T @ X).T)  # OpenBLAS: 20-25% faster than X^T dZ for many rows and few outputs
    elif isinstance(X, np.ndarray):
        np.matmul(X.T, dZ, out=gW)
    else:  # scipy.sparse CSR rows: the product is dense, X stays sparse
        gW[...] = X.T @ dZ
    if ready is not None:
        ready(gW)
    np.matmul(ones(dZ.shape[0], dZ.dtype), dZ, out=gb)  # column sums: 2-5x faster than dZ.sum(axis=0)
    if ready is not None:
        ready(gb)
    return dZ @ W.T if input_grad else None


def relu(Z: np.ndarray) -> np.ndarray:
    """max(Z, 0), elementwise, in place: returns Z."""
    return np.maximum(Z, 0.0, out=Z)


def relu_backward(A: np.ndarray, dA: np.ndarray) -> np.ndarray:
    """dL/dZ = dA where A = relu(Z) > 0 (exactly where Z > 0), else 0; in place: returns dA."""
    return np.multiply(dA, A > 0, out=dA)


def tanh(Z: np.ndarray) -> np.ndarray:
    """tanh(Z), elementwise, in place: returns Z."""
    return np.tanh(Z, out=Z)


def tanh_backward(A: np.ndarray, dA: np.ndarray) -> np.ndarray:
    """dL/dZ = dA (1 - A^2) with A = tanh(Z); in place: returns dA."""
    dA *= 1.0 - A * A
    return dA


# Each activation overwrites its input, and its backward needs only the output: the forward
# pass keeps one array per layer, which measured ~25 us faster per MLP backward than keeping both.
Activation = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray, np.ndarray], np.ndarray]]
ACTIVATIONS: dict[str, Activation] = {"relu": (relu, relu_backward), "tanh": (tanh, tanh_backward)}


def softmax_cross_entropy(Z: np.ndarray, y: np.ndarray, dZ: Optional[np.ndarray] = None,
                          weight: Optional[np.ndarray] = None) -> tuple[float, float]:
    """(sum of -log softmax(Z)[y], number of rows whose largest logit is the label) for Z (n, K),
    each row times ``weight`` (n,) when given.

    With ``dZ`` (n, K) given, write dL/dZ = softmax(Z) - onehot(y) (times the weights) into it.
    """
    labels = y.astype(np.intp)
    rows = np.arange(labels.size)
    e = np.subtract(Z, row_max(Z), out=dZ)  # in dZ's memory when given: no temporaries of Z's size
    picked = e[rows, labels]  # the label's shifted logit (a copy), before the exponential
    np.exp(e, out=e)
    norm = e @ ones(Z.shape[1], e.dtype)  # row sums: NumPy's axis=1 sum is ~4x slower for few columns
    if dZ is not None:
        e /= norm[:, None]
        dZ[rows, labels] -= 1.0
    log_norm = np.log(norm)
    if weight is not None:
        if dZ is not None:
            dZ *= weight[:, None]
        return float(weight @ (log_norm - picked)), float(weight @ (Z.argmax(axis=1) == labels))
    loss = float(np.sum(log_norm - picked))
    correct = np.count_nonzero(Z.argmax(axis=1) == labels)
    return loss, float(correct)


@lru_cache(maxsize=16)
def ones(n: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of n ones: sums as matrix-vector products reuse it instead of allocating."""
    vector = np.ones(n, dtype=dtype)
    vector.flags.writeable = False
    return vector


def row_max(Z: np.ndarray) -> np.ndarray:
    """The largest entry of each row of Z (n, K), shape (n, 1), NaN where a row has one.

    For a few columns, a maximum over columns is ~3x faster than NumPy's reduction along rows
    (measured for 256 x 10 float32: 6 against 19 us), and gives the same values.
    """
    if Z.shape[1] > 32 or Z.shape[1] == 0:
        return Z.max(axis=1, keepdims=True)
    top = Z[:, 0].copy()
    for k in range(1, Z.shape[1]):
        np.maximum(top, Z[:, k], out=top)
    return top[:, None]


def squared_error(Z: np.ndarray, y: np.ndarray, dZ: Optional[np.ndarray] = None,
                  weight: Optional[np.ndarray] = None) -> tuple[float, float]:
    """(sum of (z - y)^2 / 2, sum of (z - y)^2) for one output column Z (n, 1), each row times
    ``weight`` (n,) when given; dZ = (Z - y) (times the weights)."""
    r = Z[:, 0] - y
    rw = r if weight is None else r * weight
    if dZ is not None:
        dZ[:, 0] = rw
    sq = float(r @ rw)
    return 0.5 * sq, sq


def softmax(Z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of Z (n, K), without overflow."""
    e = np.exp(Z - row_max(Z))
    return e / (e @ ones(Z.shape[1], e.dtype))[:, None]


def class_label_error(y: np.ndarray, start: int, n_classes: int, what: str) -> Optional[str]:
    """None if every label is an integer in [0, n_classes), else a message naming the first bad row."""
    from .base import text_label_error

    if text_label_error(y, what):
        return text_label_error(y, what)
    bad = np.flatnonzero((y != np.round(y)) | (y < 0) | (y >= n_classes))
    if bad.size:
        return (f"{what} with {n_classes} classes needs integer labels 0..{n_classes - 1}, "
                f"but row {start + bad[0]} has {y[bad[0]]}")
    return None
