"""Typed training options that check themselves once, in library words.

A run is described by a loop (``GD()``, ``SGD(batch_size=64)``, ``LocalSGD(64, sync_every=4)``,
``OneShot(64)``), a reduction (``Reduce("auto", compress=None, overlap=False)``), an optimizer
(any ``optim.GradientTransformation`` pair, or a name) and a step size (a number or any schedule
callable ``step -> lr``). Each raises ``OptionError`` (a ``ValueError``) with the values and the
fix when it is built wrong; the command line translates the names into its flags.

``Settings`` is the same description as one flat record of plain values, as flags and
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

from .. import optim

LOCAL_STATES = ("keep", "average", "reset")
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
    """Full-batch gradient descent: every step uses every row."""

    name = "gd"
    batch_size = None


@dataclass(frozen=True)
class SGD:
    """Synchronous mini-batch SGD; ``batch_size`` is the global batch, split over ranks by their rows."""

    batch_size: int
    name = "sgd"

    def __post_init__(self) -> None:
        _positive_int("batch_size", self.batch_size)


@dataclass(frozen=True)
class LocalSGD:
    """``sync_every`` local SGD steps per rank, then parameters averaged with weights n_k/N.

    ``local_state``: at an averaging, keep each rank's optimizer state, average it, or reset it.
    """

    batch_size: int
    sync_every: int
    local_state: str = "keep"
    name = "local-sgd"

    def __post_init__(self) -> None:
        _positive_int("batch_size", self.batch_size)
        _positive_int("sync_every", self.sync_every)
        if self.local_state not in LOCAL_STATES:
            raise OptionError(f"unknown local_state {self.local_state!r}; choose one of {', '.join(LOCAL_STATES)}")


@dataclass(frozen=True)
class OneShot:
    """Local SGD averaged once, at the end (``LocalSGD`` with sync_every = all steps)."""

    batch_size: int
    local_state: str = "keep"
    name = "one-shot"

    def __post_init__(self) -> None:
        LocalSGD(self.batch_size, 1, self.local_state)


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
Loop = Union[GD, SGD, LocalSGD, OneShot, LBFGS, NewtonCG, Normal]
LOOPS: dict[str, type] = {"gd": GD, "sgd": SGD, "local-sgd": LocalSGD, "one-shot": OneShot,
                          "lbfgs": LBFGS, "newton-cg": NewtonCG, "normal": Normal}


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
        if isinstance(loop, (LocalSGD, OneShot)) and (self.compress or self.overlap):
            what = "compress" if self.compress else "overlap"
            raise OptionError(f"{what} applies to the gradient reduction of gd and sgd, not to {loop.name}, "
                              "which averages parameters after local steps")


def check_lr(lr: LR) -> None:
    """OptionError unless ``lr`` is a finite number > 0 or a callable schedule."""
    if callable(lr):
        return
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise OptionError(f"lr must be a finite number > 0 (or a schedule: a function of the step), not {lr!r}")


def check_training(steps: int, lr: LR, l2: float, seed: int) -> None:
    """OptionError naming the first bad one of the options every loop takes."""
    _positive_int("steps", steps)
    check_lr(lr)
    _non_negative("l2", l2)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise OptionError(f"seed must be an integer in [0, 2**63), not {seed!r}")


@dataclass
class Settings:
    """A training run as one flat record of plain values (what flags and config files give).

    steps : number of (local) steps; lr : peak step size; l2 : weight of (l2/2)||w||^2 (bias free);
    batch_size : global mini-batch (None for full batch); sync_every : local steps between
    averages (local SGD); seed : sampling seed (and the MLP's initialisation).

    optimizer : sgd, momentum, nesterov, adam or adamw, with ``momentum``, ``betas``, ``eps`` and
    ``weight_decay`` (adamw, weights only); clip_norm : clip the reduced gradient (the local
    one in local SGD) to this global norm; schedule : constant, step (times ``decay_factor``
    every ``decay_every`` steps) or cosine, after ``warmup_steps`` of linear warmup;
    local_state : see ``LocalSGD``; allreduce, compress, overlap : see ``Reduce``; history, tol :
    see ``LBFGS`` (tol also ``NewtonCG``).
    """

    steps: int
    lr: float
    l2: float = 0.0
    batch_size: Optional[int] = None
    sync_every: Optional[int] = None
    seed: int = 0
    optimizer: str = "sgd"
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: Optional[float] = None
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_every: Optional[int] = None
    decay_factor: float = 0.1
    local_state: str = "keep"
    allreduce: str = "auto"
    compress: Optional[str] = None
    overlap: bool = False
    history: int = 10
    tol: float = 1e-4

    def __post_init__(self) -> None:
        check_training(self.steps, self.lr, self.l2, self.seed)
        if not (isinstance(self.decay_factor, (int, float)) and 0 < self.decay_factor <= 1):
            raise OptionError(f"decay_factor must be in (0, 1] (the step schedule multiplies lr by it), "
                              f"not {self.decay_factor!r}")
        self.reduce()

    def loop(self, algorithm: str) -> Loop:
        """The loop options of ``algorithm`` (a name in ``LOOPS``) from these settings.

        One Settings may serve several algorithms: each takes the fields it uses (gd ignores
        batch_size; only local-sgd reads sync_every and local_state). OptionError if a field it
        needs is missing.
        """
        if algorithm not in LOOPS:
            raise OptionError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(LOOPS)}")
        if algorithm == "gd":
            return GD()
        if algorithm == "lbfgs":
            return LBFGS(self.history, self.tol)
        if algorithm == "newton-cg":
            return NewtonCG(self.tol)
        if algorithm == "normal":
            return Normal()
        if self.batch_size is None:
            raise OptionError(f"{algorithm} needs batch_size (the global mini-batch)")
        if algorithm == "sgd":
            return SGD(self.batch_size)
        if algorithm == "one-shot":
            return OneShot(self.batch_size, self.local_state)
        if self.sync_every is None:
            raise OptionError("local-sgd needs sync_every (local steps between averages)")
        return LocalSGD(self.batch_size, self.sync_every, self.local_state)

    def options(self, algorithm: str, n_decayed: int) -> dict:
        """The keyword options of ``fit`` and ``train`` that these settings describe for ``algorithm``."""
        return {"loop": self.loop(algorithm), "steps": self.steps, "lr": self.lr_schedule(),
                "optimizer": self.optimizer_rule(n_decayed), "l2": self.l2, "seed": self.seed,
                "reduce": self.reduce()}

    def reduce(self) -> Reduce:
        """The reduction options."""
        return Reduce(self.allreduce, self.compress, self.overlap)

    def optimizer_rule(self, n_decayed: int) -> optim.GradientTransformation:
        """The optimizer these settings name; weight decay acts on params[:n_decayed]."""
        try:
            return optim.create(self.optimizer, momentum=self.momentum, betas=self.betas, eps=self.eps,
                                weight_decay=self.weight_decay, n_decayed=n_decayed, clip_norm=self.clip_norm)
        except ValueError as exc:
            raise OptionError(str(exc)) from None

    def lr_schedule(self) -> optim.Schedule:
        """The learning rate of each step."""
        try:
            return optim.schedule(self.schedule, self.lr, self.steps, self.warmup_steps, self.decay_every,
                                  self.decay_factor)
        except ValueError as exc:
            raise OptionError(str(exc)) from None
