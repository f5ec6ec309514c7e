"""Models: loss sums and gradients against finite differences and independent formulas."""
import numpy as np
import pytest

from mpitrain import models
from mpitrain.params import Layout
from helpers import linear_gradient, logistic_gradient, softmax_gradient


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


@pytest.mark.parametrize("name, options", [
    ("logistic", {}), ("softmax", {"n_classes": 4}),
    ("mlp", {"hidden": (5, 3), "activation": "tanh", "n_classes": 3}),
    ("mlp", {"hidden": (), "loss": "squared-error"}),
])
def test_model_file_round_trip(tmp_path, name, options):
    from mpitrain.outputs import write_npz

    model = models.create(name, 3, **options)
    theta = np.random.default_rng(0).standard_normal(model.n_params)
    write_npz(str(tmp_path / "m.npz"), models.save_arrays(model, theta))
    loaded, theta2 = models.load(str(tmp_path / "m.npz"))
    assert loaded.name == name and loaded.n_features == 3
    assert {k: v for k, v in loaded.options().items() if k in options} == options
    np.testing.assert_array_equal(theta2, theta)


def test_model_file_errors(tmp_path):
    with pytest.raises(models.UsageError, match="does not exist"):
        models.load(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "other.npz", a=np.ones(2))
    with pytest.raises(models.UsageError, match="lacks"):
        models.load(str(tmp_path / "other.npz"))


# -- parameters as views into one buffer --------------------------------------------------------

def test_layout_views_share_the_buffer_and_put_weights_first():
    layout = Layout(weights={"W1": (3, 2), "W2": (2, 1)}, biases={"b1": (2,), "b2": (1,)})
    assert (layout.size, layout.n_penalized) == (11, 8)
    theta = layout.zeros()
    p = layout.views(theta)
    p["W2"][...] = 2.0
    p["b1"][...] = 1.0
    np.testing.assert_array_equal(theta, [0] * 6 + [2, 2] + [1, 1] + [0])
    assert all(np.shares_memory(v, theta) for v in p.values())
    np.testing.assert_array_equal(layout.pack(p), theta)


def test_layout_pack_names_the_bad_array():
    layout = Layout(weights={"W": (2, 2)}, biases={"b": (2,)})
    with pytest.raises(ValueError, match="'b' is missing"):
        layout.pack({"W": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"'W' has shape \(4,\); expected \(2, 2\)"):
        layout.pack({"W": np.zeros(4), "b": np.zeros(2)})


@pytest.mark.parametrize("name, options", [
    ("linear", {}), ("softmax", {"n_classes": 3}), ("mlp", {"hidden": (4, 3), "n_classes": 3}),
])
def test_biases_lie_after_the_penalised_weights(name, options):
    model = models.create(name, 5, **options)
    views = model.layout.views(np.arange(model.n_params, dtype=float))
    weights = [v for k, v in views.items() if k in ("coef",) or k.startswith("W")]
    biases = [v for k, v in views.items() if k == "intercept" or k.startswith("b")]
    assert sum(w.size for w in weights) == model.n_penalized
    assert max(w.max() for w in weights) < model.n_penalized <= min(b.min() for b in biases)


# -- softmax regression and the MLP -------------------------------------------------------------

def class_data(n=30, d=4, k=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, k, n).astype(float)


def central_differences(model, theta, X, y, eps=1e-6):
    return np.array([
        (model.sums(theta + eps * e, X, y)[0] - model.sums(theta - eps * e, X, y)[0]) / (2 * eps)
        for e in np.eye(theta.size)
    ])


@pytest.mark.parametrize("name, options", [
    ("softmax", {"n_classes": 3}),
    ("mlp", {"hidden": (6,), "activation": "relu", "n_classes": 3}),
    ("mlp", {"hidden": (6,), "activation": "tanh", "n_classes": 3}),
    ("mlp", {"hidden": (5, 4), "activation": "relu", "n_classes": 3}),
    ("mlp", {"hidden": (5, 4), "activation": "tanh", "n_classes": 3}),
    ("mlp", {"hidden": (5,), "activation": "tanh", "loss": "squared-error"}),
])
def test_gradient_of_softmax_and_mlp_matches_central_differences(name, options):
    X, y = class_data()
    model = models.create(name, X.shape[1], **options)
    theta = model.init(seed=3) + 0.3 * np.random.default_rng(4).standard_normal(model.n_params)
    grad = np.full(model.n_params, np.nan)
    loss, _ = model.sums(theta, X, y, grad)
    assert loss == model.sums(theta, X, y)[0]
    # ReLU kinks: with these seeds no pre-activation lies within eps of 0, so differences are smooth.
    np.testing.assert_allclose(grad, central_differences(model, theta, X, y), rtol=1e-6, atol=1e-6)


def test_softmax_gradient_matches_closed_form():
    X, y = class_data(n=41, k=4)
    model = models.create("softmax", X.shape[1], n_classes=4)
    theta = np.random.default_rng(2).standard_normal(model.n_params)
    grad = np.empty_like(theta)
    model.sums(theta, X, y, grad)
    p = model.layout.views(theta)
    gW, gb = softmax_gradient(p["coef"], p["intercept"], X, y)
    np.testing.assert_allclose(grad / len(y), np.concatenate([gW.ravel(), gb]), rtol=1e-12, atol=1e-14)


def test_mlp_without_hidden_layers_is_softmax_regression():
    X, y = class_data()
    softmax, mlp = models.create("softmax", 4, n_classes=3), models.create("mlp", 4, hidden=(), n_classes=3)
    theta = np.random.default_rng(5).standard_normal(softmax.n_params)
    g1, g2 = np.empty_like(theta), np.empty_like(theta)
    assert softmax.sums(theta, X, y, g1) == mlp.sums(theta, X, y, g2)
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(softmax.predict(theta, X), mlp.predict(theta, X))


def test_softmax_is_stable_for_large_logits_and_counts_correct_rows():
    model = models.create("softmax", 1, n_classes=2)
    theta = np.array([1000.0, -1000.0, 0.0, 0.0])  # coef (1, 2), intercept (2,)
    loss, correct = model.sums(theta, np.array([[1.0], [-1.0], [1.0]]), np.array([0.0, 1.0, 1.0]))
    assert loss == pytest.approx(2000.0) and correct == 2
    probs = model.predict(theta, np.array([[1.0], [-1.0]]))
    np.testing.assert_allclose(probs, [[1, 0], [0, 1]], atol=1e-300)


def test_mlp_init_is_he_for_relu_and_glorot_for_tanh():
    relu = models.create("mlp", 400, hidden=(300,), activation="relu", n_classes=10)
    tanh = models.create("mlp", 400, hidden=(300,), activation="tanh", n_classes=10)
    for model in (relu, tanh):
        np.testing.assert_array_equal(model.init(7), model.init(7))
        p = model.layout.views(model.init(7))
        assert not p["b1"].any() and not p["b2"].any()
        # Glorot uniform at the output: the bound is sqrt(6 / (fan_in + fan_out)).
        assert np.abs(p["W2"]).max() <= np.sqrt(6 / 310) and np.abs(p["W2"]).max() > 0.95 * np.sqrt(6 / 310)
    # 120000 draws: the sample standard deviation is within 1% of the target.
    assert np.std(relu.layout.views(relu.init(7))["W1"]) == pytest.approx(np.sqrt(2 / 400), rel=0.01)
    assert np.std(tanh.layout.views(tanh.init(7))["W1"]) == pytest.approx(np.sqrt(2 / 700), rel=0.01)


def test_class_labels_are_checked():
    softmax = models.create("softmax", 2, n_classes=3)
    assert softmax.check_labels(np.array([0.0, 2.0, 1.0])) is None
    assert "row 11 has 3.0" in softmax.check_labels(np.array([0.0, 3.0]), start=10)
    assert "row 1 has 0.5" in models.create("mlp", 2, n_classes=3).check_labels(np.array([1.0, 0.5]))


def test_create_names_the_bad_option():
    with pytest.raises(models.UsageError, match="'logistic' has no option hidden"):
        models.create("logistic", 3, hidden=(4,))
    with pytest.raises(models.UsageError, match="unknown activation 'sigmoid'"):
        models.create("mlp", 3, activation="sigmoid", n_classes=2)
    with pytest.raises(models.UsageError, match="n_classes >= 2, not 1"):
        models.create("softmax", 3, n_classes=1)


@pytest.mark.parametrize("name, options", [("softmax", {"n_classes": 3}), ("mlp", {"hidden": (4,), "n_classes": 3})])
def test_a_rank_without_rows_contributes_zero(name, options):
    model = models.create(name, 2, **options)
    theta = model.init(0) + 0.1
    grad = np.full(model.n_params, np.nan)
    assert model.sums(theta, np.empty((0, 2)), np.empty(0), grad) == (0.0, 0.0)
    assert not grad.any() and model.predict(theta, np.empty((0, 2))).shape == (0, 3)


@pytest.mark.parametrize("k", [1, 2, 10, 33])
def test_row_max_is_numpys_row_maximum_with_nan_and_infinities(k):
    from mpitrain.models.layers import row_max

    Z = np.random.default_rng(k).standard_normal((50, k)).astype(np.float32)
    Z[3, -1], Z[7, 0], Z[9, :] = np.nan, np.inf, -np.inf
    assert np.array_equal(row_max(Z), Z.max(axis=1, keepdims=True), equal_nan=True)


def test_cached_ones_cannot_be_written():
    from mpitrain.models.layers import ones

    vector = ones(5, np.dtype(np.float32))
    assert vector.tolist() == [1.0] * 5 and ones(5, np.dtype(np.float32)) is vector
    with pytest.raises(ValueError):
        vector[0] = 2.0
