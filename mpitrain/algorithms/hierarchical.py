"""Hierarchical local SGD: models averaged inside each node often, and over all ranks rarely.

Every rank steps alone (``local_sgd.py``). Every ``sync_every`` steps the ranks of each node (the
ranks that share memory, ``Comm.node``: ``Split_type(COMM_TYPE_SHARED)``) average their models
with weights n_k / N_node, in one reduction over the node; every ``sync_every_global`` steps (and
at the last) all ranks average with weights n_k / N as in local SGD, with the metric sums, the
drift and the stop votes in the same reduction. Steps that are both take the global average.
A node whose ranks hold no rows skips its node averages (its models do not move). On one node
the node average is the global one, so this is local SGD with period ``sync_every``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from .. import collectives, optim
from ..data import Dataset
from ..models import Model
from ..timeline import REDUCE, Timeline
from .base import State
from .config import HierarchicalSGD, Reduce
from .local_sgd import LocalAveraging
from .loop import Outcome

if TYPE_CHECKING:
    from ..comm import Comm


class Hierarchical(LocalAveraging):
    """Local SGD with node averages every ``sync_every`` steps and global ones every ``sync_every_global``."""

    def __init__(self, model: Model, data: Dataset, comm: "Comm", loop: HierarchicalSGD,
                 rule: optim.GradientTransformation, schedule: optim.Schedule, l2: float, reduce: Reduce, seed: int,
                 state: State, steps: int, timeline: Timeline) -> None:
        super().__init__(model, data, comm, loop, rule, schedule, l2, reduce, seed, state, steps, timeline)
        self.every_global = loop.sync_every_global
        self.node = comm.node()
        node_rows = int(self.node.Allreduce(np.array([data.n_local], dtype=np.int64))[0])
        self.node_weight = data.n_local / node_rows if node_rows else 0.0
        self.node_buf = np.empty(model.n_params + self.views["opt_state"].size, dtype=self.theta.dtype)
        self.skip_node = node_rows == 0

    def step(self, step: int, vote: Callable[[], float], listens: bool) -> Outcome:
        """A local step; a global average, or a node average, when one is due."""
        self.local_step(step)
        if (step + 1) % self.every_global == 0 or step + 1 == self.steps:
            return self.average(step, vote)
        if (step + 1) % self.sync_every == 0 and not self.skip_node:
            self.node_average()
        return self.between(vote, listens)

    def node_average(self) -> None:
        """Average the models (and the optimizer state, with local_state "average") over this node."""
        theta, buf, n = self.theta, self.node_buf, self.theta.size
        np.multiply(theta, self.node_weight, out=buf[:n])
        if self.local_state == "average":
            np.multiply(optim.flatten(self.opt_state, counts=False), self.node_weight, out=buf[n:])
        collectives.allreduce(buf, algorithm=self.reduce.algorithm, comm=self.node)
        self.timeline.mark(REDUCE)
        theta[:] = buf[:n]
        if self.local_state == "average":
            self.opt_state = optim.unflatten(self.opt_state, buf[n:], counts=False)
        elif self.local_state == "reset":
            self.opt_state = self.rule.init(theta)
