"""The data fingerprint that a resumed run compares does not depend on how rows are split."""
import numpy as np
import pytest
from mpi4py import MPI

from mpitrain import Comm
from mpitrain.data import block_bounds
from mpitrain.rundir import data_fingerprint

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("n, labels", [(0, True), (1, True), (37, True), (37, False)])
def test_fingerprint_is_the_same_on_any_number_of_ranks(comm, n, labels):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(n, 4)), rng.integers(0, 3, n).astype(float)
    start, stop = block_bounds(n, comm.size, comm.rank)
    whole = Comm(MPI.COMM_SELF)
    here = data_fingerprint(X[start:stop], y[start:stop] if labels else None, start, comm)
    assert here == data_fingerprint(X, y if labels else None, 0, whole)
    if n > 1:  # one changed value, or two rows swapped, give another fingerprint
        changed = X.copy()
        changed[n // 2, 1] = np.nextafter(changed[n // 2, 1], 1.0)
        swapped = X[[1, 0, *range(2, n)]]
        others = {data_fingerprint(Z, y if labels else None, 0, whole) for Z in (changed, swapped)}
        assert here not in others and len(others) == 2


@pytest.mark.parametrize("n", [1, 37])
def test_row_weights_are_part_of_the_fingerprint(comm, n):
    """A resumed run with other weights trains another objective: its fingerprint differs."""
    rng = np.random.default_rng(4)
    X, y, w = rng.normal(size=(n, 3)), rng.integers(0, 2, n).astype(float), rng.uniform(0.5, 2, n)
    start, stop = block_bounds(n, comm.size, comm.rank)
    whole = Comm(MPI.COMM_SELF)
    here = data_fingerprint(X[start:stop], y[start:stop], start, comm, w[start:stop])
    assert here == data_fingerprint(X, y, 0, whole, w)  # however the rows are split
    other = w.copy()
    other[n // 2] *= 2
    assert len({here, data_fingerprint(X, y, 0, whole, other), data_fingerprint(X, y, 0, whole)}) == 3
