"""Softmax (multinomial) regression: loss(x, y) = -log softmax(x W + b)[y], y in {0, ..., K-1}."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..params import Layout
from .base import Model, accuracy
from .layers import Ready, class_label_error, dense, dense_backward, ones, softmax, softmax_cross_entropy


class SoftmaxModel(Model):
    """K-class softmax regression on theta = [coef (n_features, K), intercept (K,)]."""

    name = "softmax"
    metric_name = "accuracy"
    metric = staticmethod(accuracy)
    OPTIONS = ("n_classes",)

    def __init__(self, n_features: int, n_classes: int) -> None:
        if n_classes < 2:
            raise ValueError(f"softmax regression needs n_classes >= 2, not {n_classes}")
        self.n_features, self.n_classes = n_features, n_classes
        self.layout = Layout(weights={"coef": (n_features, n_classes)}, biases={"intercept": (n_classes,)})

    def check_labels(self, y: np.ndarray, start: int = 0) -> Optional[str]:
        """None if every label is an integer in [0, K), else a message naming the first bad row."""
        return class_label_error(y, start, self.n_classes, "softmax regression")

    def sums(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray, grad: Optional[np.ndarray] = None,
             ready: Optional[Ready] = None, weight: Optional[np.ndarray] = None) -> tuple[float, float]:
        """Return (sum of cross-entropies, number of correct predictions) over the rows of X (n, d),
        each row times ``weight`` (n,) when given.

        With ``grad`` (n_params,) given, write the gradient of the loss sum into it, handing the
        coefficient and intercept gradients to ``ready`` as soon as each is written.
        """
        p = self.layout.views(theta)
        Z = dense(X, p["coef"], p["intercept"])
        dZ = None if grad is None else np.empty_like(Z)
        loss, correct = softmax_cross_entropy(Z, y, dZ, weight)
        if grad is not None:
            g = self.layout.views(grad)
            dense_backward(X, p["coef"], dZ, g["coef"], g["intercept"], input_grad=False,
                           ready=ready)
        return loss, correct

    def hessian_product(self, theta: np.ndarray, X: np.ndarray,
                        weight: Optional[np.ndarray] = None) -> Callable[[np.ndarray, np.ndarray], None]:
        """A function (v, out) writing H v into out, both (n_params,), H the loss sum's Hessian at theta.

        With P = softmax(X W + b) (n, K), computed here once, and U = X V + v_b for the direction
        V = v_coef (d, K): R = P * (U - rowsum(P * U)) (each row times ``weight``), and
        H v = [X^T R, column sums of R].
        """
        p = self.layout.views(theta)
        P = softmax(dense(X, p["coef"], p["intercept"]))

        def product(v: np.ndarray, out: np.ndarray) -> None:
            u, o = self.layout.views(v), self.layout.views(out)
            PU = P * dense(X, u["coef"], u["intercept"])
            R = PU - P * (PU @ ones(P.shape[1], P.dtype))[:, None]
            if weight is not None:
                R *= weight[:, None]
            dense_backward(X, u["coef"], R, o["coef"], o["intercept"], input_grad=False)

        return product

    def predict(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, K)."""
        p = self.layout.views(theta)
        return softmax(dense(X, p["coef"], p["intercept"]))
