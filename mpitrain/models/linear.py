"""Linear regression with squared error: loss(x, y) = (x.w + b - y)^2 / 2."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..params import Layout
from .base import Model, text_label_error
from .layers import Ready, row_sums


class LinearModel(Model):
    """Least squares on theta = [coef (n_features,), intercept], shape (n_features + 1,)."""

    name = "linear"
    metric_name = "rmse"

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.layout = Layout(weights={"coef": (n_features,)}, biases={"intercept": ()})

    def check_labels(self, y: np.ndarray, start: int = 0) -> Optional[str]:
        """None for real-valued labels; a message for text."""
        return text_label_error(y, "linear regression")

    def sums(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray, grad: Optional[np.ndarray] = None,
             ready: Optional[Ready] = None, weight: Optional[np.ndarray] = None) -> tuple[float, float]:
        """Return (sum of losses, sum of squared errors) over the rows of X (n, d), each row times
        ``weight`` (n,) when given.

        With ``grad`` (n_params,) given, write the gradient of the loss sum into it, handing the
        coefficient gradient to ``ready`` before the loss is summed.
        """
        p = self.layout.views(theta)
        r = X @ p["coef"] + p["intercept"] - y
        rw = r if weight is None else r * weight
        if grad is not None:
            g = self.layout.views(grad)
            row_sums(rw, X, g["coef"])
            if ready is not None:
                ready(g["coef"])
            g["intercept"][...] = rw.sum()
        sq = float(r @ rw)
        return 0.5 * sq, sq

    def hessian_product(self, theta: np.ndarray, X: np.ndarray,
                        weight: Optional[np.ndarray] = None) -> Callable[[np.ndarray, np.ndarray], None]:
        """A function (v, out) writing H v = [X^T u, sum u], u = (X v_coef + v_intercept) (times ``weight``),
        into out (n_params,)."""

        def product(v: np.ndarray, out: np.ndarray) -> None:
            u, o = self.layout.views(v), self.layout.views(out)
            r = X @ u["coef"] + u["intercept"]
            if weight is not None:
                r *= weight
            np.matmul(r, X, out=o["coef"])
            o["intercept"][...] = r.sum()

        return product

    def metric(self, metric_sum: float, n: int) -> float:
        """Root mean squared error from the summed squared errors of n rows."""
        return float(np.sqrt(metric_sum / n)) if n else float("nan")

    def predict(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Predicted values, shape (n,)."""
        p = self.layout.views(theta)
        return X @ p["coef"] + p["intercept"]
