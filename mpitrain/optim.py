"""Optimizers as pure ``init``/``update`` pairs on plain arrays, and learning-rate schedules. NumPy only.

An optimizer turns a gradient into a step direction: ``update(grad, state, params)`` returns
``(direction, new_state)`` and the caller moves ``params -= lr_t * direction`` with ``lr_t`` from a
schedule of the global step. Keeping the learning rate outside the state means a schedule never
restarts when optimizer state is reset (local SGD), and the state is only what the rule needs:
small named tuples of arrays and counts that can be saved, broadcast or averaged.

Named optimizers are chains of small transformations, as in optax::

    adamw = chain(scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay, n_decayed))

>>> opt = create("momentum", momentum=0.9)
>>> params = np.zeros(2); state = opt.init(params)
>>> direction, state = opt.update(np.array([1.0, -1.0]), state, params)
>>> apply(params, direction, lr=0.1); params.tolist()
[-0.1, 0.1]
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

State = Any  # a named tuple, or a tuple of them (chain)
Schedule = Callable[[int], float]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


class GradientTransformation(NamedTuple):
    """A pair of pure functions: init(params) -> state; update(grad, state, params) -> (direction, state)."""

    init: Callable[[np.ndarray], State]
    update: Callable[[np.ndarray, State, np.ndarray], tuple[np.ndarray, State]]


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


class TraceState(NamedTuple):
    """Momentum buffer, shape (n_params,)."""

    trace: np.ndarray


class AdamState(NamedTuple):
    """Steps taken and the first and second moment estimates, each of shape (n_params,)."""

    count: int
    mu: np.ndarray
    nu: np.ndarray


_IDENTITY = GradientTransformation(lambda params: EmptyState(), lambda grad, state, params: (grad, state))


def identity() -> GradientTransformation:
    """The gradient itself is the direction (plain SGD)."""
    return _IDENTITY


def is_identity(rule: GradientTransformation) -> bool:
    """True for plain SGD, whose step a training loop may fuse with the gradient scaling."""
    return rule is _IDENTITY


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Scale the gradient by min(1, max_norm / ||grad||_2)."""
    if not max_norm > 0:
        raise ValueError(f"the clipping norm must be > 0, not {max_norm}")

    def update(grad: np.ndarray, state: EmptyState, params: np.ndarray) -> tuple[np.ndarray, EmptyState]:
        norm = float(np.sqrt(grad @ grad))
        return (grad * (max_norm / norm) if norm > max_norm else grad), state

    return GradientTransformation(lambda params: EmptyState(), update)


def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    """Momentum: t = decay * t + grad; direction t (heavy ball) or grad + decay * t (Nesterov)."""
    if not 0 <= decay < 1:
        raise ValueError(f"momentum must be in [0, 1), not {decay}")

    def update(grad: np.ndarray, state: TraceState, params: np.ndarray) -> tuple[np.ndarray, TraceState]:
        t = decay * state.trace + grad
        return (grad + decay * t if nesterov else t), TraceState(t)

    return GradientTransformation(lambda params: TraceState(np.zeros_like(params)), update)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    """Adam's direction mu_hat / (sqrt(nu_hat) + eps), with bias-corrected moment estimates."""
    if not (0 <= b1 < 1 and 0 <= b2 < 1 and eps > 0):
        raise ValueError(f"Adam needs 0 <= b1, b2 < 1 and eps > 0, not b1={b1}, b2={b2}, eps={eps}")

    def init(params: np.ndarray) -> AdamState:
        return AdamState(0, np.zeros_like(params), np.zeros_like(params))

    def update(grad: np.ndarray, state: AdamState, params: np.ndarray) -> tuple[np.ndarray, AdamState]:
        count = state.count + 1
        mu = b1 * state.mu + (1 - b1) * grad
        nu = b2 * state.nu + (1 - b2) * (grad * grad)
        mu_hat, nu_hat = mu / (1 - b1**count), nu / (1 - b2**count)
        return mu_hat / (np.sqrt(nu_hat) + eps), AdamState(count, mu, nu)

    return GradientTransformation(init, update)


def add_decayed_weights(weight_decay: float, n_decayed: Optional[int] = None) -> GradientTransformation:
    """direction + weight_decay * params on params[:n_decayed] (the weights; biases are not decayed)."""
    if not weight_decay >= 0:
        raise ValueError(f"weight decay must be >= 0, not {weight_decay}")

    def update(grad: np.ndarray, state: EmptyState, params: np.ndarray) -> tuple[np.ndarray, EmptyState]:
        out = grad.copy()
        k = params.size if n_decayed is None else n_decayed
        out[:k] += weight_decay * params[:k]
        return out, state

    return GradientTransformation(lambda params: EmptyState(), update)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` in order; the state is the tuple of their states."""

    def init(params: np.ndarray) -> tuple:
        return tuple(t.init(params) for t in transforms)

    def update(grad: np.ndarray, state: tuple, params: np.ndarray) -> tuple[np.ndarray, tuple]:
        new = []
        for t, s in zip(transforms, state):
            grad, s = t.update(grad, s, params)
            new.append(s)
        return grad, tuple(new)

    return GradientTransformation(init, update)


def create(
    name: str = "sgd",
    *,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    n_decayed: Optional[int] = None,
    clip_norm: Optional[float] = None,
) -> GradientTransformation:
    """An optimizer by name: sgd, momentum, nesterov, adam or adamw (decoupled weight decay).

    ``momentum`` applies to momentum and nesterov; ``betas`` and ``eps`` to adam and adamw;
    ``weight_decay`` to adamw, on params[:n_decayed]. With ``clip_norm`` the gradient is first
    clipped to that global L2 norm.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if weight_decay and name != "adamw":
        raise ValueError(f"weight decay {weight_decay} applies to adamw only; use l2 for {name}")
    rule = {
        "sgd": identity,
        "momentum": lambda: trace(momentum),
        "nesterov": lambda: trace(momentum, nesterov=True),
        "adam": lambda: scale_by_adam(*betas, eps),
        "adamw": lambda: chain(scale_by_adam(*betas, eps), add_decayed_weights(weight_decay, n_decayed)),
    }[name]()
    return rule if clip_norm is None else chain(clip_by_global_norm(clip_norm), rule)


def apply(params: np.ndarray, direction: np.ndarray, lr: float, scratch: Optional[np.ndarray] = None) -> None:
    """params -= lr * direction, in place.

    ``scratch`` (shaped like params) is overwritten instead of allocating a temporary; it may be
    ``direction`` itself when the caller owns that array and no longer needs it.
    """
    if scratch is None:
        params -= lr * direction
    else:
        np.multiply(direction, lr, out=scratch)
        params -= scratch


def flatten(state: State, counts: bool = True) -> np.ndarray:
    """Every leaf of ``state`` in one vector, in a fixed order.

    counts=True: arrays and step counts, as float64 (for checkpoints); counts=False: the arrays
    alone, in their own dtype (what local SGD averages; a step count is the same on every rank).
    """
    leaves: list[np.ndarray] = []

    def take(leaf: Any) -> Any:
        if counts:
            leaves.append(np.ravel(np.asarray(leaf, dtype=np.float64)))
        elif isinstance(leaf, np.ndarray):
            leaves.append(np.ravel(leaf))
        return leaf

    _map_leaves(take, state)
    return np.concatenate(leaves) if leaves else np.empty(0)


def unflatten(template: State, flat: Optional[np.ndarray], counts: bool = True) -> State:
    """The inverse of ``flatten``: a new state shaped like ``template`` with its leaves from ``flat``.

    ``flat`` None gives ``template`` itself; ValueError if its length does not fit the template.
    """
    if flat is None:
        return template
    need = flatten(template, counts).size
    if flat.size != need:
        raise ValueError(f"the saved optimizer state has {flat.size} numbers; this optimizer needs {need}: "
                         "resume with the same optimizer")
    position = 0

    def take(leaf: Any) -> Any:
        nonlocal position
        if isinstance(leaf, np.ndarray):
            out = flat[position : position + leaf.size].reshape(leaf.shape).astype(leaf.dtype)
            position += leaf.size
            return out
        if not counts:
            return leaf
        position += 1
        return type(leaf)(flat[position - 1])

    return _map_leaves(take, template)


def _map_leaves(fn: Callable[[Any], Any], state: State) -> State:
    """A new state with ``fn`` applied to every leaf: arrays and numbers such as step counts."""
    if isinstance(state, tuple):
        parts = [_map_leaves(fn, s) for s in state]
        return type(state)(*parts) if hasattr(state, "_fields") else tuple(parts)
    return fn(state)


# -- learning-rate schedules: functions of the global step (0, 1, ...) ---------------------------


def constant(lr: float) -> Schedule:
    """lr at every step."""
    return lambda step: lr


def step_decay(lr: float, every: int, factor: float = 0.1) -> Schedule:
    """lr * factor ** (step // every)."""
    if every < 1:
        raise ValueError(f"the step schedule needs a period >= 1, not {every}")
    return lambda step: lr * factor ** (step // every)


def cosine(lr: float, steps: int) -> Schedule:
    """lr * (1 + cos(pi * step / steps)) / 2: from lr at step 0 towards 0 at ``steps``."""
    return lambda step: lr * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(steps, 1)))


def warmup(schedule: Schedule, steps: int) -> Schedule:
    """Linear warmup: schedule(0) * (step + 1) / steps for the first ``steps``, then schedule(step - steps)."""
    if steps == 0:
        return schedule
    return lambda step: schedule(0) * (step + 1) / steps if step < steps else schedule(step - steps)


def schedule(
    name: str, lr: float, total_steps: int, warmup_steps: int = 0, every: Optional[int] = None, factor: float = 0.1
) -> Schedule:
    """A schedule by name (constant, step, cosine) after ``warmup_steps`` of linear warmup.

    The decay runs over the steps after warmup: cosine reaches 0 at ``total_steps``; step
    multiplies by ``factor`` every ``every`` steps.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup steps ({warmup_steps}) must be between 0 and the {total_steps} training steps")
    if name == "step":
        if every is None:
            raise ValueError("the step schedule needs a period (decay every N steps)")
        base = step_decay(lr, every, factor)
    elif name == "cosine":
        base = cosine(lr, total_steps - warmup_steps)
    else:
        base = constant(lr)
    return warmup(base, warmup_steps)


def scale_lr(lr: float, batch_size: int, reference_batch_size: int) -> float:
    """The linear scaling rule (Goyal et al. 2017): lr * batch_size / reference_batch_size."""
    if reference_batch_size < 1:
        raise ValueError(f"the reference batch size must be >= 1, not {reference_batch_size}")
    return lr * batch_size / reference_batch_size
