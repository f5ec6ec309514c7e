"""``Settings``: a training run as one flat record of plain values (what flags and configuration
files give), and the typed options of ``config.py`` it stands for."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Union

from .. import optim
from .config import (GD, LBFGS, LOOPS, LR, SGD, SOLVERS, Gossip, HierarchicalSGD, LocalSGD, Loop, NewtonCG, Normal,
                     OneShot, OptionError, PostLocalSGD, Reduce, SlowMo, ZeRO1, as_loop, check_first_order,
                     check_training, solver_steps)

# The fields that shape gradient steps: a solver refuses any of them set away from its default.
FIRST_ORDER = ("optimizer", "momentum", "betas", "eps", "weight_decay", "clip_norm", "schedule", "warmup_steps",
               "decay_every", "decay_factor")

SOLVER_TOL = 1e-4  # the solvers' default gradient test, scikit-learn's


@dataclass
class Settings:
    """A training run as one flat record of plain values (what flags and config files give).

    steps : number of (local) steps; lr : peak step size (gradient steps need it; the solvers
    lbfgs, newton-cg and normal refuse it, and any optimizer or schedule field away from its
    default); l2 : weight of (l2/2)||w||^2 (bias free);
    batch_size : global mini-batch (None for full batch); sync_every : local steps between
    averages (local SGD); seed : sampling seed (and the MLP's initialisation).

    optimizer : sgd, momentum, nesterov, adam or adamw, with ``momentum``, ``betas``, ``eps`` and
    ``weight_decay`` (adamw, weights only); clip_norm : clip the reduced gradient (the local
    one in local SGD) to this global norm; schedule : constant, step (times ``decay_factor``
    every ``decay_every`` steps) or cosine, after ``warmup_steps`` of linear warmup;
    local_state : see ``LocalSGD``; allreduce, compress, overlap : see ``Reduce``; accumulate
    (sgd), switch_step (post-local-sgd), sync_every_global (hierarchical-sgd), graph and
    consensus_every (gossip), slow_momentum and slow_lr (slowmo), max_drift and drift_action
    (averaging algorithms): see the loop option of each algorithm; history : see ``LBFGS``; tol :
    the gradient test of ``LBFGS`` and ``NewtonCG`` (None: 1e-4), or with ``n_iter_no_change``
    scikit-learn's SGD rule for ``GD`` and ``SGD`` (None: off).
    """

    steps: int
    lr: Optional[float] = None
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
    accumulate: Optional[int] = None
    switch_step: Optional[int] = None
    sync_every_global: Optional[int] = None
    graph: Optional[str] = None
    consensus_every: Optional[int] = None
    sampling: Optional[str] = None
    deterministic: bool = False
    slow_momentum: Optional[float] = None
    slow_lr: Optional[float] = None
    max_drift: Optional[float] = None
    drift_action: str = "warn"
    history: int = 10
    tol: Optional[float] = None
    n_iter_no_change: int = 5

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
            return GD(self.deterministic, self.tol, self.n_iter_no_change)
        solver_tol = SOLVER_TOL if self.tol is None else self.tol
        if algorithm == "lbfgs":
            return LBFGS(self.history, solver_tol)
        if algorithm == "newton-cg":
            return NewtonCG(solver_tol)
        if algorithm == "normal":
            return Normal()
        if self.batch_size is None:
            raise OptionError(f"{algorithm} needs batch_size (the global mini-batch)")
        if algorithm == "sgd":
            return SGD(self.batch_size, self.accumulate or 1, self.sampling or "local", self.deterministic, self.tol,
                       self.n_iter_no_change)
        if algorithm == "one-shot":
            return OneShot(self.batch_size, self.local_state)
        if algorithm == "zero-1":
            return ZeRO1(self.batch_size)
        if algorithm == "gossip":
            return Gossip(self.batch_size, self.graph or "ring", self.consensus_every or 10, self.local_state)
        if self.sync_every is None:
            raise OptionError(f"{algorithm} needs sync_every (local steps between averages)")
        common = (self.batch_size, self.sync_every, self.local_state, self.max_drift, self.drift_action)
        if algorithm == "post-local-sgd":
            return PostLocalSGD(*common, switch_step=self.switch_step)
        if algorithm == "slowmo":
            slow = {k: v for k, v in (("slow_momentum", self.slow_momentum), ("slow_lr", self.slow_lr)) if v is not None}
            return SlowMo(*common, **slow)
        if algorithm == "hierarchical-sgd":
            return HierarchicalSGD(*common, sync_every_global=self.sync_every_global)
        return LocalSGD(*common)

    def options(self, algorithm: str, n_decayed: int) -> dict:
        """The keyword options of ``fit`` and ``train`` that these settings describe for ``algorithm``."""
        loop = self.loop(algorithm)
        if isinstance(loop, SOLVERS):
            defaults = {f.name: f.default for f in fields(self)}
            check_first_order(loop, lr=self.lr, **{name: getattr(self, name) for name in FIRST_ORDER
                                                    if getattr(self, name) != defaults[name]})
            return {"loop": loop, "steps": self.steps, "l2": self.l2, "seed": self.seed, "reduce": self.reduce()}
        if self.lr is None:
            raise OptionError(f"{algorithm} takes gradient steps and needs lr (the step size)")
        return {"loop": loop, "steps": self.steps, "lr": self.lr_schedule(),
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


def resolve(loop: Union[Loop, str], settings: Optional[Settings], n_decayed: int, caller: str, *,
            steps: Optional[int], lr: Optional[LR], optimizer: Union[str, optim.GradientTransformation, None],
            l2: float, seed: int, reduce: Reduce) -> dict:
    """The checked keywords of one training: loop, steps, lr, optimizer, l2, seed and reduce.

    From a flat ``settings`` (``loop`` then names the algorithm) or from ``caller``'s keywords
    (``caller``: "fit" or "train", for the message). A solver takes no lr or optimizer (OptionError
    naming the one given) and its steps default to ``solver_steps``; a gradient loop needs steps
    and lr, and its optimizer defaults to "sgd".
    """
    if settings is not None:
        if not isinstance(loop, str):
            raise OptionError("with Settings, name the algorithm (e.g. 'sgd'); or pass a loop option without Settings")
        given = settings.options(loop, n_decayed)
    else:
        given = {"loop": loop, "steps": steps, "lr": lr, "optimizer": optimizer, "l2": l2, "seed": seed,
                 "reduce": reduce}
    options = {"lr": None, "optimizer": None, **given}
    options["loop"] = chosen = as_loop(options["loop"])
    if isinstance(chosen, SOLVERS):
        check_first_order(chosen, lr=options["lr"], optimizer=options["optimizer"])
        if options["steps"] is None:
            options["steps"] = solver_steps(chosen)
    elif options["steps"] is None or options["lr"] is None:
        raise OptionError(f"{caller} needs steps and lr (or a Settings)")
    elif options["optimizer"] is None:
        options["optimizer"] = "sgd"
    check_training(options["steps"], options["lr"], options["l2"], options["seed"])
    return options
