"""Second-order and exact solvers against serial references, on uneven blocks, under mpiexec.

Every assertion is on values that every rank computes alike, so a failure fails on all ranks
instead of leaving the others waiting in a collective.
"""
import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain.algorithms.normal import fit_normal
from helpers import ridge, with_intercept

pytestmark = pytest.mark.mpi


def same_bits_everywhere(theta: np.ndarray) -> bool:
    """True if every rank holds exactly these bytes (checked independently of mpitrain)."""
    return len(set(MPI.COMM_WORLD.allgather(theta.tobytes()))) == 1


def uneven_counts(n: int, size: int) -> np.ndarray:
    """Rows per rank in proportion to (rank + 1)^2, with rank 1 empty when there are 3 or more ranks."""
    weights = np.arange(1, size + 1, dtype=float) ** 2
    if size >= 3:
        weights[1] = 0
    counts = np.floor(n * weights / weights.sum()).astype(np.int64)
    counts[-1] += n - counts.sum()
    return counts


def blocks(X: np.ndarray, y: np.ndarray, comm) -> mt.Dataset:
    """This rank's block of (X, y) under ``uneven_counts``."""
    counts = uneven_counts(len(y), comm.size)
    start = int(counts[:comm.rank].sum())
    stop = start + int(counts[comm.rank])
    return mt.Dataset(X[start:stop], y[start:stop], start, len(y), "test", counts)


def regression(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with means up to 50 and scales 0.1 to 10 (centring matters), and noisy labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.geomspace(0.1, 10, d) + np.linspace(-50, 50, d)
    y = X @ rng.normal(size=d) + 3.0 + rng.normal(size=n)
    return X, y


@pytest.mark.parametrize("n, d", [(40, 3), (1001, 12)])
def test_normal_equals_lstsq_without_l2(comm, n, d):
    X, y = regression(n, d)
    model = mt.create_model("linear", d)
    result = fit_normal(model, blocks(X, y, comm), comm)
    expected = np.linalg.lstsq(with_intercept(X), y, rcond=None)[0]
    np.testing.assert_allclose(result.theta, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("l2", [1e-4, 0.3])
def test_normal_equals_closed_form_ridge(comm, l2):
    X, y = regression(501, 7, seed=1)
    model = mt.create_model("linear", 7)
    records = []
    result = fit_normal(model, blocks(X, y, comm), comm, l2, log=records.append)
    expected = ridge(X, y, l2)
    np.testing.assert_allclose(result.theta, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    assert records[0]["solve"] == "cholesky" and records[0]["gradient_max"] < 1e-8
    assert same_bits_everywhere(result.theta)


def test_normal_singular_matrix_falls_back_to_least_squares(comm):
    X, y = regression(300, 4, seed=2)
    X = np.hstack([X, X[:, :1]])  # a repeated column: X^T X is singular
    model = mt.create_model("linear", 5)
    records = []
    result = fit_normal(model, blocks(X, y, comm), comm, log=records.append)
    expected = np.linalg.lstsq(with_intercept(X), y, rcond=None)[0]
    assert records[0]["solve"] == "lstsq"
    # The solution is not unique: compare the fitted values, which are.
    np.testing.assert_allclose(model.predict(result.theta, X), with_intercept(X) @ expected, rtol=0, atol=1e-9)
    assert same_bits_everywhere(result.theta)


def test_normal_keeps_float32_data_in_float32(comm):
    X, y = regression(200, 3, seed=3)
    model = mt.create_model("linear", 3)
    result = fit_normal(model, blocks(X.astype(np.float32), y.astype(np.float32), comm), comm, 0.01)
    assert result.theta.dtype == np.float32
    expected = ridge(X.astype(np.float32).astype(float), y.astype(np.float32).astype(float), 0.01)
    np.testing.assert_allclose(result.theta, expected, rtol=1e-5, atol=1e-5)


def test_normal_refuses_too_many_features_with_the_memory_it_needs(comm):
    X, y = regression(20, 300)
    with pytest.raises(ValueError, match=r"300 features need \d+ MiB per rank, more than the limit of 1 MiB"):
        fit_normal(mt.create_model("linear", 300), blocks(X, y, comm), comm, memory_limit=2**20)


def test_normal_refuses_other_models(comm):
    X, y = regression(20, 3)
    with pytest.raises(TypeError, match="linear regression only, not the logistic model"):
        fit_normal(mt.create_model("logistic", 3), blocks(X, (y > 0).astype(float), comm), comm)
