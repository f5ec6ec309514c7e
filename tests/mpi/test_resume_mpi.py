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


def test_local_sgd_stopped_between_averagings_resumes_every_ranks_model_bitwise(comm):
    if comm.size < 2:
        pytest.skip("replicas differ between averagings only on two ranks or more")
    data = mt.load("synthetic:classification,n=403,d=6,seed=3", comm)  # uneven blocks
    model = mt.create_model("logistic", data.n_features)
    loop, options = mt.LocalSGD(batch_size=40, sync_every=4), dict(steps=16, lr=0.05)
    folder = shared_tmp()

    def stop(record):  # local SGD logs at averagings; the vote stops every rank after step 5, between two
        if record["step"] == 4:
            os.kill(os.getpid(), signal.SIGUSR1)

    first = mt.train(model, data, comm, loop, out=f"{folder}/a", on_log=stop, **options)
    assert first.stopped and first.result.steps == 5
    resumed = mt.train(model, data, comm, loop, out=f"{folder}/a", resume="auto", **options)
    whole = mt.train(model, data, comm, loop, out=f"{folder}/b", **options)
    assert resumed.resumed_from == 5
    assert np.array_equal(resumed.result.theta, whole.result.theta)


@pytest.mark.parametrize("optimizer, local_state, per_rank", [("sgd", "keep", False), ("momentum", "average", False),
                                                              ("momentum", "keep", True)])
def test_a_local_sgd_checkpoint_at_an_averaging_holds_one_model_unless_state_is_kept_per_rank(
        comm, optimizer, local_state, per_rank):
    """Right after an averaging every rank holds the same model, and the same optimizer state
    unless each rank keeps its own: then the checkpoint holds one row (it resumes alike on any
    number of ranks), else one row per rank."""
    data = mt.load("synthetic:classification,n=403,d=6,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    loop = mt.LocalSGD(batch_size=40, sync_every=4, local_state=local_state)
    folder = shared_tmp()
    mt.train(model, data, comm, loop, out=folder, steps=8, lr=0.05, optimizer=optimizer, checkpoint_every=4)
    if comm.rank == 0:
        saved, skipped = mt.checkpoint.load_latest(os.path.join(folder, "checkpoints"))
        assert not skipped and saved.manifest["step"] == 8
        assert saved.arrays["theta"].shape == (comm.size if per_rank else 1, model.n_params)


def test_a_zero1_checkpoint_holds_one_model_and_the_whole_optimizer_state(comm):
    """Each rank updates only its block, but a checkpoint gathers the whole state into one row, so
    it resumes alike on any number of ranks."""
    data = mt.load("synthetic:classification,n=403,d=6,seed=3", comm)
    model = mt.create_model("logistic", data.n_features)
    folder = shared_tmp()
    mt.train(model, data, comm, mt.ZeRO1(40), out=folder, steps=8, lr=0.05, optimizer="adam", checkpoint_every=4)
    if comm.rank == 0:
        saved, skipped = mt.checkpoint.load_latest(os.path.join(folder, "checkpoints"))
        assert not skipped and saved.manifest["step"] == 8 and saved.manifest["synced"] is True
        assert saved.arrays["theta"].shape == (1, model.n_params)
        assert saved.arrays["opt_state"].shape[0] == 1 and saved.arrays["opt_state"].size >= 2 * model.n_params
