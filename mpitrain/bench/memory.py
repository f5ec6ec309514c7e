"""Memory of two ways to aggregate: ``python -m mpitrain.bench.memory [--zero]``.

Default: trains an MLP for a few steps with ``accumulate`` 1, 4 and 16 and reports the peak of
the memory NumPy allocated during ``fit`` (``tracemalloc``, which sees NumPy's buffers), the
largest over ranks. ``--zero``: the bytes of Adam's state each rank keeps with sgd and with
zero-1 (the largest over ranks). Run under mpiexec for several ranks. Prints a table and
writes JSON.
"""
from __future__ import annotations

import argparse
import json
import tracemalloc

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--hidden", default="256,256")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the rows here")
    parser.add_argument("--zero", action="store_true", help="Adam's state per rank with sgd and zero-1")
    args = parser.parse_args()
    import mpitrain as mt

    if args.zero:
        rows = optimizer_bytes(args.batch, tuple(int(h) for h in args.hidden.split(",")), args.steps)
        if mt.world().rank == 0:
            print(f"MLP d=64 hidden={args.hidden} ({rows[0]['n_params']} parameters), Adam, {mt.world().size} rank(s)")
            for r in rows:
                print(f"{r['algorithm']:>8} {r['optimizer_bytes_per_rank'] / 2**20:9.3f} MiB optimizer state per rank")
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"world_size": mt.world().size, "rows": rows}, f, indent=2)
        return

    rows = measure(args.batch, tuple(int(h) for h in args.hidden.split(",")), [1, 4, 16], args.steps)
    if mt.world().rank == 0:
        print(f"MLP d=64 hidden={args.hidden}, global batch {args.batch}, {mt.world().size} rank(s)")
        print(f"{'accumulate':>10} {'peak MiB':>9} {'max |dtheta|':>13}")
        for r in rows:
            print(f"{r['accumulate']:>10} {r['peak_bytes'] / 2**20:>9.2f} {r['max_abs_diff_vs_k1']:>13.3g}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"batch": args.batch, "hidden": args.hidden, "world_size": mt.world().size, "rows": rows}, f,
                          indent=2)


if __name__ == "__main__":
    main()
