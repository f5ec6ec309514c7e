"""Weighted training on uneven blocks against scikit-learn's ``sample_weight`` and ``class_weight``:
the weighted objective's minimum to 1e-6, and weighted gd equal to gd on rows repeated by weight."""
import numpy as np
import pytest

import mpitrain as mt
from mpitrain import weighting
from mpitrain.algorithms.solve import fit_lbfgs

pytestmark = pytest.mark.mpi
linear_model = pytest.importorskip("sklearn.linear_model")


def uneven_counts(n, size):
    """Rows per rank in proportion to (rank + 1)^2, rank 1 empty from 3 ranks up."""
    shares = np.arange(1, size + 1, dtype=float) ** 2
    if size >= 3:
        shares[1] = 0
    counts = np.floor(n * shares / shares.sum()).astype(np.int64)
    counts[-1] += n - counts.sum()
    return counts


def blocks(X, y, w, comm):
    counts = uneven_counts(len(y), comm.size)
    lo = int(counts[:comm.rank].sum())
    hi = lo + int(counts[comm.rank])
    data = mt.Dataset(X[lo:hi], y[lo:hi], lo, len(y), "test", counts)
    return data if w is None else weighting.with_weights(data, w[lo:hi], comm)


def objective(model, theta, X, y, w, l2):
    """sum w_i loss_i / sum w_i + (l2/2)||coef||^2, in plain NumPy on this process."""
    z = X @ theta[:-1] + theta[-1] if model == "logistic" else None
    if model == "logistic":
        losses = np.logaddexp(0, z) - y * z
    elif model == "linear":
        losses = 0.5 * (X @ theta[:-1] + theta[-1] - y) ** 2
    else:
        k = len(theta) // (X.shape[1] + 1)
        Z = X @ theta[:-k].reshape(X.shape[1], k) + theta[-k:]
        losses = np.logaddexp.reduce(Z, axis=1) - Z[np.arange(len(y)), y.astype(int)]
        return w @ losses / w.sum() + 0.5 * l2 * theta[:-k] @ theta[:-k]
    return w @ losses / w.sum() + 0.5 * l2 * theta[:-1] @ theta[:-1]


def data(kind, n=400, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.geomspace(0.5, 3, d)
    if kind == "linear":
        y = X @ rng.normal(size=d) + 1.0 + rng.normal(size=n)
    elif kind == "logistic":
        y = (X @ rng.normal(size=d) + rng.logistic(size=n) > 1.0).astype(float)  # unbalanced classes
    else:
        y = np.argmax(X @ rng.normal(size=(d, 3)) + rng.gumbel(size=(n, 3)) + [1.5, 0, -1], axis=1).astype(float)
    return X, y, rng.uniform(0.2, 4.0, n)


@pytest.mark.parametrize("kind", ["logistic", "softmax", "linear"])
def test_weighted_lbfgs_reaches_scikit_learns_weighted_minimum(comm, kind):
    X, y, w = data(kind)
    l2 = 1e-2
    model = mt.create_model(kind, X.shape[1], **({"n_classes": 3} if kind == "softmax" else {}))
    result = fit_lbfgs(model, blocks(X, y, w, comm), comm, l2, tol=1e-10, max_iter=5000)
    if kind == "linear":  # Ridge: sum w r^2 + alpha ||coef||^2, alpha = l2 sum w
        ref = linear_model.Ridge(alpha=l2 * w.sum(), tol=1e-12).fit(X, y, sample_weight=w)
        theirs = np.concatenate([ref.coef_, [ref.intercept_]])
    else:  # LogisticRegression: C sum w loss + ||coef||^2 / 2, C = 1 / (l2 sum w)
        ref = linear_model.LogisticRegression(C=1 / (l2 * w.sum()), tol=1e-12, max_iter=100_000).fit(X, y, sample_weight=w)
        coef = ref.coef_[0] if kind == "logistic" else ref.coef_.T.ravel()
        theirs = np.concatenate([coef, ref.intercept_])
    ours, best = objective(kind, result.theta, X, y, w, l2), objective(kind, theirs, X, y, w, l2)
    assert abs(ours - best) <= 1e-6 * abs(best)
    np.testing.assert_allclose(result.theta, theirs, rtol=1e-4, atol=1e-4)


def test_balanced_class_weight_matches_scikit_learn(comm):
    X, y, _ = data("softmax", seed=3)
    l2 = 1e-2
    local = blocks(X, y, None, comm)
    weighted = weighting.with_weights(local, weighting.balanced(local, comm, 3), comm)
    result = fit_lbfgs(mt.create_model("softmax", 5, n_classes=3), weighted, comm, l2, tol=1e-10, max_iter=5000)
    counts = np.bincount(y.astype(int))
    w = (len(y) / (3 * counts))[y.astype(int)]
    ref = linear_model.LogisticRegression(C=1 / (l2 * w.sum()), class_weight="balanced", tol=1e-12,
                                          max_iter=100_000).fit(X, y)
    theirs = np.concatenate([ref.coef_.T.ravel(), ref.intercept_])
    ours, best = objective("softmax", result.theta, X, y, w, l2), objective("softmax", theirs, X, y, w, l2)
    assert abs(ours - best) <= 1e-6 * abs(best)


def test_weighted_gd_is_gd_on_rows_repeated_by_their_weight(comm):
    X, y, _ = data("logistic", n=120)
    repeats = np.random.default_rng(1).integers(1, 4, len(y))
    model = mt.create_model("logistic", 5)
    weighted = mt.fit(model, blocks(X, y, repeats.astype(float), comm), comm, mt.GD(), steps=60, lr=0.5)
    Xr, yr = np.repeat(X, repeats, axis=0), np.repeat(y, repeats)
    repeated = mt.fit(model, blocks(Xr, yr, None, comm), comm, mt.GD(), steps=60, lr=0.5)
    np.testing.assert_allclose(weighted.theta, repeated.theta, rtol=1e-10, atol=1e-12)
    sgd = mt.fit(model, blocks(X, y, repeats.astype(float), comm), comm, mt.SGD(60), steps=200, lr=0.3)
    assert objective("logistic", sgd.theta, X, y, repeats, 0.0) < objective("logistic", np.zeros(6), X, y, repeats, 0.0)
