"""Real data sets over MPI: stratified split, global standardisation, and accuracy that matches
scikit-learn on one machine. Every assertion is on values that every rank computes alike."""
import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain.data import n_classes, open_source, split, standardize

pytestmark = pytest.mark.mpi


def everywhere(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on every rank."""
    return MPI.COMM_WORLD.allreduce(bool(flag), op=MPI.LAND)


def gathered(local: np.ndarray) -> np.ndarray:
    """All ranks' rows in rank order, on every rank (test plumbing, independent of mpitrain)."""
    return np.concatenate(MPI.COMM_WORLD.allgather(local))


def full(name):
    source = open_source(name)
    return source.read(0, source.n_total)


def standardized(X: np.ndarray) -> np.ndarray:
    """(X - mean) / std over the rows, constant columns only centred (what StandardScaler does)."""
    std = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)


@pytest.mark.parametrize("name, fraction, seed", [("iris", 0.25, 0), ("wine", 0.3, 5), ("digits", 0.25, 1)])
def test_stratified_split_is_exact_and_independent_of_the_rank_count(comm, name, fraction, seed):
    train, test = split(mt.load(name, comm), comm, fraction, seed)
    X, y = full(name)
    # The specification, serially: for class c, the rows of class c in file order whose entry in
    # permutation(n_c) drawn from (seed, c) is below round(fraction * n_c) are the test rows.
    is_test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        is_test[rows] = np.random.default_rng([seed, int(c)]).permutation(rows.size) < np.floor(fraction * rows.size + 0.5)
    assert (train.n_total, test.n_total) == ((~is_test).sum(), is_test.sum())
    assert list(train.counts) == list(MPI.COMM_WORLD.allgather(train.n_local))
    assert train.start == sum(train.counts[: comm.rank])
    assert np.array_equal(gathered(test.X), X[is_test]) and np.array_equal(gathered(test.y), y[is_test])
    assert np.array_equal(gathered(train.X), X[~is_test])
    for c in np.unique(y):
        assert abs(np.sum(y[is_test] == c) - fraction * np.sum(y == c)) <= 0.5


def test_standardisation_uses_the_global_mean_and_variance(comm):
    train, test = split(mt.load("wine", comm), comm, 0.25, 0)
    X_train, X_test = gathered(train.X), gathered(test.X)
    mean, scale = standardize(train, comm, test)
    np.testing.assert_allclose(mean, X_train.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(scale, X_train.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(gathered(train.X), standardized(X_train), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(gathered(test.X), (X_test - X_train.mean(0)) / X_train.std(0), rtol=1e-11, atol=1e-12)
    assert len(set(MPI.COMM_WORLD.allgather(mean.tobytes() + scale.tobytes()))) == 1


def sklearn_objective(X, y, l2, multinomial):
    """min over (W, b) of mean cross-entropy + (l2/2)||W||^2, from scikit-learn's lbfgs solution."""
    from sklearn.linear_model import LogisticRegression

    n = len(y)
    fit = LogisticRegression(C=1 / (n * l2), tol=1e-12, max_iter=100000).fit(X, y)
    W, b = fit.coef_, fit.intercept_
    if not multinomial:
        z = X @ W[0] + b[0]
        return np.mean(np.logaddexp(0, z) - y * z) + l2 / 2 * np.sum(W**2)
    Z = X @ W.T + b
    top = Z.max(axis=1)
    lse = top + np.log(np.exp(Z - top[:, None]).sum(axis=1))
    return np.mean(lse - Z[np.arange(n), y.astype(int)]) + l2 / 2 * np.sum(W**2)


# Full-batch GD with Nesterov momentum, lr 1, from zeros; the iteration counts are what these
# problems need to come within 1e-9 of scikit-learn's objective (1e-6 is required).
@pytest.mark.parametrize("name, model_name, l2, steps", [
    ("breast_cancer", "logistic", 1e-3, 800),
    ("wine", "softmax", 1e-2, 300),
    ("digits", "softmax", 1e-2, 300),
])
def test_objective_matches_scikit_learn_logistic_regression(comm, name, model_name, l2, steps):
    data = mt.load(name, comm)
    standardize(data, comm)
    options = {"n_classes": n_classes(data, comm)} if model_name == "softmax" else {}
    model = mt.create_model(model_name, data.n_features, **options)
    result = mt.fit(model, data, comm, "gd", mt.Settings(steps=steps, lr=1.0, l2=l2, optimizer="nesterov"))
    objective, _ = mt.evaluate(model, result.theta, data, comm, l2)
    X, y = full(name)
    reference = sklearn_objective(standardized(X), y, l2, model_name == "softmax")
    print(f"{name} {model_name}: objective {objective:.15g}, scikit-learn {reference:.15g}, "
          f"relative difference {(objective - reference) / reference:.1e}")
    assert abs(objective - reference) <= 1e-6 * reference


# Test accuracy on the stratified 25% split (split seed 0), at 2 ranks as the issue asks. For
# comparison, scikit-learn on the same standardised split: LogisticRegression(C=1) 0.953 and
# MLPClassifier((64,)) 0.962 on digits.
ACCURACY = {
    "digits softmax": ("digits", "softmax", {}, dict(steps=1200, lr=0.1, l2=1e-3, batch_size=32), 0.95),
    "digits mlp": ("digits", "mlp", {"hidden": (64,)},
                   dict(steps=1200, lr=0.003, l2=1e-4, batch_size=32, optimizer="adam"), 0.96),
    "breast_cancer logistic": ("breast_cancer", "logistic", {}, dict(steps=600, lr=0.1, l2=1e-3, batch_size=32), 0.95),
}


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("case", ACCURACY)
def test_test_accuracy_on_a_stratified_quarter(comm, case):
    if comm.size != 2:
        pytest.skip("the accuracy targets are stated for 2 ranks")
    name, model_name, options, settings, target = ACCURACY[case]
    train, test = split(mt.load(name, comm), comm, 0.25, seed=0)
    standardize(train, comm, test)
    if model_name != "logistic":
        options = {**options, "n_classes": n_classes(train, comm)}
    model = mt.create_model(model_name, train.n_features, **options)
    result = mt.fit(model, train, comm, "sgd", mt.Settings(**settings))
    _, accuracy = mt.evaluate(model, result.theta, test, comm)
    print(f"{case}: test accuracy {accuracy:.4f} (target {target})")
    assert accuracy >= target
