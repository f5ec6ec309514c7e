"""The hand-written loop a user would write instead of mpitrain: NumPy + one mpi4py Allreduce a step.

Run under mpiexec; rank 0 prints one JSON line. It calls mpi4py itself, as such a user would
(the one program in the package that does, on purpose: it is the reference, not mpitrain). Used by `python -m mpitrain bench train` as the
reference that mpitrain must match at one rank and beat at two. Only the data and the order of
its rows come from mpitrain: the same synthetic rows, read outside the timed loop, and each
step's rows from mpitrain's sampler (a hash of seed, epoch and row; fixed shares of the global
batch per rank), so that both follow the same trajectory from the same initial parameters and
their final losses can be compared closely. With its own random permutation instead, the final
loss after 210 MLP steps moves by about 4% from seed to seed, for this loop and mpitrain alike.

    mpiexec -n 2 python -m mpitrain.bench.baseline --workload mlp --steps 200

Workloads: linear-gd (full-batch least squares); softmax and mlp (784-256-256-10, ReLU)
trained by SGD with a global batch of 256 split over the ranks. linear-gd computes in float64,
softmax and mlp in float32 (as mpitrain's bench runs them, with --dtype float32).
"""
import argparse
import json
import time

import numpy as np
from mpi4py import MPI

from mpitrain.data import BatchSampler, batch_shares, block_bounds, block_sizes, open_source

SPECS = {"linear-gd": "synthetic:regression,n=1000000,d=100",
         "softmax": "synthetic:classification,n=60000,d=784,classes=10",
         "mlp": "synthetic:classification,n=60000,d=784,classes=10"}
BATCH, LR = 256, {"linear-gd": 0.5, "softmax": 0.1, "mlp": 0.1}


def views(flat, sizes):
    """(W, b) per layer as views into the flat buffer, weights of shape (fan_in, fan_out)."""
    layers, at = [], 0
    for a, b in zip(sizes, sizes[1:]):
        layers.append((flat[at : at + a * b].reshape(a, b), flat[at + a * b : at + a * b + b]))
        at += a * b + b
    return layers


def init_layers(sizes, rng):
    """float32 layers in one flat buffer, (flat, [(W, b), ...]): He-normal weights before each
    ReLU, Glorot-uniform at the output (the usual choice, and mpitrain's), zero biases."""
    flat = np.zeros(sum(a * b + b for a, b in zip(sizes, sizes[1:])), dtype=np.float32)
    layers = views(flat, sizes)
    for i, (W, _) in enumerate(layers):
        fan_in, fan_out = W.shape
        if i < len(layers) - 1:
            W[:] = rng.standard_normal(W.shape) * np.sqrt(2.0 / fan_in)
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W[:] = rng.uniform(-limit, limit, W.shape)
    return flat, layers


def softmax_grad(z, y):
    """Cross-entropy loss sum and d(loss sum)/dz for scores z (n, K), labels y (n,)."""
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = -np.log(p[rows, y] + 1e-30).sum()
    p[rows, y] -= 1
    return loss, p


def mlp_step(layers, grads, X, y):
    """Forward and backward through ReLU layers; fill grads with sums; return the loss sum."""
    acts = [X]
    for i, (W, b) in enumerate(layers):
        z = acts[-1] @ W + b
        acts.append(np.maximum(z, 0) if i < len(layers) - 1 else z)
    loss, delta = softmax_grad(acts[-1], y)
    for i in range(len(layers) - 1, -1, -1):
        gW, gb = grads[i]
        np.matmul(acts[i].T, delta, out=gW)
        gb[:] = delta.sum(axis=0)
        if i:
            delta = (delta @ layers[i][0].T) * (acts[i] > 0)
    return loss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=sorted(SPECS), default="linear-gd")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--spec", help="override the data set (tiny runs)")
    parser.add_argument("--batch", type=int, default=BATCH, help="global batch of softmax and mlp (default 256)")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    source = open_source(args.spec or SPECS[args.workload])
    start, stop = block_bounds(source.n_total, comm.size, comm.rank)
    X, y = source.read(start, stop)
    n, lr = source.n_total, LR[args.workload]
    if args.workload == "linear-gd":
        d = X.shape[1]
        flat = np.zeros(d + 1)
        g = np.empty(d + 2)  # gradient sum (d), bias gradient sum, loss sum

        def step(_):
            r = X @ flat[:d] + flat[d] - y
            np.matmul(r, X, out=g[:d])
            g[d] = r.sum()
            g[d + 1] = 0.5 * (r @ r)
            return g, n

        def loss_now():
            r = X @ flat[:d] + flat[d] - y
            return 0.5 * (r @ r), len(y)
    else:
        X, labels = X.astype(np.float32), y.astype(np.int64)
        sizes = [X.shape[1], 10] if args.workload == "softmax" else [X.shape[1], 256, 256, 10]
        if args.workload == "softmax":  # a convex model: start from zeros, as mpitrain does
            flat = np.zeros(sum(a * b + b for a, b in zip(sizes, sizes[1:])), dtype=np.float32)
            layers = views(flat, sizes)
        else:
            flat, layers = init_layers(sizes, np.random.default_rng(0))
        g = np.zeros(flat.size + 1, dtype=np.float32)  # gradient sums, then the loss sum
        grads = views(g[:-1], sizes)
        share = batch_shares(block_sizes(n, comm.size), args.batch)[comm.rank]
        sampler = BatchSampler(start, stop - start, int(share), seed=0)

        def step(i):
            rows = sampler.indices(i)
            g[-1] = mlp_step(layers, grads, X[rows], labels[rows])
            return g, args.batch

        def loss_now():
            acts = X
            for i, (W, b) in enumerate(layers):
                acts = acts @ W + b
                acts = np.maximum(acts, 0) if i < len(layers) - 1 else acts
            return softmax_grad(acts, labels)[0], len(labels)

    compute = comm_time = 0.0
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            comm.Barrier()
            compute = comm_time = 0.0
            began = time.perf_counter()
        t0 = time.perf_counter()
        buf, count = step(i)
        t1 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf)
        t2 = time.perf_counter()
        flat -= (lr / count) * buf[: flat.size]
        compute += t1 - t0 + time.perf_counter() - t2
        comm_time += t2 - t1
    seconds = time.perf_counter() - began
    loss = np.array(loss_now(), dtype=np.float64)
    comm.Allreduce(MPI.IN_PLACE, loss)
    times = np.zeros((3, comm.size))
    times[:, comm.rank] = (seconds, compute, comm_time)
    comm.Allreduce(MPI.IN_PLACE, times)
    wall, busy, coll = times
    if comm.rank == 0:
        print(json.dumps({"seconds": wall.max(), "compute_seconds": busy.mean(), "comm_seconds": coll.min(),
                          "wait_seconds": (coll - coll.min()).mean(), "iterations": args.steps,
                          "samples": args.steps * count, "final_loss": loss[0] / loss[1]}))


if __name__ == "__main__":
    main()
