"""What three ways to aggregate cost: ``python -m mpitrain.bench.aggregate [--zero | --deterministic]``.

Default: trains an MLP for a few steps with ``accumulate`` 1, 4 and 16 and reports the peak of
the memory NumPy allocated during ``fit`` (``tracemalloc``, which sees NumPy's buffers), the
largest over ranks. ``--zero``: the bytes of Adam's state each rank keeps with sgd and with
zero-1 (the largest over ranks). ``--deterministic``: seconds per step of gd and sgd with the
default sums, with global sampling and with deterministic sums (the median of 3 runs). Run
under mpiexec for several ranks. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from typing import Optional

import numpy as np


def measure(batch: int, hidden: tuple[int, ...], parts: list[int], steps: int) -> list[dict]:
    """Collective: one row per accumulation factor: peak bytes during fit and the final parameters' distance."""
    import mpitrain as mt

    comm = mt.world()
    data = mt.load(f"synthetic:classification,n={4 * batch},d=64,seed=1", comm)
    model = mt.create_model("mlp", data.n_features, hidden=hidden, n_classes=2)
    rows, reference = [], None
    for k in parts:
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = mt.fit(model, data, comm, mt.SGD(batch, accumulate=k), steps=steps, lr=0.05)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        peak = int(comm.Allreduce(np.array([peak], dtype=np.int64), "max")[0])
        reference = result.theta if reference is None else reference
        rows.append({"accumulate": k, "peak_bytes": peak, "max_abs_diff_vs_k1": float(np.abs(result.theta - reference).max())})
    return rows


def optimizer_bytes(batch: int, hidden: tuple[int, ...], steps: int) -> list[dict]:
    """Collective: per-rank bytes of Adam's state with sgd and zero-1 (the largest over ranks)."""
    import mpitrain as mt

    comm = mt.world()
    data = mt.load(f"synthetic:classification,n={4 * batch},d=64,seed=1", comm)
    model = mt.create_model("mlp", data.n_features, hidden=hidden, n_classes=2)
    rows = []
    for loop in (mt.SGD(batch), mt.ZeRO1(batch)):
        result = mt.fit(model, data, comm, loop, steps=steps, lr=0.01, optimizer="adam")
        mine = np.array([mt.optim.flatten(result.opt_state, counts=False).nbytes], dtype=np.int64)
        rows.append({"algorithm": loop.name, "n_params": model.n_params,
                     "optimizer_bytes_per_rank": int(comm.Allreduce(mine, "max")[0])})
    return rows


def step_seconds(batch: int, steps: int, kinds: list[str]) -> list[dict]:
    """Collective: median seconds per step (3 runs) of gd and sgd with local, global and deterministic sums."""
    import mpitrain as mt

    comm = mt.world()
    data = mt.load("synthetic:classification,n=4000,d=32,seed=1", comm)
    rows = []
    for kind in kinds:
        extra = {"hidden": (32,), "n_classes": 2} if kind == "mlp" else {}
        model = mt.create_model(kind, data.n_features, **extra)
        for loop in (mt.GD(), mt.GD(deterministic=True), mt.SGD(batch), mt.SGD(batch, sampling="global"),
                     mt.SGD(batch, sampling="global", deterministic=True)):
            times = []
            for _ in range(3):
                comm.barrier()
                start = time.perf_counter()
                mt.fit(model, data, comm, loop, steps=steps, lr=0.05, optimizer="adam")
                times.append(float(comm.Allreduce(np.array([time.perf_counter() - start]), "max")[0]) / steps)
            rows.append({"model": kind, "loop": repr(loop), "seconds_per_step": float(np.median(times))})
    return rows


def report(header: list[str], lines: list[str], path: Optional[str], meta: dict, rows: list[dict]) -> None:
    """Rank 0: print ``header`` then ``lines``; write {**meta, "rows": rows} as JSON to ``path`` when given."""
    import mpitrain as mt

    if mt.world().rank != 0:
        return
    print("\n".join(header + lines))
    if path:
        with open(path, "w") as f:
            json.dump({**meta, "world_size": mt.world().size, "rows": rows}, f, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--hidden", default="256,256")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the rows here")
    parser.add_argument("--zero", action="store_true", help="Adam's state per rank with sgd and zero-1")
    parser.add_argument("--deterministic", action="store_true", help="seconds per step with deterministic sums")
    parser.add_argument("--models", default="logistic,mlp", help="--deterministic: the models to time")
    args = parser.parse_args()
    import mpitrain as mt

    size = mt.world().size
    hidden = tuple(int(h) for h in args.hidden.split(","))
    if args.deterministic:
        rows = step_seconds(args.batch, args.steps, args.models.split(","))
        report([f"seconds per step, 4000 rows x 32 features, batch {args.batch}, {size} rank(s)"],
               [f"{r['model']:>9} {r['loop']:<70} {r['seconds_per_step'] * 1e3:9.3f} ms" for r in rows],
               args.json, {"batch": args.batch}, rows)
    elif args.zero:
        rows = optimizer_bytes(args.batch, hidden, args.steps)
        report([f"MLP d=64 hidden={args.hidden} ({rows[0]['n_params']} parameters), Adam, {size} rank(s)"],
               [f"{r['algorithm']:>8} {r['optimizer_bytes_per_rank'] / 2**20:9.3f} MiB optimizer state per rank"
                for r in rows], args.json, {}, rows)
    else:
        rows = measure(args.batch, hidden, [1, 4, 16], args.steps)
        report([f"MLP d=64 hidden={args.hidden}, global batch {args.batch}, {size} rank(s)",
                f"{'accumulate':>10} {'peak MiB':>9} {'max |dtheta|':>13}"],
               [f"{r['accumulate']:>10} {r['peak_bytes'] / 2**20:>9.2f} {r['max_abs_diff_vs_k1']:>13.3g}" for r in rows],
               args.json, {"batch": args.batch, "hidden": args.hidden}, rows)


if __name__ == "__main__":
    main()
