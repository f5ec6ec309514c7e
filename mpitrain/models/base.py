"""What every model shares: a parameter layout, options stored as given, zeros to start from."""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Optional

import numpy as np

from ..params import Layout

if TYPE_CHECKING:
    from ..data.schema import Schema


class Model:
    """A loss summed over rows, on one flat parameter vector theta of shape (n_params,).

    Subclasses set ``layout`` (weights before biases) and define ``sums``, ``metric``,
    ``predict`` and ``check_labels``; ``sums(theta, X, y, grad, ready)`` hands each part of
    ``grad`` to ``ready`` once it is final, so that its reduction can start
    (``algorithms.overlap``). ``OPTIONS`` names the constructor keywords a model file keeps.
    """

    name: ClassVar[str]
    metric_name: str  # "accuracy" or "rmse"; the MLP's depends on its loss
    OPTIONS: ClassVar[tuple[str, ...]] = ()
    n_features: int
    layout: Layout
    schema: Optional["Schema"] = None  # set by ``models.load``: names, classes, imputation, scaling

    @property
    def n_params(self) -> int:
        """Length of theta."""
        return self.layout.size

    @property
    def n_penalized(self) -> int:
        """theta[:n_penalized] are the weights that L2 and weight decay act on; the rest are biases."""
        return self.layout.n_penalized

    def options(self) -> dict:
        """The constructor keywords besides n_features, as given."""
        return {k: getattr(self, k) for k in self.OPTIONS}

    def init(self, seed: int) -> np.ndarray:
        """Starting parameters, shape (n_params,): zeros (convex models need no random start)."""
        return self.layout.zeros()


def text_label_error(y: np.ndarray, what: str) -> Optional[str]:
    """A message when ``y`` holds text, which models cannot use before ``encode_labels``; else None."""
    if y.dtype.kind in "USO":
        return (f"{what} needs numeric labels, but these are text (such as {str(y[0])!r}); map them to class "
                f"indices with mpitrain.data.encode_labels first")
    return None


def accuracy(correct: float, n: int) -> float:
    """Accuracy from the number of correct predictions among n rows."""
    return correct / n if n else float("nan")
