"""Partition arithmetic, batch shares and the sampler."""
import numpy as np
import pytest

from mpitrain.data import BatchSampler, batch_shares, block_bounds, block_sizes
from mpitrain.data.sampler import epoch_order


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 10, 31, 100])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 13, 40, 101])
def test_blocks_cover_rows_once_in_order_and_differ_by_at_most_one(n, size):
    bounds = [block_bounds(n, size, r) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    for (a, b), (c, _) in zip(bounds, bounds[1:]):
        assert b == c  # contiguous, no gap, no overlap
    sizes = block_sizes(n, size)
    assert sizes.sum() == n and sizes.max() - sizes.min() <= 1 and (sizes >= 0).all()
    assert list(sizes) == sorted(sizes, reverse=True)  # extra rows go to the first ranks
    if size > n:
        assert (sizes[n:] == 0).all()


def test_block_bounds_rejects_bad_requests():
    for args in [(-1, 2, 0), (5, 0, 0), (5, 2, 2)]:
        with pytest.raises(ValueError):
            block_bounds(*args)


@pytest.mark.parametrize("counts", [[5], [3, 3, 2], [250, 250, 250, 251], [1, 1, 0, 0], [7, 0]])
@pytest.mark.parametrize("batch", [1, 2, 3, 7, 64])
def test_batch_shares_are_proportional_and_sum_to_the_batch(counts, batch):
    counts = np.array(counts)
    if batch > counts.sum():
        return
    shares = batch_shares(counts, batch)
    assert shares.sum() == batch
    exact = batch * counts / counts.sum()
    assert (np.abs(shares - exact) < 1).all()
    assert (shares[counts == 0] == 0).all() and (shares <= counts).all()


def test_epoch_order_does_not_depend_on_the_partition():
    whole = np.arange(100)[epoch_order(seed=3, epoch=2, start=0, stop=100)]
    part = np.arange(40, 70)[epoch_order(seed=3, epoch=2, start=40, stop=70)]
    assert list(part) == [i for i in whole if 40 <= i < 70]
    assert sorted(whole) == list(range(100))
    other = np.arange(100)[epoch_order(seed=3, epoch=3, start=0, stop=100)]
    assert list(other) != list(whole)


@pytest.mark.parametrize("n_local, share", [(10, 3), (10, 10), (7, 2), (5, 7)])
def test_sampler_visits_every_row_once_per_local_epoch(n_local, share):
    sampler = BatchSampler(start=100, n_local=n_local, share=share, seed=1)
    stream = np.concatenate([sampler.indices(t) for t in range(4 * n_local)])
    assert all(len(sampler.indices(t)) == share for t in range(5))
    for epoch in range(len(stream) // n_local):
        assert sorted(stream[epoch * n_local : (epoch + 1) * n_local]) == list(range(n_local))
    again = BatchSampler(start=100, n_local=n_local, share=share, seed=1)
    np.testing.assert_array_equal(again.indices(9), sampler.indices(9))  # a function of (seed, step)


def test_sampler_with_no_share_and_empty_partition():
    assert BatchSampler(0, 0, 0, 0).indices(5).size == 0
    with pytest.raises(ValueError, match="empty"):
        BatchSampler(0, 0, 2, 0)
