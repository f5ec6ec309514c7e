"""mpitrain.estimators under mpiexec: every rank fits with its OWN rows and the fit is global.

Rows are split unevenly (rank k holds 7 + 23 k rows; at 3 ranks or more rank 1 holds none), the
labels of one class live on the last rank only, and every rank checks that the coefficients
equal (1) a fit of all rows on this rank alone (``comm=Comm(COMM_SELF)``): 1e-12 for the exact
least squares, 1e-8 for logistic regression (both runs stop at a gradient of 1e-11, so only the
rounding of the sums differs), and (2) scikit-learn's estimator on all rows, on the same
objective, to the tolerances of tests/test_estimators.py. Every assertion is on values that
every rank computes alike.
"""
import warnings

import numpy as np
import pytest
from mpi4py import MPI

pytest.importorskip("sklearn")
from sklearn import linear_model  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402

import mpitrain as mt  # noqa: E402

pytestmark = pytest.mark.mpi
E = mt.estimators


def my_rows(comm):
    """(this rank's rows as a slice, the number of rows over all ranks)."""
    counts = 7 + 23 * np.arange(comm.size)
    if comm.size >= 3:
        counts[1] = 0
    start = int(counts[: comm.rank].sum())
    return slice(start, start + int(counts[comm.rank])), int(counts.sum())


def test_logistic_regression_is_global_with_string_labels(comm):
    mine, n = my_rows(comm)
    X, y = make_classification(n_samples=n, n_features=5, n_informative=3, n_classes=3, random_state=2)
    X[:, 0] += 4.0
    y = np.where(np.arange(n) >= n - 5, 2, y % 2)  # class "c" only in the last rank's last 5 rows
    names = np.array(["a", "b", "c"], dtype=object)[y]
    kwargs = dict(C=2.0, tol=1e-11, max_iter=100_000)
    ours = E.LogisticRegression(**kwargs).fit(X[mine], names[mine])
    alone = E.LogisticRegression(comm=mt.Comm(MPI.COMM_SELF), **kwargs).fit(X, names)
    ref = linear_model.LogisticRegression(C=2.0, tol=1e-12, max_iter=100_000).fit(X, names)
    assert list(ours.classes_) == ["a", "b", "c"] == list(ref.classes_)
    # Both stop on scikit-learn's ftol (a relative decrease under 64 machine epsilons) before tol,
    # on an ill-conditioned problem (column 0 shifted by 4 follows the intercepts): measured up to
    # 1.4e-9 apart at 1-5 ranks and 4.5e-7 at 6 ranks (AVX-512 and AVX2 kernels).
    np.testing.assert_allclose(ours.coef_, alone.coef_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.intercept_, alone.intercept_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=0, atol=1e-3)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=0, atol=1e-3)
    assert comm.identical(ours.coef_)
    # score is collective: the accuracy over every rank's rows
    assert ours.score(X[mine], names[mine]) == pytest.approx(np.mean(alone.predict(X) == names), abs=1e-12)


def test_binary_logistic_regression_with_numeric_labels(comm):
    mine, n = my_rows(comm)
    X, y = make_classification(n_samples=n, n_features=4, random_state=3)
    labels = np.where(y == 1, 5, -3)
    ours = E.LogisticRegression(C=0.5, tol=1e-11, max_iter=100_000).fit(X[mine], labels[mine])
    alone = E.LogisticRegression(C=0.5, tol=1e-11, max_iter=100_000, comm=mt.Comm(MPI.COMM_SELF)).fit(X, labels)
    optimum = linear_model.LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-15).fit(X, labels)
    assert list(ours.classes_) == [-3, 5] and ours.coef_.shape == (1, 4)
    # L-BFGS stops on scikit-learn's ftol (a relative decrease under 64 machine epsilons) before
    # tol: measured 1.3e-8 from the optimum at 3 ranks, 1.1e-8 alone at 6 ranks' rows.
    np.testing.assert_allclose(ours.coef_, alone.coef_, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ours.coef_, optimum.coef_, rtol=0, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_ridge_is_global(comm, alpha):
    mine, n = my_rows(comm)
    X, y = make_regression(n_samples=n, n_features=6, noise=2.0, random_state=4)
    X[:, 1] = 10.0 + 0.1 * X[:, 1]
    y = y + np.linspace(-5.0, 5.0, n)  # a trend along the rows: blocks have different local fits
    make = (lambda **kw: E.LinearRegression(**kw)) if alpha == 0 else (lambda **kw: E.Ridge(alpha=alpha, **kw))
    ours = make().fit(X[mine], y[mine])
    alone = make(comm=mt.Comm(MPI.COMM_SELF)).fit(X, y)
    ref = (linear_model.LinearRegression() if alpha == 0 else linear_model.Ridge(alpha=alpha)).fit(X, y)
    np.testing.assert_allclose(ours.coef_, alone.coef_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-9, atol=1e-9)
    assert ours.intercept_ == pytest.approx(ref.intercept_, rel=1e-9, abs=1e-9)
    assert ours.score(X[mine], y[mine]) == pytest.approx(ref.score(X, y), rel=1e-10)


def test_mlp_classifier_ends_identical_on_every_rank(comm):
    mine, n = my_rows(comm)
    X, y = make_classification(n_samples=n, n_features=4, random_state=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = E.MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=50).fit(X[mine], y[mine])
    assert all(comm.identical(W) for W in clf.coefs_) and clf.score(X[mine], y[mine]) > 0.8


def test_bad_rows_on_one_rank_raise_on_every_rank(comm):
    mine, n = my_rows(comm)
    X, y = make_classification(n_samples=n, n_features=4, random_state=6)
    bad = X[mine].copy()
    if comm.rank == comm.size - 1:
        bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        E.LogisticRegression().fit(bad, y[mine])
    if comm.size > 1:
        with pytest.raises(ValueError, match="disagree on the feature count"):
            E.Ridge().fit(X[mine][:, : 3 if comm.rank == 0 else 4], y[mine])
