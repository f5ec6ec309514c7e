"""A whole training run from Python: outputs, checkpoints, a stop, and a bitwise resume.

    mpiexec -n 2 python examples/train_and_resume.py [OUT_DIR]

``mt.train`` owns the run directory like ``mpitrain train`` does: metrics.jsonl, checkpoints,
model.npz and summary.json. Here the first call is stopped after step 120 (as SIGUSR1 or SIGTERM
would stop it: a checkpoint, then ``run.stopped``), and the second call, with resume="auto",
finishes from that checkpoint; the result equals an uninterrupted run bit for bit.
"""
import os
import signal
import sys

import numpy as np

import mpitrain as mt


def build(comm):
    data = mt.load("synthetic:classification,n=4000,d=10,classes=3,seed=2", comm)
    model = mt.create_model("softmax", data.n_features, n_classes=3)
    return model, data


def main(out: str) -> tuple:
    comm = mt.world()
    model, data = build(comm)
    options = dict(steps=300, lr=0.05, optimizer="momentum", l2=1e-4, checkpoint_every=50)

    def stop_at_120(record):  # rank 0's metrics callback; a signal would do the same
        if record["step"] >= 120:
            os.kill(os.getpid(), signal.SIGUSR1)

    first = mt.train(model, data, comm, mt.SGD(batch_size=100), out=out, on_log=stop_at_120, **options)
    second = mt.train(model, data, comm, mt.SGD(batch_size=100), out=out, resume="auto", **options)
    whole = mt.train(model, data, comm, mt.SGD(batch_size=100), out=out + "-whole", **options)
    if comm.rank == 0:
        print(f"stopped: {first.stopped} after step {first.result.steps} ({first.checkpoint}); resumed from step "
              f"{second.resumed_from}; same as uninterrupted: {np.array_equal(second.result.theta, whole.result.theta)}")
    return first, second, whole


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/resume-example")
