"""Multi-layer perceptron: dense layers with ReLU or tanh between them, then a softmax
cross-entropy head (classification, K outputs) or squared error (regression, one output)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..params import Layout
from .base import Model, accuracy, text_label_error
from .layers import ACTIVATIONS, Ready, class_label_error, dense, dense_backward, softmax, softmax_cross_entropy, squared_error

LOSSES = ("cross-entropy", "squared-error")


class MLP(Model):
    """An MLP on theta = [W1, ..., WL, b1, ..., bL]; W_i has shape (sizes[i-1], sizes[i]).

    sizes = (n_features, *hidden, K) for cross-entropy and (n_features, *hidden, 1) for squared error.
    """

    name = "mlp"
    OPTIONS = ("hidden", "activation", "loss", "n_classes")

    def __init__(self, n_features: int, hidden: Sequence[int] = (64,), activation: str = "relu",
                 loss: str = "cross-entropy", n_classes: int = 0) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if loss == "cross-entropy" and n_classes < 2:
            raise ValueError(f"an MLP classifier needs n_classes >= 2, not {n_classes}")
        if loss == "squared-error" and n_classes:
            raise ValueError(f"an MLP regressor has one output; n_classes must be 0, not {n_classes}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden layer sizes must be >= 1, not {list(hidden)}")
        self.n_features, self.hidden, self.activation = n_features, tuple(int(h) for h in hidden), activation
        self.loss, self.n_classes = loss, n_classes
        self.metric_name = "accuracy" if loss == "cross-entropy" else "rmse"
        self.sizes = (n_features, *self.hidden, n_classes if loss == "cross-entropy" else 1)
        n_layers = len(self.sizes) - 1
        self.layout = Layout(
            weights={f"W{i + 1}": (self.sizes[i], self.sizes[i + 1]) for i in range(n_layers)},
            biases={f"b{i + 1}": (self.sizes[i + 1],) for i in range(n_layers)},
        )

    def init(self, seed: int) -> np.ndarray:
        """He-normal weights before ReLU, Glorot-uniform before tanh and at the output; zero biases."""
        rng = np.random.default_rng(seed)
        theta = self.layout.zeros()
        p = self.layout.views(theta)
        for i in range(1, len(self.sizes)):
            fan_in, fan_out = self.sizes[i - 1], self.sizes[i]
            if self.activation == "relu" and i < len(self.sizes) - 1:
                p[f"W{i}"][...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out))
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                p[f"W{i}"][...] = rng.uniform(-limit, limit, (fan_in, fan_out))
        return theta

    def check_labels(self, y: np.ndarray, start: int = 0) -> Optional[str]:
        """None if the labels suit the loss (integers in [0, K) for cross-entropy), else a message."""
        if self.loss == "squared-error":
            return text_label_error(y, "an MLP regressor")
        return class_label_error(y, start, self.n_classes, "an MLP classifier")

    def forward(self, theta: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The output Z (n, sizes[-1]) and the layer inputs A_0 = X, A_1, ..., A_{L-1}."""
        p = self.layout.views(theta)
        act = ACTIVATIONS[self.activation][0]
        L = len(self.sizes) - 1
        As = [X]
        for i in range(1, L):
            As.append(act(dense(As[-1], p[f"W{i}"], p[f"b{i}"])))
        return dense(As[-1], p[f"W{L}"], p[f"b{L}"]), As

    def sums(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray, grad: Optional[np.ndarray] = None,
             ready: Optional[Ready] = None, weight: Optional[np.ndarray] = None) -> tuple[float, float]:
        """Return (sum of losses, correct predictions or squared errors) over the rows of X (n, d),
        each row times ``weight`` (n,) when given.

        With ``grad`` (n_params,) given, write the gradient of the loss sum into it (backpropagation),
        handing each layer's weight and bias gradients to ``ready`` as soon as they are written,
        the last layer's first.
        """
        out, As = self.forward(theta, X)
        head = softmax_cross_entropy if self.loss == "cross-entropy" else squared_error
        dZ = None if grad is None else np.empty_like(out)
        loss, metric_sum = head(out, y, dZ, weight)
        if grad is not None:
            p, g = self.layout.views(theta), self.layout.views(grad)
            backward = ACTIVATIONS[self.activation][1]
            for i in range(len(As), 0, -1):
                dA = dense_backward(As[i - 1], p[f"W{i}"], dZ, g[f"W{i}"], g[f"b{i}"], input_grad=i > 1,
                                    ready=ready)
                if i > 1:
                    dZ = backward(As[i - 1], dA)
        return loss, metric_sum

    def metric(self, metric_sum: float, n: int) -> float:
        """Accuracy (cross-entropy) or root mean squared error (squared error) over n rows."""
        if self.loss == "cross-entropy":
            return accuracy(metric_sum, n)
        return float(np.sqrt(metric_sum / n)) if n else float("nan")

    def predict(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Class probabilities (n, K) for cross-entropy, predicted values (n,) for squared error."""
        out = self.forward(theta, X)[0]
        return softmax(out) if self.loss == "cross-entropy" else out[:, 0]
