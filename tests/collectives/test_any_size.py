"""The reduction algorithms at world sizes 1-12, with one thread per rank and no MPI.

The MPI sessions of ``make test`` reach 1-5 ranks. Rank arithmetic that only matters from 6 ranks
on (recursive doubling folds in two or more pairs; Rabenseifner halves three times; the tree
has three levels) is checked here: each thread plays one rank of ``ThreadComm``, which carries
the point-to-point calls the algorithms make through queues. The references use no
communication: a plain sum (or max, min) of every rank's input; for ``ordered``, the rank-order
float sum bit for bit; for fixed-point sums, the same bits for any split of the same rows.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from typing import Callable

import numpy as np
import pytest

from mpitrain.collectives import deterministic, ordered, rabenseifner, recursive_doubling, ring, tree

from .refs import inputs, lengths, reference

SIZES = range(1, 13)
ALGORITHMS = {"ring": ring.allreduce, "recursive_doubling": recursive_doubling.allreduce,
              "rabenseifner": rabenseifner.allreduce, "tree": tree.allreduce, "ordered": ordered.allreduce}
WAIT = 20.0  # seconds a receive waits: an algorithm that never sends fails instead of hanging


class ThreadComm:
    """The send/recv/sendrecv/scratch part of mpitrain's Comm for rank ``rank`` of ``size`` threads.

    Sends are buffered (copied into the queue of (source, dest, tag)), so the order in which
    threads run cannot change a result; deadlocks are the MPI sessions' concern.
    """

    def __init__(self, rank: int, size: int, boxes: "Boxes") -> None:
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

    def isend(self, buf: np.ndarray, dest: int, tag: int) -> "Received":
        self.send(buf, dest, tag)
        return Received(None, None)

    def irecv(self, buf: np.ndarray, source: int, tag: int) -> "Received":
        assert 0 <= source < self.size and source != self.rank, (self.rank, source)
        return Received(self.boxes[(source, self.rank, tag)], buf)

    @staticmethod
    def test_all(requests: list) -> bool:
        return all([r.test() for r in requests])  # a list: every request gets its chance, as in MPI

    @staticmethod
    def wait_all(requests: list) -> None:
        for r in requests:
            r.wait()

    def Allreduce(self, buf: np.ndarray, op: str = "sum") -> np.ndarray:  # noqa: N802 - Comm's name
        """What MPI's own allreduce gives (a plain gather-and-reduce; exact for max and min)."""
        for k in range(self.size):
            if k != self.rank:
                self.send(buf, k, 99)
        parts = [buf.copy()]
        for k in range(self.size):
            if k != self.rank:
                got = np.empty_like(buf)
                self.recv(got, k, 99)
                parts.append(got)
        buf[...] = {"sum": np.sum, "max": np.max, "min": np.min}[op](np.stack(parts), axis=0)
        return buf

    def scratch(self, count: int, dtype, slot: int = 0) -> np.ndarray:  # type: ignore[no-untyped-def]
        held = self._scratch.get(slot)
        if held is None or held.size < count or held.dtype != dtype:
            held = self._scratch[slot] = np.empty(count, dtype=dtype)
        return held[:count]


class Received:
    """A receive request: complete once a message from its queue has been copied into ``buf``."""

    def __init__(self, box, buf) -> None:  # type: ignore[no-untyped-def]
        self.box, self.buf, self.done = box, buf, box is None

    def test(self) -> bool:
        if not self.done:
            try:
                self._take(self.box.get_nowait())
            except queue.Empty:
                pass
        return self.done

    def wait(self) -> None:
        if not self.done:
            self._take(self.box.get(timeout=WAIT))

    def _take(self, got: np.ndarray) -> None:
        assert got.shape == self.buf.shape and got.dtype == self.buf.dtype, (got.shape, self.buf.shape)
        self.buf[...] = got
        self.done = True


class Boxes:
    """One queue per (source, dest, tag), created under a lock (two threads must get the same queue)."""

    def __init__(self) -> None:
        self.queues: dict = {}
        self.lock = threading.Lock()

    def __getitem__(self, key: tuple) -> queue.Queue:
        with self.lock:
            if key not in self.queues:
                self.queues[key] = queue.Queue()
            return self.queues[key]

    def items(self):  # type: ignore[no-untyped-def]
        return self.queues.items()


def run_ranks(size: int, work) -> list:  # type: ignore[no-untyped-def]
    """Run work(comm) on ``size`` threads, one ThreadComm each; their results in rank order."""
    boxes = Boxes()
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


def rank_order_sum(rows: np.ndarray) -> np.ndarray:
    """((x_0 + x_1) + x_2) + ... over axis 0 of ``rows`` (p, n), one float addition at a time."""
    total = rows[0].copy()
    for row in rows[1:]:
        total = total + row
    return total


def test_ordered_gives_the_rank_order_sum_bit_for_bit_blocking_or_polled():
    for size in SIZES:
        for n in (0, 1, size - 1, size + 1, 2**5 + 1):
            rows = np.stack([inputs(r, n, np.float64) * (1.0 + 1e-3 * r) for r in range(size)])

            def work(comm: ThreadComm, rows: np.ndarray = rows) -> list:
                blocking = rows[comm.rank].copy()
                ordered.allreduce(comm, blocking, "sum")
                # two reductions in flight at once, finished by polling
                first, second = rows[comm.rank].copy(), -rows[comm.rank]
                a = ordered.start(comm, first, "sum", call=1, slot=1)
                b = ordered.start(comm, second, "sum", call=2, slot=2)
                for _ in range(2000):  # poll as a training step does between layers; wait() finishes the rest
                    if a.test() & b.test():
                        break
                    time.sleep(1e-4)
                # ranks at different progress: odd ranks finish call 3 before they start call 4, even
                # ranks start both first, so call 4's first messages reach odd ranks while they wait on 3
                third, fourth = rows[comm.rank].copy(), 2 * rows[comm.rank]
                c = ordered.start(comm, third, "sum", call=3, slot=3)
                if comm.rank % 2:
                    c.wait()
                d = ordered.start(comm, fourth, "sum", call=4, slot=4)
                return [blocking, a.wait(), b.wait(), c.wait(), d.wait()]

            expected = rank_order_sum(rows)
            wanted = (expected, expected, rank_order_sum(-rows), expected, rank_order_sum(2 * rows))
            for rank, results in enumerate(run_ranks(size, work)):
                for call, (got, want) in enumerate(zip(results, wanted)):
                    assert np.array_equal(got.view(np.uint64), want.view(np.uint64)), (size, n, rank, call)


def splits(rows: int, size: int) -> list[list[int]]:
    """Three ways to deal ``rows`` rows to ``size`` ranks: even blocks, all on the last rank, round robin."""
    edges = np.linspace(0, rows, size + 1).astype(int)
    return [[int(edges[r + 1] - edges[r]) for r in range(size)], [0] * (size - 1) + [rows],
            [len(range(r, rows, size)) for r in range(size)]]


@pytest.mark.parametrize("scale", [1.0, 1e-8, -1.0])  # 1e-8: every value below 1; -1: the largest magnitude negative
def test_fixed_point_sums_have_the_same_bits_for_any_split_of_the_rows_at_any_size(scale):
    rng = np.random.default_rng(8)
    table = rng.normal(size=(13, 7)) * np.array([1.0, 1e-6, 1e6, 3.0, 1e-12, 0.5, 7.0]) * scale
    shuffled = rng.permutation(len(table))
    exact = np.array([math.fsum(column) for column in table.T])
    bound = len(table) * 2.0**-46 * np.abs(table).max() * 2  # the module's accuracy promise, twice
    first = None
    for size in SIZES:
        for counts in splits(len(table), size):
            edges = np.concatenate([[0], np.cumsum(counts)])

            def work(comm: ThreadComm, edges: np.ndarray = edges) -> np.ndarray:
                mine = table[shuffled[edges[comm.rank]:edges[comm.rank + 1]]]
                out = np.empty(table.shape[1])
                deterministic.sum_shards(comm, mine, out, lambda ints: ring.allreduce(comm, ints, "sum"))
                return out

            for got in run_ranks(size, work):
                first = got if first is None else first
                assert np.array_equal(got.view(np.uint64), first.view(np.uint64)), (size, counts)
    np.testing.assert_allclose(first, exact, rtol=0, atol=bound)
    # the documented rounding, done by hand: q = rint(x * 2^s) with s = 46 - e, 2^(e-1) <= max|x| < 2^e,
    # summed exactly (Python integers), then one conversion back
    shift = 46 - math.frexp(float(np.abs(table).max()))[1]
    fixed = [sum(int(np.rint(x * 2.0**shift)) for x in column) for column in table.T]
    assert np.array_equal(first, np.array([float(q) * 2.0**-shift for q in fixed]))


def fixed_point_sums(size: int, rows_of: Callable[[ThreadComm], np.ndarray]) -> list[np.ndarray]:
    """Every rank's ``deterministic.sum_shards`` of its rows ``rows_of(comm)`` (shape (k, n)), ring-reduced."""
    def work(comm: ThreadComm) -> np.ndarray:
        rows = rows_of(comm)
        out = np.empty(rows.shape[1])
        deterministic.sum_shards(comm, rows, out, lambda ints: ring.allreduce(comm, ints, "sum"))
        return out
    return run_ranks(size, work)


def test_fixed_point_sums_take_up_to_2_to_the_16_contributions():
    """16 bits of headroom: 65,536 rows of the largest magnitude still sum exactly; one more is refused."""
    assert fixed_point_sums(1, lambda comm: np.ones((65_536, 1)))[0][0] == 65_536.0
    with pytest.raises(AssertionError, match="at most 65536 contributions"):
        fixed_point_sums(1, lambda comm: np.ones((65_537, 1)))


def test_fixed_point_sums_keep_the_fraction_bits_when_the_largest_magnitude_is_exactly_one():
    """max|x| = 1 = 2^0 (e = 1): the scale is 2^45, so 0.3 and -0.7 keep 45 fraction bits."""
    table = np.array([[1.0, 0.3], [0.25, -0.7], [-0.5, 0.1]])
    for size in (1, 2, 3):
        for got in fixed_point_sums(size, lambda comm: table[comm.rank::comm.size]):
            np.testing.assert_allclose(got, table.sum(axis=0), rtol=0, atol=3 * 2.0**-45)


def test_fixed_point_sums_count_the_contributions_of_every_rank():
    """The limit is on ranks x rows: 2 ranks of 32,768 rows sum exactly, 2 of 32,769 are refused."""
    assert [out[0] for out in fixed_point_sums(2, lambda comm: np.ones((32_768, 1)))] == [65_536.0, 65_536.0]
    with pytest.raises(AssertionError, match="at most 65536 contributions, but 2 ranks pass up to 32769 rows each"):
        fixed_point_sums(2, lambda comm: np.ones((32_769, 1)))
