"""scikit-learn-style estimators over the training core: ``fit(X, y)`` with this rank's rows, one global fit.

Under ``mpiexec`` every rank calls ``fit(X, y)`` with its OWN rows (any number, zero included) and
every rank ends with the same ``coef_``: the model of all ranks' rows together. ``classes_`` are
the sorted distinct labels over all ranks. On one rank they behave like scikit-learn's estimators
of the same names. ``fit`` and ``score`` are collective (every rank of ``comm`` calls them);
``predict``, ``predict_proba`` and ``decision_function`` are local, on this rank's rows. Needs
scikit-learn >= 1.6 (``pip install 'mpitrain[sklearn]'``) for its parameters and input checks.

    >>> clf = mt.estimators.LogisticRegression(C=10.0).fit(X_mine, y_mine)  # doctest: +SKIP
    >>> clf.score(X_test_mine, y_test_mine)   # accuracy over every rank's test rows  # doctest: +SKIP
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn missing or older than 1.6 (no validate_data)
    raise ImportError("mpitrain.estimators needs scikit-learn >= 1.6: pip install 'mpitrain[sklearn]'") from exc

from .algorithms import LBFGS, SGD, steps_per_epoch
from .algorithms import fit as core_fit
from .algorithms.solver import STALLED
from .data import Dataset
from .errors import JobError
from .models import MLP, LogisticModel, Model, SoftmaxModel
from .models.logistic import sigmoid

if TYPE_CHECKING:
    from .comm import Comm

__all__ = ["LogisticRegression", "LinearRegression", "Ridge", "MLPClassifier"]

# -- collective helpers ----------------------------------------------------------------------
def _as_comm(comm: Any) -> "Comm":
    """The estimator's ``comm``: None means ``mt.world()``; an mpi4py communicator is duplicated."""
    from .comm import Comm, world

    if comm is None:
        return world()
    return comm if isinstance(comm, Comm) else Comm(comm)


def _together(comm: "Comm", fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on every rank; a ValueError or TypeError on any rank becomes one ValueError on
    every rank (naming the ranks), so no rank is left waiting in the next collective."""
    if comm.size == 1:
        return fn()
    try:
        out, error = fn(), ""
    except (ValueError, TypeError) as exc:
        out, error = None, str(exc)
    try:
        comm.raise_if_any(error)
    except JobError as exc:
        raise ValueError(str(exc)) from None
    return out


def _dataset(comm: "Comm", X: np.ndarray, y: np.ndarray) -> Dataset:
    """Collective: this rank's rows as the core's Dataset; ValueError if no rank has rows."""
    counts = comm.allgather_int(X.shape[0])
    try:
        comm.agree_int("feature count", X.shape[1], "X")
    except JobError as exc:
        raise ValueError(str(exc)) from None
    if not counts.sum():
        raise ValueError(f"every rank passed 0 rows to fit; at least one rank needs rows ({comm.size} ranks)")
    return Dataset(X=X, y=y, start=int(counts[: comm.rank].sum()), n_total=int(counts.sum()), spec="fit(X, y)",
                   counts=counts)


def _validate(estimator: BaseEstimator, comm: "Comm", X: Any, y: Any, classifier: bool) -> tuple[np.ndarray, np.ndarray]:
    """X (n, d) and y (n,) as float64 / labels, checked as scikit-learn does (a rank may have 0 rows)."""
    def check() -> tuple[np.ndarray, np.ndarray]:
        X_, y_ = validate_data(estimator, X, y, dtype=np.float64, y_numeric=not classifier,
                               ensure_min_samples=1 if comm.size == 1 else 0)
        if classifier:
            check_classification_targets(y_)
        return X_, y_
    return _together(comm, check)


_KINDS = "biufU"  # label kinds that travel: bool, int, unsigned, float, str


def _global_classes(comm: "Comm", y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collective: (classes_, index of each of this rank's labels in classes_).

    classes_ are the sorted distinct labels over all ranks. On one rank, ``np.unique`` exactly;
    across ranks, the labels travel as numbers (int64 or float64) or as UCS-4 code points.
    """
    if comm.size == 1:
        classes, index = np.unique(y, return_inverse=True)
        return classes, index.reshape(-1)
    if y.dtype.kind == "O":
        y = y.astype(str)
    kinds = comm.allgather_int(_KINDS.index(y.dtype.kind) + 1 if y.dtype.kind in _KINDS and y.size else 0)
    present = {_KINDS[k - 1] for k in kinds if k}
    if "U" in present and len(present) > 1:
        seen = ", ".join(f"rank {r}: {'str' if _KINDS[k - 1] == 'U' else 'numbers'}" for r, k in enumerate(kinds) if k)
        raise ValueError(f"ranks disagree on the type of the labels y ({seen}); give every rank the same type")
    if "U" in present:
        width = int(comm.Allreduce(np.array([y.dtype.itemsize // 4 if y.size else 1], dtype=np.int64), "max")[0])
        local = np.unique(y).astype(f"<U{width}")
        codes = _gather_rows(comm, local.view(np.uint32).reshape(-1, width))
        classes = np.unique(codes.view(f"<U{width}").reshape(-1))
        y = y.astype(f"<U{width}")
    else:
        dtype = np.float64 if "f" in present else np.int64
        y = y.astype(dtype)
        classes = np.unique(_gather_rows(comm, np.unique(y)))
    return classes, np.searchsorted(classes, y)


def _gather_rows(comm: "Comm", local: np.ndarray) -> np.ndarray:
    """Collective: every rank's rows (n_k, ...) concatenated in rank order, on every rank (a sum of
    zero-padded blocks, so only buffers travel)."""
    counts = comm.allgather_int(local.shape[0])
    out = np.zeros((int(counts.sum()),) + local.shape[1:], dtype=local.dtype)
    start = int(counts[: comm.rank].sum())
    out[start : start + local.shape[0]] = local
    return comm.Allreduce(out)


def _minimise(model: Model, data: Dataset, comm: "Comm", l2: float, tol: float, max_iter: int) -> tuple[np.ndarray, int]:
    """Collective: (theta, iterations) minimising mean loss + (l2/2)||w||^2 by distributed L-BFGS on
    the core (``mt.fit(..., LBFGS(tol=tol))``): it stops once the largest gradient entry is at most
    ``tol`` (scikit-learn's test), when the objective stops moving (its relative decrease falls below
    64 machine epsilons, scikit-learn's ftol), or after ``max_iter`` iterations, then with a
    ConvergenceWarning."""
    result = core_fit(model, data, comm, LBFGS(tol=tol), steps=max_iter, l2=l2)
    if not result.converged and result.message != STALLED:  # scipy's L-BFGS-B also calls that stop converged
        warnings.warn(f"L-BFGS did not reach tol = {tol:g} in max_iter = {max_iter} iterations ({result.message}); "
                      "raise max_iter (or tol), or scale the features", ConvergenceWarning, stacklevel=3)
    return result.theta, result.steps


def _rows(estimator: BaseEstimator, X: Any) -> np.ndarray:
    """X (n, n_features) as float64 for a fitted estimator; n may be 0 (a rank without rows)."""
    check_is_fitted(estimator)
    return validate_data(estimator, X, dtype=np.float64, reset=False, ensure_min_samples=0)


def _score(comm: "Comm", hits: np.ndarray, sample_weight: Optional[np.ndarray]) -> float:
    """Collective: the weighted mean of ``hits`` (n,) over every rank's rows."""
    w = np.ones(hits.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    sums = comm.Allreduce(np.array([w @ hits, w.sum()]))
    return float(sums[0] / sums[1])


# -- classifiers -----------------------------------------------------------------------------
class _Classifier(ClassifierMixin, BaseEstimator):
    """What the classifiers share: labels of any kind, global classes_, collective score."""

    def _labels(self, comm: "Comm", X: Any, y: Any) -> Dataset:
        """Collective: validate, set classes_ and return the data with y as class indices."""
        X, y = _validate(self, comm, X, y, classifier=True)
        self.classes_, index = _together(comm, lambda: _global_classes(comm, y))
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes, but the data (all ranks) "
                             f"contains only one class: {self.classes_[0]!r}")
        return _dataset(comm, X, index.astype(np.float64))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row of X (n, n_features): shape (n,)."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of predict_proba: shape (n, n_classes)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def score(self, X: Any, y: Any, sample_weight: Optional[Any] = None) -> float:
        """Collective: the (weighted) accuracy over every rank's rows X (n, n_features), y (n,)."""
        comm = _as_comm(self.comm)
        hits = _together(comm, lambda: (self.predict(X) == np.asarray(y)).astype(np.float64))
        return _score(comm, hits, sample_weight)


class LogisticRegression(_Classifier):
    """L2-regularised logistic regression: binary (the logistic model) or multinomial (softmax).

    Minimises mean cross-entropy + ||w||^2 / (2 C N) over all ranks' N rows (scikit-learn's
    ``LogisticRegression(C=C)``; intercepts unpenalised; ``C=np.inf`` for no penalty) by
    distributed L-BFGS on the training core (one Allreduce per evaluation), until the largest
    gradient entry is at most ``tol`` or after ``max_iter`` iterations, as scikit-learn's lbfgs
    solver does. ``comm``: None for ``mt.world()``.

    Learned: classes_ (K,), coef_ (1, n_features) or (K, n_features), intercept_ (1,) or (K,),
    n_features_in_, n_iter_ (1,) the L-BFGS iterations taken.
    """

    def __init__(self, C: float = 1.0, *, tol: float = 1e-4, max_iter: int = 100, comm: Any = None) -> None:
        self.C, self.tol, self.max_iter, self.comm = C, tol, max_iter, comm

    def fit(self, X: Any, y: Any) -> "LogisticRegression":
        """Collective: fit on this rank's rows X (n, n_features), y (n,) and every other rank's."""
        if not (self.C > 0 and self.tol >= 0 and int(self.max_iter) == self.max_iter >= 1):
            raise ValueError(f"need C > 0, tol >= 0 and an integer max_iter >= 1, not C={self.C!r}, "
                             f"tol={self.tol!r}, max_iter={self.max_iter!r}")
        comm = _as_comm(self.comm)
        data = self._labels(comm, X, y)
        K = len(self.classes_)
        model: Model = LogisticModel(data.n_features) if K == 2 else SoftmaxModel(data.n_features, K)
        theta, steps = _minimise(model, data, comm, 1.0 / (self.C * data.n_total), self.tol, int(self.max_iter))
        p = model.layout.views(theta)
        self.coef_ = p["coef"].reshape(1, -1).copy() if K == 2 else p["coef"].T.copy()
        self.intercept_ = np.atleast_1d(p["intercept"]).copy()
        self.n_iter_ = np.array([steps])
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Scores X (n, n_features) @ coef_.T + intercept_: shape (n,) for two classes, (n, K) otherwise."""
        X = _rows(self, X)
        scores = X @ self.coef_.T + self.intercept_
        return scores[:, 0] if len(self.classes_) == 2 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of the rows of X (n, n_features): shape (n, n_classes)."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = sigmoid(scores)
            return np.column_stack([1.0 - p, p])
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class MLPClassifier(_Classifier):
    """A multi-layer perceptron with a softmax cross-entropy head, trained by synchronous
    mini-batch SGD with Adam on the training core.

    ``hidden_layer_sizes``, ``activation`` ("relu" or "tanh"), ``alpha`` (the L2 term
    alpha/(2N)||W||^2 on the mean loss, scikit-learn's meaning), ``batch_size`` (the global batch;
    "auto" = min(200, N)), ``learning_rate_init``, ``max_iter`` (epochs; all of them run: there
    is no early stop on ``tol``), ``random_state`` (initial weights and batch order; None draws
    one on rank 0). Learned: classes_, coefs_ and intercepts_ (one array per layer),
    n_features_in_, n_iter_ (epochs).
    """

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, alpha: float = 1e-4,
                 batch_size: Any = "auto", learning_rate_init: float = 1e-3, max_iter: int = 200,
                 random_state: Any = None, comm: Any = None) -> None:
        self.hidden_layer_sizes, self.activation, self.alpha = hidden_layer_sizes, activation, alpha
        self.batch_size, self.learning_rate_init, self.max_iter = batch_size, learning_rate_init, max_iter
        self.random_state, self.comm = random_state, comm

    def fit(self, X: Any, y: Any) -> "MLPClassifier":
        """Collective: fit on this rank's rows X (n, n_features), y (n,) and every other rank's."""
        if not (self.alpha >= 0 and self.learning_rate_init > 0 and int(self.max_iter) == self.max_iter >= 1):
            raise ValueError(f"need alpha >= 0, learning_rate_init > 0 and an integer max_iter >= 1, not alpha="
                             f"{self.alpha!r}, learning_rate_init={self.learning_rate_init!r}, max_iter={self.max_iter!r}")
        hidden = tuple(np.atleast_1d(self.hidden_layer_sizes).astype(int).tolist())
        comm = _as_comm(self.comm)
        data = self._labels(comm, X, y)
        model = MLP(data.n_features, hidden=hidden, activation=self.activation, n_classes=len(self.classes_))
        batch = min(200, data.n_total) if self.batch_size == "auto" else min(int(self.batch_size), data.n_total)
        seed = comm.Bcast(np.array([check_random_state(self.random_state).randint(2**31 - 1)], dtype=np.int64))
        theta = model.init(int(seed[0]))
        result = core_fit(model, data, comm, SGD(batch_size=batch), steps=int(self.max_iter) * steps_per_epoch(
            data.n_total, batch), lr=self.learning_rate_init, optimizer="adam", l2=self.alpha / data.n_total,
            seed=int(seed[0]), theta=comm.Bcast(theta))
        p = model.layout.views(result.theta)
        n_layers = len(model.sizes) - 1
        self.coefs_ = [p[f"W{i + 1}"].copy() for i in range(n_layers)]
        self.intercepts_ = [p[f"b{i + 1}"].copy() for i in range(n_layers)]
        self.n_iter_ = int(self.max_iter)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of the rows of X (n, n_features): shape (n, n_classes)."""
        X = _rows(self, X)
        hidden = tuple(W.shape[1] for W in self.coefs_[:-1])
        model = MLP(X.shape[1], hidden=hidden, activation=self.activation, n_classes=len(self.classes_))
        arrays = {f"W{i + 1}": W for i, W in enumerate(self.coefs_)}
        arrays.update({f"b{i + 1}": b for i, b in enumerate(self.intercepts_)})
        return model.predict(model.layout.pack(arrays), X)


# -- regressors ------------------------------------------------------------------------------
class Ridge(RegressorMixin, BaseEstimator):
    """Least squares with the penalty alpha ||w||^2 on the summed squared error (scikit-learn's
    ``Ridge(alpha)``; intercept unpenalised), solved exactly: the centred Gram matrix X^T X
    (n_features^2 floats) and X^T y travel in one Allreduce, after one for the means, and every
    rank solves the same system (least-norm for a singular one). ``comm``: None for ``mt.world()``.

    Learned: coef_ (n_features,), intercept_ (float), n_features_in_.
    """

    def __init__(self, alpha: float = 1.0, *, comm: Any = None) -> None:
        self.alpha, self.comm = alpha, comm

    def fit(self, X: Any, y: Any) -> "Ridge":
        """Collective: fit on this rank's rows X (n, n_features), y (n,) and every other rank's."""
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, not {self.alpha!r}")
        comm = _as_comm(self.comm)
        X, y = _validate(self, comm, X, y, classifier=False)
        data = _dataset(comm, X, y.astype(np.float64))
        d = data.n_features
        mean = comm.Allreduce(np.append(X.sum(axis=0), y.sum())) / data.n_total
        Xc, yc = X - mean[:-1], y - mean[-1]
        sums = comm.Allreduce(np.append((Xc.T @ Xc).ravel(), Xc.T @ yc))
        G, b = sums[: d * d].reshape(d, d), sums[d * d :]
        G[np.diag_indices(d)] += self.alpha
        self.coef_ = np.linalg.lstsq(G, b, rcond=None)[0]
        self.intercept_ = float(mean[-1] - mean[:-1] @ self.coef_)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values of the rows of X (n, n_features): shape (n,)."""
        X = _rows(self, X)
        return X @ self.coef_ + self.intercept_

    def score(self, X: Any, y: Any, sample_weight: Optional[Any] = None) -> float:
        """Collective: R^2 over every rank's rows X (n, n_features), y (n,) (1.0 or 0.0 for a constant y)."""
        comm = _as_comm(self.comm)
        y = np.asarray(y, dtype=np.float64)
        w = np.ones(y.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        r = y - _together(comm, lambda: self.predict(X))
        mean = comm.Allreduce(np.array([w @ y, w.sum()]))
        sums = comm.Allreduce(np.array([w @ (r * r), w @ (y - mean[0] / mean[1]) ** 2]))
        if sums[1] == 0:
            return 1.0 if sums[0] == 0 else 0.0
        return float(1.0 - sums[0] / sums[1])


class LinearRegression(Ridge):
    """Ordinary least squares (``Ridge`` with alpha = 0; least-norm coefficients when X^T X is singular)."""

    def __init__(self, *, comm: Any = None) -> None:
        self.comm = comm

    alpha = 0.0  # a class attribute, not a hyperparameter: get_params() holds only comm
