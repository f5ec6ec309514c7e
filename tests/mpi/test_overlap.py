"""Overlapping the gradient reduction with the backward pass changes when bytes move, not the result.

Run under mpiexec with 1 to 5 ranks. The reference for every overlapped run is the same run
without overlap, reduced in one blocking call; the rank-ordered sum itself is checked against
plain NumPy sums of every rank's contribution in rank order.
"""
import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain import collectives
from mpitrain.algorithms import overlap

pytestmark = pytest.mark.mpi

CLASSES = "synthetic:classification,n=203,d=9,classes=4,seed=5"
MODELS = [
    ("mlp", CLASSES, {"n_classes": 4, "hidden": (48, 40), "activation": "relu"}),
    ("mlp", CLASSES, {"n_classes": 4, "hidden": (6,), "activation": "tanh"}),
    ("softmax", CLASSES, {"n_classes": 4}),
    ("logistic", "synthetic:classification,n=150,d=7,seed=2", {}),
    ("linear", "synthetic:regression,n=150,d=7,seed=2", {}),
]


def contribution(rank: int, n: int, dtype) -> np.ndarray:
    """Rank ``rank``'s values: magnitudes over six decades, so the order of the sum shows in the bits."""
    rng = np.random.default_rng(100 + rank)
    return (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(dtype)


def rank_ordered_sum(n: int, size: int, dtype) -> np.ndarray:
    """((x_0 + x_1) + x_2) + ... in plain NumPy."""
    total = contribution(0, n, dtype)
    for k in range(1, size):
        total = total + contribution(k, n, dtype)
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 5, 4099, 70001])
def test_ordered_allreduce_sums_in_rank_order(comm, dtype, n):
    world = MPI.COMM_WORLD
    mine = contribution(world.rank, n, dtype)
    collectives.allreduce(mine, algorithm="ordered")
    assert np.array_equal(mine, rank_ordered_sum(n, world.size, dtype))


@pytest.mark.parametrize("cuts", [(0.5,), (0.1, 0.2, 0.9), (0.0, 0.3, 0.3, 0.99)])
def test_buckets_in_flight_together_give_the_bits_of_one_call(comm, cuts):
    world, n = MPI.COMM_WORLD, 30011
    buf = contribution(world.rank, n, np.float32)
    edges = [0, *(int(c * n) for c in cuts), n]
    pending = [collectives.start_allreduce(buf[a:b], call=i) for i, (a, b) in enumerate(zip(edges, edges[1:]))]
    for request in pending:
        request.test()
    for request in reversed(pending):  # finishing out of order is fine
        request.wait()
    assert np.array_equal(buf, rank_ordered_sum(n, world.size, np.float32))


def train(spec, name, options, dtype, **settings):
    comm = mt.world()
    data = mt.as_dtype(mt.load(spec, comm), dtype)
    model = mt.create_model(name, data.n_features, **options)
    algorithm = "gd" if settings.get("batch_size") is None else "sgd"
    return mt.fit(model, data, comm, algorithm, mt.Settings(steps=12, lr=0.2, l2=0.01, seed=3, **settings)).theta


@pytest.fixture(params=[48, overlap.BUCKET_BYTES], ids=["small-buckets", "default-buckets"])
def bucket_bytes(request, monkeypatch):
    """Small buckets make even these small models start reductions in the middle of the backward pass."""
    monkeypatch.setattr(overlap, "BUCKET_BYTES", request.param)
    return request.param


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, spec, options", MODELS)
@pytest.mark.parametrize("batch_size", [None, 40])
def test_overlap_gives_the_parameters_of_the_blocking_step(comm, bucket_bytes, name, spec, options, dtype,
                                                           batch_size):
    blocking = train(spec, name, options, dtype, batch_size=batch_size, allreduce="ordered")
    overlapped = train(spec, name, options, dtype, batch_size=batch_size, overlap=True)
    assert np.array_equal(blocking, overlapped)
    assert len(set(MPI.COMM_WORLD.allgather(overlapped.tobytes()))) == 1


@pytest.mark.parametrize("name, spec, options", MODELS[:3])
def test_on_two_ranks_overlap_matches_the_default_step(comm, bucket_bytes, name, spec, options):
    """x_0 + x_1 has one rounding whichever algorithm adds it, so on 1 or 2 ranks every algorithm agrees."""
    if MPI.COMM_WORLD.size > 2:
        pytest.skip("three or more addends round differently in different orders")
    default = train(spec, name, options, "float32", batch_size=40)
    overlapped = train(spec, name, options, "float32", batch_size=40, overlap=True)
    assert np.array_equal(default, overlapped)


def test_overlap_starts_reductions_during_the_backward_pass(comm, monkeypatch):
    """With buckets of 48 bytes the MLP's layers leave one by one, the last layer's first."""
    monkeypatch.setattr(overlap, "BUCKET_BYTES", 48)
    starts = []
    original = collectives.start_allreduce

    def spy(buf, *, comm, call=0):
        starts.append(buf.size)
        return original(buf, comm=comm, call=call)

    monkeypatch.setattr(collectives, "start_allreduce", spy)
    name, spec, options = MODELS[0]
    train(spec, name, options, "float64", batch_size=40, overlap=True, allreduce="ordered")
    model = mt.create_model(name, 9, **options)
    size = {k: int(np.prod(shape)) for k, shape in model.layout.shapes.items()}
    # Buckets of 6 float64: b3 (4 values) waits and leaves with b2; the loss sums and votes go last
    step = [size["W3"], size["W2"], size["b2"] + size["b3"], size["W1"], size["b1"], 3]
    assert starts == step * 12


def test_overlap_refuses_what_it_cannot_keep_exact(comm):
    with pytest.raises(ValueError, match="cannot be combined with allreduce='ring'"):
        mt.Settings(steps=1, lr=0.1, overlap=True, allreduce="ring")
    with pytest.raises(ValueError, match="compress='bf16'"):
        mt.Settings(steps=1, lr=0.1, overlap=True, compress="bf16")
    data = mt.load(CLASSES, mt.world())
    model = mt.create_model("softmax", data.n_features, n_classes=4)
    with pytest.raises(ValueError, match="not to local-sgd"):
        mt.fit(model, data, mt.world(), "local-sgd", mt.Settings(steps=2, lr=0.1, batch_size=40, sync_every=2,
                                                                  overlap=True))
