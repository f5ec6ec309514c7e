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


# -- per-algorithm costs, for ``algorithm="auto"`` where no calibration exists ---------------------
@dataclass(frozen=True)
class Path:
    """How one way of moving data costs: alpha seconds per message round, beta seconds per byte sent
    (copying and adding included)."""

    alpha: float
    beta: float


# Fitted to the measurements of issue 11 and MPI-NOTES.md: 16 ranks on one 16-core Xeon node,
# MPICH 5.0.2 wheel, mpi4py 4.1.2. Native 8 B: 5.1 us (serialized), 13.0 us (multiple); native
# 1 MiB: 2,096 us (serialized, float64), 1,057 us (multiple, float32). Our Python algorithms at
# serialized, 1 MiB float64: ring 876 us (30 rounds), Rabenseifner 823 us (8 rounds), both
# sending 2(p-1)/p of the buffer, which gives alpha 2.41 us and beta 0.409 ns. Our algorithms
# were not measured at ``multiple``; the same point-to-point costs are assumed there.
NATIVE = {
    "serialized": Path(alpha=5.1e-6 / 4, beta=(2096e-6 - 5.1e-6) / (1.875 * (1 << 20))),
    "multiple": Path(alpha=13.0e-6 / 4, beta=(1057e-6 - 13.0e-6) / (1.875 * (1 << 20))),
}
P2P = Path(alpha=(876e-6 - 823e-6) / 22, beta=(823e-6 - 8 * (876e-6 - 823e-6) / 22) / (1.875 * (1 << 20)))
# The fixed Python cost of one call of each of our algorithms: its 8-byte latency at 2 ranks on
# the 2-core development machine (docs/bench/allreduce-p2-serialized.md) less its rounds times
# P2P.alpha. The native call has none: the library's own latency is all of NATIVE.
CALL = {"native": 0.0, "recursive_doubling": 5.6e-6 - P2P.alpha, "tree": 5.9e-6 - 2 * P2P.alpha,
        "ring": 10.6e-6 - 2 * P2P.alpha, "rabenseifner": 10.3e-6 - 2 * P2P.alpha}


def shape(algorithm: str, ranks: int) -> tuple[int, float]:
    """(message rounds on the critical path, bytes sent per byte of buffer) of ``algorithm`` on ``ranks``."""
    pof2 = 1 << (ranks.bit_length() - 1)
    fold = 2 if ranks != pof2 else 0  # recursive doubling and Rabenseifner fold extra ranks in and out
    steps = pof2.bit_length() - 1
    if algorithm == "native":
        return math.ceil(math.log2(ranks)), 2 * (ranks - 1) / ranks
    if algorithm == "ring":
        return 2 * (ranks - 1), 2 * (ranks - 1) / ranks
    if algorithm == "rabenseifner":
        return 2 * steps + fold, 2 * (pof2 - 1) / pof2 + fold
    if algorithm == "recursive_doubling":
        return steps + fold, steps + fold
    if algorithm == "tree":
        depth = math.ceil(math.log2(ranks))
        return 2 * depth, 2 * depth
    raise ValueError(f"no cost model for the allreduce algorithm {algorithm!r}")


def algorithm_seconds(algorithm: str, nbytes: float, ranks: int, thread_level: str) -> float:
    """Modelled seconds of one ``algorithm`` allreduce of ``nbytes`` on ``ranks`` ranks (one node)."""
    if ranks <= 1:
        return 0.0
    path = NATIVE.get(thread_level, NATIVE["serialized"]) if algorithm == "native" else P2P
    rounds, sent = shape(algorithm, ranks)
    return CALL[algorithm] + rounds * path.alpha + sent * nbytes * path.beta


def cheapest(nbytes: float, ranks: int, thread_level: str, candidates: Sequence[str], margin: float = 0.1) -> str:
    """The candidate the model predicts fastest; the first candidate stays unless another beats it by ``margin``.

    The margin (a fraction, as in calibration) keeps the library's call where the model cannot
    tell the difference.
    """
    seconds = {name: algorithm_seconds(name, nbytes, ranks, thread_level) for name in candidates}
    best = min(candidates, key=seconds.__getitem__)
    return best if seconds[best] < (1 - margin) * seconds[candidates[0]] else candidates[0]
