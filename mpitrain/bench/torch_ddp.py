"""The same softmax and MLP workloads in PyTorch DistributedDataParallel (gloo), for comparison.

Run under mpiexec (mpi4py only tells each process its rank and shares a free port); rank 0
prints one JSON line like mpitrain.bench.baseline. Needs `pip install torch`; one thread per
rank. DDP overlaps its reductions with the backward pass, so compute and communication are not
separable here and are reported as null.

    mpiexec -n 2 python -m mpitrain.bench.torch_ddp --workload mlp --steps 200
"""
import argparse
import json
import socket
import time

import numpy as np
import torch
import torch.distributed as dist
from mpi4py import MPI

from mpitrain.data import block_bounds, open_source

SPEC = "synthetic:classification,n=60000,d=784,classes=10"
BATCH, LR = 256, 0.1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=["softmax", "mlp"], default="mlp")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--spec", default=SPEC)
    parser.add_argument("--batch", type=int, default=BATCH, help="global batch (default 256)")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    port = comm.bcast(free_port() if comm.rank == 0 else None, root=0)  # a small control object
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=comm.rank, world_size=comm.size)
    source = open_source(args.spec)
    X, y = source.read(*block_bounds(source.n_total, comm.size, comm.rank))
    X, y = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    torch.manual_seed(0)
    d = X.shape[1]
    layers = [torch.nn.Linear(d, 10)] if args.workload == "softmax" else [
        torch.nn.Linear(d, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)]
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(*layers))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    share = args.batch // comm.size
    generator = torch.Generator().manual_seed(comm.rank)
    order, used = torch.randperm(len(y), generator=generator), 0
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            dist.barrier()
            began = time.perf_counter()
        if used + share > len(order):
            order, used = torch.randperm(len(y), generator=generator), 0
        rows = order[used : used + share]
        used += share
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(X[rows]), y[rows]).backward()
        optimizer.step()
    seconds = torch.tensor([time.perf_counter() - began], dtype=torch.float64)
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    with torch.no_grad():
        total = torch.tensor([torch.nn.functional.cross_entropy(model(X), y, reduction="sum").item(), len(y)],
                             dtype=torch.float64)
    dist.all_reduce(total)
    if comm.rank == 0:
        print(json.dumps({"seconds": seconds.item(), "compute_seconds": None, "comm_seconds": None,
                          "wait_seconds": None, "iterations": args.steps, "samples": args.steps * share * comm.size,
                          "final_loss": (total[0] / total[1]).item()}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
