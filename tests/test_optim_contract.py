"""Optimizer and schedule edges against closed forms: valid limits, flattened state, schedules past their end."""
import math

import numpy as np
import pytest

from mpitrain import optim


def run(opt: optim.GradientTransformation, grads, params, lr=0.1):
    """Apply ``opt`` to ``params`` (a copy) for each gradient; return (params, state)."""
    params = np.array(params, dtype=float)
    state = opt.init(params)
    for g in grads:
        direction, state = opt.update(np.array(g, dtype=float), state, params)
        optim.apply(params, direction, lr)
    return params, state


GRADS = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [-2.0, 1.0, 0.75]]
P0 = [1.0, -2.0, 0.5]


def heavy_ball(grads, params, lr, m, nesterov=False):
    """Momentum by a plain loop: t = m t + g; step along t, or g + m t (Nesterov)."""
    p, t = np.array(params, dtype=float), np.zeros(len(params))
    for g in map(np.array, grads):
        t = m * t + g
        p = p - lr * (g + m * t if nesterov else t)
    return p


@pytest.mark.parametrize("m", [0.0, 0.5, 0.99])
@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_over_its_whole_range_is_the_heavy_ball_loop(m, nesterov):
    got, _ = run(optim.create("nesterov" if nesterov else "momentum", momentum=m), GRADS, P0)
    np.testing.assert_allclose(got, heavy_ball(GRADS, P0, 0.1, m, nesterov), rtol=1e-14)


def adam_loop(grads, params, lr, b1, b2, eps, decay=0.0, n_decayed=None):
    """Adam (and AdamW's decoupled decay on params[:n_decayed]) by a plain loop."""
    p = np.array(params, dtype=float)
    mu, nu = np.zeros_like(p), np.zeros_like(p)
    k = len(p) if n_decayed is None else n_decayed
    for t, g in enumerate(map(np.array, grads), start=1):
        mu = b1 * mu + (1 - b1) * g
        nu = b2 * nu + (1 - b2) * g * g
        d = (mu / (1 - b1**t)) / (np.sqrt(nu / (1 - b2**t)) + eps)
        d[:k] += decay * p[:k]
        p = p - lr * d
    return p


@pytest.mark.parametrize("b1, b2, eps", [(0.0, 0.0, 1e-8), (0.9, 0.999, 1e-8), (0.5, 0.9, 0.3)])
def test_adam_over_its_range_is_the_plain_loop(b1, b2, eps):
    got, state = run(optim.create("adam", betas=(b1, b2), eps=eps), GRADS, P0)
    np.testing.assert_allclose(got, adam_loop(GRADS, P0, 0.1, b1, b2, eps), rtol=1e-13)
    assert state.count == len(GRADS)


@pytest.mark.parametrize("n_decayed", [None, 0, 2])
def test_adamw_decays_exactly_the_first_n_decayed_entries(n_decayed):
    opt = optim.create("adamw", weight_decay=0.2, n_decayed=n_decayed)
    got, _ = run(opt, GRADS, P0)
    np.testing.assert_allclose(got, adam_loop(GRADS, P0, 0.1, 0.9, 0.999, 1e-8, 0.2, n_decayed), rtol=1e-13)


def test_adamw_without_decay_is_adam():
    a, _ = run(optim.create("adamw", weight_decay=0.0), GRADS, P0)
    b, _ = run(optim.create("adam"), GRADS, P0)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("max_norm", [0.5, 2.0, 5.0])
def test_clipping_scales_to_the_norm_only_when_above_it(max_norm):
    g = np.array([1.2, -1.6])  # norm 2
    opt = optim.create("sgd", clip_norm=max_norm)
    direction, _ = opt.update(g, opt.init(np.zeros(2)), np.zeros(2))
    expected = g * min(1.0, max_norm / 2.0)
    np.testing.assert_allclose(direction, expected, rtol=1e-15)


@pytest.mark.parametrize("call", [
    lambda: optim.create("momentum", momentum=-0.1),
    lambda: optim.create("adam", betas=(1.0, 0.9)),
    lambda: optim.create("adam", betas=(0.9, 1.0)),
    lambda: optim.create("adam", betas=(-0.1, 0.9)),
    lambda: optim.create("adam", betas=(0.9, -0.1)),
    lambda: optim.create("adam", eps=0.0),
    lambda: optim.create("adamw", weight_decay=-0.1),
    lambda: optim.create("sgd", clip_norm=-1.0),
    lambda: optim.schedule("step", 0.1, 10, every=0),
    lambda: optim.schedule("constant", 0.1, 10, warmup_steps=-1),
    lambda: optim.schedule("linear", 0.1, 10),
    lambda: optim.scale_lr(0.1, 8, 0),
])
def test_values_just_outside_the_valid_range_are_refused(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_flatten_and_unflatten_restore_every_leaf(name):
    opt = optim.create(name, weight_decay=0.1 if name == "adamw" else 0.0, clip_norm=1.0)
    _, state = run(opt, GRADS, P0)
    flat = optim.flatten(state)
    back = optim.unflatten(opt.init(np.zeros(3)), flat)
    np.testing.assert_array_equal(optim.flatten(back), flat)
    arrays = optim.flatten(state, counts=False)
    assert arrays.size == {"sgd": 0, "momentum": 3, "nesterov": 3, "adam": 6, "adamw": 6}[name]
    # The arrays alone: step counts stay those of the template.
    half = optim.unflatten(state, arrays / 2, counts=False)
    np.testing.assert_array_equal(optim.flatten(half, counts=False), arrays / 2)
    if name.startswith("adam"):
        saved, halved, restored = adam_of(state), adam_of(half), adam_of(back)
        assert halved.count == saved.count == restored.count == len(GRADS)
        assert isinstance(restored.count, int)
        np.testing.assert_array_equal(restored.mu, saved.mu)
        np.testing.assert_array_equal(restored.nu, saved.nu)


def adam_of(state):
    """The AdamState inside a (possibly chained) optimizer state, or None."""
    if isinstance(state, optim.AdamState):
        return state
    for part in state if isinstance(state, tuple) else ():
        found = adam_of(part)
        if found is not None:
            return found
    return None


def test_unflatten_of_the_wrong_length_names_both_lengths():
    template = optim.create("adam").init(np.zeros(3))
    with pytest.raises(ValueError, match="has 6 numbers; this optimizer needs 7"):
        optim.unflatten(template, np.zeros(6))
    assert optim.unflatten(template, None) is template


def test_apply_with_and_without_scratch():
    for scratch in (None, "separate", "direction"):
        params, direction = np.array([1.0, 2.0]), np.array([0.5, -4.0])
        buf = {None: None, "separate": np.empty(2), "direction": direction}[scratch]
        optim.apply(params, direction, 0.25, buf)
        np.testing.assert_array_equal(params, [0.875, 3.0])


def test_schedules_at_their_edges():
    step = optim.schedule("step", 1.0, 100, every=1, factor=0.5)
    assert [step(0), step(1), step(3)] == [1.0, 0.5, 0.125]
    cos = optim.schedule("cosine", 2.0, 10)
    assert cos(10) == pytest.approx(0.0, abs=1e-15) and cos(25) == pytest.approx(0.0, abs=1e-15)
    assert cos(5) == pytest.approx(1.0, abs=1e-15)
    assert cos(2) == pytest.approx(1.0 + math.cos(math.pi * 0.2), rel=1e-15)
    # All steps are warmup: the decay after it has zero steps and stays at the peak.
    full = optim.schedule("cosine", 2.0, 4, warmup_steps=4)
    assert [full(0), full(3), full(4)] == [0.5, 2.0, 2.0]
    one = optim.schedule("constant", 0.3, 10, warmup_steps=1)
    assert [one(0), one(1)] == [0.3, 0.3]
    # One warmup step delays the decay by one step: lr(t) = base(t - 1) after it.
    shifted = optim.schedule("step", 1.0, 20, warmup_steps=1, every=2, factor=0.1)
    assert [shifted(t) for t in range(5)] == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1], rel=1e-15)
    late = optim.schedule("step", 1.0, 20, warmup_steps=2, every=3, factor=0.1)
    assert [late(0), late(1), late(2), late(4), late(5)] == pytest.approx([0.5, 1.0, 1.0, 1.0, 0.1], rel=1e-15)


def test_linear_scaling_with_the_smallest_reference():
    assert optim.scale_lr(0.1, 8, 1) == pytest.approx(0.8, rel=1e-15)
    assert optim.scale_lr(0.3, 4, 12) == pytest.approx(0.1, rel=1e-15)
