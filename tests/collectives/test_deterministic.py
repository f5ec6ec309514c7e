"""deterministic=True: the same bits at any number of ranks, within the stated error of the exact sum."""
from __future__ import annotations

import math

import numpy as np
import pytest
from mpi4py import MPI

from mpitrain import collectives
from mpitrain.collectives.deterministic import FRACTION_BITS
from .refs import WORLD, gather_rows, same_on_all_ranks

K, N = 12, 1001  # 12 fixed virtual shards divide evenly among 1, 2, 3 and 4 ranks


def shards(dtype: type) -> np.ndarray:
    """The job's fixed rows, shape (K, N): wide dynamic range and mixed signs, seeded."""
    rng = np.random.default_rng(2024)
    return (rng.standard_normal((K, N)) * 10.0 ** rng.integers(-6, 4, size=(K, N))).astype(dtype)


def exact_sums(rows: np.ndarray) -> np.ndarray:
    """Correctly rounded column sums of ``rows`` (shape (k, n)) with math.fsum, float64."""
    return np.array([math.fsum(col) for col in rows.astype(np.float64).T])


@pytest.mark.mpi
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", ["even", "all_on_rank_0", "uneven"])
def test_sum_shards_bits_do_not_depend_on_ranks(dtype: type, split: str) -> None:
    """Each rank sums its share of the rows; the result equals the one-rank result bit for bit."""
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    rows = shards(dtype)
    cuts = {
        "even": [K * i // p for i in range(p + 1)],
        "all_on_rank_0": [0] + [K] * p,
        "uneven": [0] + [min(K, (i * (i + 1)) // 2 + 1) for i in range(1, p)] + [K],
    }[split]
    result = collectives.sum_shards(rows[cuts[r]:cuts[r + 1]])
    alone = collectives.sum_shards(rows, comm=MPI.COMM_SELF)
    assert same_on_all_ranks(result)
    assert np.array_equal(result.view(np.uint8), alone.view(np.uint8))
    peak = float(np.abs(rows).max())
    bound = K * 2.0**-FRACTION_BITS * peak + np.abs(exact_sums(rows)) * np.finfo(dtype).eps
    assert (np.abs(result - exact_sums(rows)) <= bound).all()


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ["auto"] + sorted(collectives.ALGORITHMS))
def test_allreduce_deterministic_matches_one_rank_sum_of_the_inputs(algorithm: str) -> None:
    """One contribution per rank: the bits equal a one-rank sum of all ranks' inputs, in any order."""
    r = WORLD.Get_rank()
    x = shards(np.float64)[r % K] * (r + 1)
    result = collectives.allreduce(x.copy(), algorithm=algorithm, deterministic=True)
    rows = gather_rows(x)
    alone = collectives.sum_shards(rows[::-1].copy(), comm=MPI.COMM_SELF)
    assert same_on_all_ranks(result)
    assert np.array_equal(result, alone)
    avg = collectives.allreduce(x.copy(), op="avg", algorithm=algorithm, deterministic=True)
    assert np.array_equal(avg, alone / WORLD.Get_size())


@pytest.mark.mpi
def test_zero_and_empty_inputs() -> None:
    assert not collectives.allreduce(np.zeros(4), deterministic=True).any()
    assert collectives.allreduce(np.zeros(0, dtype=np.float32), deterministic=True).shape == (0,)


@pytest.mark.mpi
def test_non_finite_input_fails_on_every_rank() -> None:
    x = np.ones(3)
    if WORLD.Get_rank() == WORLD.Get_size() - 1:
        x[1] = np.inf
    with pytest.raises(ValueError, match="finite"):
        collectives.allreduce(x, deterministic=True)


@pytest.mark.mpi
@pytest.mark.parametrize("magnitude", [1e-310, 1e-200, 1e200, 1e300])
def test_extreme_magnitudes(magnitude: float) -> None:
    """Scales beyond a plain multiply (|shift| >= 1000) and subnormal inputs keep the guarantees."""
    rows = shards(np.float64) / np.abs(shards(np.float64)).max() * magnitude
    r, p = WORLD.Get_rank(), WORLD.Get_size()
    result = collectives.sum_shards(rows[K * r // p:K * (r + 1) // p])
    alone = collectives.sum_shards(rows, comm=MPI.COMM_SELF)
    assert same_on_all_ranks(result)
    assert np.array_equal(result, alone)
    assert np.isfinite(result).all()
    bound = K * 2.0**-FRACTION_BITS * magnitude + np.abs(exact_sums(rows)) * np.finfo(np.float64).eps
    assert (np.abs(result - exact_sums(rows)) <= bound + 5e-324).all()


@pytest.mark.mpi
def test_start_allreduce_takes_every_call_number_it_documents_and_reports_done_when_polled() -> None:
    """Calls 0 and 4095 (the first and last allowed) in flight at once give the blocking ordered
    sum's bits; polling with test() reports both done without a wait()."""
    rank, n = WORLD.Get_rank(), 37
    base = np.random.default_rng(rank).normal(size=n)
    expected = base.copy()
    collectives.allreduce(expected, algorithm="ordered")
    first, last = base.copy(), base.copy()
    a = collectives.start_allreduce(first, call=0)
    b = collectives.start_allreduce(last, call=4095)
    done = False
    for _ in range(20_000):
        done = a.test() & b.test()
        if done:
            break
    assert gather_rows(np.array([done], dtype=np.int64)).all()
    assert np.array_equal(a.wait(), expected) and np.array_equal(b.wait(), expected)
