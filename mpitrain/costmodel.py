"""An alpha-beta model of the allreduce, and predictions of a training step from it. NumPy only.

An allreduce of m bytes on p ranks is modelled as ``2 ceil(log2 p) alpha + 2 (p-1)/p m beta``:
latency alpha per message round (a reduce-scatter and an allgather of log2 p rounds each) and
beta seconds per byte for the 2(p-1)/p m bytes every rank sends in a bandwidth-optimal
algorithm. alpha and beta are fitted (least squares on relative error) to the latencies that
``python -m mpitrain bench allreduce`` measured for ``auto``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import UsageError


@dataclass(frozen=True)
class CostModel:
    """alpha : seconds per message round; beta : seconds per byte; source : where they came from."""

    alpha: float
    beta: float
    source: str

    def allreduce_seconds(self, nbytes: float, ranks: int) -> float:
        """Predicted time of one allreduce of ``nbytes`` on ``ranks`` ranks (0 on one rank)."""
        if ranks <= 1:
            return 0.0
        return 2 * math.ceil(math.log2(ranks)) * self.alpha + 2 * (ranks - 1) / ranks * nbytes * self.beta


def fit(nbytes: Sequence[float], seconds: Sequence[float], ranks: int, source: str) -> CostModel:
    """The CostModel whose prediction at ``ranks`` best fits the measurements, in relative error."""
    if ranks < 2 or len(nbytes) < 2:
        raise UsageError("an alpha-beta fit needs measurements at 2 or more ranks and at least two sizes")
    m, t = np.asarray(nbytes, dtype=np.float64), np.asarray(seconds, dtype=np.float64)
    design = np.column_stack([np.full_like(m, 2 * math.ceil(math.log2(ranks))), 2 * (ranks - 1) / ranks * m])
    (alpha, beta), *_ = np.linalg.lstsq(design / t[:, None], np.ones_like(t), rcond=None)
    return CostModel(float(alpha), float(beta), source)


def from_bench(path: str, method: str = "auto") -> CostModel:
    """Fit the model to the ``method`` latencies in a JSON written by ``bench allreduce``."""
    try:
        with open(path) as f:
            report = json.load(f)
        latencies = report["methods"][method]["latency_us"]
        sizes, ranks = report["bytes"], int(report["ranks"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a `bench allreduce` JSON with {method!r} latencies ({exc})") from None
    level = report.get("environment", {}).get("thread_level", "?")
    return fit(sizes, [us * 1e-6 for us in latencies], ranks, f"{path} ({method}, {ranks} ranks, {level})")


# Fitted to runs/bench/allreduce-p2-serialized.json, the run in docs/collectives.md (auto, 2 ranks,
# serialized, this 2-core machine); within a factor of 2 of every measurement from 8 B to 64 MiB.
DEFAULT = CostModel(alpha=1.24e-6, beta=1.75e-10, source="built in: bench allreduce, 2 ranks, serialized, "
                                                         "the 2-core development machine")


def time_call(fn, repeats: int = 5, number: int = 3) -> float:  # type: ignore[no-untyped-def]
    """The median over ``repeats`` of the mean seconds of ``number`` calls of ``fn()``."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return float(np.median(samples))
