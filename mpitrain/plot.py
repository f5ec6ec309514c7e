"""``python -m mpitrain plot PATH``: PNG charts of a training run or of a benchmark (matplotlib).

For a run directory (``train --out DIR``): ``DIR/loss.png`` and ``DIR/metric.png`` from
metrics.jsonl, against the epoch, with the validation scores beside the training ones (and
``DIR/validation.png`` for the scores of ``--metrics``). For a ``bench train`` JSON: ``scaling.png`` beside it, samples
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
    """loss.png and metric.png from ``folder``/metrics.jsonl: the training records and, when the run
    scored validation rows, val_loss and val_<metric> beside them (the best step dashed, with early
    stopping), and validation.png with any further val_* scores (``--metrics``)."""
    metrics, summary_path = os.path.join(folder, "metrics.jsonl"), os.path.join(folder, "summary.json")
    if not os.path.isfile(metrics):
        raise UsageError(f"{folder} has no metrics.jsonl: is it the --out directory of a train run?")
    with open(metrics) as f:
        records = [json.loads(line) for line in f if line.strip()]
    training = [r for r in records if "loss" in r and "epoch" in r]
    scored = [r for r in records if "val_loss" in r]
    if not training:
        raise UsageError(f"{metrics} has no training records: the run logged nothing yet")
    summary = {}
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    metric_name = summary.get("metric_name", "metric")
    per_epoch = training[0]["step"] / training[0]["epoch"]  # steps per epoch
    best = (summary.get("validation") or {}).get("best_step")
    extra = sorted({k for r in scored for k in r} - {"step", "val_loss", f"val_{metric_name}"})
    charts = [("loss", "loss", [("loss", "training"), ("val_loss", "validation")]),
              ("metric", metric_name, [("metric", "training"), (f"val_{metric_name}", "validation")])]
    if extra:
        charts.append(("validation", "validation scores", [(k, k) for k in extra]))
    plt = _pyplot()
    written = []
    for name, label, lines in charts:
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, legend in lines:
            rows = [r for r in (scored if key.startswith("val_") else training) if key in r]
            if rows:
                ax.plot([r["epoch"] if "epoch" in r else r["step"] / per_epoch for r in rows], [r[key] for r in rows],
                        marker="o", markersize=3, label=legend)
        if name == "loss" and min(r["loss"] for r in training) > 0 and min((r["val_loss"] for r in scored),
                                                                           default=1.0) > 0:
            ax.set_yscale("log")
        if best is not None and scored:
            ax.axvline(best / per_epoch, linestyle="--", color="grey", alpha=0.6, label=f"best (step {best})")
        if scored or extra:
            ax.legend(fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{label}: {os.path.basename(os.path.abspath(folder))}")
        out = os.path.join(folder, f"{name}.png")
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
