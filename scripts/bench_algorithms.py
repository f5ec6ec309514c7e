"""Every training algorithm on the digits data at one world size: test accuracy and what it sent.

Run under mpiexec (the README's numbers: 4 ranks):

    mpiexec -n 4 python scripts/bench_algorithms.py --out docs/algorithms

Each algorithm trains from the same start on the same stratified 75% of scikit-learn's digits
(1,797 rows, 64 features, 10 classes; features standardised with the training rows' statistics)
and is scored on the other 25%. The first-order algorithms train an MLP (64 hidden units, relu)
with momentum SGD, lr 0.05, a global batch of 64 and 20 epochs of steps (gd: the same number of
full-batch steps); lbfgs trains the same MLP in full batch (at most 200 iterations); newton-cg
needs Hessian-vector products, so it trains the softmax model. ``normal`` solves linear
regression only and is left out.

Communication is counted on rank 0 during ``fit`` by wrapping mpitrain's entry points:
``collectives.allreduce``, ``reduce_scatter`` and ``sum_shards``, ``Comm.Allreduce`` and
``Comm.Allgatherv`` (calls and payload bytes: the collective operations, not the messages an
algorithm splits them into; for the deterministic sums, the summed vector, not its fixed-point
words), and ``Comm.Sendrecv`` (gossip's point-to-point exchanges). The
counts include fit's few small set-up and end checks. Prints a Markdown table on rank 0 and
writes OUT/digits-pP.json and OUT/digits-pP.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from collections import Counter
from typing import Any, Callable

import numpy as np

import mpitrain as mt
from mpitrain import collectives
from mpitrain.comm import Comm
from mpitrain.data import encode_labels, split, standardize

BATCH, EPOCHS, LR, HIDDEN = 64, 20, 0.05, (64,)
COUNTED = Counter()  # (kind, "calls" | "bytes") -> total, on this rank


def counting(kind: str, function: Callable, payload: Callable[..., int]) -> Callable:
    """``function`` wrapped to add one call and ``payload(*args)`` bytes to COUNTED[kind]."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        COUNTED[kind, "calls"] += 1
        COUNTED[kind, "bytes"] += payload(*args)
        return function(*args, **kwargs)

    return wrapper


def install_counters() -> None:
    """Wrap the collective entry points that the algorithms call (module and class attributes)."""
    first = lambda buf, *rest: np.asarray(buf).nbytes  # noqa: E731 - the buffer is the first argument
    method = lambda self, buf, *rest: np.asarray(buf).nbytes  # noqa: E731
    for name in ("allreduce", "reduce_scatter"):
        setattr(collectives, name, counting("collective", getattr(collectives, name), first))
    rows = lambda shards, *rest: shards.shape[1] * shards.itemsize  # noqa: E731 - the sum of the rows
    collectives.sum_shards = counting("collective", collectives.sum_shards, rows)
    Comm.Allreduce = counting("collective", Comm.Allreduce, method)
    Comm.Allgatherv = counting("collective", Comm.Allgatherv, method)
    Comm.Sendrecv = counting("sendrecv", Comm.Sendrecv, method)


def runs(n_train: int, epochs: int = EPOCHS) -> list[tuple[str, str, Any, dict]]:
    """(name, model, loop, fit keywords) of every run."""
    steps = epochs * -(-n_train // BATCH)
    sgd = {"steps": steps, "lr": LR, "optimizer": "momentum"}
    return [
        ("gd", "mlp", mt.GD(), sgd),
        ("sgd", "mlp", mt.SGD(BATCH), sgd),
        ("sgd --accumulate 4", "mlp", mt.SGD(BATCH, accumulate=4), sgd),
        ("sgd --sampling global", "mlp", mt.SGD(BATCH, sampling="global"), sgd),
        ("sgd --sampling global --deterministic", "mlp", mt.SGD(BATCH, sampling="global", deterministic=True), sgd),
        ("local-sgd H=4", "mlp", mt.LocalSGD(BATCH, 4), sgd),
        ("one-shot", "mlp", mt.OneShot(BATCH), sgd),
        (f"post-local-sgd K={steps // 4} H=4", "mlp", mt.PostLocalSGD(BATCH, 4, switch_step=steps // 4), sgd),
        ("hierarchical-sgd H1=2 H2=8", "mlp", mt.HierarchicalSGD(BATCH, 2, sync_every_global=8), sgd),
        ("slowmo H=4 beta=0.5", "mlp", mt.SlowMo(BATCH, 4, slow_momentum=0.5), sgd),
        ("gossip ring", "mlp", mt.Gossip(BATCH, "ring"), sgd),
        ("gossip exponential", "mlp", mt.Gossip(BATCH, "exponential"), sgd),
        ("zero-1", "mlp", mt.ZeRO1(BATCH), sgd),
        ("lbfgs", "mlp", mt.LBFGS(), {"steps": 200}),
        ("newton-cg", "softmax", mt.NewtonCG(), {"steps": 100}),
    ]


def main() -> None:
    """Train every algorithm; rank 0 prints the table and writes the JSON and Markdown files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench-algorithms", help="folder for digits-pP.json and .md")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs of steps (default {EPOCHS})")
    args = parser.parse_args()
    comm = mt.world()
    data = mt.load("digits", comm)
    encode_labels(data, comm)
    train, test = split(data, comm, 0.25, seed=0, stratify=True)
    standardize(train, comm, test)
    install_counters()
    rows = []
    for name, kind, loop, options in runs(train.n_total, args.epochs):
        model = mt.create_model(kind, train.n_features, n_classes=10, **({"hidden": HIDDEN} if kind == "mlp" else {}))
        COUNTED.clear()
        comm.barrier()
        begin, begin_cpu = time.perf_counter(), time.process_time()
        result = mt.fit(model, train, comm, loop, seed=0, **options)
        seconds, cpu = time.perf_counter() - begin, time.process_time() - begin_cpu
        counted = dict(COUNTED)
        train_loss, _ = mt.evaluate(model, result.theta, train, comm)
        _, accuracy = mt.evaluate(model, result.theta, test, comm)
        rows.append({"algorithm": name, "model": kind, "steps": result.steps, "test_accuracy": accuracy,
                     "train_loss": train_loss, "seconds": seconds, "cpu_seconds": cpu,
                     "collective_calls": counted.get(("collective", "calls"), 0),
                     "collective_bytes": counted.get(("collective", "bytes"), 0),
                     "sendrecv_calls": counted.get(("sendrecv", "calls"), 0),
                     "sendrecv_bytes": counted.get(("sendrecv", "bytes"), 0)})
    if comm.rank != 0:
        return
    lines = ["| algorithm | model | steps | test accuracy | train loss | collective calls | collective MB | "
             "Sendrecv calls | Sendrecv MB | seconds (wall / CPU) |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['algorithm']} | {r['model']} | {r['steps']} | {r['test_accuracy']:.4f} | "
                     f"{r['train_loss']:.4f} | {r['collective_calls']} | {r['collective_bytes'] / 1e6:.2f} | "
                     f"{r['sendrecv_calls']} | {r['sendrecv_bytes'] / 1e6:.2f} | {r['seconds']:.1f} / "
                     f"{r['cpu_seconds']:.1f} |")
    table = "\n".join(lines)
    print(table)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.platform(), "cores": len(os.sched_getaffinity(0)), "ranks": comm.size,
            "load_average": os.getloadavg(), "train_rows": train.n_total, "test_rows": test.n_total,
            "batch": BATCH, "epochs": args.epochs, "lr": LR, "hidden": HIDDEN, "optimizer": "momentum"}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"digits-p{comm.size}")
    with open(stem + ".json", "w") as f:
        json.dump({**meta, "rows": rows}, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(f"Measured {meta['date']} at {comm.size} ranks on {meta['cores']} cores (load average "
                f"{meta['load_average'][0]:.1f} at the end); counts and CPU seconds are rank 0's.\n\n{table}\n")


if __name__ == "__main__":
    main()
