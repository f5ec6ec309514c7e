"""Models: loss sums and gradients against finite differences and independent formulas."""
import numpy as np
import pytest

from mpitrain import models
from helpers import linear_gradient, logistic_gradient


def data(kind: str, n: int = 40, d: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n) if kind == "linear" else (rng.random(n) < 0.5).astype(float)
    theta = rng.standard_normal(d + 1)
    return X, y, theta


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_gradient_matches_central_differences(kind):
    X, y, theta = data(kind)
    model = models.create(kind, X.shape[1])
    grad = np.empty_like(theta)
    model.sums(theta, X, y, grad)
    eps = 1e-6
    numeric = np.array([
        (model.sums(theta + eps * e, X, y)[0] - model.sums(theta - eps * e, X, y)[0]) / (2 * eps)
        for e in np.eye(theta.size)
    ])
    # Central differences have O(eps^2) truncation and O(1e-16 / eps) rounding error.
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind, reference", [("linear", linear_gradient), ("logistic", logistic_gradient)])
def test_gradient_sum_matches_closed_form(kind, reference):
    X, y, theta = data(kind, n=33)
    grad = np.empty_like(theta)
    models.create(kind, X.shape[1]).sums(theta, X, y, grad)
    np.testing.assert_allclose(grad / len(y), reference(theta, X, y, 0.0), rtol=1e-12, atol=1e-14)


def test_logistic_loss_is_stable_for_large_margins():
    model = models.create("logistic", 1)
    X = np.array([[1000.0], [-1000.0]])
    loss, correct = model.sums(np.array([1.0, 0.0]), X, np.array([1.0, 0.0]))
    assert np.isfinite(loss) and loss < 1e-300 and correct == 2


def test_metrics():
    lin, log = models.create("linear", 1), models.create("logistic", 1)
    X, y = np.array([[0.0], [0.0]]), np.array([1.0, -1.0])
    loss, sq = lin.sums(np.zeros(2), X, y)
    assert (loss, lin.metric(sq, 2)) == (1.0, 1.0)
    _, correct = log.sums(np.array([1.0, 0.0]), np.array([[1.0], [-1.0], [2.0]]), np.array([1.0, 0.0, 0.0]))
    assert log.metric(correct, 3) == pytest.approx(2 / 3)


def test_logistic_rejects_labels_other_than_0_and_1():
    message = models.create("logistic", 1).check_labels(np.array([0.0, 1.0, 2.0]), start=10)
    assert "row 12" in message and "2.0" in message
    assert models.create("logistic", 1).check_labels(np.array([0.0, 1.0])) is None


def test_model_file_round_trip(tmp_path):
    from mpitrain.outputs import write_npz

    model = models.create("logistic", 3)
    theta = np.array([1.0, -2.0, 3.0, 0.5])
    write_npz(str(tmp_path / "m.npz"), models.save_arrays(model, theta))
    loaded, theta2 = models.load(str(tmp_path / "m.npz"))
    assert loaded.name == "logistic" and loaded.n_features == 3
    np.testing.assert_array_equal(theta2, theta)


def test_model_file_errors(tmp_path):
    with pytest.raises(models.UsageError, match="does not exist"):
        models.load(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "other.npz", a=np.ones(2))
    with pytest.raises(models.UsageError, match="lacks"):
        models.load(str(tmp_path / "other.npz"))
