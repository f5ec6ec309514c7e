"""``python -m mpitrain plot PATH``: PNG charts of a training run or of a benchmark (matplotlib).

For a run directory (``train --out DIR``): ``DIR/loss.png`` and ``DIR/metric.png`` from
metrics.jsonl, against the epoch. For a ``bench train`` JSON: ``scaling.png`` beside it, samples
per second against ranks, one line per workload and implementation, with the ideal linear
scaling of each dashed.
"""
from __future__ import annotations

import json
import os

from .errors import UsageError


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install matplotlib (or mpitrain[plot])") from None
    return plt


def plot(path: str) -> list[str]:
    """Draw the charts for ``path`` (a run directory or a bench JSON); return the PNG paths."""
    if os.path.isdir(path):
        return plot_run(path)
    if path.endswith(".json") and os.path.isfile(path):
        return plot_scaling(path)
    raise UsageError(f"{path!r} is neither a run directory (with metrics.jsonl) nor a benchmark .json file")


def plot_run(folder: str) -> list[str]:
    """loss.png and metric.png from ``folder``/metrics.jsonl."""
    metrics, summary = os.path.join(folder, "metrics.jsonl"), os.path.join(folder, "summary.json")
    if not os.path.isfile(metrics):
        raise UsageError(f"{folder} has no metrics.jsonl: is it the --out directory of a train run?")
    with open(metrics) as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        raise UsageError(f"{metrics} is empty: the run logged nothing yet")
    metric_name = "metric"
    if os.path.isfile(summary):
        with open(summary) as f:
            metric_name = json.load(f).get("metric_name", metric_name)
    plt = _pyplot()
    written = []
    for key, label in (("loss", "training loss"), ("metric", metric_name)):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["epoch"] for r in records], [r[key] for r in records], marker="o", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if key == "loss" and min(r["loss"] for r in records) > 0:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{label}: {os.path.basename(os.path.abspath(folder))}")
        out = os.path.join(folder, f"{key}.png")
        fig.tight_layout()
        fig.savefig(out, dpi=100)
        plt.close(fig)
        written.append(out)
    return written


def plot_scaling(path: str) -> list[str]:
    """NAME-scaling.png beside a ``bench train`` JSON NAME.json: one panel per workload."""
    with open(path) as f:
        report = json.load(f)
    rows = report.get("summary")
    if report.get("benchmark") != "train" or not rows:
        raise UsageError(f"{path} is not the JSON of `mpitrain bench train`")
    plt = _pyplot()
    workloads = sorted({r["workload"] for r in rows})
    impls = sorted({r["impl"] for r in rows})
    colour = {impl: f"C{i}" for i, impl in enumerate(impls)}  # one colour per implementation in every panel
    fig, axes = plt.subplots(2, len(workloads), figsize=(4.2 * len(workloads), 7), squeeze=False, sharex="col")
    for ax, low, workload in zip(axes[0], axes[1], workloads):
        for impl in impls:
            points = sorted((r["ranks"], r["samples_per_second"]) for r in rows
                            if r["workload"] == workload and r["impl"] == impl)
            if not points:
                continue
            ranks, rates = zip(*points)
            ax.plot(ranks, rates, marker="o", color=colour[impl], label=impl)
            if ranks[0] == 1:
                ax.plot(ranks, [rates[0] * n for n in ranks], linestyle="--", color=colour[impl], alpha=0.35)
                low.plot(ranks, [rate / (n * rates[0]) for n, rate in zip(ranks, rates)], marker="o", color=colour[impl])
        ax.set_title(workload)
        low.axhline(1.0, linestyle="--", color="grey", alpha=0.5)
        low.set_xlabel("ranks")
        low.set_xticks(sorted({r["ranks"] for r in rows}))
        for a in (ax, low):
            a.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("samples per second")
    axes[1][0].set_ylabel("efficiency (per rank / 1 rank)")
    scaling = (f"weak scaling, {report['per_rank_batch']} rows per rank" if report.get("scaling") == "weak"
               else "fixed global batch")
    fig.suptitle(f"training throughput, {scaling} (dashed: linear scaling from 1 rank)")
    out = os.path.splitext(path)[0] + "-scaling.png"
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return [out]
