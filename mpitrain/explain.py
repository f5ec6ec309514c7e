"""``python -m mpitrain explain``: predicted step time and scaling of a model before running it.

The computation is measured here, on one process: the model's forward and backward pass on
random rows, for each rank's share of the global batch, plus the update. The communication is
one allreduce of the gradient buffer, from the alpha-beta cost model (``costmodel``). The
prediction assumes ranks that do not slow each other down (a node with free cores and memory
bandwidth) and no overlap of computation and communication.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
from typing import Any

import numpy as np

from . import _mpi, costmodel, models, optim
from .collectives import auto

COLUMNS = ("ranks", "rows per rank", "compute ms", "allreduce ms", "auto picks", "step ms", "samples/s", "speed-up",
           "efficiency")


def add_parser(subparsers: Any, parser_class: Any) -> argparse.ArgumentParser:
    """Add ``explain`` with its flags."""
    p = subparsers.add_parser("explain", help="predict per-step compute, communication and scaling of a model",
                              description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("--model", required=True, choices=sorted(models.MODELS))
    p.add_argument("--features", type=int, required=True, metavar="D", help="input features")
    p.add_argument("--classes", type=int, default=10, metavar="K", help="classes (softmax, mlp; default 10)")
    p.add_argument("--hidden", default="64", metavar="H1,H2,...", help="MLP hidden sizes (default 64)")
    p.add_argument("--batch-size", type=int, required=True, metavar="B", help="global batch (all rows for gd)")
    p.add_argument("--ranks", default="1,2,4,8,16", help="world sizes to predict (default 1,2,4,8,16)")
    p.add_argument("--calibration", metavar="BENCH.json",
                   help="fit alpha and beta to this `bench allreduce` JSON (default: the built-in fit)")
    return p


def build_model(args: argparse.Namespace) -> models.Model:
    """The model the flags describe."""
    options: dict = {}
    if args.model in ("softmax", "mlp"):
        options["n_classes"] = args.classes
    if args.model == "mlp":
        options["hidden"] = tuple(int(h) for h in args.hidden.split(","))
    return models.create(args.model, args.features, **options)


def compute_seconds(model: models.Model, rows: int, seed: int = 0) -> float:
    """Measured seconds of one forward+backward pass on ``rows`` random rows plus one update.

    Timed with one BLAS thread (a rank's share when ranks fill the cores) and repeated until two
    successive medians agree within 5% (at most 6 rounds), so a busy moment does not decide.
    """
    with _one_blas_thread():
        previous = _compute_once(model, rows, seed)
        for _ in range(5):
            current = _compute_once(model, rows, seed)
            if abs(current - previous) <= 0.05 * previous:
                return min(current, previous)
            previous = current
        return previous


def _one_blas_thread():  # type: ignore[no-untyped-def]
    """A context that limits the BLAS to one thread (threadpoolctl), or does nothing without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _compute_once(model: models.Model, rows: int, seed: int) -> float:
    """One timing of a forward+backward pass on ``rows`` random rows plus an update, in seconds."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, model.n_features))
    y = rng.integers(0, max(getattr(model, "n_classes", 2), 2), rows).astype(np.float64)
    if model.name == "linear" or getattr(model, "loss", "") == "squared-error":
        y = rng.standard_normal(rows)
    theta, grad, scratch = model.init(seed), np.empty(model.n_params), np.empty(model.n_params)
    forward_backward = costmodel.time_call(lambda: model.sums(theta, X, y, grad)) if rows else 0.0
    update = costmodel.time_call(lambda: optim.apply(theta, grad, 1e-9, scratch))
    return forward_backward + update


def predict(model: models.Model, batch: int, ranks: list[int], cost: costmodel.CostModel) -> list[dict]:
    """One row per world size: predicted compute, allreduce and step time, throughput, efficiency."""
    nbytes = (model.n_params + 3) * 8  # the step buffer: gradient, loss and metric sums, stop votes
    measured: dict[int, float] = {}
    rows = []
    for p in ranks:
        share = math.ceil(batch / p)  # the slowest rank's share
        if share not in measured:
            measured[share] = compute_seconds(model, share)
        comm = cost.allreduce_seconds(nbytes, p)
        step = measured[share] + comm
        rows.append({"ranks": p, "rows per rank": share, "compute ms": 1e3 * measured[share],
                     "allreduce ms": 1e3 * comm, "step ms": 1e3 * step, "samples/s": batch / step})
    one = rows[0]["samples/s"] if ranks[0] == 1 else None
    table, _ = auto.table()
    level = os.environ.get("MPI4PY_RC_THREAD_LEVEL") or _mpi.THREAD_LEVEL
    for r in rows:
        r["auto picks"] = auto.choose(nbytes, r["ranks"], level, table)
        r["speed-up"] = r["samples/s"] / one if one else None
        r["efficiency"] = r["speed-up"] / r["ranks"] if one else None
    return rows


def run(args: argparse.Namespace) -> str:
    """The report as text."""
    model = build_model(args)
    cost = costmodel.from_bench(args.calibration) if args.calibration else costmodel.DEFAULT
    ranks = sorted({int(r) for r in args.ranks.split(",")})
    rows = predict(model, args.batch_size, ranks, cost)
    lines = [f"{model.name}: {model.n_params:,} parameters, an allreduce of {(model.n_params + 3) * 8:,} bytes a step; "
             f"global batch {args.batch_size}; auto's choice on one node from the allreduce table "
             f"({auto.table()[1]}) or the cost model",
             f"allreduce model: alpha {cost.alpha * 1e6:.2f} us, beta {1 / cost.beta / 1e9:.2f} GB/s ({cost.source})",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---:|" * len(COLUMNS)]
    for r in rows:
        cells = [f"{r['ranks']}", f"{r['rows per rank']}", f"{r['compute ms']:.3f}", f"{r['allreduce ms']:.3f}",
                 r["auto picks"],
                 f"{r['step ms']:.3f}", f"{r['samples/s']:,.0f}",
                 "-" if r["speed-up"] is None else f"{r['speed-up']:.2f}",
                 "-" if r["efficiency"] is None else f"{r['efficiency']:.0%}" + ("*" if r["efficiency"] > 1 else "")]
        lines.append("| " + " | ".join(cells) + " |")
    above = [r for r in rows if r["efficiency"] is not None and r["efficiency"] > 1]
    if above:
        base = rows[0]
        lines.append(
            "* above 100%: the measured computation per row is faster on a rank's share ("
            + ", ".join(f"{1e3 * r['compute ms'] / r['rows per rank']:.2f} us/row at {r['rows per rank']} rows" for r in above)
            + f") than on the whole batch ({1e3 * base['compute ms'] / base['rows per rank']:.2f} us/row at "
            f"{base['rows per rank']} rows): smaller arrays fit the caches better. The prediction assumes ranks that do "
            "not compete for memory bandwidth, which real ranks on one node do.")
    return "\n".join(lines)
