"""Binary logistic regression: loss(x, y) = log(1 + exp(z)) - y z with z = x.w + b, y in {0, 1}."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..params import Layout
from .base import Model, accuracy, text_label_error
from .layers import Ready, row_sums


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow."""
    return np.exp(-np.logaddexp(0.0, -z))


class LogisticModel(Model):
    """Logistic regression on theta = [coef (n_features,), intercept], shape (n_features + 1,)."""

    name = "logistic"
    metric_name = "accuracy"
    metric = staticmethod(accuracy)

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.layout = Layout(weights={"coef": (n_features,)}, biases={"intercept": ()})

    def check_labels(self, y: np.ndarray, start: int = 0) -> Optional[str]:
        """None if every label is 0 or 1, else a message naming the first bad one."""
        if text_label_error(y, "logistic regression"):
            return text_label_error(y, "logistic regression")
        bad = np.flatnonzero((y != 0) & (y != 1))
        if bad.size:
            return (f"logistic regression needs labels 0 or 1, but row {start + bad[0]} has {y[bad[0]]}; map "
                    f"two other classes (such as -1/+1) to 0/1 with mpitrain.data.encode_labels")
        return None

    def sums(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray, grad: Optional[np.ndarray] = None,
             ready: Optional[Ready] = None, weight: Optional[np.ndarray] = None) -> tuple[float, float]:
        """Return (sum of losses, number of correct predictions) over the rows of X (n, d), each row
        times ``weight`` (n,) when given.

        With ``grad`` (n_params,) given, write the gradient of the loss sum into it, handing the
        coefficient gradient to ``ready`` before the loss is summed.
        """
        p = self.layout.views(theta)
        z = X @ p["coef"] + p["intercept"]
        if grad is not None:
            g = self.layout.views(grad)
            r = sigmoid(z) - y
            if weight is not None:
                r *= weight
            row_sums(r, X, g["coef"])
            if ready is not None:
                ready(g["coef"])
            g["intercept"][...] = r.sum()
        if weight is not None:
            return float(weight @ (np.logaddexp(0.0, z) - y * z)), float(weight @ ((z > 0) == (y == 1)))
        loss = float(np.sum(np.logaddexp(0.0, z) - y * z))
        return loss, float(np.count_nonzero((z > 0) == (y == 1)))

    def hessian_product(self, theta: np.ndarray, X: np.ndarray,
                        weight: Optional[np.ndarray] = None) -> Callable[[np.ndarray, np.ndarray], None]:
        """A function (v, out) writing H v into out, both (n_params,), H the loss sum's Hessian at theta.

        H v = [X^T r, sum r] with r = p (1 - p) (X v_coef + v_intercept) (times the rows' ``weight``):
        the curvature weights p (1 - p) are computed here once and shared by every product.
        """
        p = self.layout.views(theta)
        prob = sigmoid(X @ p["coef"] + p["intercept"])
        rows = weight
        weight = prob * (1.0 - prob)
        if rows is not None:
            weight *= rows

        def product(v: np.ndarray, out: np.ndarray) -> None:
            u, o = self.layout.views(v), self.layout.views(out)
            r = weight * (X @ u["coef"] + u["intercept"])
            np.matmul(r, X, out=o["coef"])
            o["intercept"][...] = r.sum()

        return product

    def predict(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Probability of class 1, shape (n,)."""
        p = self.layout.views(theta)
        return sigmoid(X @ p["coef"] + p["intercept"])
