"""Every algorithm, op, dtype and awkward length against a reference from an allgather."""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from mpitrain import collectives
from .refs import WORLD, everywhere, gather_rows, inputs, lengths, reference, same_on_all_ranks

ALGORITHMS = ["auto"] + sorted(collectives.ALGORITHMS)
DTYPES = [np.float32, np.float64, np.int32, np.int64]
# float tolerance relative to the largest |x| times p: float32 sums use float32 accumulation
RTOL = {np.dtype(np.float32): 4e-7, np.dtype(np.float64): 1e-15}


def check(result: np.ndarray, rows: np.ndarray, op: str) -> None:
    """Assert ``result`` matches the reference: exact for integers, max and min; bounded for float sums."""
    expected = reference(rows, op)
    if op in ("max", "min") or rows.dtype.kind == "i":
        assert np.array_equal(result, expected.astype(rows.dtype))
    else:
        scale = rows.shape[0] * max(1.0, float(np.abs(rows).max(initial=0)))
        assert np.abs(result.astype(np.float64) - expected).max(initial=0) <= 2 * rows.shape[0] * RTOL[rows.dtype] * scale


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("op", collectives.OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_length(algorithm: str, op: str, dtype: type) -> None:
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    if op == "avg" and np.dtype(dtype).kind == "i":
        pytest.skip("avg is defined for floats only (tested in test_errors)")
    for n in lengths(p):
        x = inputs(r, n, dtype)
        result = collectives.allreduce(x.copy(), op=op, algorithm=algorithm)
        assert result.dtype == np.dtype(dtype) and result.shape == (n,)
        assert same_on_all_ranks(result), f"ranks disagree at n={n}"
        check(result, gather_rows(x), op)


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_large_odd_length_out_of_place(algorithm: str, dtype: type) -> None:
    """300_001 items: several ring segments, uneven blocks; the input stays unchanged."""
    n, r = 300_001, WORLD.Get_rank()
    x = inputs(r, n, dtype)
    before = x.copy()
    out = np.empty_like(x)
    result = collectives.allreduce(x, out, algorithm=algorithm)
    assert result is out
    assert everywhere(np.array_equal(x, before))
    assert same_on_all_ranks(result)
    check(result, gather_rows(x), "sum")


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_in_place_keeps_shape_and_identity(algorithm: str) -> None:
    x = inputs(WORLD.Get_rank(), 12, np.float64).reshape(3, 4)
    rows = gather_rows(x.reshape(-1))
    result = collectives.allreduce(x, op="max", algorithm=algorithm)
    assert result is x and x.shape == (3, 4)
    assert everywhere(np.array_equal(x.reshape(-1), rows.max(axis=0)))


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_out_is_buf_means_in_place(algorithm: str) -> None:
    x = np.full(5, WORLD.Get_rank() + 1, dtype=np.int64)
    assert collectives.allreduce(x, x, algorithm=algorithm) is x
    p = WORLD.Get_size()
    assert everywhere(np.array_equal(x, np.full(5, p * (p + 1) // 2)))


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", sorted(collectives.ALGORITHMS))
def test_comm_self_is_a_copy(algorithm: str) -> None:
    x = inputs(WORLD.Get_rank(), 7, np.float32)
    out = collectives.allreduce(x, np.empty_like(x), op="avg", algorithm=algorithm, comm=MPI.COMM_SELF)
    assert everywhere(np.array_equal(out, x))


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", sorted(collectives.ALGORITHMS))
def test_user_messages_on_comm_world_do_not_collide(algorithm: str) -> None:
    """A wildcard receive pending on COMM_WORLD sees none of the library's messages.

    Were the library to share COMM_WORLD, the user's receive would take its first message and
    the allreduce would block until pytest-timeout ends the job.
    """
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    theirs = np.zeros(3, dtype=np.int64)
    pending = WORLD.Irecv(theirs, source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG)
    x = inputs(r, 2 * p + 1, np.int64)
    result = collectives.allreduce(x.copy(), algorithm=algorithm)
    assert everywhere(not pending.Get_status())
    WORLD.Send(np.full(3, 1000 + r, dtype=np.int64), dest=(r + 1) % p, tag=11)  # the ring's tag number
    pending.Wait()
    assert everywhere(np.array_equal(theirs, np.full(3, 1000 + (r - 1) % p)))
    assert everywhere(np.array_equal(result, gather_rows(x).sum(axis=0)))


@pytest.mark.mpi
def test_auto_plan_is_the_same_on_every_rank() -> None:
    plans = [collectives.plan(nbytes) for nbytes in (0, 8, 4096, 1 << 20, 64 << 20)]
    codes = np.array([sorted(collectives.ALGORITHMS).index(name) for name in plans], dtype=np.int64)
    assert same_on_all_ranks(codes)


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_allreduce_many_fuses_in_place(algorithm: str) -> None:
    r = WORLD.Get_rank()
    arrays = [inputs(r, 7, np.float64).reshape(7, 1), inputs(r, 0, np.float64), inputs(r, 12, np.float64).reshape(3, 4)]
    rows = [gather_rows(a.reshape(-1)) for a in arrays]
    out = collectives.allreduce_many(arrays, op="max", algorithm=algorithm)
    assert [o is a for o, a in zip(out, arrays)] == [True, True, True]
    assert everywhere(all(np.array_equal(a.reshape(-1), g.max(axis=0)) for a, g in zip(arrays, rows)))
