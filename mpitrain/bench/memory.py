"""Peak memory of a training step with gradient accumulation: ``python -m mpitrain.bench.memory``.

Trains an MLP for a few steps at ``--accumulate`` 1, 4 and 16 and reports the peak of the
memory NumPy allocated during ``fit`` (``tracemalloc``, which sees NumPy's buffers), on one rank
or under mpiexec (rank 0's peak is printed; the ranks' maximum is the same order). Prints a
table and writes JSON.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--hidden", default="256,256")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    import mpitrain as mt

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
