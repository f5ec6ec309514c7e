"""Missing values over MPI: the global mean (to rounding) and the exact median of each feature."""
import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain.data import block_bounds, impute

pytestmark = pytest.mark.mpi


def everywhere(flag: bool) -> bool:
    return MPI.COMM_WORLD.allreduce(bool(flag), op=MPI.LAND)


def blocks(X, comm, spec="mem"):
    a, b = block_bounds(len(X), comm.size, comm.rank)
    return mt.Dataset(X[a:b].copy(), np.zeros(b - a), a, len(X), spec, np.zeros(comm.size), ("a", "b", "c", "d"))


@pytest.mark.parametrize("n", [1, 2, 5, 40, 41])
@pytest.mark.parametrize("how", ["mean", "median", "zero"])
def test_fill_values_are_those_of_all_rows(comm, n, how):
    rng = np.random.default_rng(n)
    X = np.round(rng.standard_normal((n, 4)) * 100, 1)  # ties and negative values
    X[rng.random((n, 4)) < 0.3] = np.nan
    X[0] = [1.5, -2.0, 0.0, -0.0]  # every column keeps a value
    X[:, 3][: n // 2] = np.nan if n > 2 else X[:, 3][: n // 2]
    reference = {"mean": np.nanmean(X, axis=0), "median": np.nanmedian(X, axis=0), "zero": np.zeros(4)}[how]
    train, test = blocks(X, comm), blocks(X[::-1].copy(), comm)
    fill = impute(train, comm, how, test)
    assert everywhere(np.allclose(fill, reference, rtol=1e-12, atol=0) if how == "mean" else np.array_equal(fill, reference))
    a, b = block_bounds(n, comm.size, comm.rank)
    expected = np.where(np.isnan(X), reference, X)[a:b]
    assert everywhere(np.allclose(train.X, expected, rtol=1e-12, atol=0) and not np.isnan(test.X).any())


def test_a_feature_without_values_cannot_be_imputed(comm):
    X = np.ones((6, 4))
    X[:, 2] = np.nan
    with pytest.raises(mt.JobError, match="cannot impute 'c' of mem: it has no values"):
        impute(blocks(X, comm), comm, "median")
