"""mpitrain.estimators on one rank: scikit-learn's own check_estimator, and the same fits as
scikit-learn's estimators on the same objective (to stated tolerances).

Skipped checks of check_estimator: none of ours. Every check that scikit-learn runs for a
classifier or a regressor runs here and passes (``EXPECTED_FAILED`` is empty; keep the README's
list in step); scikit-learn skips its array-API checks itself unless SCIPY_ARRAY_API=1.
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn import linear_model  # noqa: E402
from sklearn.datasets import load_iris, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import mpitrain as mt  # noqa: E402

E = mt.estimators
EXPECTED_FAILED: dict = {}  # check name -> why it is skipped; none are


@parametrize_with_checks(
    [E.LogisticRegression(), E.Ridge(), E.LinearRegression(),
     # Smaller and faster than the default (100,) at 1e-3, which passes too but takes ~4x longer.
     E.MLPClassifier(hidden_layer_sizes=(10,), learning_rate_init=0.01)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED,
)
def test_check_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # checks that cap max_iter at a few steps
        check(estimator)


def objective(X, y, coef, intercept, C):
    """Plain NumPy: mean cross-entropy + ||coef||^2 / (2 C N) and the largest entry of its gradient."""
    n = X.shape[0]
    Z = X @ coef.T + intercept
    if Z.shape[1] == 1:  # binary: the logistic loss of class 1
        Z = np.hstack([np.zeros_like(Z), Z])
    Z -= Z.max(axis=1, keepdims=True)
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(P[np.arange(n), y]))
    P[np.arange(n), y] -= 1.0
    if coef.shape[0] == 1:
        P = P[:, 1:]
    grad = np.concatenate([(P.T @ X / n + coef / (C * n)).ravel(), P.mean(axis=0)])
    return loss + (coef * coef).sum() / (2 * C * n), np.abs(grad).max()


@pytest.mark.parametrize("data, C", [("binary", 0.1), ("binary", 1.0), ("binary", 100.0), ("iris", 0.1), ("iris", 1.0)])
def test_logistic_regression_matches_scikit_learn(data, C):
    """The same objective (mean loss + ||w||^2/(2CN)) as scikit-learn's LogisticRegression(C) (lbfgs).

    Both run L-BFGS with tol 1e-10 / 1e-12 and stop when the objective no longer moves (relative
    decrease below 64 machine epsilons), their largest gradient entries 1e-10 to 4e-7 here
    (checked in plain NumPy). So: our gradient is at most 1e-6, our objective at most scikit-learn's
    + 1e-12, the coefficients agree to 1e-4 (iris: raw, unscaled features and three classes), and
    the iteration counts agree within 25%.
    """
    if data == "binary":
        X, y = make_classification(n_samples=300, n_features=6, n_redundant=2, random_state=0)
    else:
        X, y = load_iris(return_X_y=True)
    ours = E.LogisticRegression(C=C, tol=1e-10, max_iter=100_000).fit(X, y)
    ref = linear_model.LogisticRegression(C=C, tol=1e-12, max_iter=100_000).fit(X, y)
    value, gradient = objective(X, y, ours.coef_, ours.intercept_, C)
    assert gradient <= 1e-6 and value <= objective(X, y, ref.coef_, ref.intercept_, C)[0] + 1e-12
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=0, atol=1e-4)
    assert abs(int(ours.n_iter_[0]) - int(ref.n_iter_[0])) <= 0.25 * int(ref.n_iter_[0])
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    assert ours.coef_.shape == ref.coef_.shape and ours.intercept_.shape == ref.intercept_.shape
    assert ours.decision_function(X).shape == ref.decision_function(X).shape
    assert ours.score(X, y) == pytest.approx(ref.score(X, y), abs=1e-12)
    assert ours.n_features_in_ == X.shape[1] and ours.n_iter_.shape == (1,) and 0 < ours.n_iter_[0] < 100_000


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 10.0])
def test_ridge_and_linear_regression_match_scikit_learn(alpha):
    X, y = make_regression(n_samples=120, n_features=5, noise=3.0, random_state=1)
    X[:, 0] += 50.0  # an offset far from zero: the centred Gram matrix keeps it exact
    ours = E.LinearRegression().fit(X, y) if alpha == 0 else E.Ridge(alpha=alpha).fit(X, y)
    ref = linear_model.LinearRegression().fit(X, y) if alpha == 0 else linear_model.Ridge(alpha=alpha).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-10, atol=1e-10)
    assert ours.intercept_ == pytest.approx(ref.intercept_, rel=1e-10, abs=1e-10)
    assert ours.score(X, y) == pytest.approx(ref.score(X, y), rel=1e-12)


def test_labels_of_any_kind_and_classes():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = E.LogisticRegression().fit(X, names)
    np.testing.assert_array_equal(clf.classes_, ["setosa", "versicolor", "virginica"])
    assert clf.predict(X).dtype == clf.classes_.dtype and np.mean(clf.predict(X) == names) > 0.95
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba)
    binary = E.LogisticRegression().fit(X, np.where(y == 0, -1.0, 7.0))
    np.testing.assert_array_equal(binary.classes_, [-1.0, 7.0])
    assert binary.coef_.shape == (1, 4) and binary.decision_function(X).shape == (150,)
    with pytest.raises(ValueError, match="at least 2 classes.*only one class"):
        E.LogisticRegression().fit(X, np.full(150, "a"))


def test_mlp_classifier_learns_iris_like_scikit_learn():
    """Same architecture, optimizer, batch and epochs as scikit-learn's MLPClassifier: training
    accuracy within 3 points of it (the initialisations and batch orders differ)."""
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    kwargs = dict(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=200, random_state=0)
    ours = E.MLPClassifier(**kwargs).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = sklearn.neural_network.MLPClassifier(**kwargs).fit(X, y)
    assert ours.score(X, y) >= ref.score(X, y) - 0.03
    assert [W.shape for W in ours.coefs_] == [W.shape for W in ref.coefs_] and ours.n_iter_ == 200
    again = E.MLPClassifier(**kwargs).fit(X, y)
    np.testing.assert_array_equal(ours.coefs_[0], again.coefs_[0])  # random_state fixes the result


def test_too_few_steps_warn_and_bad_hyperparameters_raise():
    X, y = load_iris(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match="max_iter = 50"):
        E.LogisticRegression(max_iter=50, tol=1e-12).fit(X, y)
    with pytest.raises(ValueError, match="C > 0.*C=0"):
        E.LogisticRegression(C=0).fit(X, y)
    with pytest.raises(ValueError, match="alpha must be >= 0, not -1"):
        E.Ridge(alpha=-1).fit(X, y)


def test_names_and_imports():
    """mt.LogisticRegression is gone (the model is mt.LogisticModel); the estimators live in
    mt.estimators, which needs scikit-learn and says so."""
    assert not hasattr(mt, "LogisticRegression") and not hasattr(mt, "LinearRegression")
    assert mt.LogisticModel.name == "logistic" and mt.SoftmaxModel.name == "softmax" and mt.LinearModel.name == "linear"
    assert isinstance(E.LogisticRegression(), sklearn.base.ClassifierMixin)
    code = ("import sys; sys.modules['sklearn'] = None\nimport mpitrain\n"
            "try:\n    mpitrain.estimators\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'mpitrain[sklearn]'" in out.stdout, out.stderr
