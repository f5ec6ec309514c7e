"""Partition, batch shares and sampler against their closed forms, written with Python integers."""
import numpy as np
import pytest

from mpitrain.data import BatchSampler, batch_shares, block_bounds, block_sizes
from mpitrain.data.sampler import epoch_order


@pytest.mark.parametrize("n, size", [(10, 3), (11, 4), (7, 7), (2, 5), (0, 3), (1001, 6), (5, 1)])
def test_block_bounds_are_the_closed_form(n, size):
    q, extra = n // size, n % size
    for r in range(size):
        start = r * q + min(r, extra)
        assert block_bounds(n, size, r) == (start, start + q + (r < extra))
    assert list(block_sizes(n, size)) == [q + (r < extra) for r in range(size)]


@pytest.mark.parametrize("n, size, rank", [(0, 1, 0), (4, 4, 3), (3, 1, 0)])
def test_the_edges_of_valid_requests_are_accepted(n, size, rank):
    start, stop = block_bounds(n, size, rank)
    assert 0 <= start <= stop <= n


@pytest.mark.parametrize("n, size, rank", [(-1, 1, 0), (4, 0, 0), (4, 2, -1), (4, 2, 2), (4, -1, 0)])
def test_invalid_requests_name_the_values(n, size, rank):
    with pytest.raises(ValueError, match=f"n={n}, size={size}, rank={rank}"):
        block_bounds(n, size, rank)


@pytest.mark.parametrize("seed", range(6))
def test_batch_shares_are_differences_of_floors(seed):
    rng = np.random.default_rng(seed)
    counts = [int(c) for c in rng.integers(0, 40, size=int(rng.integers(1, 8)))]
    total = sum(counts)
    for batch in range(1, total + 1, max(1, total // 9)):
        before = [sum(counts[:k]) for k in range(len(counts) + 1)]
        expected = [batch * before[k + 1] // total - batch * before[k] // total for k in range(len(counts))]
        assert list(batch_shares(np.array(counts), batch)) == expected


def test_batch_shares_stay_exact_beyond_float_precision():
    """Rank 0 holds all but one of 2^60 rows: a batch of one comes from rank 1 (2^60 - 1 < 2^60)."""
    counts = np.array([2**60 - 1, 1], dtype=np.int64)
    assert list(batch_shares(counts, 1)) == [0, 1]
    assert list(batch_shares(counts, 2)) == [1, 1]


def test_batch_shares_of_no_rows_are_zeros():
    assert list(batch_shares(np.array([0, 0, 0]), 5)) == [0, 0, 0]


def stream(seed: int, start: int, n_local: int, epochs: int) -> np.ndarray:
    """The endless stream of local indices, written out for ``epochs`` epochs."""
    return np.concatenate([epoch_order(seed, e, start, start + n_local) for e in range(epochs)])


@pytest.mark.parametrize("n_local, share", [(10, 3), (7, 7), (5, 12), (1, 1), (9, 4)])
def test_sampler_reads_consecutive_windows_of_the_stream(n_local, share):
    sampler = BatchSampler(start=20, n_local=n_local, share=share, seed=5)
    whole = stream(5, 20, n_local, epochs=share * 12 // n_local + 2)
    for t in (0, 1, 2, 5, 11, 3, 0):  # out of order too: the batch depends on (seed, step) only
        np.testing.assert_array_equal(sampler.indices(t), whole[t * share:(t + 1) * share])


def test_epoch_orders_differ_by_seed_epoch_and_rows():
    base = epoch_order(1, 0, 0, 50)
    assert sorted(base) == list(range(50))
    assert list(epoch_order(2, 0, 0, 50)) != list(base)
    assert list(epoch_order(1, 1, 0, 50)) != list(base)
    # rows 10..59 are another set of global rows: not the same order of local indices
    assert list(epoch_order(1, 0, 10, 60)) != list(base)


def test_an_empty_partition_cannot_have_a_share():
    for share in (1, 2):
        with pytest.raises(ValueError, match=f"share of {share} rows per step needs rows"):
            BatchSampler(start=0, n_local=0, share=share, seed=0)
    assert BatchSampler(start=0, n_local=0, share=0, seed=0).indices(3).shape == (0,)
