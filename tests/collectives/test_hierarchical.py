"""The node-aware allreduce and auto's choice of it; `make test-mpi-fakenodes` runs these over two fake nodes."""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from mpitrain import collectives
from mpitrain.comm import as_comm
from .refs import WORLD, everywhere, gather_rows, inputs, same_on_all_ranks

pytestmark = pytest.mark.mpi


def node_leaders() -> tuple[set[int], int]:
    """(world ranks of the nodes' first ranks, this rank's node size), found with mpi4py alone."""
    node = WORLD.Split_type(MPI.COMM_TYPE_SHARED, key=WORLD.Get_rank())
    first, size = node.allreduce(WORLD.Get_rank(), op=MPI.MIN), node.Get_size()
    node.Free()
    return set(WORLD.allgather(first)), size


def test_nodes_match_the_shared_memory_split() -> None:
    node, leaders, count = as_comm(None).nodes()
    expected, node_size = node_leaders()
    assert count == len(expected) and node.size == node_size
    assert (leaders is not None) == (WORLD.Get_rank() in expected)
    assert leaders is None or leaders.size == len(expected)


def test_auto_picks_hierarchical_exactly_when_the_world_spans_nodes() -> None:
    count, size = len(node_leaders()[0]), WORLD.Get_size()
    plans = [collectives.plan(nbytes) for nbytes in (8, 1 << 16, 1 << 22)]
    if 1 < count < size:
        assert plans == ["hierarchical"] * 3
    else:
        assert "hierarchical" not in plans


@pytest.mark.parametrize("op", ["sum", "max"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_hierarchical_gives_the_reduction_with_the_same_bits_everywhere(op: str, dtype: type) -> None:
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    for n in (0, 1, p - 1, p + 1, 1000, 300_001):
        x = inputs(r, n, dtype)
        rows = gather_rows(x)
        result = collectives.allreduce(x, op=op, algorithm="hierarchical")
        assert same_on_all_ranks(result), f"ranks disagree at n={n}"
        expected = rows.max(axis=0) if op == "max" else rows.astype(np.float64).sum(axis=0)
        scale = p * max(1.0, float(np.abs(rows).max(initial=0)))
        tolerance = 0 if op == "max" or np.dtype(dtype).kind == "i" else 2 * p * np.finfo(dtype).eps * scale
        assert everywhere(np.abs(result.astype(np.float64) - expected).max(initial=0) <= tolerance)
