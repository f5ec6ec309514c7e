"""mpitrain: data-parallel training of NumPy models over MPI, without a parameter server.

Five lines from Python, under ``mpiexec -n N python script.py``::

    import mpitrain as mt
    comm = mt.world()                                        # private duplicate of COMM_WORLD
    data = mt.load("synthetic:regression", comm)             # this rank's block of rows
    model = mt.create_model("linear", data.n_features)
    result = mt.fit(model, data, comm, mt.GD(), steps=200, lr=0.5)
    loss, rmse = mt.evaluate(model, result.theta, data, comm)

A whole run with outputs, checkpoints and resume (see the README, section Python)::

    run = mt.train(model, data, comm, mt.SGD(batch_size=64), steps=2000, lr=0.1, optimizer="adam",
                   out="runs/a", checkpoint_every=200, resume="auto")

Importing mpitrain does not start MPI; ``world()`` (or the first collective) does.
"""
from __future__ import annotations

from ._startup import block_command_signals  # first of all: the command line's stop signals wait, blocked

block_command_signals()

from .guard import guard_signals  # noqa: E402 - then a thread of its own takes them, before any other starts

guard_signals()

from ._version import __version__  # noqa: E402

from typing import Any

from . import optim  # noqa: E402
from .algorithms import (ALGORITHMS, GD, SGD, Gossip, HierarchicalSGD, LocalSGD, OneShot,  # noqa: E402
                         OptionError, PostLocalSGD, Reduce, Result, Settings, SlowMo, ZeRO1, evaluate, fit)
from .data import Dataset, Schema, as_dtype, encode_labels, impute, load, n_classes, split, standardize  # noqa: E402
from .errors import JobError, UsageError  # noqa: E402
from .inference import predict  # noqa: E402
from .models import MLP, LinearModel, LogisticModel, Model, SoftmaxModel  # noqa: E402
from .models import create as create_model  # noqa: E402
from .models import load as load_model  # noqa: E402
from .models import register as register_model  # noqa: E402
from .params import Layout  # noqa: E402
from .run import Run, train  # noqa: E402

__all__ = [
    "ALGORITHMS", "as_dtype", "Comm", "Dataset", "estimators", "GD", "Gossip", "HierarchicalSGD", "JobError", "Layout",
    "LinearModel", "LocalSGD", "LogisticModel", "MLP", "Model", "OneShot", "OptionError", "PostLocalSGD", "Reduce",
    "Result", "Run", "SGD", "Settings", "SlowMo", "SoftmaxModel", "UsageError", "ZeRO1", "create_model", "evaluate",
    "fit", "load", "load_model", "n_classes", "optim", "predict", "register_model", "split", "standardize", "train",
    "world", "Schema", "encode_labels", "impute",
]

# Full-batch solvers for convex models (issue 17): L-BFGS, Newton-CG and exact least squares.
from .algorithms import LBFGS, NewtonCG, Normal  # noqa: E402
from .algorithms.solve import fit_lbfgs, fit_newton_cg, fit_normal  # noqa: E402

__all__ += ["LBFGS", "NewtonCG", "Normal", "fit_lbfgs", "fit_newton_cg", "fit_normal"]

# Model selection (issue 14): validation and early stopping, the metrics people report, row weights.
from . import metrics, selection, weighting  # noqa: E402

__all__ += ["metrics", "selection", "weighting"]


def __getattr__(name: str) -> Any:
    """``Comm`` and ``world`` import mpi4py, which starts MPI, and ``estimators`` imports scikit-learn:
    only when first asked for."""
    if name in ("Comm", "world"):
        from . import comm

        return getattr(comm, name)
    if name == "estimators":  # scikit-learn-style estimators: needs the optional scikit-learn
        import importlib

        return importlib.import_module(".estimators", __name__)
    raise AttributeError(f"module 'mpitrain' has no attribute {name!r}")
