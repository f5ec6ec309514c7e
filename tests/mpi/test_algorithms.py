"""Distributed training against serial references, run under mpiexec with 1 to 4 ranks.

Every assertion is on values that every rank computes alike, so a failure fails on all ranks
instead of leaving the others waiting in a collective.
"""
import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain.data import BatchSampler, batch_shares, block_bounds, block_sizes, open_source
from helpers import equal_shares, linear_gradient, logistic_gradient, ridge, with_intercept

pytestmark = pytest.mark.mpi


def same_bits_everywhere(theta: np.ndarray) -> bool:
    """True if every rank holds exactly these bytes (checked independently of mpitrain)."""
    return len(set(MPI.COMM_WORLD.allgather(theta.tobytes()))) == 1


def full_data(spec: str):
    """All rows, generated serially on this rank, as the reference sees them."""
    source = open_source(spec)
    return source.read(0, source.n_total)


@pytest.mark.parametrize("kind, reference", [("linear", linear_gradient), ("logistic", logistic_gradient)])
@pytest.mark.parametrize("n", [7, 101, 1001])
def test_one_gd_step_uses_the_serial_gradient(comm, kind, reference, n):
    spec = f"synthetic:{'regression' if kind == 'linear' else 'classification'},n={n},d=6,seed=3"
    data = mt.load(spec, comm)
    model = mt.create_model(kind, data.n_features)
    theta0 = np.linspace(-0.5, 0.5, model.n_params)
    result = mt.fit(model, data, comm, "gd", mt.Settings(steps=1, lr=1.0, l2=0.3), theta=theta0)
    X, y = full_data(spec)
    np.testing.assert_allclose(theta0 - result.theta, reference(theta0, X, y, 0.3), rtol=1e-12, atol=1e-15)
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_gd_reaches_the_least_squares_solution(comm, l2):
    spec = "synthetic:regression,n=301,d=5,noise=0.3,seed=7"
    data = mt.load(spec, comm)
    model = mt.create_model("linear", data.n_features)
    result = mt.fit(model, data, comm, "gd", mt.Settings(steps=400, lr=0.8, l2=l2))
    X, y = full_data(spec)
    np.testing.assert_allclose(result.theta, ridge(X, y, l2), rtol=0, atol=1e-8)
    assert same_bits_everywhere(result.theta)


def serial_sgd(spec, size, batch, steps, lr, l2, seed):
    """Synchronous SGD on one process: each step's global batch is the union of every rank's share."""
    X, y = full_data(spec)
    n = len(y)
    counts = block_sizes(n, size)
    samplers = [BatchSampler(block_bounds(n, size, r)[0], int(c), int(s), seed)
                for r, (c, s) in enumerate(zip(counts, batch_shares(counts, batch)))]
    theta = np.zeros(X.shape[1] + 1)
    for t in range(steps):
        rows = np.concatenate([s.start + s.indices(t) for s in samplers])
        assert len(rows) == batch
        theta = theta - lr * linear_gradient(theta, X[rows], y[rows], l2)
    return theta


def test_sgd_equals_serial_sgd_with_the_same_global_batches(comm):
    spec = "synthetic:regression,n=203,d=4,seed=2"
    data = mt.load(spec, comm)
    model = mt.create_model("linear", data.n_features)
    settings = mt.Settings(steps=40, lr=0.1, l2=0.01, batch_size=17, seed=4)
    result = mt.fit(model, data, comm, "sgd", settings)
    expected = serial_sgd(spec, comm.size, 17, 40, 0.1, 0.01, 4)
    np.testing.assert_allclose(result.theta, expected, rtol=1e-12, atol=1e-14)
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_local_sgd_with_sync_every_1_equals_sgd_on_equal_shares(comm, kind):
    # Rows and batch split evenly over the ranks (1200 and 60 at 1 to 5 ranks).
    rows, batch = equal_shares(comm.size)
    spec = f"synthetic:{'regression' if kind == 'linear' else 'classification'},n={rows},d=5,seed=1"
    data = mt.load(spec, comm)
    model = mt.create_model(kind, data.n_features)
    settings = mt.Settings(steps=30, lr=0.2, l2=0.01, batch_size=batch, sync_every=1, seed=9)
    sgd = mt.fit(model, data, comm, "sgd", settings)
    local = mt.fit(model, data, comm, "local-sgd", settings)
    np.testing.assert_allclose(local.theta, sgd.theta, rtol=1e-11, atol=1e-13)
    assert same_bits_everywhere(local.theta)


def serial_local_sgd(spec, size, batch, steps, lr, sync_every, seed):
    """Local SGD on one process: each virtual rank steps on its block, then an n_k/N-weighted mean."""
    X, y = full_data(spec)
    n = len(y)
    counts = block_sizes(n, size)
    shares = batch_shares(counts, batch)
    samplers = [BatchSampler(block_bounds(n, size, r)[0], int(c), int(s), seed)
                for r, (c, s) in enumerate(zip(counts, shares))]
    thetas = [np.zeros(X.shape[1] + 1) for _ in range(size)]
    for t in range(steps):
        for k, s in enumerate(samplers):
            rows = s.start + s.indices(t)
            thetas[k] = thetas[k] - lr * linear_gradient(thetas[k], X[rows], y[rows], 0.0)
        if (t + 1) % sync_every == 0 or t + 1 == steps:
            mean = sum(c / n * th for c, th in zip(counts, thetas))
            thetas = [mean.copy() for _ in range(size)]
    return thetas[0]


@pytest.mark.parametrize("algorithm, sync_every", [("local-sgd", 5), ("one-shot", None)])
def test_model_averaging_equals_serial_weighted_averaging(comm, algorithm, sync_every):
    # 999 rows: uneven blocks at 2 and 4 ranks, so the n_k/N weights matter.
    spec = "synthetic:regression,n=999,d=3,noise=0.1,seed=11"
    data = mt.load(spec, comm)
    model = mt.create_model("linear", data.n_features)
    settings = mt.Settings(steps=600, lr=0.05, batch_size=20, sync_every=sync_every, seed=2)
    result = mt.fit(model, data, comm, algorithm, settings)
    expected = serial_local_sgd(spec, comm.size, 20, 600, 0.05, sync_every or 600, 2)
    np.testing.assert_allclose(result.theta, expected, rtol=1e-10, atol=1e-12)
    assert same_bits_everywhere(result.theta)
    # And the average lands near the least-squares optimum of the whole data (SGD noise: 0.03).
    X, y = full_data(spec)
    np.testing.assert_allclose(result.theta, ridge(X, y, 0.0), atol=0.03)


@pytest.mark.parametrize("algorithm, extra", [
    ("gd", {}), ("sgd", {"batch_size": 2}), ("local-sgd", {"batch_size": 2, "sync_every": 2}),
    ("one-shot", {"batch_size": 2}),
])
@pytest.mark.mpi(min_size=3)
def test_more_ranks_than_rows_completes(comm, algorithm, extra):
    data = mt.load("synthetic:regression,n=2,d=2", comm)
    assert data.n_local == (1 if comm.rank < 2 else 0)
    model = mt.create_model("linear", 2)
    result = mt.fit(model, data, comm, algorithm, mt.Settings(steps=5, lr=0.1, **extra))
    assert np.isfinite(result.theta).all() and same_bits_everywhere(result.theta)


def test_predict_returns_serial_predictions_in_row_order(comm):
    spec = "synthetic:classification,n=57,d=3,seed=4"
    data = mt.load(spec, comm)
    model = mt.create_model("logistic", 3)
    theta = np.array([0.5, -1.0, 2.0, 0.1])
    predictions, accuracy = mt.predict(model, theta, data, comm)
    X, y = full_data(spec)
    z = with_intercept(X) @ theta
    expected = 1 / (1 + np.exp(-z))
    ok = predictions is not None and np.allclose(predictions, expected, rtol=1e-14, atol=0)
    assert MPI.COMM_WORLD.bcast(ok if comm.rank == 0 else None, root=0)
    assert (predictions is None) == (comm.rank != 0)
    assert accuracy == pytest.approx(np.mean((z > 0) == (y == 1)), abs=1e-15)


@pytest.mark.parametrize("algorithm", ["native", "ring", "recursive_doubling", "rabenseifner", "tree", "auto"])
def test_every_allreduce_algorithm_trains_the_same_model(comm, algorithm):
    spec = "synthetic:regression,n=203,d=4,seed=2"
    data = mt.load(spec, comm)
    model = mt.create_model("linear", data.n_features)
    settings = mt.Settings(steps=40, lr=0.1, l2=0.01, batch_size=17, seed=4, allreduce=algorithm)
    result = mt.fit(model, data, comm, "sgd", settings)
    # Algorithms add the per-rank sums in different orders: equal to rounding, not bitwise.
    np.testing.assert_allclose(result.theta, serial_sgd(spec, comm.size, 17, 40, 0.1, 0.01, 4), rtol=1e-12, atol=1e-14)
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("codec", ["fp16", "bf16"])
def test_compressed_gradients_with_error_feedback_reach_the_same_optimum(comm, codec):
    spec = "synthetic:regression,n=400,d=5,noise=0.1,seed=3"
    data = mt.load(spec, comm)
    model = mt.create_model("linear", data.n_features)
    result = mt.fit(model, data, comm, "gd", mt.Settings(steps=300, lr=0.5, compress=codec))
    X, y = full_data(spec)
    # Measured at 1-5 ranks: about 2e-6 (fp16) and 3e-5 (bf16) from the exact optimum; 10x margin.
    np.testing.assert_allclose(result.theta, ridge(X, y, 0.0), atol=2e-5 if codec == "fp16" else 2e-4)
    assert same_bits_everywhere(result.theta)


def test_float32_training_stays_in_float32_and_matches_the_float64_run(comm):
    spec = "synthetic:classification,n=300,d=6,seed=5,classes=3"
    data = mt.load(spec, comm)
    model = mt.create_model("mlp", 6, hidden=(8,), n_classes=3)
    settings = mt.Settings(steps=30, lr=0.1, batch_size=30, seed=3, optimizer="adam")
    wide = mt.fit(model, data, comm, "sgd", settings)
    narrow = mt.fit(model, mt.as_dtype(data, "float32"), comm, "sgd", settings)
    assert narrow.theta.dtype == np.float32
    assert mt.optim.flatten(narrow.opt_state, counts=False).dtype == np.float32
    assert same_bits_everywhere(narrow.theta)
    # 30 Adam steps in single precision: within 1e-4 of the double-precision parameters.
    np.testing.assert_allclose(narrow.theta, wide.theta, rtol=0, atol=1e-4)
