"""--tol stops gd and sgd at the same step at any number of ranks, as one process does."""
import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt

pytestmark = pytest.mark.mpi
DATA = "synthetic:classification,n=203,d=6,noise=1.0,classes=3,seed=2"


@pytest.mark.parametrize("loop", [mt.GD(tol=1e-4, n_iter_no_change=4), mt.SGD(30, sampling="global", tol=1e-3)])
def test_tol_stops_at_the_step_one_process_stops_at(comm, loop):
    def run(c):
        data = mt.load(DATA, c)
        return mt.train(mt.create_model("softmax", 6, n_classes=3), data, c, loop, steps=3000, lr=0.3)

    run_here, alone = run(comm), run(mt.Comm(MPI.COMM_SELF))
    assert alone.result.converged and alone.result.steps < 3000
    assert run_here.result.converged and run_here.result.steps == alone.result.steps
    np.testing.assert_allclose(run_here.result.theta, alone.result.theta, rtol=1e-9, atol=1e-12)
