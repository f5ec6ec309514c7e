"""Every reduction against a closed form of every rank's input, computed locally with NumPy.

Rank r's input is a known function of (r, i), so each rank builds the expected result by
summing every rank's input in a plain loop, with no communication at all: a collective that
skips a step, reduces a block twice or misplaces one gives a different answer on some rank.
Integers keep the comparison exact; the float cases use values that add exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from mpitrain import collectives
from .refs import WORLD, everywhere

ALGORITHMS = ["auto"] + sorted(collectives.ALGORITHMS)


def known(rank: int, n: int, dtype: type) -> np.ndarray:
    """Rank ``rank``'s input, shape (n,): distinct per rank and position, some negative."""
    i = np.arange(n, dtype=np.int64)
    return ((rank + 1) * 1009 * (i % 13 - 6) + 7 * i + rank * rank - 50).astype(dtype)


def expected(size: int, n: int, dtype: type, op: str) -> np.ndarray:
    """The reduction of every rank's ``known`` input, by a serial loop over ranks."""
    rows = [known(r, n, np.int64) for r in range(size)]
    if op == "max":
        out = rows[0]
        for row in rows[1:]:
            out = np.maximum(out, row)
    elif op == "min":
        out = rows[0]
        for row in rows[1:]:
            out = np.minimum(out, row)
    else:
        out = np.zeros(n, dtype=np.int64)
        for row in rows:
            out = out + row
    return out.astype(np.float64) / size if op == "avg" else out.astype(dtype)


def sizes_to_test(p: int) -> list[int]:
    """Lengths around p and the block boundaries, and one that spans several ring segments."""
    return sorted({0, 1, p - 1, p, p + 1, 2 * p + 1, 3 * p - 1, 1000, 2 * 65536 * p + 7})


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.int32, np.float32])
@pytest.mark.parametrize("op", ["sum", "max", "min"])
def test_allreduce_equals_the_serial_reduction_of_known_inputs(algorithm, dtype, op):
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    for n in sizes_to_test(p):
        if n > 100_000 and (dtype != np.int64 or op != "sum"):
            continue  # the long case (two ring segments and a rest) once per algorithm
        result = collectives.allreduce(known(r, n, dtype), op=op, algorithm=algorithm)
        assert everywhere(np.array_equal(result, expected(p, n, dtype, op))), f"n={n}"


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ["auto", "ring", "tree", "ordered"])
def test_deterministic_and_avg_equal_the_serial_reduction(algorithm):
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    for n in sizes_to_test(p)[:-1]:
        got = collectives.allreduce(known(r, n, np.float64), op="avg", algorithm=algorithm)
        assert everywhere(np.array_equal(got, expected(p, n, np.float64, "avg"))), f"avg, n={n}"
        got = collectives.allreduce(known(r, n, np.float64), algorithm=algorithm, deterministic=True)
        assert everywhere(np.array_equal(got, expected(p, n, np.float64, "sum"))), f"deterministic, n={n}"


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ["ring", "native"])
def test_reduce_scatter_gives_each_rank_its_block_of_the_sum(algorithm):
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    for n in sizes_to_test(p)[:-1]:
        total = expected(p, n, np.int64, "sum")
        # Rank k's block: n // p items, plus one for the first n % p ranks, in rank order.
        start = r * (n // p) + min(r, n % p)
        stop = start + n // p + (1 if r < n % p else 0)
        mine = collectives.reduce_scatter(known(r, n, np.int64), algorithm=algorithm)
        assert everywhere(np.array_equal(mine, total[start:stop])), f"n={n}"


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ["ring", "native"])
def test_allgather_stacks_every_rank_block_in_rank_order(algorithm):
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    for m in (0, 1, p + 2):
        got = collectives.allgather(known(r, m, np.int64), algorithm=algorithm)
        assert everywhere(np.array_equal(got, np.array([known(k, m, np.int64) for k in range(p)]).reshape(p, m)))


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ["tree", "native"])
def test_reduce_and_bcast_from_every_root(algorithm):
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    n = 2 * p + 3
    for root in range(p):
        got = collectives.reduce(known(r, n, np.int64), root=root, algorithm=algorithm)
        ok = got is None if r != root else np.array_equal(got, expected(p, n, np.int64, "sum"))
        assert everywhere(ok), f"reduce to root {root}"
        got = collectives.bcast(known(r, n, np.int64), root=root, algorithm=algorithm)
        assert everywhere(np.array_equal(got, known(root, n, np.int64))), f"bcast from root {root}"


@pytest.mark.mpi
def test_sum_shards_is_the_serial_sum_of_every_rank_rows():
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    n = 2 * p + 5
    # Rank r contributes r rows (rank 0 none): rows are known(r, n) + j for j < r.
    mine = np.array([known(r, n, np.float64) + j for j in range(r)]).reshape(r, n)
    total = sum((known(k, n, np.int64) + j for k in range(p) for j in range(k)), np.zeros(n, dtype=np.int64))
    assert everywhere(np.array_equal(collectives.sum_shards(mine), total.astype(np.float64)))
