"""``python -m mpitrain bench allreduce``: OSU-style latency and bandwidth of every allreduce.

Each size allocates fresh random inputs; each sample is ``iters`` timed calls after a warm-up,
with the buffer refilled from one of two sources before every call (untimed) so that no call
reduces the data of the last. The latency of one call is the slowest rank's; a sample is the
median call, and the table shows the median of ``--rounds`` samples, taken with the methods
interleaved (the order rotates every round) so that drifts in machine load hit all alike.

The baseline ``mpi`` is the bare ``comm.Allreduce(MPI.IN_PLACE, buf)`` with mpi4py's defaults;
``pickle`` is mpi4py's object ``allreduce`` for reference.

``--calibrate`` (run without mpiexec) launches one job per world size in ``--ranks`` (default
2, 4, 8, ... up to this machine's cores), each timing the ``auto`` candidates on a dense size
grid, and merges their rows into one table, OUT/allreduce-table.json, keyed by thread level and
world ("16", or "32x2" for 32 ranks over 2 nodes); point ``MPITRAIN_ALLREDUCE_TABLE`` at it, or
copy it to ``collectives.auto.SITE_TABLE``, and ``auto`` uses it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np

from .. import collectives
from ..collectives import auto
from ..comm import Comm, world

MIB = 1 << 20
DEFAULT_SIZES = sorted(
    [8 << (2 * k) for k in range(12)]  # 8 B, 32 B, ..., 32 MiB
    + [24, 1000, 12_000, 100_000, MIB, 3_000_000, 4 * MIB, 5 * MIB + 8, 16 * MIB, 48 * MIB, 64 * MIB]
)
CALIBRATION_SIZES = [8 << k for k in range(24)]  # 8 B, 16 B, ..., 64 MiB
EXTRAS = ("deterministic", "fp16", "bf16", "pickle")
DEFAULT_METHODS = ("mpi", "auto") + tuple(collectives.ALGORITHMS) + EXTRAS


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``allreduce`` (with its flags) to the ``bench`` subcommand's ``subparsers``."""
    p = subparsers.add_parser(
        "allreduce",
        help="latency and bandwidth of every allreduce algorithm; writes JSON, markdown and a PNG",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--out", default="runs/bench", help="folder for the JSON, markdown and PNG (default runs/bench)")
    p.add_argument("--sizes", type=_sizes, help="comma-separated byte counts, e.g. 8,1K,4M (default 8 B to 64 MiB)")
    p.add_argument("--methods", type=_methods, help=f"comma-separated subset of {','.join(DEFAULT_METHODS)}")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64", help="element type (default float64)")
    p.add_argument("--rounds", type=_at_least(1), default=5, help="interleaved samples per size and method (default 5)")
    p.add_argument("--budget", type=_at_least(1), default=64 * MIB,
                   help="bytes reduced per sample, which sets the iterations per sample (default 64 MiB)")
    p.add_argument("--max-iters", type=_at_least(1), default=500, help="cap on iterations per sample (default 500)")
    p.add_argument("--calibrate", action="store_true",
                   help="launch one job per world size in --ranks that times the auto candidates on a dense size "
                        "grid, and merge them into OUT/allreduce-table.json (run it without mpiexec)")
    p.add_argument("--ranks", type=_ranks, help="with --calibrate: world sizes (default 2, 4, 8, ... up to the cores)")
    p.add_argument("--job", action="store_true", help=argparse.SUPPRESS)  # one calibration job, under mpiexec
    p.add_argument("--margin", type=float, default=0.1,
                   help="with --calibrate: leave native only for a method faster by this fraction (default 0.1)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run the benchmark on every rank (or, with --calibrate, launch the calibration jobs). Returns 0."""
    if args.calibrate and not args.job:
        return calibrate(args)
    ch = world()
    dtype = np.dtype(args.dtype)
    if args.calibrate:
        methods = args.methods or (auto.CANDIDATES if 1 < ch.nodes()[2] < ch.size else auto.FLAT)
        sizes = args.sizes or CALIBRATION_SIZES
    else:
        methods = args.methods or DEFAULT_METHODS
        sizes = args.sizes or DEFAULT_SIZES
    calls = _calls(ch, methods)
    results = {name: [] for name in methods}
    for nbytes in sizes:
        n = max(1, nbytes // dtype.itemsize)
        iters = int(min(args.max_iters, max(3, args.budget // (n * dtype.itemsize))))
        samples = _measure(ch, calls, n, dtype, iters, args.rounds, seed=nbytes)
        for name in methods:
            results[name].append(float(np.median(samples[name])))
        if ch.rank == 0:
            best = min(methods, key=lambda m: results[m][-1])
            print(f"{n * dtype.itemsize:>10} B  iters {iters:>4}  best {best:<18} "
                  + "  ".join(f"{m}={results[m][-1] * 1e6:.1f}us" for m in methods), flush=True)
    report = _report(ch, args, sizes, dtype, methods, results)
    if ch.rank == 0:
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, f"allreduce-p{ch.size}-{ch.thread_level}" + ("-calibration" if args.calibrate else ""))
        with open(stem + ".json", "w") as f:
            json.dump(report, f, indent=1)
        with open(stem + ".md", "w") as f:
            f.write(markdown(report))
        print(markdown(report))
        print(_plot(report, stem + ".png"))
        if args.calibrate:
            print(_write_table(report, os.path.join(args.out, "allreduce-table.json"), args.margin))
    return 0


def calibrate(args: argparse.Namespace) -> int:
    """Run one calibration job per world size in ``args.ranks``, one after the other; print the merged table."""
    from .train import mpiexec

    running = os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE")
    if running and int(running) > 1:
        raise SystemExit("bench allreduce --calibrate launches its own jobs: run it without mpiexec")
    ranks = args.ranks or default_ranks()
    flags = ["--out", args.out, "--dtype", args.dtype, "--rounds", str(args.rounds), "--budget", str(args.budget),
             "--max-iters", str(args.max_iters), "--margin", str(args.margin)]
    if args.sizes:
        flags += ["--sizes", ",".join(map(str, args.sizes))]
    if args.methods:
        flags += ["--methods", ",".join(args.methods)]
    for n in ranks:
        cmd = [*mpiexec(), "-n", str(n), sys.executable, "-m", "mpitrain.bench.allreduce", "--calibrate", "--job", *flags]
        print(f"== calibrating {n} ranks: {' '.join(cmd)}", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, timeout=7200)
        if done.returncode != 0:
            raise SystemExit(f"the calibration job on {n} ranks failed with status {done.returncode}: {' '.join(cmd)}")
    path = os.path.abspath(os.path.join(args.out, "allreduce-table.json"))
    with open(path) as f:
        print(json.dumps(json.load(f), indent=1))
    print(f"calibrated {','.join(map(str, ranks))} ranks into {path}\n"
          f"use it with: export {auto.ENV}={path}   (or copy it to {auto.SITE_TABLE})")
    return 0


def default_ranks() -> list[int]:
    """2, 4, 8, ... up to the cores this process may use (at least [2])."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    ranks = [2]
    while ranks[-1] * 2 <= cores:
        ranks.append(ranks[-1] * 2)
    return ranks


def _calls(ch: Comm, methods: tuple[str, ...]) -> dict[str, Callable[[np.ndarray], Any]]:
    """One in-place sum callable per method name."""
    table: dict[str, Callable[[np.ndarray], Any]] = {
        "mpi": ch.raw_allreduce(),
        "auto": lambda b: collectives.allreduce(b),
        "deterministic": lambda b: collectives.allreduce(b, deterministic=True),
        "fp16": lambda b: collectives.allreduce(b, compress="fp16"),
        "bf16": lambda b: collectives.allreduce(b, compress="bf16"),
        "pickle": ch.pickled_allreduce,
    }
    for name in collectives.ALGORITHMS:
        table[name] = lambda b, name=name: collectives.allreduce(b, algorithm=name)
    return {name: table[name] for name in methods}


def _measure(ch: Comm, calls: dict[str, Callable[[np.ndarray], Any]], n: int, dtype: np.dtype,
             iters: int, rounds: int, seed: int) -> dict[str, list[float]]:
    """Per method, ``rounds`` samples (seconds): the median over calls of the slowest rank's time."""
    rng = np.random.default_rng([seed, ch.rank])
    sources = [rng.standard_normal(n).astype(dtype) for _ in range(2)]
    buf = np.empty(n, dtype=dtype)
    times = np.empty(iters)
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            call = calls[name]
            for i in range(2):  # warm-up: page in the buffers, build any plan
                np.copyto(buf, sources[i])
                call(buf)
            ch.barrier()
            for i in range(iters):
                np.copyto(buf, sources[i % 2])
                t0 = time.perf_counter()
                call(buf)
                times[i] = time.perf_counter() - t0
            samples[name].append(float(np.median(ch.Allreduce(times.copy(), "max"))))
    return samples


def _report(ch: Comm, args: argparse.Namespace, sizes: list[int], dtype: np.dtype,
            methods: tuple[str, ...], results: dict[str, list[float]]) -> dict:
    """The JSON document: environment, settings and per-method latency, algbw and busbw."""
    p = ch.size
    nbytes = [max(1, s // dtype.itemsize) * dtype.itemsize for s in sizes]
    table = {}
    for name in methods:
        lat = results[name]
        algbw = [b / t / 1e9 for b, t in zip(nbytes, lat)]
        table[name] = {
            "latency_us": [t * 1e6 for t in lat],
            "algbw_GBps": algbw,
            "busbw_GBps": [a * 2 * (p - 1) / p for a in algbw],
        }
    return {
        "benchmark": "allreduce",
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ranks": p,
        "nodes": ch.nodes()[2],
        "dtype": str(dtype),
        "rounds": args.rounds,
        "environment": dict(ch.info(), python=platform.python_version(),
                            cpus=os.cpu_count(), **{k: v for k, v in os.environ.items()
                                                    if k.startswith(("MPIR_CVAR", "MPI4PY", "OMP_", "OPENBLAS", "HYDRA"))}),
        "auto_plan": [collectives.plan(b, comm=ch) for b in nbytes],
        "bytes": nbytes,
        "methods": table,
    }


def markdown(report: dict) -> str:
    """A markdown table of latencies (us), with auto's speedup over the ``mpi`` baseline where both ran."""
    methods = list(report["methods"])
    env = report["environment"]
    head = (f"allreduce, {report['ranks']} ranks, {report['dtype']}, {env['mpi_library']}, mpi4py {env['mpi4py']}, "
            f"thread level {env['thread_level']}; median latency in us of {report['rounds']} interleaved samples\n\n")
    cols = ["bytes"] + methods + (["auto plan", "mpi / auto", "auto busbw GB/s"] if {"mpi", "auto"} <= set(methods) else [])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    for i, b in enumerate(report["bytes"]):
        row = [_size(b)] + [f"{report['methods'][m]['latency_us'][i]:.1f}" for m in methods]
        if {"mpi", "auto"} <= set(methods):
            mpi, mine = report["methods"]["mpi"]["latency_us"][i], report["methods"]["auto"]["latency_us"][i]
            row += [report["auto_plan"][i], f"{mpi / mine:.2f}", f"{report['methods']['auto']['busbw_GBps'][i]:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return head + "\n".join(lines) + "\n"


def _write_table(report: dict, path: str, margin: float) -> str:
    """Merge this run's rows into the JSON table at ``path``; return a line saying how to use it."""
    seconds = {m: [t / 1e6 for t in v["latency_us"]] for m, v in report["methods"].items()}
    rows = auto.rows_from_timings(report["bytes"], seconds, margin)
    table: dict = {}
    if os.path.exists(path):
        with open(path) as f:
            table = json.load(f)
    table.setdefault(report["environment"]["thread_level"], {})[auto.key(report["ranks"], report.get("nodes", 1))] = rows
    auto.check_table(table)
    with open(path, "w") as f:
        json.dump(table, f, indent=1)
    return f"wrote {path}: {rows}\nuse it with: export {auto.ENV}={os.path.abspath(path)}"


def _plot(report: dict, path: str) -> str:
    """Latency against size for every method as a PNG at ``path``; says so, or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(8, 5))
    palette = plt.get_cmap("tab20")  # 20 distinct colours: the default cycle of 10 repeated mpi's blue
    for i, (name, v) in enumerate(report["methods"].items()):
        ax.loglog(report["bytes"], v["latency_us"], marker=".", label=name, color=palette(i % palette.N),
                  lw=2.5 if name in ("mpi", "auto") else 1)
    env = report["environment"]
    ax.set(xlabel="bytes", ylabel="latency (us)",
           title=f"allreduce, {report['ranks']} ranks, {report['dtype']}, thread level {env['thread_level']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def _size(b: int) -> str:
    """A byte count as 8 B, 12 KiB, 5 MiB (exact) or plain bytes."""
    for unit, scale in (("MiB", MIB), ("KiB", 1024)):
        if b >= scale and b % scale == 0:
            return f"{b // scale} {unit}"
    return f"{b} B"


def _sizes(text: str) -> list[int]:
    """argparse type: '8,1K,4M' -> [8, 1024, 4194304]."""
    out = []
    for item in text.split(","):
        item = item.strip().upper()
        scale = {"K": 1024, "M": MIB}.get(item[-1:], 1)
        try:
            value = int(item[:-1] if scale > 1 else item) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a byte count like 8, 1K or 4M") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"sizes must be at least 1 byte, not {value}")
        out.append(value)
    return sorted(out)


def _ranks(text: str) -> list[int]:
    """argparse type: '2,4,8' -> [2, 4, 8] (each at least 2)."""
    try:
        ranks = sorted({int(item) for item in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of world sizes like 2,4,8") from None
    if ranks[0] < 2:
        raise argparse.ArgumentTypeError(f"calibration needs at least 2 ranks, not {ranks[0]}")
    return ranks


def _methods(text: str) -> tuple[str, ...]:
    """argparse type: a comma-separated subset of DEFAULT_METHODS."""
    names = tuple(m.strip() for m in text.split(","))
    unknown = [m for m in names if m not in DEFAULT_METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method(s) {unknown}; choose from {','.join(DEFAULT_METHODS)}")
    return names


def _at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``low``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    """``python -m mpitrain.bench.allreduce``: the same command without the mpitrain CLI."""
    parser = argparse.ArgumentParser(prog="python -m mpitrain.bench.allreduce")
    add_parser(parser.add_subparsers(dest="bench", required=True))
    return run(parser.parse_args(["allreduce"] + list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
