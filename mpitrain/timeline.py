"""Where a step's time goes: per-phase totals always, Chrome-trace spans on request. NumPy only.

A training loop calls ``mark(phase)`` at the end of each phase; the time since the previous
mark is charged to that phase, so the spans of one rank never overlap. ``chrome_trace`` turns
every rank's spans (gathered on rank 0) into a Chrome/Perfetto trace with one lane per rank.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

PHASES = ("data", "forward+backward", "allreduce", "update", "checkpoint")
DATA, COMPUTE, REDUCE, UPDATE, CHECKPOINT = range(len(PHASES))


class Timeline:
    """Seconds spent in each phase since ``start()``, and the spans themselves if ``record``.

    Spans are kept as rows (phase, start, end) of seconds since ``start()``; at most
    ``max_spans`` of them (later ones still count in the totals).
    """

    def __init__(self, record: bool = False, max_spans: int = 500_000) -> None:
        self.record, self.max_spans = record, max_spans
        self.start()

    def start(self) -> None:
        """Reset the totals and the spans; time counts from now."""
        self.origin = self.last = time.perf_counter()
        self.totals = [0.0] * len(PHASES)
        self.spans: list[tuple[int, float, float]] = []

    def mark(self, phase: int) -> None:
        """Charge the time since the previous mark to ``phase``."""
        now = time.perf_counter()
        self.totals[phase] += now - self.last
        if self.record and len(self.spans) < self.max_spans:
            self.spans.append((phase, self.last - self.origin, now - self.origin))
        self.last = now

    def skip(self) -> None:
        """Start the next phase now without charging the time since the last mark (e.g. logging)."""
        self.last = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since ``start()``."""
        return time.perf_counter() - self.origin

    def span_array(self) -> np.ndarray:
        """The recorded spans, shape (n, 3): phase, start, end in seconds."""
        return np.array(self.spans, dtype=np.float64).reshape(-1, 3)


def chrome_trace(spans: np.ndarray, ranks: np.ndarray, metadata: Optional[dict] = None) -> dict:
    """A Chrome-trace (Perfetto) document: one lane (tid) per rank, one complete event per span.

    ``spans`` has shape (n, 3) as from ``Timeline.span_array``; ``ranks`` (n,) names their lanes.
    """
    events: list[dict] = [{"name": "thread_name", "ph": "M", "pid": 0, "tid": int(r), "args": {"name": f"rank {int(r)}"}}
                          for r in np.unique(ranks)]
    for (phase, begin, end), rank in zip(spans.tolist(), ranks.tolist()):
        events.append({"name": PHASES[int(phase)], "ph": "X", "pid": 0, "tid": int(rank),
                       "ts": begin * 1e6, "dur": (end - begin) * 1e6})
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": metadata or {}}
