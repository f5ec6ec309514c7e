"""A line search for the strong Wolfe conditions (Nocedal and Wright, algorithms 3.5 and 3.6). NumPy only.

Along a descent direction, phi(a) = f(x + a p) with phi'(0) < 0, find a step a with

    phi(a) <= phi(0) + c1 a phi'(0)       (sufficient decrease)
    |phi'(a)| <= c2 |phi'(0)|              (curvature)

by growing the step until it brackets such a point, then shrinking the bracket with safeguarded
cubic interpolation. The search is deterministic arithmetic on the values it is given, so ranks
that see the same values take the same steps.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

Probe = Callable[[float], tuple[float, float, Any]]  # a -> (phi(a), phi'(a), what the caller keeps)


class Point(NamedTuple):
    """A step, phi and phi' there, and the payload the probe returned with them."""

    step: float
    value: float
    slope: float
    payload: Any = None


class Outcome(NamedTuple):
    """The accepted point (None if no step met the conditions) and the number of probes."""

    point: Optional[Point]
    evaluations: int


def cubic_minimum(a: Point, b: Point) -> Optional[float]:
    """The local minimiser of the cubic through (value, slope) at two steps, or None if it has none.

    The cubic's derivative has two distinct roots only when the radicand is positive; at zero it
    has one double root, an inflection point, not a minimum.
    """
    d1 = a.slope + b.slope - 3 * (a.value - b.value) / (a.step - b.step)
    radicand = d1 * d1 - a.slope * b.slope
    if radicand <= 0:
        return None
    d2 = radicand ** 0.5 * (1.0 if b.step > a.step else -1.0)
    denominator = b.slope - a.slope + 2 * d2
    if denominator == 0:
        return None
    return b.step - (b.step - a.step) * (b.slope + d2 - d1) / denominator


def strong_wolfe(probe: Probe, start: Point, step: float = 1.0, c1: float = 1e-4, c2: float = 0.9,
                 max_evaluations: int = 20) -> Outcome:
    """Search along phi from ``start`` (step 0, slope < 0), trying ``step`` first.

    Returns the first probed point that meets both conditions. When ``max_evaluations`` probes
    or a bracket shrunk to rounding do not find one, returns the best point found that meets
    sufficient decrease, or ``Outcome(None, n)`` if there is none.
    """
    if not start.slope < 0:
        raise ValueError(f"the line search needs a descent direction, but phi'(0) = {start.slope}")
    previous, evaluations = start, 0
    while evaluations < max_evaluations:
        point = Point(step, *probe(step))
        evaluations += 1
        if not (point.value < float("inf") and abs(point.slope) < float("inf")):
            step = 0.5 * (previous.step + step)  # overshot into overflow: halve towards the last good step
            continue
        rising = previous is not start and point.value >= previous.value
        if point.value > start.value + c1 * step * start.slope or rising:
            return _zoom(probe, start, previous, point, c1, c2, evaluations, max_evaluations)
        if abs(point.slope) <= -c2 * start.slope:
            return Outcome(point, evaluations)
        if point.slope >= 0:
            return _zoom(probe, start, point, previous, c1, c2, evaluations, max_evaluations)
        guess = cubic_minimum(previous, point)
        low, high = point.step + 1.1 * (point.step - previous.step), 4.0 * point.step
        previous, step = point, high if guess is None or not low <= guess <= high else guess
    return Outcome(None if previous is start else previous, evaluations)


def _zoom(probe: Probe, start: Point, low: Point, high: Point, c1: float, c2: float,
          evaluations: int, max_evaluations: int) -> Outcome:
    """Shrink the bracket [low, high] (low meets sufficient decrease, has the lower value)."""
    while evaluations < max_evaluations:
        width = high.step - low.step
        guess = cubic_minimum(low, high)
        inner, outer = sorted((low.step + 0.1 * width, high.step - 0.1 * width))
        step = guess if guess is not None and inner <= guess <= outer else low.step + 0.5 * width
        point = Point(step, *probe(step))
        evaluations += 1
        if not point.value <= start.value + c1 * step * start.slope or point.value >= low.value:
            high = point
        else:
            if abs(point.slope) <= -c2 * start.slope:
                return Outcome(point, evaluations)
            if point.slope * width >= 0:
                high = low
            low = point
        if abs(high.step - low.step) <= 1e-12 * max(abs(low.step), 1e-300):
            break
    return Outcome(None if low is start else low, evaluations)
