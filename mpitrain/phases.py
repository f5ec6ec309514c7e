"""Collective reports of where the time went: per-rank phase totals and the merged timeline."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from .timeline import COMPUTE, DATA, PHASES, REDUCE, UPDATE, Timeline, chrome_trace

if TYPE_CHECKING:
    from .comm import Comm


def phase_summary(comm: "Comm", timeline: Timeline) -> dict:
    """Collective: seconds per phase (mean and max over ranks, slowest rank), compute and waiting.

    ``compute`` is data + forward+backward + update; ``waiting`` is the time a rank spent in
    collectives beyond the least any rank spent there (the collective's own cost), i.e. waiting
    for slower ranks.
    """
    table = np.zeros((comm.size, len(PHASES)))
    table[comm.rank] = timeline.totals
    comm.Allreduce(table)
    compute = table[:, DATA] + table[:, COMPUTE] + table[:, UPDATE]
    waiting = table[:, REDUCE] - table[:, REDUCE].min()
    columns = {name: table[:, i] for i, name in enumerate(PHASES)}
    columns.update({"compute": compute, "waiting": waiting})
    return {name: {"mean": float(v.mean()), "max": float(v.max()), "slowest_rank": int(v.argmax())}
            for name, v in columns.items()}


def describe(summary: dict) -> str:
    """One line for rank 0 to print."""
    c, w, r = summary["compute"], summary["waiting"], summary["allreduce"]
    return (f"time per rank: compute {c['mean']:.3f}s mean, {c['max']:.3f}s on the slowest rank "
            f"({c['slowest_rank']}); collectives {r['mean']:.3f}s mean, of which waiting for other ranks "
            f"{w['mean']:.3f}s")


def gather_trace(comm: "Comm", timeline: Timeline, metadata: dict) -> Optional[dict]:
    """Collective: every rank's spans merged into one Chrome trace on rank 0 (None elsewhere)."""
    spans = timeline.span_array()
    rows = np.column_stack([spans, np.full(len(spans), comm.rank, dtype=np.float64)])
    merged = comm.gather_rows(rows)
    if merged is None:
        return None
    return chrome_trace(merged[:, :3], merged[:, 3], metadata)
