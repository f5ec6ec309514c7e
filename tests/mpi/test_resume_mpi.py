"""Stopping and resuming from Python (mt.train) continues bitwise, on the same number of ranks."""
import os
import signal
import tempfile

import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt

pytestmark = pytest.mark.mpi


def shared_tmp() -> str:
    """A fresh directory that every rank names alike (rank 0 creates it)."""
    path = tempfile.mkdtemp(prefix="mpitrain-resume-") if MPI.COMM_WORLD.Get_rank() == 0 else None
    return MPI.COMM_WORLD.bcast(path)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_local_sgd_keeping_per_rank_optimizer_state_resumes_bitwise(comm, optimizer):
    if comm.size < 2:
        pytest.skip("per-rank optimizer state needs at least two ranks")
    data = mt.load("synthetic:classification,n=403,d=6,seed=3", comm)  # uneven blocks
    model = mt.create_model("logistic", data.n_features)
    loop, options = mt.LocalSGD(batch_size=40, sync_every=1, local_state="keep"), dict(steps=20, lr=0.05, optimizer=optimizer)
    folder = shared_tmp()

    def stop(record):  # rank 0's metrics callback; its vote stops every rank after the next step
        if record["step"] == 7:
            os.kill(os.getpid(), signal.SIGUSR1)

    first = mt.train(model, data, comm, loop, out=f"{folder}/a", on_log=stop, **options)
    assert first.stopped and first.result.steps == 8 and first.stopped_by == "SIGUSR1 on rank 0"
    resumed = mt.train(model, data, comm, loop, out=f"{folder}/a", resume="auto", **options)
    whole = mt.train(model, data, comm, loop, out=f"{folder}/b", **options)
    assert resumed.resumed_from == 8
    assert np.array_equal(resumed.result.theta, whole.result.theta)
    # Each rank's own momentum or Adam moments: every rank checks its own, and they agree on the verdict.
    mine = np.array_equal(mt.optim.flatten(resumed.result.opt_state), mt.optim.flatten(whole.result.opt_state))
    assert MPI.COMM_WORLD.allreduce(int(mine), op=MPI.MIN) == 1
