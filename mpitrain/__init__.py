"""mpitrain: data-parallel training of NumPy models over MPI, without a parameter server.

Five lines from Python, under ``mpiexec -n N python script.py``::

    import mpitrain as mt
    comm = mt.world()                                        # private duplicate of COMM_WORLD
    data = mt.load("synthetic:regression", comm)             # this rank's block of rows
    model = mt.create_model("linear", data.n_features)
    result = mt.fit(model, data, comm, "gd", mt.Settings(steps=200, lr=0.5))
    loss, rmse = mt.evaluate(model, result.theta, data, comm)

Classifiers on real data, with an optimizer (see the README, section Python)::

    train, test = mt.split(mt.load("digits", comm), comm, 0.25)   # stratified, deterministic
    mt.standardize(train, comm, test)                             # global mean and variance
    model = mt.create_model("mlp", train.n_features, hidden=(64,), n_classes=mt.n_classes(train, comm))
    result = mt.fit(model, train, comm, "sgd", mt.Settings(steps=1200, lr=0.003, batch_size=32, optimizer="adam"))
"""
from __future__ import annotations

from .guard import guard_signals  # first: the command line catches stop signals before MPI starts

guard_signals()
__version__ = "0.1.0"

from .algorithms import ALGORITHMS, Result, Settings, evaluate, fit  # noqa: E402
from .comm import Comm, world  # noqa: E402
from . import optim  # noqa: E402
from .data import Dataset, as_dtype, load, n_classes, split, standardize  # noqa: E402
from .errors import JobError, UsageError  # noqa: E402
from .inference import predict  # noqa: E402
from .models import MLP, LinearRegression, LogisticRegression, SoftmaxRegression  # noqa: E402
from .models import create as create_model  # noqa: E402
from .models import load as load_model  # noqa: E402

__all__ = [
    "ALGORITHMS", "as_dtype", "Comm", "Dataset", "JobError", "LinearRegression", "LogisticRegression", "Result",
    "Settings", "UsageError", "create_model", "evaluate", "fit", "load", "load_model", "predict", "world",
    "MLP", "SoftmaxRegression", "n_classes", "optim", "split", "standardize",
]
