"""Which rows each rank feeds a synchronous step (``algorithms/sync.py``), against references
built from the documented rules: the batch split of ``batch_shares``, K contiguous micro-batches,
and for global sampling one stream of all N rows per epoch, cut into consecutive batches.

Serial: every rank of a partition is built here as its own ``Dataset``, no MPI.
"""
import numpy as np
import pytest
import scipy.sparse

import mpitrain as mt
from mpitrain.algorithms.sync import Batches, GlobalBatches, local_shares
from mpitrain.data import BatchSampler, batch_shares
from mpitrain.data.sampler import epoch_order

COUNTS = [7, 0, 30, 12]  # uneven, with an empty rank


def block(rank, counts=COUNTS, d=3, weights=False, sparse=False):
    """Rank ``rank``'s Dataset of a partition with ``counts`` rows per rank: row g holds g in every column."""
    counts = np.array(counts)
    start, n = int(counts[:rank].sum()), int(counts[rank])
    rows = np.arange(start, start + n, dtype=np.float64)
    X = np.repeat(rows[:, None], d, axis=1) + np.arange(d) / 10
    weight = 1.0 + rows / 100 if weights else None
    if sparse:
        X = scipy.sparse.csr_matrix(X)
    return mt.Dataset(X, -rows, start, int(counts.sum()), "rows", counts, weight=weight)


@pytest.mark.parametrize("batch", [0, -1, 50])
def test_a_batch_outside_1_to_n_is_refused_with_the_range(batch):
    with pytest.raises(mt.JobError, match=f"--batch-size {batch} must be between 1 and the 49 training samples"):
        local_shares(block(0), len(COUNTS), batch)
    with pytest.raises(mt.JobError, match=f"--batch-size {batch} must be between 1 and the 49"):
        GlobalBatches(block(0), batch, seed=1)


@pytest.mark.parametrize("batch", [1, 49])
def test_a_batch_of_1_or_n_is_taken(batch):
    assert GlobalBatches(block(2), batch, seed=1).global_size == batch
    if batch == 49:
        assert list(local_shares(block(0), 4, batch)) == COUNTS
    else:  # one rank: a batch of 1 is its whole share
        assert list(local_shares(block(0, [7]), 1, batch)) == [1]


def test_shares_are_batch_shares_and_the_data_must_match_the_world():
    assert list(local_shares(block(0), 4, 20)) == list(batch_shares(np.array(COUNTS), 20))
    with pytest.raises(ValueError, match="loaded on 4 ranks, but this communicator has 3"):
        local_shares(block(0), 3, 20)


def test_a_batch_that_starves_a_rank_names_it_and_the_smallest_sufficient_batch():
    counts = [2, 40, 3, 30]  # 75 rows: a batch of 38 or more gives the 2-row rank a row every step
    shares = {b: batch_shares(np.array(counts), b) for b in range(1, 76)}
    starving = [b for b in shares if ((shares[b] == 0) & (np.array(counts) > 0)).any()]
    with pytest.raises(mt.JobError, match=r"--batch-size 3 leaves ranks 0, 2 with no samples per step") as error:
        local_shares(block(1, counts), 4, 3)
    need = int(str(error.value).split("use --batch-size ")[1].split()[0])
    assert starving == list(range(1, need))  # the first batch that starves no rank
    with pytest.raises(mt.JobError, match=r"--batch-size 37 leaves ranks 0 with no samples per step"):
        local_shares(block(1, counts), 4, 37)
    assert list(local_shares(block(1, counts), 4, 38)) == list(shares[38])
    with pytest.raises(mt.JobError, match=r"--batch-size 2 leaves ranks 0 with no samples per step"):
        local_shares(block(1, [1, 40]), 2, 2)  # a rank of one row


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
@pytest.mark.parametrize("rank", [0, 2, 3])
def test_micro_batches_are_k_contiguous_pieces_of_the_share(rank, parts):
    data = block(rank)
    batches = Batches(data, 4, rank, 20, seed=3, parts=parts)
    share = int(batch_shares(np.array(COUNTS), 20)[rank])
    sampler = BatchSampler(data.start, data.n_local, share, 3)
    assert batches.share == share
    for step in (0, 1, 5):
        idx = sampler.indices(step)
        if parts == 1:  # with K > 1 the arrays hold one micro-batch: ``at`` is not used
            X, y = batches.at(step)
            np.testing.assert_array_equal(y, data.y[idx])
            np.testing.assert_array_equal(X, data.X[idx])
        pieces = [(X.copy(), y.copy()) for X, y in batches.micro(step)]
        sizes = [len(p) for p in np.array_split(idx, parts) if len(p)]
        assert sorted(len(y) for _, y in pieces) == sorted(sizes)  # the micro arrays hold one piece
        np.testing.assert_array_equal(np.concatenate([y for _, y in pieces]), data.y[idx])
        np.testing.assert_array_equal(np.concatenate([X for X, _ in pieces]), data.X[idx])


def test_full_batch_steps_take_the_whole_block_and_an_empty_rank_takes_nothing():
    data = block(2)
    X, y = Batches(data, 4, 2, None, seed=3).at(4)
    assert X is data.X and y is data.y
    empty = Batches(block(1), 4, 1, 20, seed=3, parts=3)
    assert empty.share == 0 and empty.at(2)[1].size == 0 and list(empty.micro(2)) == []


def test_weights_and_sparse_rows_follow_the_sampled_rows():
    dense, weighted, sparse = block(2), block(2, weights=True), block(2, sparse=True)
    share = int(batch_shares(np.array(COUNTS), 20)[2])
    idx = BatchSampler(dense.start, dense.n_local, share, 3).indices(4)
    batches = Batches(weighted, 4, 2, 20, seed=3)
    batches.at(4)
    np.testing.assert_array_equal(batches.weight, weighted.weight[idx])
    assert Batches(dense, 4, 2, 20, seed=3).weight is None
    X, y = Batches(sparse, 4, 2, 20, seed=3).at(4)
    assert scipy.sparse.issparse(X)
    np.testing.assert_array_equal(X.toarray(), dense.X[idx])
    np.testing.assert_array_equal(y, dense.y[idx])


def global_reference(n, batch, seed, step):
    """Global rows of batch ``step``: positions [step*B, (step+1)*B) of the epoch orders laid end to end."""
    epochs = (step + 1) * batch // n + 1
    stream = np.concatenate([epoch_order(seed, e, 0, n) for e in range(epochs)])
    return stream[step * batch : (step + 1) * batch]


@pytest.mark.parametrize("batch", [1, 13, 49])
def test_global_batches_give_each_rank_its_rows_of_one_stream_in_the_stream_order(batch):
    n = sum(COUNTS)
    for step in (5, 0, 1, 3, 8, 4):  # starting in a later epoch, then going back
        expected = global_reference(n, batch, 7, step)
        got = []
        for rank in range(len(COUNTS)):
            data = block(rank, weights=True)
            batches = GlobalBatches(data, batch, seed=7, parts=3)
            rows = batches.rows(step)
            mine = expected[(expected >= data.start) & (expected < data.start + data.n_local)]
            np.testing.assert_array_equal(rows + data.start, mine)  # in the stream's order
            X, y = batches.at(step)
            np.testing.assert_array_equal(y, -mine.astype(float))
            np.testing.assert_array_equal(X[:, 0], mine.astype(float))
            np.testing.assert_array_equal(batches.weight, 1.0 + mine / 100)
            pieces = [y for _, y in batches.micro(step)]
            assert [len(p) for p in pieces] == [len(p) for p in np.array_split(mine, 3) if len(p)]
            if pieces:
                np.testing.assert_array_equal(np.concatenate(pieces), -mine.astype(float))
            got.append(mine)
        assert sorted(np.concatenate(got)) == sorted(expected)


def test_global_batches_without_weights_give_none_and_one_micro_batch_unless_told():
    batches = GlobalBatches(block(2), 13, seed=7)
    X, y = batches.at(3)
    assert batches.weight is None
    (Xm, ym), = batches.micro(3)
    np.testing.assert_array_equal(Xm, X)
    np.testing.assert_array_equal(ym, y)
