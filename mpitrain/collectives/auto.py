"""``algorithm="auto"``: a fixed function of (bytes, ranks, dtype, op, thread level) over a table.

The table comes from a calibration run (``python -m mpitrain bench allreduce --calibrate``) and
ships in ``_table.py``; a JSON file named by the environment variable
``MPITRAIN_ALLREDUCE_TABLE`` overrides its entries. Every rank must load the same table (the
channel checks a digest), so every rank picks the same plan. Where the table has nothing for the
thread level and number of ranks, the MPI library's own call is used: a calibration on 2 ranks
says nothing about 4, and native is never slower than itself.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np

from ._table import TABLE

ENV = "MPITRAIN_ALLREDUCE_TABLE"
CANDIDATES = ("native", "ring", "recursive_doubling", "rabenseifner", "tree")


def load_table(path: Optional[str] = None) -> dict:
    """The built-in table updated with the JSON file at ``path`` (default: $MPITRAIN_ALLREDUCE_TABLE)."""
    table = {level: dict(by_size) for level, by_size in TABLE.items()}
    path = os.environ.get(ENV) if path is None else path
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


def choose(nbytes: int, size: int, dtype: np.dtype, op: str, thread_level: str, table: dict) -> str:
    """The algorithm for reducing ``nbytes`` bytes over ``size`` ranks.

    ``dtype`` and ``op`` only matter through the byte count today: the table is calibrated with
    float64 sums, and max/min cost the same per byte in NumPy.
    """
    return pick(rows_for(table, thread_level, size), nbytes)


def rows_for(table: dict, thread_level: str, size: int) -> Optional[list]:
    """The table's rows for this thread level and number of ranks, or None if not calibrated."""
    return None if size == 1 else table.get(thread_level, {}).get(str(size))


def pick(rows: Optional[list], nbytes: int) -> str:
    """The algorithm ``rows`` (see ``rows_for``) give a buffer of ``nbytes`` bytes."""
    if rows is None:
        return "native"
    for bound, algo in rows:  # check_table: the last bound is None
        if bound is None or nbytes < bound:
            break
    return algo


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
