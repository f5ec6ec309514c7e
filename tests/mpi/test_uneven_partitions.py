"""Every averaging algorithm on strongly uneven partitions, against serial NumPy references.

The partitions are built by hand (rank k holds 9 + 17 k rows, and at 3 ranks or more rank 1
holds none), so the weights n_k / N differ from 1 / size at every world size above one. The
references step each virtual rank on its own rows with plain NumPy and average with n_k / N;
they use no mpitrain code. Every assertion is on values every rank computes alike.
"""
import dataclasses

import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from helpers import linear_gradient, with_intercept

pytestmark = pytest.mark.mpi

D = 3


def uneven_counts(size: int, empty_rank: bool) -> np.ndarray:
    """Rows per rank, shape (size,): 9 + 17 k, with rank 1 empty when asked and size >= 3."""
    counts = 9 + 17 * np.arange(size, dtype=np.int64)
    if empty_rank and size >= 3:
        counts[1] = 0
    return counts


def full_problem(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy linear regression problem of n rows, the same on every rank: X (n, D), y (n,)."""
    rng = np.random.default_rng(1234)
    X = rng.normal(size=(n, D))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.2 * rng.normal(size=n)
    # A trend along the rows: contiguous blocks have different local optima, so the weights matter.
    y += np.linspace(-1.0, 1.0, n)
    return X, y


def my_dataset(comm, counts: np.ndarray) -> tuple["mt.Dataset", np.ndarray, np.ndarray]:
    """This rank's block of ``full_problem`` under ``counts``, with the full X and y."""
    X, y = full_problem(int(counts.sum()))
    start = int(counts[: comm.rank].sum())
    stop = start + int(counts[comm.rank])
    return mt.Dataset(X[start:stop].copy(), y[start:stop].copy(), start, len(y), "uneven", counts), X, y


def blocks(counts: np.ndarray, X: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(X_k, y_k) of every rank, in rank order."""
    edges = np.concatenate([[0], np.cumsum(counts)])
    return [(X[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:])]


def serial_model_averaging(counts, X, y, theta0, steps, lr, l2, sync_every, momentum=None, local_state="keep"):
    """Full-batch local steps on every block, then the n_k / N-weighted mean at each sync.

    With ``momentum``: heavy ball per block (t = m t + g; theta -= lr t); at a sync the traces
    are kept, averaged with the same weights, or reset to zero (``local_state``).
    """
    parts = blocks(counts, X, y)
    weights = counts / counts.sum()
    thetas = [theta0.copy() for _ in parts]
    traces = [np.zeros_like(theta0) for _ in parts]
    for t in range(steps):
        for k, (Xk, yk) in enumerate(parts):
            if len(yk) == 0:
                continue  # an empty partition takes no step
            g = linear_gradient(thetas[k], Xk, yk, l2)
            if momentum is None:
                thetas[k] = thetas[k] - lr * g
            else:
                traces[k] = momentum * traces[k] + g
                thetas[k] = thetas[k] - lr * traces[k]
        if (t + 1) % sync_every == 0 or t + 1 == steps:
            mean = sum(w * th for w, th in zip(weights, thetas))
            thetas = [mean.copy() for _ in parts]
            if local_state == "average":
                mean_trace = sum(w * tr for w, tr in zip(weights, traces))
                traces = [mean_trace.copy() for _ in parts]
            elif local_state == "reset":
                traces = [np.zeros_like(theta0) for _ in parts]
    return thetas[0]


def same_bits_everywhere(theta: np.ndarray) -> bool:
    """True if every rank holds exactly these bytes (checked with mpi4py, not mpitrain)."""
    return len(set(MPI.COMM_WORLD.allgather(theta.tobytes()))) == 1


THETA0 = np.array([0.2, -0.1, 0.4, 0.0])


@pytest.mark.parametrize("empty_rank", [False, True])
@pytest.mark.parametrize("algorithm, sync_every", [("local-sgd", 3), ("local-sgd", 1), ("one-shot", None)])
def test_model_averaging_weights_partitions_by_their_rows(comm, algorithm, sync_every, empty_rank):
    counts = uneven_counts(comm.size, empty_rank)
    data, X, y = my_dataset(comm, counts)
    model = mt.create_model("linear", D)
    n = int(counts.sum())
    # batch_size = N: every rank's share is its whole block, so each local step is full-batch GD.
    settings = mt.Settings(steps=25, lr=0.1, l2=0.05, batch_size=n, sync_every=sync_every, seed=3)
    result = mt.fit(model, data, comm, algorithm, settings, theta=THETA0)
    expected = serial_model_averaging(counts, X, y, THETA0, 25, 0.1, 0.05, sync_every or 25)
    np.testing.assert_allclose(result.theta, expected, rtol=1e-10, atol=1e-12)
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("local_state", ["keep", "average", "reset"])
def test_local_momentum_state_is_kept_averaged_or_reset(comm, local_state):
    counts = uneven_counts(comm.size, empty_rank=False)
    data, X, y = my_dataset(comm, counts)
    model = mt.create_model("linear", D)
    settings = mt.Settings(steps=20, lr=0.05, batch_size=int(counts.sum()), sync_every=4, seed=1,
                           optimizer="momentum", momentum=0.8, local_state=local_state)
    result = mt.fit(model, data, comm, "local-sgd", settings, theta=THETA0)
    expected = serial_model_averaging(counts, X, y, THETA0, 20, 0.05, 0.0, 4, momentum=0.8, local_state=local_state)
    np.testing.assert_allclose(result.theta, expected, rtol=1e-10, atol=1e-12)
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("local_state", ["keep", "average", "reset"])
def test_local_adam_moments_are_kept_averaged_or_reset_with_the_step_count_kept(comm, local_state):
    """Adam per block (serial reference). At a sync its two moments are kept or n_k / N-averaged,
    with the shared step count of the bias correction going on; or the state restarts, count included."""
    counts = uneven_counts(comm.size, empty_rank=False)
    data, X, y = my_dataset(comm, counts)
    model = mt.create_model("linear", D)
    steps, lr, sync_every = 14, 0.05, 4
    settings = mt.Settings(steps=steps, lr=lr, batch_size=int(counts.sum()), sync_every=sync_every, seed=1,
                           optimizer="adam", local_state=local_state)
    result = mt.fit(model, data, comm, "local-sgd", settings, theta=THETA0)
    parts, weights = blocks(counts, X, y), counts / counts.sum()
    thetas = [THETA0.copy() for _ in parts]
    mus = [np.zeros_like(THETA0) for _ in parts]
    nus = [np.zeros_like(THETA0) for _ in parts]
    count = 0
    for t in range(1, steps + 1):
        count += 1
        for k, (Xk, yk) in enumerate(parts):
            g = linear_gradient(thetas[k], Xk, yk, 0.0)
            mus[k] = 0.9 * mus[k] + 0.1 * g
            nus[k] = 0.999 * nus[k] + 0.001 * g * g
            bias1, bias2 = 1 - 0.9**count, 1 - 0.999**count
            thetas[k] = thetas[k] - lr * (mus[k] / bias1) / (np.sqrt(nus[k] / bias2) + 1e-8)
        if t % sync_every == 0 or t == steps:
            mean = sum(w * th for w, th in zip(weights, thetas))
            thetas = [mean.copy() for _ in parts]
            if local_state == "average":
                mu, nu = sum(w * m for w, m in zip(weights, mus)), sum(w * v for w, v in zip(weights, nus))
                mus, nus = [mu.copy() for _ in parts], [nu.copy() for _ in parts]
            elif local_state == "reset":
                mus, nus = [np.zeros_like(THETA0) for _ in parts], [np.zeros_like(THETA0) for _ in parts]
                count = 0
    np.testing.assert_allclose(result.theta, thetas[0], rtol=1e-10, atol=1e-12)
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("empty_rank", [False, True])
@pytest.mark.parametrize("algorithm", ["gd", "sgd"])
def test_gd_on_uneven_partitions_is_serial_gd_on_all_rows(comm, empty_rank, algorithm):
    """Dividing the summed gradient by N (not averaging per-rank means) gives the serial step.

    SGD with a global batch of all N rows takes every rank's whole block each step: the same step.
    """
    counts = uneven_counts(comm.size, empty_rank)
    data, X, y = my_dataset(comm, counts)
    model = mt.create_model("linear", D)
    settings = mt.Settings(steps=15, lr=0.2, l2=0.1, batch_size=int(counts.sum()) if algorithm == "sgd" else None)
    result = mt.fit(model, data, comm, algorithm, settings, theta=THETA0)
    expected = THETA0.copy()
    for _ in range(15):
        expected = expected - 0.2 * linear_gradient(expected, X, y, 0.1)
    np.testing.assert_allclose(result.theta, expected, rtol=1e-11, atol=1e-13)
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_evaluate_on_uneven_partitions_is_the_mean_over_all_rows(comm, l2, weighted):
    counts = uneven_counts(comm.size, empty_rank=True)
    data, X, y = my_dataset(comm, counts)
    weight = np.linspace(0.2, 1.8, len(y)) if weighted else np.ones(len(y))  # mean 1
    if weighted:
        data = dataclasses.replace(data, weight=weight[data.start:data.start + data.n_local].copy())
    model = mt.create_model("linear", D)
    objective, rmse = mt.evaluate(model, THETA0, data, comm, **({"l2": l2} if l2 else {}))  # l2 = 0 by default
    r = with_intercept(X) @ THETA0 - y
    mean_square = float(weight @ (r * r)) / len(y)
    assert objective == pytest.approx(0.5 * mean_square + 0.5 * l2 * float(THETA0[:-1] @ THETA0[:-1]), rel=1e-13)
    assert rmse == pytest.approx(np.sqrt(mean_square), rel=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_gd_with_an_optimizer_and_no_l2_is_the_serial_loop(comm, optimizer):
    """Without l2 plain SGD takes a fused step; every other optimizer must still see the gradient."""
    counts = uneven_counts(comm.size, empty_rank=True)
    data, X, y = my_dataset(comm, counts)
    model = mt.create_model("linear", D)
    settings = mt.Settings(steps=12, lr=0.1, optimizer=optimizer, momentum=0.7)
    result = mt.fit(model, data, comm, "gd", settings, theta=THETA0)
    theta, trace = THETA0.copy(), np.zeros_like(THETA0)
    mu, nu = np.zeros_like(THETA0), np.zeros_like(THETA0)
    for t in range(1, 13):
        g = linear_gradient(theta, X, y, 0.0)
        if optimizer == "sgd":
            direction = g
        elif optimizer == "momentum":
            trace = 0.7 * trace + g
            direction = trace
        else:
            mu, nu = 0.9 * mu + 0.1 * g, 0.999 * nu + 0.001 * g * g
            direction = (mu / (1 - 0.9**t)) / (np.sqrt(nu / (1 - 0.999**t)) + 1e-8)
        theta = theta - 0.1 * direction
    np.testing.assert_allclose(result.theta, theta, rtol=1e-11, atol=1e-13)
    assert same_bits_everywhere(result.theta)
