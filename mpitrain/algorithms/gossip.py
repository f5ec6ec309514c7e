"""Decentralized gossip SGD (D-PSGD, Lian et al. 2017): no global collective while training.

Each step every rank takes a local SGD step on its share of the batch (``local_sgd.py``), then
replaces its parameters by the mean of its own and its neighbours' (``Sendrecv`` only, in the
adapt-then-combine order):

- ``ring``: the ranks r-1 and r+1 (one neighbour at 2 ranks): weights 1/3 each;
- ``exponential``: one peer per step, r - 2^i with i = step mod ceil(log2 p), weights 1/2
  (the one-peer exponential graph: its mixing matrix is doubly stochastic);
- ``complete``: every rank, summed in rank order on every rank: plain averaging, kept as the
  reference topology (p - 1 messages and p copies of the parameters per step).

The ranks weigh each other equally (a doubly stochastic mixing matrix), so the consensus point
weights every rank alike whatever its rows. Every ``consensus_every`` steps one Allreduce of
[theta_k / p | loss sums | spread | stop votes] (n_params + p + 5 numbers; the buffer of
``LocalAveraging.reduce_replicas``) gives the metrics record with the exact consensus distance:
``drift_rms``, the root mean square over ranks of ||theta_k - mean|| at that step, from the drift
identity of ``local_sgd.py`` about the previous mean, and ``drift_max_prev``, the largest
distance at the log before. Each rank keeps its own parameters (the mean is only measured). At
the last step an exact average (uniform weights) ends the run with identical parameters, its
``drift_rms`` logged the same way. Checkpoints are taken only there or when a run is stopped
(each rank's own model).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from .. import optim
from ..data import Dataset
from ..models import Model
from ..timeline import REDUCE, Timeline
from .base import State
from .config import Gossip, Reduce
from .local_sgd import LocalAveraging
from .loop import Outcome

if TYPE_CHECKING:
    from ..comm import Comm


def neighbours(graph: str, rank: int, size: int, step: int) -> list[tuple[int, int]]:
    """(send to, receive from) pairs of ``rank`` at ``step``; the rank mixes with every 'receive from'."""
    if size == 1:
        return []
    if graph == "ring":
        return [((rank + 1) % size, (rank - 1) % size)] + ([((rank - 1) % size, (rank + 1) % size)] if size > 2 else [])
    if graph == "exponential":
        hop = 2 ** (step % int(np.ceil(np.log2(size))))
        return [((rank + hop) % size, (rank - hop) % size)]
    return [((rank + d) % size, (rank - d) % size) for d in range(1, size)]


class GossipAveraging(LocalAveraging):
    """Local SGD steps, each followed by a mix with the graph's neighbours (Sendrecv)."""

    def __init__(self, model: Model, data: Dataset, comm: "Comm", loop: Gossip, rule: optim.GradientTransformation,
                 schedule: optim.Schedule, l2: float, reduce: Reduce, seed: int, state: State, steps: int,
                 timeline: Timeline) -> None:
        super().__init__(model, data, comm, loop, rule, schedule, l2, reduce, seed, state, steps, timeline)
        self.graph, self.every = loop.graph, loop.consensus_every
        self.weight = 1.0 / comm.size  # the final average weighs ranks as the mixing does
        peers = {"complete": comm.size, "exponential": 1}.get(self.graph, min(2, comm.size - 1))
        self.received = np.empty((max(peers, 1), model.n_params), dtype=self.theta.dtype)

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> Outcome:
        """A local step and a mix with the neighbours; the consensus reduction when due; the exact average last."""
        self.local_step(step)
        if step + 1 == self.steps:
            return self.average(step, vote)
        self.mix(step)
        if (step + 1) % self.every:
            return self.between(vote, listens)
        record = self.reduce_replicas(step, vote, with_state=False)  # measures the mean; theta stays this rank's
        self.anchor[:] = self.views["theta"]
        self.pending[:] = 0
        return Outcome(bool(self.views["vote"] > 0), self.views["sums"].copy(), 0.0, synced=False, record=record)

    def mix(self, step: int) -> None:
        """theta <- the mean of theta and the neighbours' thetas."""
        theta, comm, got = self.theta, self.comm, self.received
        pairs = neighbours(self.graph, comm.rank, comm.size, step)
        if not pairs:
            return
        if self.graph == "complete":  # every rank's parameters in rank order, summed in that order everywhere
            got[comm.rank] = theta
            for dest, source in pairs:
                comm.Sendrecv(theta, dest, got[source], source)
            mixed = self.scratch
            np.copyto(mixed, got[0])
            for row in got[1:]:
                mixed += row
        else:
            for i, (dest, source) in enumerate(pairs):
                comm.Sendrecv(theta, dest, got[i], source)
            mixed = np.add(theta, got[0], out=self.scratch)
            for row in got[1 : len(pairs)]:
                mixed += row
        mixed /= len(pairs) + 1
        self.timeline.mark(REDUCE)
        theta[:] = mixed
