"""ZeRO-1 (Rajbhandari et al. 2020): synchronous SGD with the optimizer state sharded over ranks.

The step buffer is sgd's, [gradient sums | loss sum | metric sum | stop votes] (n + 3 numbers),
cut into p blocks (``collectives.block_counts``). Each step:

1. every rank computes its gradient sums on its share of the batch (as ``sync.py``);
2. a reduce-scatter leaves rank r with the reduced block r: the ring's (by default) is the first
   half of the ring allreduce, so those are the bits sgd gets with ``allreduce="ring"``;
3. rank r updates the parameters of its block with the optimizer state of that block only:
   each rank keeps about 1/p of the optimizer state (Adam: 2n/p numbers instead of 2n);
4. an allgather of the blocks (the updated parameters, the loss sums and the votes in the last
   block) gives every rank the new parameters.

The update is elementwise, so each parameter gets the arithmetic it gets in sgd: the
parameters equal sgd's with ``allreduce="ring"`` bitwise, while one segment of the ring holds
the buffer (p * 64 KiB; for larger buffers the ring allreduce reduces segment by segment, and
the two differ by rounding). The optimizer must act on each parameter alone (sgd, momentum,
nesterov, adam); clipping by the global norm and adamw's weight decay of params[:k] do not,
and are refused. Checkpoints hold the whole optimizer state (gathered), so they resume at any
number of ranks.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .. import collectives, optim
from ..data import Dataset
from ..models import Model
from ..params import Layout
from ..timeline import COMPUTE, DATA, REDUCE, UPDATE, Timeline
from .base import State, check_finite, penalty
from .config import Reduce, ZeRO1
from .loop import Outcome
from .sync import Batches

if TYPE_CHECKING:
    from ..comm import Comm


def _map_arrays(fn: Callable[[np.ndarray], np.ndarray], state: Any) -> Any:
    """``state`` with ``fn`` applied to each array leaf (step counts kept), leaves in a fixed order."""
    return optim._map_leaves(lambda leaf: fn(leaf) if isinstance(leaf, np.ndarray) else leaf, state)


def check_elementwise(rule: optim.GradientTransformation, n: int, lo: int, hi: int) -> str:
    """'' if ``rule`` updates params[lo:hi] from their own gradients alone, else why not (a probe)."""
    rng = np.random.default_rng(0)
    grad, params = rng.normal(size=n), rng.normal(size=n)
    whole, _ = rule.update(grad, rule.init(params), params)
    part, _ = rule.update(grad[lo:hi].copy(), rule.init(params[lo:hi]), params[lo:hi].copy())
    if np.array_equal(np.asarray(whole)[lo:hi], part):
        return ""
    return ("zero-1 updates each rank's block of parameters alone, so the optimizer must act on each parameter "
            "alone (sgd, momentum, nesterov, adam); clipping by the global norm and adamw's weight decay do not")


class ShardedOptimizer:
    """ZeRO-1: reduce-scatter the step buffer, update this rank's block, allgather the blocks."""

    log_every_sync = False
    per_rank_state = False  # snapshots gather the whole optimizer state

    def __init__(self, model: Model, data: Dataset, comm: "Comm", loop: ZeRO1, rule: optim.GradientTransformation,
                 schedule: optim.Schedule, l2: float, reduce: Reduce, seed: int, state: State,
                 timeline: Timeline) -> None:
        self.model, self.comm, self.rule, self.schedule, self.l2, self.timeline = model, comm, rule, schedule, l2, timeline
        self.algorithm = "native" if reduce.algorithm == "native" else "ring"
        self.batches = Batches(data, comm.size, comm.rank, loop.batch_size, seed)
        self.theta, n = state.theta, model.n_params
        self.buf = Layout.record({"grad": (n,), "sums": (2,), "vote": ()}).empty(self.theta.dtype)
        self.grad = self.buf[:n]
        self.counts = [int(c) for c in collectives.block_counts(n + 3, comm.size)]
        self.lo = sum(self.counts[: comm.rank])
        self.hi = self.lo + self.counts[comm.rank]
        self.p_lo, self.p_hi = min(self.lo, n), min(self.hi, n)  # the parameters in this rank's block
        ends = np.minimum(np.cumsum(self.counts), n)
        self.param_counts = [int(c) for c in np.diff(ends, prepend=0)]  # every rank's parameters
        comm.raise_if_any(check_elementwise(rule, n, self.p_lo, self.p_hi))
        whole = optim.unflatten(rule.init(self.theta), state.opt_state)
        self.opt_state = _map_arrays(lambda a: a[self.p_lo : self.p_hi].copy(), whole)
        self.scratch = np.empty(self.p_hi - self.p_lo, dtype=self.theta.dtype)
        self.scale = 1.0 / self.batches.global_size
        self.plain = optim.is_identity(rule) and not l2

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> Outcome:
        """Reduce-scatter the gradient sums, update this rank's block, allgather the parameters."""
        model, theta, buf, timeline, n = self.model, self.theta, self.buf, self.timeline, self.model.n_params
        X, y = self.batches.at(step)
        timeline.mark(DATA)
        buf[-1] = vote()
        buf[n : n + 2] = model.sums(theta, X, y, self.grad)
        timeline.mark(COMPUTE)
        block = collectives.reduce_scatter(buf, algorithm=self.algorithm, comm=self.comm)
        timeline.mark(REDUCE)
        objective_term = penalty(theta, self.l2, model.n_penalized)
        grad, mine = block[: self.p_hi - self.p_lo], theta[self.p_lo : self.p_hi]
        if self.plain:
            optim.apply(mine, grad, self.schedule(step) * self.scale, grad)
        else:
            grad *= self.scale
            if self.l2:  # the L2 gradient of the weights in this block (params[:n_penalized])
                k = max(0, min(model.n_penalized, self.p_hi) - self.p_lo)
                grad[:k] += self.l2 * mine[:k]
            direction, self.opt_state = self.rule.update(grad, self.opt_state, mine)
            optim.apply(mine, direction, self.schedule(step), grad if direction is grad else self.scratch)
        buf[self.lo : self.hi] = block
        buf[self.p_lo : self.p_hi] = mine
        timeline.mark(UPDATE)
        self.comm.Allgatherv(buf, self.counts)
        timeline.mark(REDUCE)
        theta[:] = buf[:n]
        check_finite(buf[n:], step)
        return Outcome(bool(buf[-1] > 0), np.array([buf[n], buf[n + 1], self.batches.global_size]), objective_term)

    def snapshot(self, step: int, period: np.ndarray) -> State:
        """The state after ``step`` steps with the whole optimizer state, gathered from every rank (collective)."""
        def gather(block: np.ndarray) -> np.ndarray:
            whole = np.empty(self.model.n_params, dtype=block.dtype)
            whole[self.p_lo : self.p_hi] = block
            return self.comm.Allgatherv(whole, self.param_counts)

        return State(step, self.theta, period, _map_arrays(gather, self.opt_state))
