"""``algorithm="auto"``: a fixed function of (bytes, ranks, nodes, thread level) over a table and a cost model.

Where a calibration exists for the thread level and world (``python -m mpitrain bench allreduce
--calibrate``), its table decides. The built-in table (``_table.py``) is updated from the JSON
file named by ``MPITRAIN_ALLREDUCE_TABLE``, or else from ``SITE_TABLE`` if a site installed one
there. Elsewhere a world that spans several nodes uses ``hierarchical``, and one node uses the
algorithm the alpha-beta model (``costmodel.algorithm_seconds``) predicts fastest; the model
charges the native call at ``serialized`` its measured large-buffer cost, so it is never picked
where it is known to be slow. Every rank must load the same table (checked by a digest on a
communicator's first plan), so every rank picks the same plan. Table keys are the number of
ranks, "RxN" for R ranks over N nodes.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import TYPE_CHECKING, Optional

import numpy as np

from .. import costmodel
from ._table import TABLE

if TYPE_CHECKING:
    from ..comm import Comm

ENV = "MPITRAIN_ALLREDUCE_TABLE"
SITE_TABLE = os.path.join(sys.prefix, "share", "mpitrain", "allreduce-table.json")
FLAT = ("native", "ring", "recursive_doubling", "rabenseifner", "tree")
CANDIDATES = FLAT + ("hierarchical",)

_loaded: Optional[tuple[dict, str]] = None  # (table, where it came from), loaded on first use


def table_path() -> Optional[str]:
    """The calibration file in force: $MPITRAIN_ALLREDUCE_TABLE, else SITE_TABLE if it exists, else None."""
    path = os.environ.get(ENV)
    if path:
        return path
    return SITE_TABLE if os.path.exists(SITE_TABLE) else None


def load_table(path: Optional[str] = None) -> dict:
    """The built-in table updated with the JSON file at ``path`` (default: ``table_path()``)."""
    table = {level: dict(by_size) for level, by_size in TABLE.items()}
    path = table_path() if path is None else path
    if path:
        try:
            with open(path) as f:
                extra = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the allreduce table {path!r} ({exc}); unset {ENV} or recalibrate") from exc
        for level, by_size in extra.items():
            table.setdefault(level, {}).update(by_size)
    check_table(table)
    return table


def table() -> tuple[dict, str]:
    """(the table in force, where it came from), loaded once per process."""
    global _loaded
    if _loaded is None:
        path = table_path()
        _loaded = load_table(path), "built in" + (f", updated from {path}" if path else "")
    return _loaded


def check_table(table: dict) -> None:
    """Raise ValueError naming the first malformed entry of ``table``."""
    for level, by_size in table.items():
        for ranks, rows in by_size.items():
            bounds = [row[0] for row in rows]
            if not rows or bounds[-1] is not None or any(b is None for b in bounds[:-1]) or bounds[:-1] != sorted(bounds[:-1]):
                raise ValueError(f"allreduce table [{level}][{ranks}]: bounds must increase and end with null; recalibrate")
            for _, algo in rows:
                if algo not in CANDIDATES:
                    raise ValueError(f"allreduce table [{level}][{ranks}] names {algo!r}; expected one of {CANDIDATES}")


def digest(table: dict) -> bytes:
    """A canonical byte string of ``table``, compared across ranks."""
    return json.dumps(table, sort_keys=True).encode()


def key(size: int, nodes: int = 1) -> str:
    """The table key of a world of ``size`` ranks over ``nodes`` nodes: "16", or "32x2"."""
    return str(size) if nodes == 1 else f"{size}x{nodes}"


def choose(nbytes: int, size: int, thread_level: str, table: dict, nodes: int = 1) -> str:
    """The algorithm for reducing ``nbytes`` bytes over ``size`` ranks on ``nodes`` nodes (pure)."""
    if size == 1:
        return "native"
    spans = 1 < nodes < size  # several nodes, some with more than one rank
    rows = table.get(thread_level, {}).get(key(size, nodes))
    if rows is not None:
        algo = pick(rows, nbytes)
        if algo != "hierarchical" or spans:
            return algo
    if spans:
        return "hierarchical"
    return costmodel.cheapest(nbytes, size, thread_level, FLAT)


def pick(rows: list, nbytes: int) -> str:
    """The algorithm table ``rows`` give a buffer of ``nbytes`` bytes."""
    for bound, algo in rows:  # check_table: the last bound is None
        if bound is None or nbytes < bound:
            break
    return algo


def plan(comm: "Comm", nbytes: int) -> str:
    """What auto does with ``nbytes`` bytes on ``comm``, kept in ``comm.plans``.

    A communicator's first plan is collective: it checks that every rank loaded the same table
    and learns the nodes.
    """
    plans = comm.plans
    if plans is None:
        _agree(comm)
        plans = comm.plans = {}
    found = plans.get(nbytes)
    if found is None:
        nodes = comm.nodes()[2] if comm.size > 1 else 1
        found = plans[nbytes] = choose(nbytes, comm.size, comm.thread_level, table()[0], nodes)
    return found


def _agree(comm: "Comm") -> None:
    """Raise RuntimeError on every rank unless all ranks loaded the same table (collective)."""
    mine = int.from_bytes(hashlib.blake2b(digest(table()[0]), digest_size=7).digest(), "little")
    both = comm.Allreduce(np.array([mine, -mine], dtype=np.int64), "max")
    if both[0] != -both[1]:
        raise RuntimeError(f"ranks loaded different allreduce tables; point {ENV} at one shared file")


def rows_from_timings(sizes: list[int], seconds: dict[str, list[float]], margin: float = 0.1) -> list[list]:
    """Table rows from calibration medians: ``seconds[algo][i]`` is the latency at ``sizes[i]`` bytes.

    A size keeps ``native`` unless another candidate is faster by more than ``margin`` (a
    fraction), so noise never moves a size off the library's call; neighbouring sizes with the
    same winner merge, and each boundary sits at the geometric mean of the sizes around it.
    """
    if "native" not in seconds:
        raise ValueError("calibration needs native timings: it is the choice to beat")
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    winners = []
    for i in order:
        best = min(seconds, key=lambda name: seconds[name][i])
        winners.append(best if seconds[best][i] < (1 - margin) * seconds["native"][i] else "native")
    rows: list[list] = []
    for k, (i, algo) in enumerate(zip(order, winners)):
        if k + 1 < len(order) and winners[k + 1] == algo:
            continue
        bound = None if k + 1 == len(order) else int(round((sizes[i] * sizes[order[k + 1]]) ** 0.5))
        rows.append([bound, algo])
    return rows


def describe(comm: "Comm") -> dict:
    """The table in force and what auto picks on ``comm`` from 8 B to 32 MiB, for ``mpitrain info`` (collective)."""
    sizes = [8 << (2 * k) for k in range(12)]
    names = {b: f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB" if b >= 1 << 10 else f"{b} B" for b in sizes}
    return {"allreduce_table": table()[1],
            "nodes": comm.nodes()[2] if comm.size > 1 else 1,
            "auto_plan": {names[b]: plan(comm, b) for b in sizes}}
