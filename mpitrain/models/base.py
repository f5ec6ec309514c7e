"""What every model shares: a parameter layout, options stored as given, zeros to start from."""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Optional

import numpy as np

from ..params import Layout

if TYPE_CHECKING:
    from ..data.schema import Schema


class Model:
    """The model protocol: a loss SUMMED over rows, on one flat parameter vector theta (n_params,).

    A model of your own subclasses this (see the README, "Your own model", and
    ``mpitrain.testing.check_model``) and provides:

    - ``name`` (a class attribute, the key in the registry and in model files) and ``OPTIONS``,
      the constructor keywords besides ``n_features`` that a model file keeps (ints, floats,
      strings or tuples of ints), each stored as an attribute of the same name;
    - ``layout``: a ``params.Layout`` naming the arrays in theta, weights (penalised by L2 and
      weight decay) before biases; ``n_features``; ``metric_name``;
    - ``sums(theta, X, y, grad=None, ready=None) -> (loss_sum, metric_sum)`` over the rows of X
      (n, n_features). The loss is the SUM over the rows, not the mean: the training loops add
      every rank's sums and divide by the global count. With ``grad`` (n_params,) given, it must
      OVERWRITE ``grad`` with the gradient of that loss sum (never ``grad +=``: grad holds the
      previous step's values). With ``ready`` given, it may hand each part of ``grad`` (a view
      into it, e.g. ``layout.views(grad)["W2"]``) to ``ready`` as soon as that part is final, so
      that its reduction starts while the rest is computed (``Reduce(overlap=True)``). A model
      that takes a ``weight`` keyword (n,) (every built-in one does) trains with row weights: each
      row's loss, gradient and metric count that much (``mpitrain.weighting``);
    - ``metric(metric_sum, n) -> float``: the reported metric over n rows (e.g. accuracy);
    - ``predict(theta, X) -> ndarray`` of shape (n,) or (n, K);
    - ``check_labels(y, start) -> None or a message`` naming the first bad label by its global row
      (``start`` + local index);
    - optionally ``init(seed) -> theta`` (zeros by default).
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
