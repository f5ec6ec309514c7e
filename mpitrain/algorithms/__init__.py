"""Distributed training: synchronous GD/SGD and model averaging (local SGD, one-shot), driven by
one loop (``loop.py``) from typed options (``config.py``)."""
from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from .. import optim
from ..comm import as_comm
from ..data import Dataset
from ..models import Model
from ..timeline import Timeline
from . import loop as _loop
from .base import Hooks, Logger, Result, State, evaluate, steps_per_epoch
from .config import (GD, LBFGS, LOCAL_STATES, LOOPS, LR, SGD, SOLVERS, Gossip, HierarchicalSGD, LocalSGD, Loop,
                     NewtonCG, Normal, OneShot, OptionError, PostLocalSGD, Reduce, SlowMo, ZeRO1)
from .settings import Settings, resolve
from .global_sampling import Deterministic
from .gossip import GossipAveraging
from .hierarchical import Hierarchical
from .local_sgd import LocalAveraging
from .post_local import PostLocal
from .slowmo import SlowMomentum
from .sync import Synchronous
from .zero import ShardedOptimizer

if TYPE_CHECKING:
    from ..comm import Comm

ALGORITHMS = tuple(LOOPS)

__all__ = ["ALGORITHMS", "GD", "SGD", "LocalSGD", "OneShot", "PostLocalSGD", "SlowMo", "HierarchicalSGD", "Gossip",
           "ZeRO1", "LBFGS", "NewtonCG", "Normal", "Reduce", "Settings", "OptionError", "Hooks", "State",
           "Result", "fit", "evaluate", "steps_per_epoch", "LOCAL_STATES"]


def fit(
    model: Model,
    data: Dataset,
    comm: "Comm",
    loop: Union[Loop, str],
    settings: Optional[Settings] = None,
    theta: Optional[np.ndarray] = None,
    log: Optional[Logger] = None,
    *,
    steps: Optional[int] = None,
    lr: Optional[LR] = None,
    optimizer: Union[str, optim.GradientTransformation, None] = None,
    l2: float = 0.0,
    seed: int = 0,
    reduce: Reduce = Reduce(),
    state: Optional[State] = None,
    hooks: Optional[Hooks] = None,
    timeline: Optional[Timeline] = None,
) -> Result:
    """Collective: train ``model`` on every rank's partition of ``data``; return the Result.

    ``comm`` is a ``Comm`` (``mt.world()``), an mpi4py intracommunicator or None (the world).
    Either typed options: ``loop`` (``GD()``, ``SGD(64)``, ``SGD(64, accumulate=4)``, ``LocalSGD(64, 4)``,
    ``OneShot(64)``, ``PostLocalSGD(64, 4, switch_step=100)``, ``SlowMo(64, 4, slow_momentum=0.5)``,
    ``HierarchicalSGD(64, 2, sync_every_global=8)``, ``Gossip(64, "ring")``, ``ZeRO1(64)``),
    ``steps``, ``lr`` (a number or a schedule ``step -> lr``), ``optimizer`` (a name in
    ``optim.OPTIMIZERS`` or any ``optim.GradientTransformation``; default sgd), ``l2``, ``seed`` and ``reduce``;
    or an algorithm name with a flat ``Settings``. The full-batch solvers (``LBFGS(..)``,
    ``NewtonCG(..)``, ``Normal()``) take no ``lr`` or optimizer (OptionError if given): ``steps`` is
    their most iterations (default 100), and they return a ``SolverResult``. The arithmetic follows ``data.X.dtype``.
    ``theta`` (n_params,) is the starting point (by default ``model.init(seed)`` broadcast from
    rank 0); ``state`` resumes a run instead; ``hooks`` receive stop votes and checkpoints
    (``mpitrain.run`` uses them); ``timeline`` records where the time goes. Afterwards
    ``result.theta`` holds the same bits on every rank; RuntimeError if it does not.

    >>> result = fit(model, data, comm, SGD(batch_size=64), steps=500, lr=0.1, optimizer="adam")  # doctest: +SKIP
    >>> result = fit(model, data, comm, "gd", Settings(steps=100, lr=0.1))  # doctest: +SKIP
    """
    options = resolve(loop, settings, model.n_penalized, "fit", steps=steps, lr=lr, optimizer=optimizer, l2=l2,
                      seed=seed, reduce=reduce)
    loop, steps, lr, optimizer, l2, seed, reduce = (options[k] for k in ("loop", "steps", "lr", "optimizer", "l2",
                                                                          "seed", "reduce"))
    if data.weight is not None:
        _check_weighted(model, loop)
    if isinstance(loop, SOLVERS):  # full-batch solvers: no learning rate or optimizer
        from .solve import fit_solver

        reduce.check(loop)
        return fit_solver(model, data, comm, loop, steps, l2, seed, theta, log, state, hooks, timeline,
                          reduce.algorithm)
    schedule = lr if callable(lr) else optim.constant(float(lr))
    rule = optim.create(optimizer, n_decayed=model.n_penalized) if isinstance(optimizer, str) else optimizer
    if not (callable(getattr(rule, "init", None)) and callable(getattr(rule, "update", None))):
        raise OptionError(f"optimizer must be a name in {optim.OPTIMIZERS} or an init/update pair, not {rule!r}")
    reduce.check(loop)
    comm = as_comm(comm)
    comm.agree_int("parameter count", model.n_params, f"the {model.name} model")
    comm.raise_if_any(_memory_error(model, data, loop.batch_size, comm.ranks_on_node()))
    message = model.check_labels(data.y, data.start) if data.y is not None else "training needs labels"
    comm.raise_if_any(message or "")
    if state is None:
        state = State(0, comm.Bcast(model.init(seed)) if theta is None else theta)
    # Parameters, gradients and optimizer state take the data's precision (float64 or float32).
    state.theta = np.array(state.theta, dtype=data.X.dtype)
    if state.theta.shape != (model.n_params,):
        raise ValueError(f"theta has shape {state.theta.shape}; this model needs ({model.n_params},)")
    timeline = timeline or Timeline()
    if isinstance(loop, (GD, SGD)):
        kind = Deterministic if loop.deterministic else Synchronous
        algorithm = kind(model, data, comm, loop, rule, schedule, l2, reduce, seed, state, timeline)
    elif isinstance(loop, ZeRO1):
        algorithm = ShardedOptimizer(model, data, comm, loop, rule, schedule, l2, reduce, seed, state, timeline)
    else:
        kinds = {PostLocalSGD: PostLocal, SlowMo: SlowMomentum, HierarchicalSGD: Hierarchical, Gossip: GossipAveraging}
        kind = kinds.get(type(loop), LocalAveraging)
        algorithm = kind(model, data, comm, loop, rule, schedule, l2, reduce, seed, state, steps, timeline)
    tol = getattr(loop, "tol", None)  # gd and sgd: scikit-learn's SGD rule
    convergence = None if tol is None else _loop.Convergence(tol, loop.n_iter_no_change)
    if convergence is not None and state.convergence is not None:  # resumed: the count goes on
        convergence.best, convergence.count = float(state.convergence[0]), int(state.convergence[1])
    result = _loop.run(algorithm, model, comm, state, steps, steps_per_epoch(data.n_total, loop.batch_size),
                       algorithm.batches.global_size, log, hooks or Hooks(), timeline, convergence)
    if not result.stopped and not comm.identical(result.theta):
        raise RuntimeError("parameters differ between ranks after training: the MPI reduction is not "
                           "bitwise reproducible across ranks; please report this with `mpitrain info`")
    return result


def _check_weighted(model: Model, loop: Loop) -> None:
    """OptionError unless ``loop`` and ``model`` train with row weights (``data.weight``)."""
    plain = isinstance(loop, (GD, SGD)) and not loop.deterministic and getattr(loop, "accumulate", 1) == 1
    if not (plain or isinstance(loop, (LBFGS, NewtonCG))):
        raise OptionError(f"row weights train with gd, sgd (without accumulate or deterministic), lbfgs or newton-cg, "
                          f"not {loop.name}{' with these options' if isinstance(loop, (GD, SGD)) else ''}")
    if "weight" not in inspect.signature(model.sums).parameters:
        raise OptionError(f"the {model.name} model's sums takes no weight keyword, so it cannot train with row "
                          "weights; give sums(theta, X, y, grad=None, ready=None, weight=None)")


def _memory_error(model: Model, data: Dataset, batch_size: Optional[int], ranks_on_node: int) -> str:
    """A message if training ``model`` cannot fit this node's memory (estimated before allocating), else "".

    The estimate is a lower bound: about eight parameter-sized vectors (parameters, gradient,
    scratch, optimizer state, checkpoint rows) and three activation arrays of this rank's batch.
    """
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return ""
    itemsize = data.X.dtype.itemsize
    rows = data.n_local if batch_size is None else -(-batch_size * max(data.n_local, 1) // max(data.n_total, 1))
    widths = list(getattr(model, "sizes", (model.n_features,)))
    if not isinstance(data.X, np.ndarray):
        widths[0] = 0  # sparse CSR rows: batches are never dense copies of width n_features
    need = itemsize * (8 * model.n_params + 3 * rows * sum(widths))
    share = physical / max(ranks_on_node, 1)
    if need <= share:
        return ""
    return (f"training this {model.name} model needs at least {need / 2**30:.1f} GiB per rank ({model.n_params:,} "
            f"parameters), but this node has {physical / 2**30:.1f} GiB for {ranks_on_node} rank(s): use a smaller "
            "model (fewer or narrower hidden layers, fewer classes), a smaller batch or fewer ranks per node")
