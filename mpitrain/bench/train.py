"""``python -m mpitrain bench train``: training throughput of mpitrain against the hand-written loop.

The driver (one process, no MPI) launches every (workload, ranks, implementation) as its own
``mpiexec`` job, interleaved and repeated ``--repeats`` times so that drifts in machine load hit
all alike, and reports medians. Every job gets one BLAS thread per rank. Implementations:
``mpitrain`` (this package's loop), ``overlap`` (the same with ``--overlap``), ``baseline``
(``mpitrain.bench.baseline``, the minimal NumPy + mpi4py loop a user would write, on the same
rows in the same order from the same start) and ``torch`` (``mpitrain.bench.torch_ddp``,
PyTorch DistributedDataParallel with gloo, for softmax and MLP, when torch is installed). Each
job reports, per step: compute (the mean over ranks), communication (the least time any rank
spent in collectives: the collective's own cost) and waiting (the mean extra time ranks spent
in collectives, waiting for slower ranks).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from dataclasses import replace
from typing import Any

import numpy as np

from .. import costmodel, guard
from ..errors import JobError

PROGRAMS = {"baseline": ["-m", "mpitrain.bench.baseline"],
            "torch": ["-m", "mpitrain.bench.torch_ddp"],
            "mpitrain": ["-m", "mpitrain.bench.train"],
            "overlap": ["-m", "mpitrain.bench.train", "--overlap"]}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# name: (data spec, tiny data spec, algorithm, learning rate, steps, warm-up steps)
WORKLOADS = {
    "linear-gd": ("synthetic:regression,n=1000000,d=100", "synthetic:regression,n=2000,d=10", "gd", 0.5, 30, 3),
    "softmax": ("synthetic:classification,n=60000,d=784,classes=10",
                "synthetic:classification,n=1000,d=784,classes=10", "sgd", 0.1, 2000, 20),
    "mlp": ("synthetic:classification,n=60000,d=784,classes=10",
            "synthetic:classification,n=1000,d=784,classes=10", "sgd", 0.1, 600, 10),
}
MODEL_OPTIONS = {"linear-gd": ("linear", {}), "softmax": ("softmax", {"n_classes": 10}),
                 "mlp": ("mlp", {"n_classes": 10, "hidden": (256, 256), "activation": "relu"})}
WORKLOAD_FEATURES = {"linear-gd": 100, "softmax": 784, "mlp": 784}
WORKLOAD_DTYPE = {"linear-gd": "float64", "softmax": "float32", "mlp": "float32"}  # as the baseline and torch
IMPLEMENTATIONS = ("mpitrain", "overlap", "baseline", "torch")
BATCH = 256  # the global batch of the SGD workloads
TORCH_WORKLOADS = ("softmax", "mlp")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``train`` (with its flags) to the ``bench`` subcommand's ``subparsers``."""
    p = subparsers.add_parser("train", help="training throughput at 1, 2, ... ranks against the hand-written loop",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--ranks", default="1,2", help="comma-separated world sizes (default 1,2)")
    p.add_argument("--impls", default=",".join(IMPLEMENTATIONS), help="comma-separated implementations")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (default 3)")
    p.add_argument("--steps", type=int, help="timed steps per job (default: per workload)")
    p.add_argument("--per-rank-batch", type=int, metavar="B",
                   help=f"weak scaling: each rank keeps a batch of B rows, so the global batch is B x ranks "
                        f"(default: strong scaling, a global batch of {BATCH} at every world size)")
    p.add_argument("--tiny", action="store_true", help="tiny data and few steps: a smoke test, not a measurement")
    p.add_argument("--threads", choices=("1", "unset"), default="1",
                   help="BLAS threads per rank: 1 (default), or unset: no thread variables, what a user gets "
                        "who sets nothing (mpitrain then picks its share of the cores; the others do not)")
    p.add_argument("--out", default="runs/bench-train", help="folder for train.json and train.md")
    return p


def mpiexec() -> list[str]:
    """The launcher of the MPI that mpi4py uses: $MPIEXEC, else the mpiexec beside this Python."""
    found = os.environ.get("MPIEXEC") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if not found:
        raise SystemExit("no mpiexec found: set MPIEXEC or install the mpich wheel")
    words = found.split()
    if os.sep in words[0]:  # a relative path (the Makefile's .venv/bin/mpiexec) must work from any folder
        words[0] = os.path.abspath(words[0])
    return words


def job(impl: str, workload: str, ranks: int, steps: int, warmup: int, spec: str, threads: str = "1",
        tries: int = 2, batch: int = BATCH) -> dict:
    """Run one benchmark job under mpiexec, up to ``tries`` times; return the JSON line its rank 0 printed.

    JobError with the command and its error output if no try succeeds.
    """
    cmd = [*mpiexec(), "-n", str(ranks), sys.executable, *PROGRAMS[impl], "--workload", workload,
           "--steps", str(steps), "--warmup", str(warmup), "--spec", spec, "--batch", str(batch)]
    env = guard.launch_env({**os.environ, **thread_env(threads)})
    for _ in range(tries):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if done.returncode == 0:
            return json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {' '.join(cmd)} failed with status {done.returncode}", file=sys.stderr, flush=True)
    raise JobError(f"{' '.join(cmd)} failed {tries} times, last with status {done.returncode}:\n{done.stderr}")


def thread_env(threads: str) -> dict[str, str]:
    """The thread variables every job gets: all "1", or all empty (unset) for ``threads="unset"``."""
    return {var: "1" if threads == "1" else "" for var in THREAD_VARS}


def run(args: argparse.Namespace) -> int:
    """Run the matrix, print a markdown table, write OUT/train.json and OUT/train.md."""
    workloads = [w for w in args.workloads.split(",") if w]
    impls = [i for i in args.impls.split(",") if i]
    ranks = [int(r) for r in args.ranks.split(",")]
    unknown = set(workloads) - set(WORKLOADS) | set(impls) - set(IMPLEMENTATIONS)
    if unknown:
        raise SystemExit(f"unknown workload or implementation: {', '.join(sorted(unknown))}")
    if args.per_rank_batch is not None and args.per_rank_batch < 1:
        raise SystemExit(f"--per-rank-batch must be at least 1, not {args.per_rank_batch}")
    notes = ["every job ran with " + (" ".join(f"{k}=1" for k in THREAD_VARS) if args.threads == "1" else
                                      "no thread variables set (" + ", ".join(THREAD_VARS) + " unset)")]
    if "torch" in impls and not torch_available():
        impls.remove("torch")
        notes.append("PyTorch is not installed (pip install torch): the DDP comparison was skipped")
    runs = []
    for repeat in range(args.repeats):
        for workload in workloads:
            spec, tiny, _, _, steps, warmup = WORKLOADS[workload]
            for n in ranks:
                for impl in impls[repeat % len(impls):] + impls[: repeat % len(impls)]:
                    if impl == "torch" and workload not in TORCH_WORKLOADS:
                        continue
                    batch = BATCH if args.per_rank_batch is None else args.per_rank_batch * n
                    try:
                        result = job(impl, workload, n, 3 if args.tiny else (args.steps or steps),
                                     1 if args.tiny else warmup, tiny if args.tiny else spec, args.threads,
                                     batch=batch)
                    except JobError as exc:
                        if impl != "torch":
                            raise
                        notes.append(f"a PyTorch job failed and is left out: {str(exc).splitlines()[0]}")
                        continue
                    runs.append({"workload": workload, "impl": impl, "ranks": n, "repeat": repeat,
                                 "batch": None if WORKLOADS[workload][2] == "gd" else batch, **result})
                    print(f"  {workload} {impl} {n} rank(s) #{repeat}: {result['samples'] / result['seconds']:,.0f} "
                          "samples/s", file=sys.stderr, flush=True)
    summary = summarise(runs)
    report = {"benchmark": "train", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join(["python -m mpitrain bench train", *sys.argv[3:]]),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "numpy": np.__version__},
              "threads": thread_env(args.threads), "tiny": args.tiny, "notes": notes,
              "scaling": "strong" if args.per_rank_batch is None else "weak", "per_rank_batch": args.per_rank_batch,
              "runs": runs, "summary": summary}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "train.json"), "w") as f:
        json.dump(report, f, indent=2)
    scaling = (f"Strong scaling: a global batch of {BATCH} at every world size" if args.per_rank_batch is None else
               f"Weak scaling: {args.per_rank_batch} rows per rank, a global batch of {args.per_rank_batch} x ranks")
    table = (f"{scaling} (gd: all rows). Efficiency: samples/s per rank over the 1-rank rate.\n\n" + markdown(summary)
             + "".join(f"\nNote: {note}\n" for note in notes))
    with open(os.path.join(args.out, "train.md"), "w") as f:
        f.write(table)
    print(table)
    return 0


def torch_available() -> bool:
    """Whether PyTorch can be imported by the workers."""
    done = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    return done.returncode == 0


def _median(values: list) -> Any:
    """The median, or None where a job did not measure it."""
    return None if any(v is None for v in values) else statistics.median(values)


def summarise(runs: list[dict]) -> list[dict]:
    """Median rates per (workload, impl, ranks), with speed-ups against 1 rank and the baseline."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["workload"], r["impl"], r["ranks"]), []).append(r)
    rows = []
    for (workload, impl, ranks), rs in sorted(groups.items()):
        ms = {k: _median([None if r[k] is None else 1e3 * r[k] / r["iterations"] for r in rs])
              for k in ("seconds", "compute_seconds", "comm_seconds", "wait_seconds")}
        rows.append({"workload": workload, "impl": impl, "ranks": ranks, "repeats": len(rs), "batch": rs[0].get("batch"),
                     "samples_per_second": statistics.median(r["samples"] / r["seconds"] for r in rs),
                     "step_ms": ms["seconds"], "compute_ms": ms["compute_seconds"],
                     "comm_ms": ms["comm_seconds"], "wait_ms": ms["wait_seconds"],
                     "final_loss": statistics.median(r["final_loss"] for r in rs)})
    rate = {(r["workload"], r["impl"], r["ranks"]): r["samples_per_second"] for r in rows}
    compute_1 = {(r["workload"], r["impl"]): r["compute_ms"] for r in rows if r["ranks"] == 1}
    batch_1 = {(r["workload"], r["impl"]): r["batch"] for r in rows if r["ranks"] == 1}
    for r in rows:
        # The prediction: this implementation's 1-rank compute split evenly, plus the cost model's
        # allreduce of the step buffer (see mpitrain/costmodel.py and `mpitrain explain`).
        one_compute = compute_1.get((r["workload"], r["impl"]))
        one_batch = batch_1.get((r["workload"], r["impl"]))
        share = 1 / r["ranks"] if not one_batch else r["batch"] / r["ranks"] / one_batch  # rows per rank, vs 1 rank
        r["predicted_step_ms"] = None if one_compute is None else (
            one_compute * share + 1e3 * costmodel.DEFAULT.allreduce_seconds(step_bytes(r["workload"]), r["ranks"]))
        one = rate.get((r["workload"], r["impl"], 1))
        base = rate.get((r["workload"], "baseline", r["ranks"]))
        r["speedup_vs_1_rank"] = r["samples_per_second"] / one if one else None
        r["efficiency"] = r["samples_per_second"] / (r["ranks"] * one) if one else None
        r["ratio_vs_baseline"] = r["samples_per_second"] / base if base else None
    return rows


def markdown(rows: list[dict]) -> str:
    """The summary as a markdown table."""
    def fmt(x: Any, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    lines = ["| workload | impl | ranks | batch | samples/s | x 1 rank | efficiency | x baseline | step ms | predicted "
             "| compute | comm | wait | final loss |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['impl']} | {r['ranks']} | {fmt(r['batch'], 'd')} | "
                     f"{r['samples_per_second']:,.0f} | {fmt(r['speedup_vs_1_rank'], '.2f')} | "
                     f"{fmt(r['efficiency'], '.0%')} | {fmt(r['ratio_vs_baseline'], '.3f')} | "
                     f"{r['step_ms']:.3f} | {fmt(r['predicted_step_ms'], '.3f')} | {fmt(r['compute_ms'], '.3f')} | "
                     f"{fmt(r['comm_ms'], '.3f')} | "
                     f"{fmt(r['wait_ms'], '.3f')} | "
                     f"{r['final_loss']:.6g} |")
    return "\n".join(lines) + "\n"


def split_times(comm: Any, seconds: float, comm_seconds: float) -> tuple[float, float, float, float]:
    """Collective: (slowest wall time, mean compute, least collective time, mean waiting) over ranks."""
    size = comm.size
    mine = np.zeros((3, size))
    mine[:, comm.rank] = (seconds, seconds - comm_seconds, comm_seconds)
    comm.Allreduce(mine)
    wall, compute, coll = mine
    return float(wall.max()), float(compute.mean()), float(coll.min()), float((coll - coll.min()).mean())


def step_bytes(workload: str) -> int:
    """Bytes of the buffer one training step reduces: gradient, loss and metric sums, votes."""
    from .. import models

    name, options = MODEL_OPTIONS[workload]
    itemsize = np.dtype(WORKLOAD_DTYPE[workload]).itemsize
    return (models.create(name, WORKLOAD_FEATURES[workload], **options).n_params + 3) * itemsize


def worker() -> None:
    """One mpitrain job (run under mpiexec): warm up, time the steps, print JSON on rank 0."""
    import mpitrain as mt
    from mpitrain.algorithms import State
    from mpitrain.guard import limit_blas_threads

    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--overlap", action="store_true")
    parser.add_argument("--batch", type=int, default=BATCH, help="global batch of the SGD workloads")
    args = parser.parse_args()
    _, _, algorithm, lr, _, _ = WORKLOADS[args.workload]
    comm = mt.world()
    limit_blas_threads(comm.ranks_on_node())  # as `python -m mpitrain train` does
    data = mt.as_dtype(mt.load(args.spec, comm), WORKLOAD_DTYPE[args.workload])
    name, kwargs = MODEL_OPTIONS[args.workload]
    model = mt.create_model(name, data.n_features, **kwargs)
    batch = None if algorithm == "gd" else args.batch
    settings = mt.Settings(steps=args.warmup, lr=lr, batch_size=batch, overlap=args.overlap)
    warm = mt.fit(model, data, comm, algorithm, settings)
    comm.barrier()
    # the timed steps continue the warm-up's trajectory, as the baseline's loop does
    settings = replace(settings, steps=args.warmup + args.steps)
    result = mt.fit(model, data, comm, algorithm, settings, state=State(args.warmup, warm.theta))
    wall, compute, coll, wait = split_times(comm, result.seconds, result.comm_seconds)
    loss, _ = mt.evaluate(model, result.theta, data, comm)
    if comm.rank == 0:
        print(json.dumps({"seconds": wall, "compute_seconds": compute, "comm_seconds": coll, "wait_seconds": wait,
                          "iterations": args.steps, "samples": result.samples, "final_loss": loss}))


if __name__ == "__main__":
    worker()
