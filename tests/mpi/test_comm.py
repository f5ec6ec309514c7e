"""One communicator type: every entry point takes None, a Comm or an mpi4py communicator."""
import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain import agree, collectives
from mpitrain.comm import Comm, as_comm
from mpitrain.errors import JobError

pytestmark = pytest.mark.mpi


def test_conversions_give_one_private_duplicate_per_communicator():
    assert as_comm(None) is mt.world() and as_comm(mt.world()) is mt.world()
    mine = as_comm(MPI.COMM_WORLD)
    assert isinstance(mine, Comm) and mine is as_comm(MPI.COMM_WORLD) and mine is not mt.world()
    assert (mine.rank, mine.size) == (MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size())
    with pytest.raises(TypeError, match="intracommunicator"):
        as_comm("world")


def test_fit_takes_comm_world_and_gets_the_same_bits():
    data = mt.load("synthetic:classification,n=150,d=4,seed=3", MPI.COMM_WORLD)
    model = mt.create_model("logistic", data.n_features)
    settings = mt.Settings(steps=15, lr=0.2, batch_size=20, seed=1)
    theirs = mt.fit(model, data, MPI.COMM_WORLD, "sgd", settings)
    ours = mt.fit(model, data, mt.world(), "sgd", settings)
    assert np.array_equal(theirs.theta, ours.theta)
    assert mt.evaluate(model, ours.theta, data, MPI.COMM_WORLD) == mt.evaluate(model, ours.theta, data, mt.world())


@pytest.mark.parametrize("algorithm", ["auto", "native", "ring"])
def test_collectives_take_a_comm(algorithm):
    p, r = MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD.Get_rank()
    x = np.arange(5, dtype=np.int64) + r
    collectives.allreduce(x, algorithm=algorithm, comm=mt.world())
    assert np.array_equal(x, p * np.arange(5) + p * (p - 1) // 2)


def test_raise_if_any_names_the_ranks_on_every_rank():
    comm = mt.world()
    with pytest.raises(JobError) as caught:
        agree.raise_if_any(comm, "bad rows" if comm.rank == comm.size - 1 else "")
    expected = "bad rows" if comm.size == 1 else f"rank {comm.size - 1}: bad rows"
    assert str(caught.value) == expected
    agree.raise_if_any(comm, "")  # nobody failed: no error
