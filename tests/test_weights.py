"""Row weights in the models: every weighted sum, gradient and Hessian product equals the sum of
the rows' unweighted ones times their weights (rows scored one at a time)."""
import numpy as np
import pytest

import mpitrain as mt
from mpitrain import weighting
from mpitrain.errors import JobError

MODELS = [("linear", {}), ("logistic", {}), ("softmax", {"n_classes": 3}),
          ("mlp", {"hidden": (4,), "n_classes": 3}), ("mlp", {"hidden": (4,), "loss": "squared-error"})]


def rows(name, options, n=13, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    k = options.get("n_classes", 2 if name == "logistic" else 0)
    y = rng.integers(0, k, n).astype(float) if k else rng.normal(size=n)
    return X, y, rng.uniform(0.0, 3.0, n)


@pytest.mark.parametrize("name, options", MODELS)
def test_weighted_sums_and_gradients_are_the_weighted_sums_of_the_rows(name, options):
    X, y, w = rows(name, options)
    model = mt.create_model(name, X.shape[1], **options)
    theta = np.random.default_rng(1).normal(size=model.n_params)
    grad = np.empty(model.n_params)
    loss, metric = model.sums(theta, X, y, grad, weight=w)
    want, want_grad, one = np.zeros(2), np.zeros(model.n_params), np.empty(model.n_params)
    for i in range(len(y)):
        want += w[i] * np.array(model.sums(theta, X[i:i + 1], y[i:i + 1], one))
        want_grad += w[i] * one
    np.testing.assert_allclose([loss, metric], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)
    if hasattr(model, "hessian_product"):
        v, out, part = np.random.default_rng(2).normal(size=model.n_params), np.empty(model.n_params), np.empty(model.n_params)
        model.hessian_product(theta, X, weight=w)(v, out)
        want_hv = np.zeros(model.n_params)
        for i in range(len(y)):
            model.hessian_product(theta, X[i:i + 1])(v, part)
            want_hv += w[i] * part
        np.testing.assert_allclose(out, want_hv, rtol=1e-12, atol=1e-12)


def test_balanced_class_weights_are_scikit_learns():
    utils = pytest.importorskip("sklearn.utils")
    comm = mt.world()
    y = np.array([0, 0, 0, 1, 2, 2, 0, 1, 0, 0], dtype=float)
    data = mt.Dataset(np.zeros((10, 1)), y, 0, 10, "t", np.array([10]))
    want = utils.compute_class_weight("balanced", classes=np.arange(3), y=y.astype(int))
    np.testing.assert_allclose(weighting.balanced(data, comm, 3), want[y.astype(int)], rtol=1e-15)
    scaled = weighting.with_weights(data, weighting.balanced(data, comm, 3), comm).weight
    assert scaled.mean() == pytest.approx(1.0, rel=1e-15)  # balanced weights already have mean 1


def test_bad_weights_and_columns_are_refused_by_row_and_name():
    comm = mt.world()
    data = mt.Dataset(np.arange(12.0).reshape(4, 3), np.zeros(4), 0, 4, "f.csv", np.array([4]), ("a", "b", "w"))
    with pytest.raises(JobError, match="row 2 has weight -1.0"):
        weighting.with_weights(data, np.array([1.0, 1.0, -1.0, 1.0]), comm)
    with pytest.raises(JobError, match="every row has weight 0"):
        weighting.with_weights(data, np.zeros(4), comm)
    with pytest.raises(JobError, match="has no column 'x'; its columns are a, b, w"):
        weighting.take_column(data, "x")
    taken = weighting.take_column(data, "w")
    assert taken.feature_names == ("a", "b") and taken.X.shape == (4, 2) and list(taken.weight) == [2.0, 5.0, 8.0, 11.0]
    with pytest.raises(mt.OptionError, match="row weights train with gd, sgd"):
        mt.fit(mt.create_model("linear", 3), weighting.with_weights(data, np.ones(4), comm), comm, mt.LocalSGD(2, 2),
               steps=1, lr=0.1)
