"""Typed training options that check themselves once, in library words.

A run is described by a loop (``GD()``, ``SGD(batch_size=64)``, ``LocalSGD(64, sync_every=4)``,
``OneShot(64)``), a reduction (``Reduce("auto", compress=None, overlap=False)``), an optimizer
(any ``optim.GradientTransformation`` pair, or a name) and a step size (a number or any schedule
callable ``step -> lr``). Each raises ``OptionError`` (a ``ValueError``) with the values and the
fix when it is built wrong; the command line translates the names into its flags.

``Settings`` (``settings.py``) is the same description as one flat record of plain values, as flags and
configuration files give it; ``Settings.loop()``, ``.reduce()``, ``.optimizer(model)`` and
``.schedule()`` build the typed options from it.

>>> loop, reduce = SGD(batch_size=64), Reduce(overlap=True)
>>> SGD(batch_size=0)
Traceback (most recent call last):
...
mpitrain.algorithms.config.OptionError: batch_size must be an integer >= 1, not 0
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Union


LOCAL_STATES = ("keep", "average", "reset")
DRIFT_ACTIONS = ("warn", "stop")
SAMPLINGS = ("local", "global")
COMPRESSIONS = ("fp16", "bf16")
LR = Union[float, Callable[[int], float]]


class OptionError(ValueError):
    """A training option with a bad value or an impossible combination."""


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{name} must be an integer >= 1, not {value!r}")


def _non_negative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 and math.isfinite(value)):
        raise OptionError(f"{name} must be a finite number >= 0, not {value!r}")


@dataclass(frozen=True)
class GD:
    """Full-batch gradient descent: every step uses every row.

    ``deterministic``: sum row by row in fixed point, so the parameters are bitwise the same at
    any number of ranks (slower: one model call per row). ``tol``: stop as ``Convergence`` says
    (scikit-learn's SGD rule on each step's objective; None: run every step).
    """

    deterministic: bool = False
    tol: Optional[float] = None
    n_iter_no_change: int = 5
    name = "gd"
    batch_size = None

    def __post_init__(self) -> None:
        _check_tol(self.tol, self.n_iter_no_change)


def _check_tol(tol: object, n_iter_no_change: object) -> None:
    if tol is not None:
        _non_negative("tol", tol)
    _positive_int("n_iter_no_change", n_iter_no_change)


@dataclass(frozen=True)
class SGD:
    """Synchronous mini-batch SGD; ``batch_size`` is the global batch, split over ranks by their rows.

    ``accumulate`` K > 1 computes each rank's share in K micro-batches (about batch_size / K
    rows in all), summing their gradients before the step's one reduction: the same step with
    less memory for activations. ``sampling`` "global" draws each batch from one order of all N
    rows, so the batches are the same at any number of ranks (each rank takes the rows it holds);
    ``deterministic`` (with global sampling) also makes the sums exact, so the parameters are
    bitwise the same at any number of ranks. ``tol``: stop as ``Convergence`` says (scikit-learn's
    SGD rule on each epoch's mean training loss; None: run every step).
    """

    batch_size: int
    accumulate: int = 1
    sampling: str = "local"
    deterministic: bool = False
    tol: Optional[float] = None
    n_iter_no_change: int = 5
    name = "sgd"

    def __post_init__(self) -> None:
        _positive_int("batch_size", self.batch_size)
        _check_tol(self.tol, self.n_iter_no_change)
        _positive_int("accumulate", self.accumulate)
        if self.sampling not in SAMPLINGS:
            raise OptionError(f"unknown sampling {self.sampling!r}; choose one of {', '.join(SAMPLINGS)}")
        if self.deterministic and self.sampling != "global":
            raise OptionError("deterministic needs sampling='global': with local sampling the batches themselves "
                              "depend on the number of ranks")
        if self.deterministic and self.accumulate > 1:
            raise OptionError("deterministic computes the batch row by row already; drop accumulate")
        if self.accumulate > self.batch_size:
            raise OptionError(f"accumulate={self.accumulate} splits a batch of {self.batch_size} into more "
                              "micro-batches than it has rows; use accumulate <= batch_size")


@dataclass(frozen=True)
class LocalSGD:
    """``sync_every`` local SGD steps per rank, then parameters averaged with weights n_k/N.

    ``local_state``: at an averaging, keep each rank's optimizer state, average it, or reset it.
    ``max_drift``: at an averaging, if the replicas' spread (the n_k/N-weighted root mean square
    of ||theta_k - mean||, logged as ``drift_rms``) exceeds it, ``drift_action`` "warn" prints a
    warning on rank 0 and "stop" ends the run with an error.
    """

    batch_size: int
    sync_every: int
    local_state: str = "keep"
    max_drift: Optional[float] = None
    drift_action: str = "warn"
    name = "local-sgd"

    def __post_init__(self) -> None:
        _positive_int("batch_size", self.batch_size)
        _positive_int("sync_every", self.sync_every)
        if self.local_state not in LOCAL_STATES:
            raise OptionError(f"unknown local_state {self.local_state!r}; choose one of {', '.join(LOCAL_STATES)}")
        _check_drift(self.max_drift, self.drift_action)


def _check_drift(max_drift: Optional[float], action: str) -> None:
    if max_drift is not None:
        _non_negative("max_drift", max_drift)
    if action not in DRIFT_ACTIONS:
        raise OptionError(f"unknown drift_action {action!r}; choose one of {', '.join(DRIFT_ACTIONS)}")


@dataclass(frozen=True)
class PostLocalSGD(LocalSGD):
    """Synchronous SGD for the first ``switch_step`` steps, then local SGD with period ``sync_every``
    (Lin et al. 2020, "Don't use large mini-batches, use local SGD")."""

    switch_step: Optional[int] = None
    name = "post-local-sgd"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.switch_step is None:
            raise OptionError("post-local-sgd needs switch_step (synchronous steps before local SGD)")
        if isinstance(self.switch_step, bool) or not isinstance(self.switch_step, int) or self.switch_step < 0:
            raise OptionError(f"switch_step must be an integer >= 0, not {self.switch_step!r}")


@dataclass(frozen=True)
class SlowMo(LocalSGD):
    """Local SGD whose averagings take an outer momentum step (Wang et al. 2020, "SlowMo").

    At an averaging with step size lr: u = slow_momentum * u + (x0 - mean) / lr, then
    theta = x0 - slow_lr * lr * u, where x0 is theta after the previous averaging. With
    slow_momentum 0 and slow_lr 1 this is local SGD (to rounding).
    """

    slow_momentum: float = 0.5
    slow_lr: float = 1.0
    name = "slowmo"

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative("slow_momentum", self.slow_momentum)
        if self.slow_momentum >= 1:
            raise OptionError(f"slow_momentum must be below 1, not {self.slow_momentum!r}")
        _non_negative("slow_lr", self.slow_lr)
        if self.slow_lr == 0:
            raise OptionError("slow_lr must be > 0, not 0")


@dataclass(frozen=True)
class OneShot:
    """Local SGD averaged once, at the end (``LocalSGD`` with sync_every = all steps)."""

    batch_size: int
    local_state: str = "keep"
    name = "one-shot"

    def __post_init__(self) -> None:
        LocalSGD(self.batch_size, 1, self.local_state)


@dataclass(frozen=True)
class HierarchicalSGD(LocalSGD):
    """Local SGD on two levels: models averaged inside each node (the ranks that share memory) every
    ``sync_every`` steps, and over all ranks every ``sync_every_global`` steps."""

    sync_every_global: Optional[int] = None
    name = "hierarchical-sgd"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sync_every_global is None:
            raise OptionError("hierarchical-sgd needs sync_every_global (local steps between averages over all ranks)")
        _positive_int("sync_every_global", self.sync_every_global)


@dataclass(frozen=True)
class ZeRO1:
    """Synchronous SGD with the optimizer state sharded over ranks (ZeRO stage 1): reduce-scatter
    the gradient, update this rank's block of parameters, allgather them."""

    batch_size: int
    name = "zero-1"

    def __post_init__(self) -> None:
        _positive_int("batch_size", self.batch_size)


GRAPHS = ("ring", "exponential", "complete")


@dataclass(frozen=True)
class Gossip:
    """Decentralized SGD: a local step, then a mean with the neighbours on ``graph`` (ring,
    exponential or complete), every step; ``consensus_every`` steps between the reductions that
    log the loss and the exact consensus distance (``drift_rms``); one exact average at the end."""

    batch_size: int
    graph: str = "ring"
    consensus_every: int = 10
    local_state: str = "keep"
    name = "gossip"
    sync_every = 1  # it mixes every step

    def __post_init__(self) -> None:
        LocalSGD(self.batch_size, 1, self.local_state)
        _positive_int("consensus_every", self.consensus_every)
        if self.graph not in GRAPHS:
            raise OptionError(f"unknown graph {self.graph!r}; choose one of {', '.join(GRAPHS)}")


@dataclass(frozen=True)
class LBFGS:
    """Full-batch L-BFGS (``algorithms.lbfgs``) with ``history`` curvature pairs; it stops when the
    largest gradient entry is at most ``tol`` (scikit-learn's meaning), ``steps`` being the most
    iterations. It needs no learning rate."""

    history: int = 10
    tol: float = 1e-4
    name = "lbfgs"
    batch_size = None

    def __post_init__(self) -> None:
        _positive_int("history", self.history)
        _non_negative("tol", self.tol)


@dataclass(frozen=True)
class NewtonCG:
    """Truncated Newton (``algorithms.newton_cg``) for the linear, logistic and softmax models: at most
    ``max_inner`` conjugate-gradient products per step; stops as ``LBFGS`` does, at ``tol``."""

    tol: float = 1e-4
    max_inner: int = 200
    name = "newton-cg"
    batch_size = None

    def __post_init__(self) -> None:
        _non_negative("tol", self.tol)
        _positive_int("max_inner", self.max_inner)


@dataclass(frozen=True)
class Normal:
    """The exact ridge solution of linear regression in one step (``algorithms.normal``); refuses a
    d x d system larger than ``memory_limit`` bytes per rank."""

    memory_limit: int = 2 << 30
    name = "normal"
    batch_size = None

    def __post_init__(self) -> None:
        _positive_int("memory_limit", self.memory_limit)


SOLVERS = (LBFGS, NewtonCG, Normal)  # full-batch solvers: no learning rate, they stop when they converge
Loop = Union[GD, SGD, LocalSGD, OneShot, PostLocalSGD, SlowMo, HierarchicalSGD, Gossip, ZeRO1, LBFGS, NewtonCG, Normal]
LOOPS: dict[str, type] = {"gd": GD, "sgd": SGD, "local-sgd": LocalSGD, "one-shot": OneShot,
                          "post-local-sgd": PostLocalSGD, "slowmo": SlowMo, "hierarchical-sgd": HierarchicalSGD,
                          "gossip": Gossip, "zero-1": ZeRO1, "lbfgs": LBFGS, "newton-cg": NewtonCG, "normal": Normal}


def as_loop(loop: Union[Loop, str]) -> Loop:
    """``loop`` itself, or the default options of "gd", "lbfgs", "newton-cg" or "normal"; else OptionError."""
    if isinstance(loop, tuple(LOOPS.values())):
        return loop
    if loop in ("gd", "lbfgs", "newton-cg", "normal"):
        return LOOPS[loop]()
    if isinstance(loop, str) and loop in LOOPS:
        raise OptionError(f"{loop} needs options: pass {LOOPS[loop].__name__}(batch_size=...) instead of {loop!r}")
    raise OptionError("loop must be GD(), SGD(..), LocalSGD(..), OneShot(..), LBFGS(..), NewtonCG(..) or Normal() "
                      f"(or 'gd', 'lbfgs', 'newton-cg', 'normal'), not {loop!r}")


@dataclass(frozen=True)
class Reduce:
    """How gradients (or parameters) are summed over ranks.

    algorithm : "auto", "native" or one of ``collectives.ALGORITHMS``; compress : "fp16" or "bf16"
    gradients on the wire with error feedback (gd and sgd); overlap : reduce each layer's gradient
    while the backward pass goes on (gd and sgd, rank-ordered: the bits of algorithm="ordered").
    """

    algorithm: str = "auto"
    compress: Optional[str] = None
    overlap: bool = False

    def __post_init__(self) -> None:
        from ..collectives import ALGORITHMS

        if self.algorithm != "auto" and self.algorithm not in ALGORITHMS:
            raise OptionError(f"unknown allreduce algorithm {self.algorithm!r}; choose auto or one of "
                              f"{', '.join(ALGORITHMS)}")
        if self.compress is not None and self.compress not in COMPRESSIONS:
            raise OptionError(f"unknown compression {self.compress!r}; choose one of {', '.join(COMPRESSIONS)}")
        if self.overlap and (self.compress is not None or self.algorithm not in ("auto", "ordered")):
            raise OptionError(
                "overlap reduces gradients with the rank-ordered algorithm, exactly; it cannot be combined "
                f"with allreduce={self.algorithm!r} or compress={self.compress!r} (use allreduce='auto' or "
                "'ordered' and no compression)"
            )

    def check(self, loop: Loop) -> None:
        """OptionError if this reduction does not apply to ``loop``."""
        if isinstance(loop, SGD) and loop.accumulate > 1 and self.overlap:
            raise OptionError("overlap reduces during the one backward pass of a step; it cannot be combined with "
                              f"accumulate={loop.accumulate} (drop one of them)")
        if getattr(loop, "deterministic", False) and (self.compress or self.overlap):
            raise OptionError("deterministic sums every row exactly in fixed point; it cannot be combined with "
                              f"compress={self.compress!r} or overlap={self.overlap}")
        if isinstance(loop, ZeRO1) and (self.compress or self.overlap or self.algorithm not in ("auto", "ring", "native")):
            raise OptionError("zero-1 reduce-scatters with the ring (allreduce 'auto' or 'ring') or the MPI library "
                              f"('native'), without compress or overlap; not allreduce={self.algorithm!r}, "
                              f"compress={self.compress!r}, overlap={self.overlap}")
        if isinstance(loop, (LocalSGD, OneShot, Gossip, *SOLVERS)) and (self.compress or self.overlap):
            what = "compress" if self.compress else "overlap"
            how = "takes full-batch solver steps" if isinstance(loop, SOLVERS) else "averages parameters after local steps"
            raise OptionError(f"{what} applies to the gradient reduction of gd and sgd, not to {loop.name}, which {how}")


def solver_steps(loop: Loop) -> int:
    """A solver's most iterations by default: 1 for normal (one exact solve), else 100 (scikit-learn's max_iter)."""
    return 1 if isinstance(loop, Normal) else 100


def check_first_order(loop: Loop, **given: object) -> None:
    """OptionError naming the first keyword in ``given`` (name -> value; None when not given) if ``loop`` is
    a solver, which takes no gradient steps and so has no use for a step size, an optimizer or a schedule."""
    if not isinstance(loop, SOLVERS):
        return
    how = "solves the normal equations exactly" if isinstance(loop, Normal) else "chooses its own step sizes"
    for name, value in given.items():
        if value is not None:
            raise OptionError(f"{name} does not apply to {loop.name}, which {how}: drop {name}={value!r}")


def check_lr(lr: LR) -> None:
    """OptionError unless ``lr`` is a finite number > 0 or a callable schedule."""
    if callable(lr):
        return
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise OptionError(f"lr must be a finite number > 0 (or a schedule: a function of the step), not {lr!r}")


def check_training(steps: int, lr: Optional[LR], l2: float, seed: int) -> None:
    """OptionError naming the first bad one of the options every loop takes (``lr`` None: not given)."""
    _positive_int("steps", steps)
    if lr is not None:
        check_lr(lr)
    _non_negative("l2", l2)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise OptionError(f"seed must be an integer in [0, 2**63), not {seed!r}")
