"""Optimizers inside the distributed loops, against serial runs written out in plain NumPy.

Synchronous SGD must match one process stepping on the same global batches (rtol 1e-10), with
parameters and optimizer state bitwise identical on every rank.
"""
import math

import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain import collectives, optim
from mpitrain.data import BatchSampler, batch_shares, block_bounds, block_sizes, open_source
from helpers import equal_shares, logistic_gradient

pytestmark = pytest.mark.mpi

SPEC = "synthetic:classification,n=203,d=4,noise=0.5,seed=2"


def same_bits_everywhere(*arrays: np.ndarray) -> bool:
    """True if every rank holds exactly these bytes (checked independently of mpitrain)."""
    blob = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
    return len(set(MPI.COMM_WORLD.allgather(blob))) == 1


class Reference:
    """One optimizer, step by step, as its textbook formula reads (independent of mpitrain.optim)."""

    def __init__(self, name, n, momentum=0.9, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, n_decayed=None):
        self.name, self.m, self.b1, self.b2, self.eps, self.wd = name, momentum, b1, b2, eps, weight_decay
        self.n_decayed = n if n_decayed is None else n_decayed
        self.t, self.mu, self.nu, self.count = np.zeros(n), np.zeros(n), np.zeros(n), 0

    def direction(self, g, theta):
        if self.name == "sgd":
            return g
        if self.name in ("momentum", "nesterov"):
            self.t = self.m * self.t + g
            return self.t if self.name == "momentum" else g + self.m * self.t
        self.count += 1
        self.mu = self.b1 * self.mu + (1 - self.b1) * g
        self.nu = self.b2 * self.nu + (1 - self.b2) * g**2
        d = (self.mu / (1 - self.b1**self.count)) / (np.sqrt(self.nu / (1 - self.b2**self.count)) + self.eps)
        if self.name == "adamw":
            d = d.copy()
            d[: self.n_decayed] += self.wd * theta[: self.n_decayed]
        return d


def samplers(n, size, batch, seed):
    counts = block_sizes(n, size)
    return [BatchSampler(block_bounds(n, size, r)[0], int(c), int(s), seed)
            for r, (c, s) in enumerate(zip(counts, batch_shares(counts, batch)))]


def full_data(spec):
    source = open_source(spec)
    return source.read(0, source.n_total)


CASES = {
    "momentum": dict(optimizer="momentum", momentum=0.9),
    "nesterov": dict(optimizer="nesterov", momentum=0.8),
    "adam": dict(optimizer="adam", lr=0.05),
    "adamw+clip+cosine": dict(optimizer="adamw", weight_decay=0.05, clip_norm=0.3, schedule="cosine",
                              warmup_steps=5, lr=0.05),
}


@pytest.mark.parametrize("case", CASES)
def test_sync_sgd_with_an_optimizer_equals_the_serial_run(comm, case):
    options = {"lr": 0.2, **CASES[case]}
    settings = mt.Settings(steps=20, l2=0.01, batch_size=17, seed=4, **options)
    data = mt.load(SPEC, comm)
    model = mt.create_model("logistic", data.n_features)
    result = mt.fit(model, data, comm, "sgd", settings)

    X, y = full_data(SPEC)
    ref = Reference(settings.optimizer, 5, momentum=settings.momentum, weight_decay=settings.weight_decay,
                    n_decayed=4)
    theta = np.zeros(5)
    for t in range(20):
        rows = np.concatenate([s.start + s.indices(t) for s in samplers(len(y), comm.size, 17, 4)])
        g = logistic_gradient(theta, X[rows], y[rows], 0.01)
        if settings.clip_norm is not None and np.linalg.norm(g) > settings.clip_norm:
            g = g * settings.clip_norm / np.linalg.norm(g)
        lr = settings.lr
        if settings.schedule == "cosine":  # 5 warmup steps, then cosine over the other 15
            lr = settings.lr * (t + 1) / 5 if t < 5 else settings.lr * 0.5 * (1 + math.cos(math.pi * (t - 5) / 15))
        theta = theta - lr * ref.direction(g, theta)
    np.testing.assert_allclose(result.theta, theta, rtol=1e-10, atol=1e-13)
    assert same_bits_everywhere(result.theta, optim.flatten(result.opt_state, counts=False))
    if settings.optimizer.startswith("adam"):
        np.testing.assert_allclose(optim.flatten(result.opt_state, counts=False),
                                   np.concatenate([ref.mu, ref.nu]), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov"])
def test_local_sgd_h1_keeping_momentum_equals_sync_sgd(comm, optimizer):
    # The update is linear, so per-rank momentum averaged every step is momentum on the mean
    # gradient. Rows and batch split evenly over the ranks (1200 and 60 at 1 to 5 ranks).
    rows, batch = equal_shares(comm.size)
    spec = f"synthetic:classification,n={rows},d=5,seed=1"
    data = mt.load(spec, comm)
    model = mt.create_model("logistic", data.n_features)
    settings = mt.Settings(steps=25, lr=0.2, l2=0.01, batch_size=batch, sync_every=1, seed=9, optimizer=optimizer)
    sync = mt.fit(model, data, comm, "sgd", settings)
    local = mt.fit(model, data, comm, "local-sgd", settings)
    np.testing.assert_allclose(local.theta, sync.theta, rtol=1e-11, atol=1e-13)
    # Reset every step, the first step's direction is g (momentum) or (1 + 0.9) g (Nesterov).
    reset = mt.fit(model, data, comm, "local-sgd", mt.Settings(**{**vars(settings), "local_state": "reset"}))
    lr = settings.lr * (1.9 if optimizer == "nesterov" else 1.0)
    plain = mt.fit(model, data, comm, "sgd", mt.Settings(**{**vars(settings), "optimizer": "sgd", "lr": lr}))
    np.testing.assert_allclose(reset.theta, plain.theta, rtol=1e-11, atol=1e-13)


def test_local_sgd_averaging_adam_state_equals_the_serial_run(comm):
    # 999 rows: uneven blocks at 2 and 4 ranks, so the n_k / N weights matter for theta, mu and nu.
    spec = "synthetic:classification,n=999,d=3,noise=0.3,seed=11"
    steps, batch, h = 24, 30, 4
    data = mt.load(spec, comm)
    model = mt.create_model("logistic", data.n_features)
    settings = mt.Settings(steps=steps, lr=0.05, batch_size=batch, sync_every=h, seed=2, optimizer="adam",
                           local_state="average")
    result = mt.fit(model, data, comm, "local-sgd", settings)

    X, y = full_data(spec)
    n, size = len(y), comm.size
    weights = block_sizes(n, size) / n
    ranks = samplers(n, size, batch, 2)
    thetas = [np.zeros(4) for _ in range(size)]
    refs = [Reference("adam", 4) for _ in range(size)]
    for t in range(steps):
        for k, s in enumerate(ranks):
            rows = s.start + s.indices(t)
            thetas[k] = thetas[k] - 0.05 * refs[k].direction(logistic_gradient(thetas[k], X[rows], y[rows], 0.0), thetas[k])
        if (t + 1) % h == 0:
            mean = sum(w * th for w, th in zip(weights, thetas))
            mu, nu = sum(w * r.mu for w, r in zip(weights, refs)), sum(w * r.nu for w, r in zip(weights, refs))
            thetas = [mean.copy() for _ in range(size)]
            for r in refs:
                r.mu, r.nu = mu.copy(), nu.copy()
    np.testing.assert_allclose(result.theta, thetas[0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(optim.flatten(result.opt_state, counts=False),
                               np.concatenate([refs[0].mu, refs[0].nu]), rtol=1e-10, atol=1e-14)
    assert same_bits_everywhere(result.theta, optim.flatten(result.opt_state, counts=False))


def test_mlp_step_is_one_allreduce_of_one_buffer_and_matches_the_serial_run(comm, monkeypatch):
    spec = "synthetic:classification,n=150,d=6,seed=3"
    data = mt.load(spec, comm)
    model = mt.create_model("mlp", 6, hidden=(5, 4), activation="tanh", n_classes=2)
    settings = mt.Settings(steps=20, lr=0.05, l2=0.01, batch_size=16, seed=1, optimizer="adam")
    calls = []
    real = collectives.allreduce

    def spy(buf, *args, **how):  # the step's reduction (comm.Allreduce is MPI's own call, for small ones)
        calls.append((buf.size, buf.ctypes.data))
        return real(buf, *args, **how)

    monkeypatch.setattr(collectives, "allreduce", spy)
    result = mt.fit(model, data, comm, "sgd", settings)
    monkeypatch.undo()
    # The step buffer [gradient sum | loss sum | metric sum | ...] is the only one longer than theta.
    steps = [c for c in calls if c[0] > model.n_params]
    assert len(steps) == 20 and len(set(steps)) == 1  # one Allreduce per step, always the same buffer

    # The same run on one process: the serial model on the union of the ranks' batches, and Adam as written.
    X, y = full_data(spec)
    theta, ref = model.init(1), Reference("adam", model.n_params)
    grad = np.empty(model.n_params)
    for t in range(20):
        rows = np.concatenate([s.start + s.indices(t) for s in samplers(len(y), comm.size, 16, 1)])
        model.sums(theta, X[rows], y[rows], grad)
        g = grad / 16
        g[: model.n_penalized] += 0.01 * theta[: model.n_penalized]
        theta = theta - 0.05 * ref.direction(g, theta)
    np.testing.assert_allclose(result.theta, theta, rtol=1e-10, atol=1e-13)
    assert same_bits_everywhere(result.theta, optim.flatten(result.opt_state, counts=False))
