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


def test_a_resumed_run_goes_on_counting_and_stops_where_an_uninterrupted_one_does(comm):
    import os
    import signal
    import tempfile

    folder = MPI.COMM_WORLD.bcast(tempfile.mkdtemp(prefix="mpitrain-tol-") if comm.rank == 0 else None)
    loop = mt.GD(tol=1e-4, n_iter_no_change=4)

    def run(out, on_log=None, resume=None):
        data = mt.load(DATA, comm)
        return mt.train(mt.create_model("softmax", 6, n_classes=3), data, comm, loop, steps=3000, lr=0.3, out=out,
                        on_log=on_log, resume=resume, checkpoint_every=1)

    whole = run(f"{folder}/whole")
    def stop(record):  # rank 0: a signal near the end of the uninterrupted run's last count
        if record["step"] == whole.result.steps - 2:
            os.kill(os.getpid(), signal.SIGUSR1)

    first = run(f"{folder}/cut", on_log=stop)
    assert first.stopped and not first.result.converged
    resumed = run(f"{folder}/cut", resume="auto")
    # cut inside the last n_iter_no_change steps: a count started afresh would run 4 steps past the cut
    assert whole.result.steps - 4 < resumed.resumed_from < whole.result.steps
    assert resumed.result.converged and resumed.result.steps == whole.result.steps
    assert np.array_equal(resumed.result.theta, whole.result.theta)
