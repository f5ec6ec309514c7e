"""The hand-written loop a user would write instead of mpitrain: NumPy + one mpi4py Allreduce a step.

Run under mpiexec; rank 0 prints one JSON line. Used by `python -m mpitrain bench train` as the
reference that mpitrain must match at one rank and beat at two. Only the data comes from
mpitrain (the same synthetic rows), outside the timed loop.

    mpiexec -n 2 python scripts/baseline_train.py --workload linear-gd --steps 30
"""
import argparse
import json
import time

import numpy as np
from mpi4py import MPI

from mpitrain.data import block_bounds, open_source

WORKLOADS = {"linear-gd": ("synthetic:regression,n=1000000,d=100", 0.5)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="linear-gd")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--spec", help="override the data set (tiny runs)")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    spec, lr = WORKLOADS[args.workload]
    source = open_source(args.spec or spec)
    start, stop = block_bounds(source.n_total, comm.size, comm.rank)
    X, y = source.read(start, stop)
    n, d = source.n_total, X.shape[1]
    w = np.zeros(d + 1)
    g = np.empty(d + 2)  # gradient sum (d), bias gradient sum, loss sum
    compute = comm_time = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            comm.Barrier()
            compute = comm_time = 0.0
            began = time.perf_counter()
        t0 = time.perf_counter()
        r = X @ w[:d] + w[d] - y
        g[:d] = r @ X
        g[d] = r.sum()
        g[d + 1] = 0.5 * (r @ r)
        t1 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, g)
        t2 = time.perf_counter()
        w -= lr * g[: d + 1] / n
        compute += t1 - t0 + time.perf_counter() - t2
        comm_time += t2 - t1
    seconds = time.perf_counter() - began
    r = X @ w[:d] + w[d] - y  # the loss after the last update
    loss = np.array([0.5 * (r @ r)])
    comm.Allreduce(MPI.IN_PLACE, loss)
    times = np.zeros((3, comm.size))
    times[:, comm.rank] = (seconds, compute, comm_time)
    comm.Allreduce(MPI.IN_PLACE, times)
    wall, busy, coll = times
    if comm.rank == 0:
        print(json.dumps({"seconds": wall.max(), "compute_seconds": busy.mean(), "comm_seconds": coll.min(),
                          "wait_seconds": (coll - coll.min()).mean(), "iterations": args.steps,
                          "samples": args.steps * n, "final_loss": loss[0] / n}))

if __name__ == "__main__":
    main()
