"""The training runs whose parameters the refactor of the training core must keep bitwise.

``CASES`` names each run; ``run_case`` trains it. ``python tests/mpi/bitwise_cases.py OUT.npz``
under ``mpiexec -n N`` records every case's parameters at that world size (rank 0 writes) and
prints ``arithmetic_fingerprint()``.
"""
from __future__ import annotations

import hashlib
import sys

import numpy as np

import mpitrain as mt

DATA = {
    "linear": "synthetic:regression,n=203,d=5,seed=4",
    "logistic": "synthetic:classification,n=203,d=5,seed=4",
    "softmax": "synthetic:classification,n=203,d=5,seed=4,classes=3",
    "mlp": "synthetic:classification,n=203,d=5,seed=4,classes=3",
}
OPTIONS = {"linear": {}, "logistic": {}, "softmax": {"n_classes": 3}, "mlp": {"n_classes": 3, "hidden": (8,)}}
# (name, model, algorithm, settings keywords, dtype)
CASES = [
    (f"{model}-{alg}-{opt}", model, alg, {"optimizer": opt, "l2": 0.01, **extra}, "float64")
    for model in DATA
    for alg, extra in [("gd", {}), ("sgd", {"batch_size": 32}), ("local-sgd", {"batch_size": 32, "sync_every": 3}),
                       ("one-shot", {"batch_size": 32})]
    for opt in ("sgd", "momentum", "adam")
] + [
    ("mlp-sgd-overlap", "mlp", "sgd", {"batch_size": 32, "overlap": True}, "float64"),
    ("softmax-gd-overlap-f32", "softmax", "gd", {"overlap": True}, "float32"),
    ("mlp-sgd-bf16", "mlp", "sgd", {"batch_size": 32, "compress": "bf16"}, "float64"),
    ("logistic-sgd-clip-cosine", "logistic", "sgd",
     {"batch_size": 16, "clip_norm": 0.5, "schedule": "cosine", "warmup_steps": 3}, "float64"),
    ("softmax-local-average-adamw", "softmax", "local-sgd",
     {"batch_size": 32, "sync_every": 4, "optimizer": "adamw", "weight_decay": 0.01, "local_state": "average"},
     "float64"),
    ("mlp-local-reset-nesterov", "mlp", "local-sgd",
     {"batch_size": 32, "sync_every": 2, "optimizer": "nesterov", "local_state": "reset"}, "float32"),
    ("linear-sgd-step-schedule-f32", "linear", "sgd",
     {"batch_size": 20, "schedule": "step", "decay_every": 7, "decay_factor": 0.5}, "float32"),
]
STEPS = 25
LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adam": 0.01, "adamw": 0.01}


def run_case(case: tuple, comm: mt.Comm) -> np.ndarray:
    """Train one case on ``comm``; the final parameters (identical on every rank)."""
    name, model_name, algorithm, keywords, dtype = case
    data = mt.load(DATA[model_name], comm)
    if dtype != "float64":
        data = mt.as_dtype(data, dtype)
    model = mt.create_model(model_name, data.n_features, **OPTIONS[model_name])
    # A fixed reduction order, so that the bits depend on the training code alone, not on what
    # "auto" or the MPI library choose.
    keywords = {"allreduce": "ring" if "compress" in keywords else "ordered", **keywords}
    settings = mt.Settings(steps=STEPS, lr=LR[keywords.get("optimizer", "sgd")], **keywords)
    return mt.fit(model, data, comm, algorithm, settings).theta


def arithmetic_fingerprint() -> str:
    """A hash of the bits of the kernels the cases use (BLAS products, NumPy's SIMD ufuncs and sums).

    Two machines with the same fingerprint round these operations alike; a processor with other
    SIMD extensions (AVX-512 rather than AVX2) or another BLAS build gives another fingerprint.
    """
    digest = hashlib.sha256()
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(0)
        X, W = rng.standard_normal((203, 5)).astype(dtype), rng.standard_normal((5, 8)).astype(dtype)
        Z = X @ W
        for value in (Z, X @ W[:, 0], X.T @ Z, Z.T @ Z[:, :3], np.exp(Z), np.log(np.abs(Z) + 1), np.tanh(Z),
                      np.logaddexp(0, Z), np.sqrt(np.abs(Z)), Z.sum(axis=0), Z.sum(), np.einsum("ij,ij->i", Z, Z)):
            digest.update(np.ascontiguousarray(value, dtype=dtype).tobytes())
    return digest.hexdigest()


if __name__ == "__main__":
    comm = mt.world()
    results = {case[0]: run_case(case, comm) for case in CASES}
    if comm.rank == 0:
        np.savez(sys.argv[1], **results)
        print("arithmetic fingerprint:", arithmetic_fingerprint())
