"""The line search's rules against independent references: the cubic's minimiser against the
roots of its derivative (numpy.roots), each accepted step against the strong Wolfe conditions
computed here, and the probes it makes against the rules its docstrings state. Serial, no MPI."""
import math

import numpy as np
import pytest

from mpitrain.algorithms.linesearch import Point, cubic_minimum, strong_wolfe


def on_cubic(coefficients, t: float) -> Point:
    """The point at step t of c0 + c1 t + c2 t^2 + c3 t^3, with value and slope."""
    c0, c1, c2, c3 = coefficients
    return Point(t, c0 + c1 * t + c2 * t * t + c3 * t ** 3, c1 + 2 * c2 * t + 3 * c3 * t * t)


def local_minimum(coefficients) -> float | None:
    """The cubic's local minimiser: the real root of its derivative where the curvature is positive."""
    _, c1, c2, c3 = coefficients
    for root in np.roots([3 * c3, 2 * c2, c1]):
        if abs(root.imag) < 1e-12 and 2 * c2 + 6 * c3 * root.real > 0:
            return float(root.real)
    return None


def recorded(phi):
    """phi as a probe that records every step it is asked for."""
    steps: list[float] = []

    def probe(a: float):
        steps.append(a)
        value, slope = phi(a)
        return value, slope, f"payload at {a}"

    return probe, steps


@pytest.mark.parametrize("seed", range(40))
def test_cubic_minimum_is_where_the_cubic_s_derivative_vanishes_with_positive_curvature(seed):
    rng = np.random.default_rng(seed)
    coefficients = rng.normal(size=4)
    a, b = on_cubic(coefficients, rng.uniform(-2, 0)), on_cubic(coefficients, rng.uniform(0.1, 2))
    expected = local_minimum(coefficients)
    for first, second in ((a, b), (b, a)):  # the order of the two points must not matter
        found = cubic_minimum(first, second)
        if expected is None:
            assert found is None
        else:
            assert found == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("coefficients, steps", [
    ((0.0, 1.0, 0.0, 1.0), (-1.0, 2.0)),     # t + t^3 rises everywhere: no critical point
    ((-1.0, 3.0, -3.0, 1.0), (0.0, 3.0)),    # (t - 1)^3: one double critical point, an inflection
    ((2.0, -1.0, 0.0, 0.0), (0.0, 5.0)),     # a line
    ((0.0, 0.0, -1.0, 0.0), (-1.0, 1.0)),    # a concave parabola: a maximum, no minimum
    ((0.0, 0.0, -1.0, 0.0), (0.0, 1.0)),
])
def test_cubic_minimum_is_none_where_the_cubic_has_no_local_minimum(coefficients, steps):
    a, b = (on_cubic(coefficients, t) for t in steps)
    assert local_minimum(coefficients) is None  # the premise, checked independently
    assert cubic_minimum(a, b) is None
    assert cubic_minimum(b, a) is None


def test_cubic_minimum_of_a_parabola_is_its_vertex():
    parabola = (4.0, -4.0, 1.0, 0.0)  # (t - 2)^2
    for steps in ((0.0, 1.0), (3.0, 1.0), (-5.0, 7.0)):
        assert cubic_minimum(*(on_cubic(parabola, t) for t in steps)) == pytest.approx(2.0, abs=1e-12)


def test_a_first_step_that_meets_both_conditions_is_taken_with_one_probe_and_its_payload():
    probe, steps = recorded(lambda a: ((a - 2) ** 2, 2 * (a - 2)))
    outcome = strong_wolfe(probe, Point(0.0, 4.0, -4.0), 1.0)
    assert steps == [1.0] and outcome.evaluations == 1
    assert outcome.point == Point(1.0, 1.0, -2.0, "payload at 1.0")


def test_the_conditions_hold_at_equality():
    # sufficient decrease with equality: phi(1) = -1 = phi(0) + 0.5 * 1 * phi'(0); slope 0 there
    probe, steps = recorded(lambda a: (a * a - 2 * a, 2 * a - 2))
    outcome = strong_wolfe(probe, Point(0.0, 0.0, -2.0), 1.0, c1=0.5)
    assert steps == [1.0] and outcome.point.step == 1.0
    # curvature with equality: |phi'(2)| = 4 = 0.5 |phi'(0)| for phi = (a - 4)^2
    probe, steps = recorded(lambda a: ((a - 4) ** 2, 2 * (a - 4)))
    outcome = strong_wolfe(probe, Point(0.0, 16.0, -8.0), 2.0, c2=0.5)
    assert steps == [2.0] and outcome.point.step == 2.0


def test_on_an_unbounded_line_the_step_grows_fourfold_until_the_budget_and_the_last_is_returned():
    # a line has no cubic minimum, so each next step is the largest allowed, 4 times the last
    probe, steps = recorded(lambda a: (-a, -1.0))
    outcome = strong_wolfe(probe, Point(0.0, 0.0, -1.0), 1.0)
    assert steps == [4.0 ** k for k in range(20)]
    assert outcome.evaluations == 20 and outcome.point.step == 4.0 ** 19
    probe, steps = recorded(lambda a: (-a, -1.0))
    outcome = strong_wolfe(probe, Point(0.0, 0.0, -1.0), 0.5, max_evaluations=3)
    assert steps == [0.5, 2.0, 8.0] and outcome == (Point(8.0, -8.0, -1.0, "payload at 8.0"), 3)


def test_a_cubic_guess_beyond_the_last_step_is_taken_when_it_lies_in_the_allowed_range():
    # phi = (a - 10)^2: the cubic through steps 0 and 3 is this parabola, with its minimum at 10;
    # the allowed next steps from 3 are [3 + 1.1 * (3 - 0), 4 * 3] = [6.3, 12], and 10 lies there
    probe, steps = recorded(lambda a: ((a - 10) ** 2, 2 * (a - 10)))
    outcome = strong_wolfe(probe, Point(0.0, 100.0, -20.0), 3.0, c2=0.1)
    assert steps == [3.0, pytest.approx(10.0, abs=1e-12)]
    assert outcome.point.step == pytest.approx(10.0, abs=1e-12) and outcome.evaluations == 2


def test_a_cubic_guess_short_of_the_allowed_range_is_replaced_by_four_times_the_step():
    # phi = (a - 5)^2: the guess through steps 0 and 4 is 5, outside the allowed [4 + 1.1 * 4, 16]
    probe, steps = recorded(lambda a: ((a - 5) ** 2, 2 * (a - 5)))
    outcome = strong_wolfe(probe, Point(0.0, 25.0, -10.0), 4.0, c2=0.1)
    assert steps[:2] == [4.0, 16.0]  # 16 fails sufficient decrease, so the search zooms in [4, 16]
    assert outcome.point.step == pytest.approx(5.0, abs=1e-9)
    assert abs(outcome.point.slope) <= 0.1 * 10


@pytest.mark.parametrize("bad", [math.inf, math.nan])
@pytest.mark.parametrize("where", ["value", "slope"])
def test_an_overflowing_probe_halves_the_step_towards_the_last_good_one(bad, where):
    def phi(a):
        if a <= 3:
            return (a - 5) ** 2, 2 * (a - 5)
        return (bad, -1.0) if where == "value" else (1.0, bad)

    probe, steps = recorded(phi)
    outcome = strong_wolfe(probe, Point(0.0, 25.0, -10.0), 8.0)
    assert steps == [8.0, 4.0, 2.0]  # halved towards step 0, twice; phi'(2) = -6 meets 0.9 * 10
    assert outcome.point.step == 2.0 and outcome.evaluations == 3


@pytest.mark.parametrize("slope", [0.0, 1.0, math.nan])
def test_a_start_that_is_not_a_descent_direction_is_refused(slope):
    probe, steps = recorded(lambda a: (a, 1.0))
    with pytest.raises(ValueError, match="descent direction"):
        strong_wolfe(probe, Point(0.0, 0.0, slope))
    assert steps == []


def test_without_a_probe_or_a_step_that_decreases_the_search_returns_none():
    probe, steps = recorded(lambda a: ((a - 1) ** 2, 2 * (a - 1)))
    assert strong_wolfe(probe, Point(0.0, 1.0, -2.0), 1.0, max_evaluations=0) == (None, 0)
    assert steps == []
    # the first step is too long and the budget ends before the bracket is probed
    assert strong_wolfe(probe, Point(0.0, 1.0, -2.0), 5.0, max_evaluations=1) == (None, 1)


def test_a_rising_second_probe_zooms_between_the_last_two_steps():
    # phi falls steeply to a = 1 and rises after: step 1 meets sufficient decrease but not the
    # curvature condition; the next step (4) decreases less than phi(1) but still enough from 0
    def phi(a):
        return (-a * a, -2 * a) if a <= 1 else ((a - 1) ** 2 - 1 - 0.5 * (a - 1), 2 * (a - 1) - 0.5)

    probe, steps = recorded(phi)
    outcome = strong_wolfe(probe, Point(0.0, 0.0, -1e-3), 1.0, c2=0.1)
    assert steps[:2] == [1.0, 4.0]
    assert all(1.0 < s < 4.0 for s in steps[2:])  # zoomed between the last two steps, not from 0
    point = outcome.point
    assert abs(point.slope) <= 0.1 * 1e-3 and point.value <= phi(1.0)[0]


def test_a_kink_that_no_step_satisfies_stops_when_the_bracket_shrinks_to_rounding():
    # |a - 1/3|: the slope is -1 left of the kink and +1 right of it, so no step meets c2 = 0.5
    probe, steps = recorded(lambda a: (abs(a - 1 / 3), -1.0 if a < 1 / 3 else 1.0))
    outcome = strong_wolfe(probe, Point(0.0, 1 / 3, -1.0), 1.0, c2=0.5, max_evaluations=200)
    assert outcome.evaluations < 200  # stopped by the bracket's width, not the budget
    assert 0 < 1 / 3 - outcome.point.step <= 1e-11  # the best point: just left of the kink
    assert min(s for s in steps if s > 1 / 3) - outcome.point.step <= 1e-12 * outcome.point.step


@pytest.mark.parametrize("seed", range(20))
def test_the_accepted_step_meets_both_conditions_on_a_scaled_logistic_loss(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 3)) * rng.uniform(0.1, 10)
    y = rng.integers(0, 2, 60) * 2.0 - 1
    w = rng.normal(size=3)
    g = -(X * (y / (1 + np.exp(y * (X @ w))))[:, None]).sum(axis=0)
    p = -g

    def phi(a):
        margins = y * (X @ (w + a * p))
        value = np.logaddexp(0, -margins).sum()
        slope = float(-(y * np.exp(-np.logaddexp(0, margins))) @ (X @ p))  # 1 / (1 + e^m)
        return float(value), slope

    probe, steps = recorded(phi)
    start = Point(0.0, *phi(0.0))
    first = rng.choice([1e-4, 1.0, 100.0])
    outcome = strong_wolfe(probe, start, first, c1=1e-4, c2=0.9)
    point = outcome.point
    assert point is not None and outcome.evaluations == len(steps) <= 20
    value, slope = phi(point.step)  # the conditions, recomputed here from the returned step
    assert point.payload == f"payload at {point.step}"
    assert value <= start.value + 1e-4 * point.step * start.slope
    assert abs(slope) <= 0.9 * abs(start.slope)


def parabola(m: float):
    """phi(a) = (a - m)^2: the cubic through any two of its points is itself, so every guess is m."""
    return lambda a: ((a - m) ** 2, 2 * (a - m))


# Each row: the minimum m of phi = (a - m)^2, the first step, c1, c2, and the steps probed, by the
# rules of strong_wolfe's docstrings. Growing from step s after step r: try the guess m if it lies
# in [s + 1.1 (s - r), 4 s], else 4 s. Zooming in [low, high]: try m if it lies within the inner
# 80% of the bracket, else its midpoint.
TRACES = [
    (1.5, 1.0, 1e-4, 0.1, [1.0, 4.0, 1.5]),     # 1.5 < 1 + 1.1: grow to 4, fail, zoom [0, 4] to 1.5
    (2.5, 1.0, 1e-4, 0.1, [1.0, 2.5]),          # 2.5 in [2.1, 4]
    (8.0, 1.0, 1e-4, 0.1, [1.0, 4.0, 8.0]),     # 8 > 4: grow to 4; then 8 in [4 + 1.1 (4 - 1), 16]
    (21.0, 10.0, 1e-4, 0.1, [10.0, 21.0]),      # the guess on the range's lower end, 10 + 1.1 * 10
    (0.5, 10.0, 1e-4, 0.9, [10.0, 5.0, 0.5]),   # zoom [0, 10]: 0.5 is short of the inner [1, 9]
    (1.0, 10.0, 1e-4, 0.9, [10.0, 1.0]),        # the guess on the inner range's end
    (9.5, 10.0, 0.5, 0.9, [10.0, 5.0]),         # 10 fails c1 = 0.5; 9.5 is past [1, 9]; 5 is taken
    (3.6, 4.0, 0.5, 0.9, [4.0, 3.6]),           # 4 fails c1 = 0.5; 3.6 is on the inner range's end
    (3.0, 10.0, 1e-4, 0.0, [10.0, 3.0]),        # c2 = 0: only a slope of exactly 0 is taken
    (1.0, 1.25, 1e-4, 0.1, [1.25, 1.0]),        # slope 0.5 > 0 at 1.25: zoom [1.25, 0] to 1
    (10.0, 9.75, 1e-4, 0.01, [9.75, 39.0, 24.375, 17.0625, 13.40625, 11.578125, 10.0]),  # slope -0.5 at
    # 9.75: grow to 4 * 9.75 (10 < 9.75 + 1.1 * 9.75), fail, then halve [9.75, 39] until 10 is inner
]


@pytest.mark.parametrize("m, first, c1, c2, expected", TRACES)
def test_the_probes_follow_the_rules_on_a_parabola(m, first, c1, c2, expected):
    probe, steps = recorded(parabola(m))
    outcome = strong_wolfe(probe, Point(0.0, m * m, -2 * m), first, c1=c1, c2=c2)
    assert steps == pytest.approx(expected, abs=1e-12)
    assert outcome.evaluations == len(expected) and outcome.point.step == steps[-1]


def test_the_defaults_are_a_first_step_of_1_c1_1e_4_c2_0_9_and_20_probes():
    # phi = (a - 1.8)^2 at a = 1: 0.64 decreases enough for c1 = 1e-4, not for c1 near 1, and the
    # slope -1.6 meets c2 = 0.9, not c2 <= 0.4
    probe, steps = recorded(parabola(1.8))
    outcome = strong_wolfe(probe, Point(0.0, 3.24, -3.6))
    assert steps == [1.0] and outcome.point.step == 1.0
    probe, steps = recorded(parabola(1.0))
    outcome = strong_wolfe(probe, Point(0.0, 1.0, -2.0))
    assert steps == [1.0] and outcome.point.slope == 0.0


def test_an_infinite_value_after_a_good_step_halves_towards_that_step_not_the_start():
    def phi(a):
        return ((a - 10) ** 2, 2 * (a - 10)) if a <= 12 else (math.inf, 1.0)

    probe, steps = recorded(phi)
    outcome = strong_wolfe(probe, Point(0.0, 100.0, -20.0), 2.0, c2=0.1)
    # 2 and 8 grow (their slopes -16 and -4 are steeper than 0.1 * 20); from 8, 10 is short of
    # [8 + 1.1 * 6, 32], so 32, infinite: halve towards 8 until 11, whose slope 2 is taken
    assert steps == [2.0, 8.0, 32.0, 20.0, 14.0, 11.0] and outcome.point.step == 11.0


def test_a_second_probe_exactly_as_high_as_the_first_counts_as_rising():
    # phi(1) = phi(4) = -1, both slopes steeper than 0.9 |phi'(0)|; between them phi rises
    def phi(a):
        return (-a, -1.0) if a <= 1 else (-1 + (a - 1) * (4 - a), 5 - 2 * a)

    probe, steps = recorded(phi)
    strong_wolfe(probe, Point(0.0, 0.0, -1.0), 1.0)
    assert steps[:2] == [1.0, 4.0] and 1.0 < steps[2] < 4.0


def test_a_step_where_phi_rose_is_not_taken_even_where_its_slope_is_flat():
    # phi = -a + 3 a^2 - 1.5 a^3: phi(1) = 0.5 > phi(0) with slope 0.5, flat enough for c2 = 0.9
    probe, steps = recorded(lambda a: (-a + 3 * a * a - 1.5 * a ** 3, -1 + 6 * a - 4.5 * a * a))
    outcome = strong_wolfe(probe, Point(0.0, 0.0, -1.0))
    assert steps[0] == 1.0 and len(steps) > 1 and outcome.point.value < 0


def test_after_stepping_back_from_overflow_the_search_grows_again():
    # a line, infinite on [60, 70] only: 64 overflows, 40 is finite and steep, so the search grows
    # from 40 (to 4 * 40) instead of narrowing between 16 and 64
    probe, steps = recorded(lambda a: (math.inf, -1.0) if 60 <= a <= 70 else (-a, -1.0))
    strong_wolfe(probe, Point(0.0, 0.0, -1.0), 1.0)
    assert steps[:6] == [1.0, 4.0, 16.0, 64.0, 40.0, 160.0]


def test_a_bracket_at_step_0_stops_before_probing_step_0_itself():
    # |a| with its left slope -1 at 0: every step rises, and the bracket [0, high] shrinks to 1e-300
    # times 1e-12 without reaching a = 0 (where phi would not have decreased)
    probe, steps = recorded(lambda a: (abs(a), 1.0))
    outcome = strong_wolfe(probe, Point(0.0, 0.0, -1.0), 1.0, max_evaluations=3000)
    assert outcome.point is None and outcome.evaluations == len(steps) < 3000
    assert 0 < min(steps) <= 1e-300 * 1e-12 * 1e3


@pytest.mark.parametrize("c2", [0.5, 0.9])
def test_a_zoom_probe_below_the_low_end_but_above_the_sufficient_decrease_line_is_not_taken(c2):
    """A convex line (two softplus terms and a quadratic) with a strict c1 = 0.3: from a first step
    of 4 the zoom probes a step whose value is below the bracket's low end yet above the line
    phi(0) + c1 a phi'(0); that step must become the bracket's high end, not the answer."""
    w, s, t = np.array([0.2, 2.2]), np.array([1.6, 7.0]), np.array([1.7, 0.5])

    def phi(a):
        z = -s * (a - t)
        return float(w @ np.logaddexp(0, z) + 0.4 * a * a), float(-(w * s) @ (1 / (1 + np.exp(-z))) + 0.8 * a)

    probe, steps = recorded(phi)
    start = Point(0.0, *phi(0.0))
    point = strong_wolfe(probe, start, 4.0, c1=0.3, c2=c2).point
    value, slope = phi(point.step)
    assert value <= start.value + 0.3 * point.step * start.slope
    assert abs(slope) <= c2 * abs(start.slope)
    # the premise: a probe that decreased phi, but not enough, was made
    assert any(start.value + 0.3 * a * start.slope < phi(a)[0] < start.value for a in steps[1:])


@pytest.mark.parametrize("c2", [0.1, 0.05])
def test_a_zoom_probe_past_the_minimum_with_a_small_slope_brackets_it_with_the_low_end(c2):
    """phi(a) = 0.8 softplus(-6.9 (a + 0.1)) + a^2 / 2 + 0.2 sin(2 a) with a tight c2: a zoom probe
    lands just past the minimiser (a positive slope, slope * width below 1); the minimiser then
    lies between it and the low end, and the search meets both conditions within 3 probes."""
    def phi(a):
        z = -6.9 * (a + 0.1)
        return (float(0.8 * np.logaddexp(0, z) + 0.5 * a * a + 0.2 * np.sin(2 * a)),
                float(-0.8 * 6.9 / (1 + np.exp(-z)) + a + 0.4 * np.cos(2 * a)))

    probe, steps = recorded(phi)
    start = Point(0.0, *phi(0.0))
    outcome = strong_wolfe(probe, start, 1.0, c1=1e-4, c2=c2)
    value, slope = phi(outcome.point.step)
    assert value <= start.value + 1e-4 * outcome.point.step * start.slope
    assert abs(slope) <= c2 * abs(start.slope)
    assert outcome.evaluations == len(steps) == 3
    # the premise: step 1 rose, so the zoom's bracket is [0, 1] (width 1); probe 2 lies past the minimum
    assert phi(steps[0])[0] > start.value and steps[0] == 1.0 and 0 < phi(steps[1])[1] * 1.0 < 1
