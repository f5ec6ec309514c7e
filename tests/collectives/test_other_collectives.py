"""reduce, bcast, reduce_scatter and allgather with each algorithm, every root, awkward lengths."""
from __future__ import annotations

import numpy as np
import pytest

from mpitrain import collectives
from mpitrain.collectives import block_counts, block_offsets
from .refs import WORLD, everywhere, gather_rows, inputs, lengths, reference


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ["tree", "native"])
@pytest.mark.parametrize("op", collectives.OPS)
def test_reduce_every_root(algorithm: str, op: str) -> None:
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    for root in range(p):
        for n in lengths(p):
            x = inputs(r, n, np.int64 if op != "avg" else np.float64)
            before = x.copy()
            result = collectives.reduce(x, np.empty_like(x), op=op, root=root, algorithm=algorithm)
            rows = gather_rows(x)
            assert everywhere(np.array_equal(x, before))
            flags = gather_rows(np.array([result is None], dtype=np.int64))
            assert flags.reshape(-1).tolist() == [int(k != root) for k in range(p)]
            assert everywhere(result is None or np.allclose(result, reference(rows, op), rtol=1e-14))


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ["tree", "native"])
def test_bcast_every_root(algorithm: str) -> None:
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    for root in range(p):
        for n in lengths(p):
            x = inputs(r, n, np.float32)
            assert collectives.bcast(x, root=root, algorithm=algorithm) is x
            assert everywhere(np.array_equal(x, inputs(root, n, np.float32)))


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ["ring", "native"])
@pytest.mark.parametrize("op", ["sum", "max", "avg"])
def test_reduce_scatter_blocks(algorithm: str, op: str) -> None:
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    for n in lengths(p):
        x = inputs(r, n, np.float64)
        before = x.copy()
        mine = collectives.reduce_scatter(x, op=op, algorithm=algorithm)
        at = block_offsets(block_counts(n, p))
        expected = reference(gather_rows(x), op)[at[r]:at[r + 1]]
        assert everywhere(np.array_equal(x, before) and mine.shape == expected.shape)
        assert everywhere(np.allclose(mine, expected, rtol=1e-14))


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ["ring", "native"])
def test_allgather_rank_order(algorithm: str) -> None:
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    for m in (0, 1, 3, 1025):
        x = inputs(r, m, np.int32)
        out = collectives.allgather(x, algorithm=algorithm)
        assert everywhere(out.shape == (p, m) and np.array_equal(out, np.stack([inputs(k, m, np.int32) for k in range(p)])))


def test_block_counts_differ_by_at_most_one() -> None:
    for n in range(0, 30):
        for parts in range(1, 7):
            counts = block_counts(n, parts)
            assert sum(counts) == n and max(counts) - min(counts) <= 1
            assert block_offsets(counts)[-1] == n
