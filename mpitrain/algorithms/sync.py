"""Synchronous data parallelism: full-batch gradient descent and mini-batch SGD.

Each step, every rank sums the loss gradient over its rows of the global batch; one
Allreduce adds the per-rank sums (the loss and metric sums and the ranks' stop votes travel in
the same buffer); the sum is divided by the global batch size and the L2 term is added once,
after the reduction. Full-batch GD is the case where each rank's batch is its whole partition. With
``accumulate`` K, each rank computes its share as K micro-batches, summing their gradients into the
same buffer before the one reduction: the step's maths is unchanged, only rounding differs. With overlap
the buffer is reduced in buckets started while the backward pass runs (``overlap.py``). With compression the
gradient travels as fp16/bf16 with error feedback (each rank carries its encoding error into its
next gradient) and the loss sums and votes in a second, exact reduction.
The optimizer sees only the reduced gradient, so its state is the same on every rank without
communication.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, Optional, Union

import numpy as np

from .. import collectives, optim
from ..data import BatchSampler, Dataset, batch_shares
from ..data.sampler import epoch_order
from ..errors import JobError
from ..models import Model
from ..params import Layout
from ..timeline import COMPUTE, DATA, REDUCE, UPDATE, Timeline
from .base import State, add_penalty_gradient, check_finite, penalty
from .config import GD, SGD, Reduce
from .loop import Outcome
from .overlap import Buckets

if TYPE_CHECKING:
    from ..comm import Comm


def local_shares(data: Dataset, size: int, batch_size: int) -> np.ndarray:
    """Every rank's share of a global batch, shape (size,); JobError if the batch cannot be split."""
    if not 1 <= batch_size <= data.n_total:
        raise JobError(f"--batch-size {batch_size} must be between 1 and the {data.n_total} training samples")
    if len(data.counts) != size:
        raise ValueError(f"the data was loaded on {len(data.counts)} ranks, but this communicator has {size}")
    counts = data.counts
    shares = batch_shares(counts, batch_size)
    starved = np.flatnonzero((shares == 0) & (counts > 0))
    if starved.size:
        need = int(np.ceil(data.n_total / counts[starved].min()))
        raise JobError(
            f"--batch-size {batch_size} leaves ranks {', '.join(map(str, starved))} with no samples per step, "
            f"so their data would never be used; use --batch-size {need} or more, or fewer ranks"
        )
    return shares


class Batches:
    """This rank's rows of each step's global batch, gathered into preallocated arrays.

    With ``parts`` K > 1 the share is taken as K contiguous micro-batches (``micro``), and the
    arrays hold one micro-batch (ceil(share / K) rows) instead of the whole share.
    """

    def __init__(self, data: Dataset, size: int, rank: int, batch_size: Optional[int], seed: int,
                 parts: int = 1) -> None:
        self.data = data
        self.full = batch_size is None
        self.global_size = data.n_total if self.full else batch_size
        share = data.n_local if self.full else int(local_shares(data, size, batch_size)[rank])
        self.sampler = BatchSampler(data.start, data.n_local, share, seed)
        self.cuts = [share * i // parts for i in range(parts + 1)]
        rows = max(b - a for a, b in zip(self.cuts, self.cuts[1:]))
        self.sparse = not isinstance(data.X, np.ndarray)  # scipy.sparse CSR rows are taken by indexing
        self.X = np.empty((0 if self.sparse else rows, data.n_features), dtype=data.X.dtype)
        self.y = np.empty(rows, dtype=data.y.dtype)
        self.w = None if data.weight is None else np.empty(rows, dtype=data.weight.dtype)
        self.weight = data.weight  # the rows' weights of the last ``at``, or None

    @property
    def share(self) -> int:
        """Rows this rank contributes to each step."""
        return self.sampler.share

    def at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of this rank's share at ``step``: shapes (share, d) and (share,)."""
        if self.full:
            return self.data.X, self.data.y
        idx = self.sampler.indices(step)
        # mode="clip": the sampler's indices are in range, and "raise" would buffer the copy
        np.take(self.data.y, idx, axis=0, out=self.y, mode="clip")
        if self.w is not None:
            self.weight = np.take(self.data.weight, idx, out=self.w, mode="clip")
        if self.sparse:
            return self.data.X[idx], self.y
        np.take(self.data.X, idx, axis=0, out=self.X, mode="clip")
        return self.X, self.y

    def micro(self, step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(X, y) of each non-empty micro-batch of this rank's share at ``step``, in turn (one buffer)."""
        idx = self.sampler.indices(step)
        for lo, hi in zip(self.cuts, self.cuts[1:]):
            if hi > lo:
                X, y = self.X[: hi - lo], self.y[: hi - lo]
                np.take(self.data.X, idx[lo:hi], axis=0, out=X, mode="clip")
                np.take(self.data.y, idx[lo:hi], axis=0, out=y, mode="clip")
                yield X, y


class GlobalBatches:
    """This rank's rows of each step's global batch, drawn from one order of all N rows per epoch."""

    def __init__(self, data: Dataset, batch_size: int, seed: int, parts: int = 1) -> None:
        if not 1 <= batch_size <= data.n_total:
            raise JobError(f"--batch-size {batch_size} must be between 1 and the {data.n_total} training samples")
        self.data, self.global_size, self.seed, self.parts = data, batch_size, seed, parts
        self.share = data.n_local  # an upper bound: the rows this rank holds in a batch vary
        self.weight: Optional[np.ndarray] = None  # the rows' weights of the last ``at``, or None
        self._cached: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def _order(self, epoch: int) -> np.ndarray:
        if self._cached[0] != epoch:
            self._cached = (epoch, epoch_order(self.seed, epoch, 0, self.data.n_total))
        return self._cached[1]

    def rows(self, step: int) -> np.ndarray:
        """Local indices of this rank's rows of the global batch at ``step``, in the batch's order."""
        n, first, last = self.data.n_total, step * self.global_size, (step + 1) * self.global_size
        parts = []
        while first < last:
            epoch, offset = divmod(first, n)
            take = min(last - first, n - offset)
            parts.append(self._order(epoch)[offset : offset + take])
            first += take
        rows = np.concatenate(parts) - self.data.start
        return rows[(rows >= 0) & (rows < self.data.n_local)]

    def at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of this rank's rows of the batch at ``step``: shapes (k, d) and (k,), k >= 0."""
        idx = self.rows(step)
        self.weight = None if self.data.weight is None else self.data.weight[idx]
        return self.data.X[idx], self.data.y[idx]

    def micro(self, step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(X, y) of each non-empty one of ``parts`` contiguous pieces of this rank's rows at ``step``."""
        idx = self.rows(step)
        for piece in np.array_split(idx, self.parts):
            if piece.size:
                yield self.data.X[piece], self.data.y[piece]


class Synchronous:
    """GD (``loop`` a ``GD``) or SGD (an ``SGD``): one reduction of [gradient sums | loss sum |
    metric sum | stop votes] a step, then the same update on every rank."""

    log_every_sync = False
    per_rank_state = False

    def __init__(self, model: Model, data: Dataset, comm: "Comm", loop: Union[GD, SGD], rule: optim.GradientTransformation,
                 schedule: optim.Schedule, l2: float, reduce: Reduce, seed: int, state: State,
                 timeline: Timeline) -> None:
        self.model, self.comm, self.rule, self.schedule, self.l2 = model, comm, rule, schedule, l2
        self.reduce, self.timeline = reduce, timeline
        self.accumulate = getattr(loop, "accumulate", 1)
        if getattr(loop, "sampling", "local") == "global":
            self.batches = GlobalBatches(data, loop.batch_size, seed, self.accumulate)
        else:
            self.batches = Batches(data, comm.size, comm.rank, loop.batch_size, seed, self.accumulate)
        self.theta = state.theta
        self.opt_state = optim.unflatten(rule.init(self.theta), state.opt_state)
        n_params = model.n_params
        self.layout = Layout.record({"grad": (n_params,), "sums": (2,), "vote": ()})
        self.buf = self.layout.empty(self.theta.dtype)
        self.grad = self.buf[:n_params]
        self.feedback = None
        if reduce.compress is not None:
            self.feedback = collectives.feedback_init(self.grad)
            if state.residual is not None:
                self.feedback.residual[:] = state.residual
        self.buckets = Buckets(comm, self.buf) if reduce.overlap else None
        self.scratch = np.empty_like(self.grad)
        self.scale = 1.0 / self.batches.global_size
        # theta -= (lr / B) * sum: one pass over the gradient fewer
        self.plain = optim.is_identity(rule) and not l2

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> Outcome:
        """Reduce this step's gradient sums and update theta on every rank."""
        model, theta, grad, buf, timeline = self.model, self.theta, self.grad, self.buf, self.timeline
        n_params = model.n_params
        buf[-1] = vote()
        if self.accumulate > 1 and self.batches.share:
            self._accumulate(step)
        else:
            X, y = self.batches.at(step)
            timeline.mark(DATA)
            weighted = {} if self.batches.weight is None else {"weight": self.batches.weight}
            buf[n_params : n_params + 2] = model.sums(theta, X, y, grad,
                                                      None if self.buckets is None else self.buckets.ready, **weighted)
        timeline.mark(COMPUTE)
        if self.buckets is not None:
            self.buckets.finish()
        elif self.feedback is None:
            collectives.allreduce(buf, algorithm=self.reduce.algorithm, comm=self.comm)
        else:  # 16-bit gradients; the loss sums and votes travel exactly, in a small second call
            grad[:], self.feedback = collectives.feedback_apply(grad, self.feedback, self.reduce.compress)
            collectives.allreduce(grad, algorithm=self.reduce.algorithm, compress=self.reduce.compress, comm=self.comm)
            self.comm.Allreduce(buf[n_params:])
        timeline.mark(REDUCE)
        return self.update(step)

    def update(self, step: int) -> Outcome:
        """The same update on every rank from the reduced [gradient sums | loss sum | metric sum | votes]."""
        model, theta, grad, buf, timeline = self.model, self.theta, self.grad, self.buf, self.timeline
        n_params, k = model.n_params, model.n_penalized
        check_finite(buf[n_params:], step)  # the loss: a non-finite gradient shows there one step later
        size = self.batches.global_size
        totals = np.array([buf[n_params], buf[n_params + 1], size])
        objective_term = penalty(theta, self.l2, k)
        if self.plain:
            optim.apply(theta, grad, self.schedule(step) * self.scale, grad)
        else:
            grad *= self.scale
            add_penalty_gradient(theta, grad, self.l2, k)
            direction, self.opt_state = self.rule.update(grad, self.opt_state, theta)
            optim.apply(theta, direction, self.schedule(step), grad if direction is grad else self.scratch)
        timeline.mark(UPDATE)
        return Outcome(bool(buf[-1] > 0), totals, objective_term)

    def _accumulate(self, step: int) -> None:
        """Gradient and loss sums of this rank's share, one micro-batch at a time (``scratch`` holds each)."""
        model, theta, grad, sums = self.model, self.theta, self.grad, self.buf[self.model.n_params:][:2]
        for i, (X, y) in enumerate(self.batches.micro(step)):
            part = model.sums(theta, X, y, grad if i == 0 else self.scratch)
            if i == 0:
                sums[:] = part
            else:
                grad += self.scratch
                sums += part

    def snapshot(self, step: int, period: np.ndarray) -> State:
        """The state after ``step`` steps; with compression, each rank's own residual too."""
        residual = None if self.feedback is None else self.feedback.residual
        return State(step, self.theta, period, self.opt_state, residual)
