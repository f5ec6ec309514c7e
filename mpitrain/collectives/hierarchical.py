"""Node-aware allreduce: reduce inside each node, allreduce among one leader per node, broadcast inside each node.

For ranks that span nodes: only one rank per node sends over the network, and each node's
shared memory does the rest. Nodes are shared-memory domains (``Comm.nodes``, from
``Split_type(COMM_TYPE_SHARED)``). Every element is reduced only on the leaders (each node's
partial result on its leader, then an allreduce among leaders whose algorithms all give the
same bits on every leader), and the node broadcast copies its leader's result, so every rank
ends with the same bits.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..comm import Comm


def allreduce(ch: Comm, buf: np.ndarray, op: str, among_leaders: Callable[[Comm, np.ndarray, str], None]) -> None:
    """Reduce ``buf`` (shape (n,)) in place over all ranks; ``among_leaders`` reduces over the leaders."""
    node, leaders, _ = ch.nodes()
    if node.size > 1:
        node.native_reduce(buf, op, 0)
    if leaders is not None and leaders.size > 1:
        among_leaders(leaders, buf, op)
    if node.size > 1:
        node.Bcast(buf, 0)
