"""Every metric of mpitrain.metrics against sklearn.metrics on the same predictions, with the rows
split unevenly over the ranks (one rank holds none from 3 ranks up); to 1e-12, weighted or not."""
import numpy as np
import pytest

from mpitrain import metrics

pytestmark = pytest.mark.mpi
sk = pytest.importorskip("sklearn.metrics")
TOL = dict(rel=1e-12, abs=1e-12)


def mine(comm, *arrays):
    """This rank's slice of each array: rank r holds a share growing with r, rank 1 none from 3 ranks up."""
    n = len(next(a for a in arrays if a is not None)) if any(a is not None for a in arrays) else 0
    shares = np.array([0 if (r == 1 and comm.size >= 3) else r + 1 for r in range(comm.size)], dtype=float)
    cuts = np.concatenate([[0], np.cumsum(np.floor(n * shares / shares.sum()))]).astype(int)
    cuts[-1] = n
    lo, hi = cuts[comm.rank], cuts[comm.rank + 1]
    return [None if a is None else a[lo:hi] for a in arrays]


def sample_weight(n, weighted):
    return np.random.default_rng(5).uniform(0.1, 3.0, n) if weighted else None


@pytest.mark.parametrize("weighted", [False, True])
def test_binary_metrics_match_sklearn(comm, weighted):
    rng = np.random.default_rng(0)
    n = 203
    y = rng.integers(0, 2, n)
    p = np.round(np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1), 2)  # rounded: many tied scores
    p[:3] = [0.0, 1.0, 0.5]  # probabilities 0 and 1 (clipped by log_loss) and a tie at the threshold
    w = sample_weight(n, weighted)
    got = metrics.classification(*mine(comm, y, p), comm, metrics.CLASSIFICATION, 2, *mine(comm, w))
    full, labels = np.column_stack([1 - p, p]), (p > 0.5).astype(int)
    want = {"accuracy": sk.accuracy_score(y, labels, sample_weight=w),
            "log_loss": sk.log_loss(y, full, sample_weight=w, labels=[0, 1]),
            "auc": sk.roc_auc_score(y, p, sample_weight=w)}
    for average in ("macro", "weighted"):
        suffix = "" if average == "macro" else "_weighted"
        want["f1" + suffix] = sk.f1_score(y, labels, average=average, sample_weight=w)
        want["precision" + suffix] = sk.precision_score(y, labels, average=average, sample_weight=w)
        want["recall" + suffix] = sk.recall_score(y, labels, average=average, sample_weight=w)
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, **TOL), name


@pytest.mark.parametrize("weighted", [False, True])
def test_multiclass_metrics_and_confusion_matrix_match_sklearn(comm, weighted):
    rng = np.random.default_rng(1)
    n, k = 157, 5
    y = rng.integers(0, 4, n)  # class 4 appears in no label; class 3 in no prediction below
    proba = rng.dirichlet(np.ones(k), n)
    proba[np.arange(n), y] += rng.uniform(0, 0.5, n) * (rng.uniform(size=n) < 0.6)
    proba[:, 3] = 0.0  # rows of class 3 get probability 0 for their class: log_loss clips it
    proba /= proba.sum(axis=1, keepdims=True)
    w = sample_weight(n, weighted)
    names = tuple(m for m in metrics.CLASSIFICATION if m != "auc")
    got = metrics.classification(*mine(comm, y, proba), comm, names, k, *mine(comm, w))
    labels = np.argmax(proba, axis=1)
    assert 4 in labels and 3 not in labels
    want = {"accuracy": sk.accuracy_score(y, labels, sample_weight=w),
            "log_loss": sk.log_loss(y, proba, sample_weight=w, labels=list(range(k)))}
    for average in ("macro", "weighted"):
        suffix = "" if average == "macro" else "_weighted"
        want["f1" + suffix] = sk.f1_score(y, labels, average=average, sample_weight=w, zero_division=0)
        want["precision" + suffix] = sk.precision_score(y, labels, average=average, sample_weight=w, zero_division=0)
        want["recall" + suffix] = sk.recall_score(y, labels, average=average, sample_weight=w, zero_division=0)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, **TOL), name
    ys, ls, ws = mine(comm, y, labels, w)
    matrix = metrics.confusion_matrix(ys, ls, k, comm, ws)
    np.testing.assert_allclose(matrix, sk.confusion_matrix(y, labels, labels=list(range(k)), sample_weight=w),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_regression_metrics_match_sklearn(comm, weighted):
    rng = np.random.default_rng(2)
    n = 181
    y = 1e3 + rng.normal(0, 1, n)  # a large mean: R^2 from raw moments would lose digits here
    predicted = y + rng.normal(0, 0.3, n)
    w = sample_weight(n, weighted)
    got = metrics.regression(*mine(comm, y, predicted), comm, metrics.REGRESSION, *mine(comm, w))
    want = {"rmse": np.sqrt(sk.mean_squared_error(y, predicted, sample_weight=w)),
            "mae": sk.mean_absolute_error(y, predicted, sample_weight=w),
            "r2": sk.r2_score(y, predicted, sample_weight=w)}
    for name, value in want.items():
        assert got[name] == pytest.approx(value, **TOL), name


def test_score_of_a_model_matches_sklearn_on_its_predictions(comm):
    import mpitrain as mt

    data = mt.load("synthetic:classification,n=120,d=6,noise=1.0,classes=2,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    theta = np.random.default_rng(0).normal(size=model.n_params)
    got = metrics.score(model, theta, data, comm, ("auc", "f1"))
    X, y = comm.gather_rows(data.X), comm.gather_rows(data.y)
    want = np.zeros(2)
    if comm.rank == 0:
        p = model.predict(theta, X)
        want[:] = sk.roc_auc_score(y, p), sk.f1_score(y, p > 0.5, average="macro")
    comm.Bcast(want)
    assert got["auc"] == pytest.approx(want[0], **TOL) and got["f1"] == pytest.approx(want[1], **TOL)


def test_names_that_do_not_apply_are_refused():
    with pytest.raises(metrics.MetricError, match="binary"):
        metrics.check_names(("auc",), classifier=True, n_classes=3)
    with pytest.raises(metrics.MetricError, match="regression model"):
        metrics.check_names(("f1",), classifier=False)
    with pytest.raises(metrics.MetricError, match="unknown metric 'f2'"):
        metrics.check_names(("f2",), classifier=True)
