"""Optimizers and schedules against values worked out by hand (two steps each)."""
import math

import numpy as np
import pytest

from mpitrain import optim

G1, G2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])  # the gradients of step 1 and step 2
LR = 0.1


def two_steps(opt: optim.GradientTransformation):
    params = np.array([1.0, -2.0])
    state = opt.init(params)
    seen = []
    for g in (G1, G2):
        direction, state = opt.update(g, state, params)
        optim.apply(params, direction, LR)
        seen.append(params.copy())
    return seen, state


def test_sgd():
    (p1, p2), _ = two_steps(optim.create("sgd"))
    np.testing.assert_allclose(p1, [0.95, -2.1], rtol=1e-15)
    np.testing.assert_allclose(p2, [1.05, -2.3], rtol=1e-15)


def test_momentum():
    (p1, p2), state = two_steps(optim.create("momentum", momentum=0.9))
    # t1 = g1 = [0.5, 1]; t2 = 0.9 t1 + g2 = [-0.55, 2.9]
    np.testing.assert_allclose(p1, [0.95, -2.1], rtol=1e-15)
    np.testing.assert_allclose(p2, [0.95 + 0.055, -2.1 - 0.29], rtol=1e-15)
    np.testing.assert_allclose(state.trace, [-0.55, 2.9], rtol=1e-15)


def test_nesterov():
    (p1, p2), _ = two_steps(optim.create("nesterov", momentum=0.9))
    # d1 = g1 + 0.9 t1 = [0.95, 1.9]; d2 = g2 + 0.9 t2 = [-1.495, 4.61]
    np.testing.assert_allclose(p1, [0.905, -2.19], rtol=1e-15)
    np.testing.assert_allclose(p2, [0.905 + 0.1495, -2.19 - 0.461], rtol=1e-14)


# Adam by hand (b1 = 0.9, b2 = 0.999, eps = 1e-8):
# step 1: mu = [0.05, 0.1], nu = [0.00025, 0.001]; bias-corrected they are g1 and g1^2, so
#         d1 = [0.5 / (0.5 + eps), 1 / (1 + eps)]
# step 2: mu = [-0.055, 0.29], nu = [0.00124975, 0.004999]; corrections 1 - 0.81 = 0.19, 1 - 0.998001
ADAM_D1 = np.array([0.5 / (0.5 + 1e-8), 1 / (1 + 1e-8)])
ADAM_D2 = np.array([(-0.055 / 0.19) / (math.sqrt(0.00124975 / 0.001999) + 1e-8),
                    (0.29 / 0.19) / (math.sqrt(0.004999 / 0.001999) + 1e-8)])


def test_adam():
    (p1, p2), state = two_steps(optim.create("adam"))
    np.testing.assert_allclose(p1, [1.0, -2.0] - LR * ADAM_D1, rtol=1e-14)
    np.testing.assert_allclose(p2, p1 - LR * ADAM_D2, rtol=1e-14)
    assert state.count == 2
    np.testing.assert_allclose(state.mu, [-0.055, 0.29], rtol=1e-14)
    np.testing.assert_allclose(state.nu, [0.00124975, 0.004999], rtol=1e-14)


def test_scale_by_adam_defaults_to_the_published_hyperparameters():
    """b1 = 0.9, b2 = 0.999, eps = 1e-8 when called bare: the hand-worked steps of test_adam."""
    (p1, p2), _ = two_steps(optim.scale_by_adam())
    np.testing.assert_allclose(p1, [1.0, -2.0] - LR * ADAM_D1, rtol=1e-14)
    np.testing.assert_allclose(p2, p1 - LR * ADAM_D2, rtol=1e-14)


def test_adamw_decays_the_weights_only():
    # n_decayed=1: the first entry is a weight, the second a bias.
    (p1, p2), _ = two_steps(optim.create("adamw", weight_decay=0.1, n_decayed=1))
    np.testing.assert_allclose(p1, [1.0 - LR * (ADAM_D1[0] + 0.1 * 1.0), -2.0 - LR * ADAM_D1[1]], rtol=1e-14)
    np.testing.assert_allclose(p2, [p1[0] - LR * (ADAM_D2[0] + 0.1 * p1[0]), p1[1] - LR * ADAM_D2[1]], rtol=1e-14)


def test_clipping_by_global_norm():
    clip = optim.create("sgd", clip_norm=1.0)
    direction, _ = clip.update(np.array([3.0, 4.0]), clip.init(np.zeros(2)), np.zeros(2))
    np.testing.assert_allclose(direction, [0.6, 0.8], rtol=1e-15)
    loose = optim.create("sgd", clip_norm=10.0)
    direction, _ = loose.update(np.array([3.0, 4.0]), loose.init(np.zeros(2)), np.zeros(2))
    np.testing.assert_array_equal(direction, [3.0, 4.0])


def test_update_is_pure():
    opt = optim.create("adam", clip_norm=0.5)
    params, grad = np.array([1.0, 2.0]), np.array([3.0, -4.0])
    state = opt.init(params)
    before = optim.flatten(state).copy()
    opt.update(grad, state, params)
    assert np.array_equal(optim.flatten(state), before)
    np.testing.assert_array_equal(grad, [3.0, -4.0])
    np.testing.assert_array_equal(params, [1.0, 2.0])


def test_state_round_trips_through_one_flat_buffer():
    opt = optim.create("adamw", weight_decay=0.1, clip_norm=1.0)
    _, state = two_steps(opt)
    arrays = optim.flatten(state, counts=False)
    assert arrays.shape == (4,)  # mu and nu
    np.testing.assert_array_equal(arrays, np.concatenate([state[1][0].mu, state[1][0].nu]))
    back = optim.unflatten(state, 2 * arrays, counts=False)
    np.testing.assert_array_equal(optim.flatten(back, counts=False), 2 * arrays)
    assert back[1][0].count == state[1][0].count == 2
    everything = optim.flatten(state)  # with the step count, for checkpoints
    assert everything.shape == (5,) and everything[0] == 2
    restored = optim.unflatten(opt.init(np.zeros(2)), everything)
    assert restored[1][0].count == 2 and isinstance(restored[1][0].count, int)
    np.testing.assert_array_equal(restored[1][0].nu, state[1][0].nu)
    with pytest.raises(ValueError, match="needs 5"):
        optim.unflatten(state, everything[:4])


def test_schedules():
    s = optim.schedule("constant", 0.5, 100)
    assert [s(0), s(99)] == [0.5, 0.5]
    s = optim.schedule("step", 1.0, 100, every=10, factor=0.5)
    assert [s(0), s(9), s(10), s(25)] == [1.0, 1.0, 0.5, 0.25]
    s = optim.schedule("cosine", 2.0, 100)
    assert s(0) == 2.0 and s(50) == pytest.approx(1.0, abs=1e-15) and s(100) == pytest.approx(0.0, abs=1e-15)
    s = optim.schedule("cosine", 2.0, 104, warmup_steps=4)
    assert [s(0), s(1), s(3)] == [0.5, 1.0, 2.0]  # linear warmup to the peak at step 3
    assert s(4) == 2.0 and s(54) == pytest.approx(1.0, abs=1e-15)


def test_step_decay_divides_by_ten_unless_told_and_a_one_step_cosine_ends_at_zero():
    assert [optim.step_decay(1.0, 10)(k) for k in (9, 10, 20)] == pytest.approx([1.0, 0.1, 0.01], rel=1e-15)
    s = optim.schedule("step", 1.0, 100, every=10)
    assert [s(9), s(10), s(20)] == pytest.approx([1.0, 0.1, 0.01], rel=1e-15)
    s = optim.schedule("cosine", 2.0, 1)
    assert s(0) == 2.0 and s(1) == pytest.approx(0.0, abs=1e-15)


def test_linear_scaling_rule():
    assert optim.scale_lr(0.1, 256, 32) == pytest.approx(0.8)


@pytest.mark.parametrize("call, message", [
    (lambda: optim.create("rmsprop"), "unknown optimizer 'rmsprop'"),
    (lambda: optim.create("adam", weight_decay=0.1), "applies to adamw only"),
    (lambda: optim.create("momentum", momentum=1.0), r"momentum must be in \[0, 1\), not 1.0"),
    (lambda: optim.create("sgd", clip_norm=0.0), "clipping norm must be > 0"),
    (lambda: optim.schedule("step", 0.1, 10), "needs a period"),
    (lambda: optim.schedule("cosine", 0.1, 10, warmup_steps=11), "warmup steps"),
])
def test_errors_name_the_bad_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_create_takes_the_name_by_position_or_keyword_and_every_option_by_keyword_only():
    """A positional option (create("momentum", 0.5)) is refused rather than taken for another."""
    with pytest.raises(TypeError):
        optim.create("momentum", 0.5)
    (p1, _), _ = two_steps(optim.create(name="sgd"))
    np.testing.assert_allclose(p1, [1.0, -2.0] - LR * G1, rtol=1e-15)
