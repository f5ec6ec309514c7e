"""The reduction algorithms at world sizes 1-12, with one thread per rank and no MPI.

The MPI sessions of ``make test`` reach 1-5 ranks. Rank arithmetic that only matters from 6 ranks
on (recursive doubling folds in two or more pairs; Rabenseifner halves three times; the tree
has three levels) is checked here: each thread plays one rank of ``ThreadComm``, which carries
the point-to-point calls the algorithms make through queues. The reference is a plain sum (or
max, min) of every rank's input, computed without any communication.
"""
from __future__ import annotations

import queue
import threading
from collections import defaultdict

import numpy as np
import pytest

from mpitrain.collectives import rabenseifner, recursive_doubling, ring, tree

from .refs import inputs, lengths, reference

SIZES = range(1, 13)
ALGORITHMS = {"ring": ring.allreduce, "recursive_doubling": recursive_doubling.allreduce,
              "rabenseifner": rabenseifner.allreduce, "tree": tree.allreduce}
WAIT = 20.0  # seconds a receive waits: an algorithm that never sends fails instead of hanging


class ThreadComm:
    """The send/recv/sendrecv/scratch part of mpitrain's Comm for rank ``rank`` of ``size`` threads.

    Sends are buffered (copied into the queue of (source, dest, tag)), so the order in which
    threads run cannot change a result; deadlocks are the MPI sessions' concern.
    """

    def __init__(self, rank: int, size: int, boxes: defaultdict) -> None:
        self.rank, self.size, self.boxes = rank, size, boxes
        self._scratch: dict[int, np.ndarray] = {}

    def send(self, buf: np.ndarray, dest: int, tag: int = 0) -> None:
        assert 0 <= dest < self.size and dest != self.rank, (self.rank, dest)
        self.boxes[(self.rank, dest, tag)].put(np.array(buf, copy=True))

    def recv(self, buf: np.ndarray, source: int, tag: int = 0) -> None:
        assert 0 <= source < self.size and source != self.rank, (self.rank, source)
        got = self.boxes[(source, self.rank, tag)].get(timeout=WAIT)
        assert got.shape == buf.shape and got.dtype == buf.dtype, (self.rank, source, got.shape, buf.shape)
        buf[...] = got

    def sendrecv(self, send: np.ndarray, dest: int, recv: np.ndarray, source: int, tag: int = 0) -> None:
        self.send(send, dest, tag)
        self.recv(recv, source, tag)

    def scratch(self, count: int, dtype, slot: int = 0) -> np.ndarray:  # type: ignore[no-untyped-def]
        held = self._scratch.get(slot)
        if held is None or held.size < count or held.dtype != dtype:
            held = self._scratch[slot] = np.empty(count, dtype=dtype)
        return held[:count]


def run_ranks(size: int, work) -> list:  # type: ignore[no-untyped-def]
    """Run work(comm) on ``size`` threads, one ThreadComm each; their results in rank order."""
    boxes: defaultdict = defaultdict(queue.Queue)
    results: list = [None] * size
    errors: list = []

    def one(rank: int) -> None:
        try:
            results[rank] = work(ThreadComm(rank, size, boxes))
        except BaseException as exc:  # noqa: BLE001 - reported below, with the rank
            errors.append((rank, exc))

    threads = [threading.Thread(target=one, args=(r,), daemon=True) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=2 * WAIT)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), f"a rank of {size} never finished"
    leftover = {key: box.qsize() for key, box in boxes.items() if box.qsize()}
    assert not leftover, f"messages sent and never received (source, dest, tag): {leftover}"
    return results


@pytest.mark.parametrize("op", ["sum", "max", "min"])
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_every_rank_gets_the_reduction_of_all_inputs_at_any_size(algorithm, op):
    for size in SIZES:
        for n in lengths(size):
            def work(comm: ThreadComm, n: int = n) -> np.ndarray:
                buf = inputs(comm.rank, n, np.int64)
                ALGORITHMS[algorithm](comm, buf, op)
                return buf

            got = run_ranks(size, work)
            expected = reference(np.stack([inputs(r, n, np.int64) for r in range(size)]), op)
            for rank, result in enumerate(got):
                assert np.array_equal(result, expected), (algorithm, op, size, n, rank)


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_float_sums_at_any_size_are_the_sum_to_rounding_and_the_same_bits_everywhere(algorithm):
    for size in SIZES:
        n = 2**5 + 1
        def work(comm: ThreadComm) -> np.ndarray:
            buf = inputs(comm.rank, n, np.float64)
            ALGORITHMS[algorithm](comm, buf, "sum")
            return buf

        got = run_ranks(size, work)
        expected = reference(np.stack([inputs(r, n, np.float64) for r in range(size)]), "sum")
        np.testing.assert_allclose(got[0], expected, rtol=1e-13, atol=1e-12, err_msg=f"{algorithm} at {size}")
        assert all(np.array_equal(g.view(np.uint64), got[0].view(np.uint64)) for g in got), (algorithm, size)
