"""The solvers' serial parts against independent references: Hessian-vector products against
finite differences of the gradient, the line search against the Wolfe conditions, conjugate
gradients against numpy.linalg.solve. No MPI."""
import numpy as np
import pytest

import mpitrain as mt
from mpitrain.algorithms.linesearch import Point, strong_wolfe
from mpitrain.algorithms.newton_cg import conjugate_gradient


def labelled(kind: str, n: int = 50, d: int = 4, seed: int = 0):
    """A model of ``kind`` and rows (X, y) with labels it accepts."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if kind == "softmax":
        return mt.create_model(kind, d, n_classes=3), X, rng.integers(0, 3, n).astype(float)
    y = rng.integers(0, 2, n).astype(float) if kind == "logistic" else rng.normal(size=n)
    return mt.create_model(kind, d), X, y


@pytest.mark.parametrize("kind", ["linear", "logistic", "softmax"])
def test_hessian_product_is_the_derivative_of_the_gradient(kind):
    model, X, y = labelled(kind)
    rng = np.random.default_rng(1)
    theta, v = rng.normal(size=model.n_params), rng.normal(size=model.n_params)

    def grad(t):
        g = np.empty(model.n_params)
        model.sums(t, X, y, g)
        return g

    h = 1e-5
    expected = (grad(theta + h * v) - grad(theta - h * v)) / (2 * h)
    out = np.empty(model.n_params)
    model.hessian_product(theta, X)(v, out)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def quartic(a: float):
    """phi(a) = (a - 3)^4 - 2a and its derivative, a function with its minimum near a = 3.79."""
    return (a - 3) ** 4 - 2 * a, 4 * (a - 3) ** 3 - 2, None


@pytest.mark.parametrize("first", [1e-3, 1.0, 50.0])
@pytest.mark.parametrize("c2", [0.9, 0.1])
def test_line_search_returns_a_strong_wolfe_step(first, c2):
    start = Point(0.0, *quartic(0.0))
    outcome = strong_wolfe(quartic, start, first, c1=1e-4, c2=c2)
    point = outcome.point
    assert point is not None and 1 <= outcome.evaluations <= 20
    assert point.value <= start.value + 1e-4 * point.step * start.slope
    assert abs(point.slope) <= c2 * abs(start.slope)


def test_line_search_steps_back_from_overflow_and_refuses_an_ascent_direction():
    def steep(a):
        return (np.inf, np.inf, None) if a > 2 else ((a - 1) ** 2, 2 * (a - 1), None)

    outcome = strong_wolfe(steep, Point(0.0, *steep(0.0)), 100.0)
    assert outcome.point is not None and abs(outcome.point.slope) <= 0.9 * 2
    with pytest.raises(ValueError, match="descent direction"):
        strong_wolfe(steep, Point(0.0, 1.0, 0.5), 1.0)


def test_conjugate_gradient_solves_a_positive_definite_system():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(6, 6))
    H = A @ A.T + np.eye(6)
    g = rng.normal(size=6)
    p, used = conjugate_gradient(lambda v: H @ v, g, 1e-12, 50)
    np.testing.assert_allclose(p, np.linalg.solve(H, -g), rtol=1e-9, atol=1e-10)
    assert used <= 6 + 2


def test_conjugate_gradient_stops_at_negative_curvature():
    H = np.diag([-0.5, 2.0])  # any negative curvature, however small, stops it
    g = np.array([1.0, 0.0])
    p, used = conjugate_gradient(lambda v: H @ v, g, 1e-12, 50)
    assert used == 1 and np.array_equal(p, -g)


@pytest.mark.parametrize("kind", ["linear", "logistic", "softmax"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_objective_sums_blocks_of_rows_as_the_model_sums_them_all(kind, weighted, monkeypatch):
    """Blocks of 25 rows (the last one short) give the model's own sums over all rows, to rounding."""
    from mpitrain.algorithms import objective

    model, X, y = labelled(kind, n=1003, d=4, seed=3)
    weight = np.random.default_rng(4).random(len(y)) if weighted else None
    data = mt.Dataset(X, y, 0, len(y), "memory", np.array([len(y)]), **({"weight": weight} if weighted else {}))
    theta = np.random.default_rng(5).normal(size=model.n_params)
    expected = np.empty(model.n_params)
    sums = model.sums(theta, X, y, expected, **({"weight": weight} if weighted else {}))
    monkeypatch.setattr(objective, "BLOCK_BYTES", 25 * 4 * 8)
    grad = np.empty(model.n_params)
    got = objective.Objective(model, data, None).local_sums(theta, grad)
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(got, sums, rtol=1e-12)


def lbfgs_iterates(model, data, iterations: int, **options) -> np.ndarray:
    """theta after ``iterations`` L-BFGS steps from 0 on (model, data), one process."""
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.lbfgs import LBFGSSolver

    solver = LBFGSSolver(objective.Objective(model, data, None), tol=0.0, **options)
    solver.start(np.zeros(model.n_params))
    for _ in range(iterations):
        if not solver.done:
            solver.step()
    return solver.theta


def test_lbfgs_keeps_ten_pairs_unless_told_and_refuses_fewer_than_one():
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.lbfgs import LBFGSSolver

    model, X, y = labelled("logistic", n=300, d=12, seed=7)
    data = mt.Dataset(X * np.geomspace(0.1, 10, 12), y, 0, len(y), "memory", np.array([len(y)]))
    default = lbfgs_iterates(model, data, 30)
    assert np.array_equal(default, lbfgs_iterates(model, data, 30, history=10))
    assert not np.array_equal(default, lbfgs_iterates(model, data, 30, history=9))  # premise: the length shows
    with pytest.raises(ValueError, match="history must be at least 1 pair, not 0"):
        LBFGSSolver(objective.Objective(model, data, None), history=0)
    assert LBFGSSolver(objective.Objective(model, data, None)).tol == mt.LBFGS().tol  # scikit-learn's 1e-4


def test_lbfgs_where_the_gradient_is_zero_stops_at_once_with_step_size_zero():
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.lbfgs import LBFGSSolver

    model, X, _ = labelled("linear", n=40, d=3)
    solver = LBFGSSolver(objective.Objective(model, mt.Dataset(X, np.zeros(40), 0, 40, "memory", np.array([40])), None))
    solver.start(np.zeros(model.n_params))  # y = 0 and theta = 0: every residual, so the gradient, is exactly 0
    record = solver.step()
    assert solver.done and record["step_size"] == 0.0 and "no descent direction" in solver.message


def test_lbfgs_logs_every_evaluation_of_its_line_searches_and_works_with_one_pair(monkeypatch):
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.lbfgs import LBFGSSolver

    calls = []
    real = objective.Objective.__call__

    def counted(self, theta):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(self, theta)

    monkeypatch.setattr(objective.Objective, "__call__", counted)
    model, X, y = labelled("logistic", n=300, d=12, seed=7)
    data = mt.Dataset(X * np.geomspace(0.1, 10, 12), y, 0, len(y), "memory", np.array([len(y)]))
    for history in (1, 10):
        calls.clear()
        solver = LBFGSSolver(objective.Objective(model, data, None), history=history, tol=0.0)
        solver.start(np.zeros(model.n_params))
        records = [solver.step() for _ in range(15)]
        assert 1 + sum(r["evaluations"] for r in records) == len(calls)  # the start, then every probe
        assert records[-1]["loss"] < records[0]["loss"]


def test_lbfgs_drops_a_history_that_gives_no_descent_direction_and_steps_along_minus_g():
    """A stored pair with s.y < 0 (s = g, y = -g) turns the two-loop direction into +g, uphill: the
    step must forget the pairs and take the steepest-descent step instead (as one with no pairs)."""
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.lbfgs import LBFGSSolver

    model, X, y = labelled("logistic", n=200, d=5, seed=9)
    data = mt.Dataset(X, y, 0, len(y), "memory", np.array([len(y)]))
    fresh = LBFGSSolver(objective.Objective(model, data, None), tol=0.0)
    fresh.start(np.zeros(model.n_params))
    expected = fresh.step()
    solver = LBFGSSolver(objective.Objective(model, data, None), tol=0.0)
    solver.start(np.zeros(model.n_params))
    S, Y = np.zeros((10, model.n_params)), np.zeros((10, model.n_params))
    S[-1], Y[-1] = solver.gradient, -solver.gradient
    solver.memory = (S, Y, 1)
    assert solver.gradient @ solver.direction() > 0  # premise: the history points uphill
    record = solver.step()
    assert record["loss"] == expected["loss"] and np.array_equal(solver.theta, fresh.theta)


def test_conjugate_gradient_solves_a_system_of_small_curvature_and_keeps_to_max_inner():
    """Eigenvalues 1e-3 to 1e-2: positive however small (only <= 0 stops early); and at most
    max_inner products, the count it returns."""
    rng = np.random.default_rng(3)
    Q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    H = Q @ np.diag(np.geomspace(1e-3, 1e-2, 6)) @ Q.T
    g = rng.normal(size=6)
    calls = []

    def product(v):  # type: ignore[no-untyped-def]
        calls.append(1)
        return H @ v

    p, used = conjugate_gradient(product, g, 1e-12, 50)
    np.testing.assert_allclose(p, np.linalg.solve(H, -g), rtol=1e-8)
    calls.clear()
    _, used = conjugate_gradient(product, g, 1e-12, 3)
    assert used == len(calls) == 3


def test_newton_cg_ends_with_full_newton_steps():
    """Near the optimum Newton's step is accepted as it is: step size 1, one evaluation."""
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.newton_cg import NewtonCGSolver

    model, X, y = labelled("logistic", n=400, d=5, seed=4)
    data = mt.Dataset(X, y, 0, len(y), "memory", np.array([len(y)]))
    solver = NewtonCGSolver(objective.Objective(model, data, None, 1e-2), tol=1e-10)
    solver.start(np.zeros(model.n_params))
    records = [solver.step() for _ in range(8) if not solver.done]
    assert solver.done or records[-1]["gradient_max"] < 1e-9
    assert [(r["step_size"], r["evaluations"]) for r in records[-2:]] == [(1.0, 1), (1.0, 1)]


def test_newton_cg_stops_at_a_largest_gradient_entry_of_1e_4_unless_told():
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.newton_cg import NewtonCGSolver

    model, X, y = labelled("logistic", n=400, d=5, seed=4)
    data = mt.Dataset(X, y, 0, len(y), "memory", np.array([len(y)]))

    def run(**options):  # type: ignore[no-untyped-def]
        solver = NewtonCGSolver(objective.Objective(model, data, None, 1e-2), **options)
        solver.start(np.zeros(model.n_params))
        records = [solver.step() for _ in range(20) if not solver.done]
        return len(records), records[-1]["gradient_max"]

    steps, last = run()
    assert last <= 1e-4 and run(tol=1e-4) == (steps, last)
    assert run(tol=1e-9)[0] > steps  # premise: a smaller tol takes more iterations


def test_newton_cg_takes_one_product_or_more_per_iteration():
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.newton_cg import NewtonCGSolver

    model, X, y = labelled("logistic", n=100, d=3, seed=4)
    target = objective.Objective(model, mt.Dataset(X, y, 0, len(y), "memory", np.array([len(y)])), None, 1e-2)
    with pytest.raises(ValueError, match="max_inner must be at least 1, not 0"):
        NewtonCGSolver(target, max_inner=0)
    solver = NewtonCGSolver(target, max_inner=1)
    solver.start(np.zeros(model.n_params))
    assert solver.step()["products"] == 1


def test_conjugate_gradient_stops_at_zero_curvature_with_minus_g_first_and_the_last_iterate_later():
    g = np.array([1.0, 1.0])
    p, used = conjugate_gradient(lambda v: np.zeros(2), g, 1e-12, 50)  # no curvature at all
    assert used == 1 and np.array_equal(p, -g)
    # H = diag(1, 0): the first direction -g has curvature 1; the second, (0, -2), has none. The
    # first iterate is the Cauchy point -(g.g / g.H g) g = -2 g
    p, used = conjugate_gradient(lambda v: np.array([v[0], 0.0]), g, 1e-12, 50)
    assert used == 2 and np.array_equal(p, -2 * g)


def newton_cg_at_start(start: float, **options):
    """A Newton-CG solver started at theta = start * (1, -1, 1, ...) on a logistic objective
    (300 rows, 6 features, labels from a noisy linear rule, l2 = 1e-2)."""
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.newton_cg import NewtonCGSolver

    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 6))
    y = (X @ rng.normal(size=6) + rng.normal(size=300) > 0).astype(float)
    model = mt.create_model("logistic", 6)
    target = objective.Objective(model, mt.Dataset(X, y, 0, 300, "memory", np.array([300])), None, 1e-2)
    solver = NewtonCGSolver(target, **options)
    solver.start(start * (-1.0) ** np.arange(model.n_params))
    return solver


@pytest.mark.parametrize("start, options, max_inner", [(0.0, {}, 200), (2.0, {"max_inner": 7}, 7)])
def test_newton_cg_asks_for_scikit_learn_s_inner_tolerance_and_max_inner(monkeypatch, start, options, max_inner):
    from mpitrain.algorithms import newton_cg

    asked = []

    def recording(product, g, tolerance, limit):  # type: ignore[no-untyped-def]
        asked.append((tolerance, limit))
        return conjugate_gradient(product, g, tolerance, limit)

    monkeypatch.setattr(newton_cg, "conjugate_gradient", recording)
    solver = newton_cg_at_start(start, **options)
    sizes = []
    while not solver.done and len(sizes) < 12:
        sizes.append(np.abs(solver.gradient).sum())
        solver.step()
    assert min(sizes) < 0.25 < max(sizes)  # the premise: both branches of min(0.5, sqrt(|g|_1))
    expected = [(min(0.5, np.sqrt(s)) * s, max_inner) for s in sizes]
    assert asked == [(pytest.approx(t, rel=1e-15), m) for t, m in expected]


@pytest.mark.parametrize("direction", ["zero", "ascent"])
def test_newton_cg_searches_along_minus_g_when_cg_gives_no_descent_direction(monkeypatch, direction):
    from mpitrain.algorithms import newton_cg

    monkeypatch.setattr(newton_cg, "conjugate_gradient",
                        lambda product, g, tolerance, limit: (np.zeros_like(g) if direction == "zero" else g.copy(), 1))
    solver = newton_cg_at_start(2.0)
    theta, g = solver.theta.copy(), solver.gradient.copy()
    record = solver.step()
    assert record["step_size"] > 0 and record["products"] == 1
    np.testing.assert_array_equal(solver.theta, theta + record["step_size"] * -g)


def test_newton_cg_moves_by_the_line_search_s_step_along_cg_s_direction_starting_from_1(monkeypatch):
    from mpitrain.algorithms import linesearch, newton_cg

    directions, firsts = [], []

    def cg(product, g, tolerance, limit):  # type: ignore[no-untyped-def]
        directions.append(conjugate_gradient(product, g, tolerance, limit)[0])
        return directions[-1], 1

    def search(probe, start, step):  # type: ignore[no-untyped-def]
        firsts.append((step, start.slope))
        return linesearch.strong_wolfe(probe, start, step)

    monkeypatch.setattr(newton_cg, "conjugate_gradient", cg)
    monkeypatch.setattr(newton_cg, "strong_wolfe", search)
    solver = newton_cg_at_start(2.0)
    steps = []
    for _ in range(6):
        theta, g = solver.theta.copy(), solver.gradient.copy()
        steps.append(solver.step()["step_size"])
        np.testing.assert_array_equal(solver.theta, theta + steps[-1] * directions[-1])
        assert firsts[-1] == (1.0, float(g @ directions[-1]))
    assert min(steps) < 0.5 and steps[-1] == 1.0  # the premise: damped steps far away, full ones near


def test_newton_cg_stops_with_a_message_when_the_line_search_finds_no_step(monkeypatch):
    from mpitrain.algorithms import linesearch, newton_cg

    monkeypatch.setattr(newton_cg, "strong_wolfe", lambda probe, start, step: linesearch.Outcome(None, 20))
    solver = newton_cg_at_start(2.0)
    theta = solver.theta.copy()
    record = solver.step()
    assert solver.done and not solver.converged and "no step that decreases" in solver.message
    assert record["step_size"] == 0.0 and record["evaluations"] == 20 and record["products"] >= 1
    assert np.array_equal(solver.theta, theta)


def test_conjugate_gradient_takes_no_product_when_the_residual_is_already_at_the_tolerance():
    g = np.array([0.75, -0.25])  # |g|_1 = 1, exactly
    p, used = conjugate_gradient(lambda v: 2 * v, g, 1.0, 50)
    assert used == 0 and np.array_equal(p, np.zeros(2))
    p, used = conjugate_gradient(lambda v: 2 * v, g, np.nextafter(1.0, 0.0), 50)
    assert used == 1 and np.array_equal(p, -g / 2)


def test_the_objective_reports_the_accuracy_counts_its_evaluations_and_products_and_refuses_a_negative_l2():
    """One rank: the metric is the share of rows whose sign of X w + b matches the label."""
    from mpitrain.algorithms import objective

    model, X, y = labelled("logistic", n=203, d=4, seed=6)
    data = mt.Dataset(X, y, 0, len(y), "memory", np.array([len(y)]))
    theta = np.random.default_rng(7).normal(size=model.n_params)
    f = objective.Objective(model, data, None, l2=0.1)
    assert (f.evaluations, f.products) == (0, 0)
    z = X @ theta[:-1] + theta[-1]
    _, _, accuracy = f(theta)
    f(theta)
    assert accuracy == pytest.approx(np.mean((z > 0) == (y > 0.5)), abs=1e-12)
    product = f.curvature(theta)
    product(np.ones(model.n_params))
    assert (f.evaluations, f.products) == (2, 1) and f.sums[2] == 0  # no stop vote unless told
    # without l2 the objective is the mean logistic loss
    assert objective.Objective(model, data, None)(theta)[0] == pytest.approx(np.mean(np.logaddexp(0, z) - y * z))
    with pytest.raises(ValueError, match="l2 must be >= 0, not -0.5"):
        objective.Objective(model, data, None, l2=-0.5)


@pytest.mark.parametrize("kind", ["logistic", "softmax"])
def test_the_objective_s_hessian_products_are_the_derivative_of_its_weighted_gradient(kind):
    """Central differences of the weighted, penalised gradient along v give H v to 1e-6."""
    from mpitrain.algorithms import objective

    model, X, y = labelled(kind, n=120, d=4, seed=8)
    weight = np.random.default_rng(9).uniform(0.1, 3.0, len(y))
    data = mt.Dataset(X, y, 0, len(y), "memory", np.array([len(y)]), weight=weight)
    f = objective.Objective(model, data, None, l2=0.05)
    theta, v = np.random.default_rng(10).normal(size=(2, model.n_params))
    eps = 1e-5
    numeric = (f(theta + eps * v)[1] - f(theta - eps * v)[1]) / (2 * eps)
    np.testing.assert_allclose(f.curvature(theta)(v), numeric, rtol=1e-6, atol=1e-8)


EPS = np.finfo(float).eps


def solver_at(value: float, tol: float = 1e-4):
    """A Solver (on a small logistic objective) whose current point has objective ``value``."""
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.solver import Solver

    model, X, y = labelled("logistic", n=20, d=2)
    solver = Solver(objective.Objective(model, mt.Dataset(X, y, 0, 20, "memory", np.array([20])), None), tol)
    solver.value = value
    return solver


@pytest.mark.parametrize("previous, value, stalls", [
    (1.0, 1.0 - 64 * EPS, True),  # scikit-learn's ftol: a relative decrease of at most 64 machine epsilons
    (1.0, 1.0 - 65 * EPS, False),
    (2.0**-10, 2.0**-10 - 64 * EPS, True),  # below 1 in size, the decrease is measured against 1
    (2.0**-10, 2.0**-10 - 65 * EPS, False),
    (-2.0**10, -2.0**10 - 2.0**10 * 64 * EPS, True),  # above 1, against the larger size
    (-2.0**10, -2.0**10 - 2.0**10 * 65 * EPS, False),
    (1.0, 1.0 + EPS, True),  # a rise
])
def test_a_solver_stops_when_the_objective_falls_by_at_most_64_epsilons_of_its_size(previous, value, stalls):
    solver = solver_at(previous)
    solver.move(value, (np.zeros(3), np.full(3, 1.0), 0.5, np.zeros(3)))
    assert solver.value == value and solver.gradient_max == 1.0 and not solver.converged
    assert solver.done == stalls
    assert solver.message == ("the relative decrease of the objective fell below 64 machine epsilons" if stalls else "")


def test_a_solver_that_meets_tol_while_stalling_says_it_converged():
    solver = solver_at(1.0)
    solver.move(1.0, (np.zeros(3), np.array([1e-5, -1e-4, 0.0]), 0.5, np.zeros(3)))
    assert solver.done and solver.converged and solver.gradient_max == 1e-4
    assert solver.message == "the largest gradient entry 0.0001 is at most tol = 0.0001"


def test_a_solver_refuses_a_negative_or_nan_tol_and_a_start_where_the_objective_is_not_finite():
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.solver import Solver

    for tol in (-1e-12, float("nan")):
        with pytest.raises(ValueError, match=f"tol must be >= 0, not {tol}"):
            solver_at(1.0, tol)
    model, X, _ = labelled("linear", n=10, d=2)
    huge = mt.Dataset(X, np.full(10, 1e200), 0, 10, "memory", np.array([10]))  # squared residuals overflow
    with np.errstate(over="ignore"), pytest.raises(ValueError, match="not finite at the start"):
        Solver(objective.Objective(model, huge, None), 0.0).start(np.zeros(3))


def lbfgs_on(scale: float):
    """An L-BFGS solver started at 0 on logistic rows whose features are multiplied by ``scale``."""
    from mpitrain.algorithms import objective
    from mpitrain.algorithms.lbfgs import LBFGSSolver

    model, X, y = labelled("logistic", n=300, d=12, seed=7)
    data = mt.Dataset(X * scale * np.geomspace(0.1, 10, 12), y, 0, len(y), "memory", np.array([len(y)]))
    solver = LBFGSSolver(objective.Objective(model, data, None), tol=0.0)
    solver.start(np.zeros(model.n_params))
    return solver


def searches(monkeypatch, fail: int = 0) -> list:
    """Record the first step each L-BFGS line search tries; fail the first ``fail`` searches (no
    point found after 3 probes)."""
    from mpitrain.algorithms import lbfgs, linesearch

    seen = []

    def search(probe, start, step):  # type: ignore[no-untyped-def]
        seen.append(step)
        if len(seen) <= fail:
            return linesearch.Outcome(None, 3)
        return linesearch.strong_wolfe(probe, start, step)

    monkeypatch.setattr(lbfgs, "strong_wolfe", search)
    return seen


@pytest.mark.parametrize("scale", [0.01, 10.0])
def test_lbfgs_tries_a_first_step_of_one_over_the_gradient_norm_at_most_1_then_1(monkeypatch, scale):
    seen = searches(monkeypatch)
    solver = lbfgs_on(scale)
    norm = float(np.linalg.norm(solver.gradient))
    assert norm < 0.5 if scale < 1 else norm > 2  # premise: both sides of 1, far enough to tell 1/|g| from 2/|g|
    for _ in range(4):
        solver.step()
    assert seen == [min(1.0, 1.0 / norm), 1.0, 1.0, 1.0]  # as scipy's L-BFGS-B: with pairs, the step 1


def test_lbfgs_whose_search_fails_with_pairs_steps_along_minus_g_as_a_fresh_solver(monkeypatch):
    solver = lbfgs_on(1.0)
    solver.step(), solver.step()
    fresh = lbfgs_on(1.0)
    fresh.start(solver.theta)
    expected = fresh.step()
    seen = searches(monkeypatch, fail=1)
    record = solver.step()
    assert seen[0] == 1.0 and seen[1] == min(1.0, 1.0 / float(np.linalg.norm(fresh.gradient))) and len(seen) == 2
    assert np.array_equal(solver.theta, fresh.theta) and record["loss"] == expected["loss"]
    assert record["evaluations"] == 3 + expected["evaluations"] and not solver.done


def test_lbfgs_whose_search_finds_no_step_stops_and_says_so(monkeypatch):
    searches(monkeypatch, fail=1)
    solver = lbfgs_on(1.0)
    start = solver.theta.copy()
    record = solver.step()
    assert solver.done and not solver.converged and record["step_size"] == 0.0 and record["evaluations"] == 3
    assert solver.message == "the line search found no step that decreases the objective"
    assert np.array_equal(solver.theta, start)


def test_lbfgs_keeps_each_step_and_gradient_change_and_its_direction_meets_the_secant_equation():
    """H y = s for the newest pair (s, y) holds for the BFGS update, so the two-loop direction of the
    gradient y is -s, whatever the older pairs."""
    solver = lbfgs_on(1.0)
    thetas, gradients = [solver.theta.copy()], [solver.gradient.copy()]
    for _ in range(3):
        solver.step()
        thetas.append(solver.theta.copy()), gradients.append(solver.gradient.copy())
    S, Y, pairs = solver.memory
    assert pairs == 3 and not S[:-3].any() and not Y[:-3].any()
    np.testing.assert_array_equal(S[-3:], np.diff(thetas, axis=0))
    np.testing.assert_array_equal(Y[-3:], np.diff(gradients, axis=0))
    solver.gradient = Y[-1].copy()
    np.testing.assert_allclose(solver.direction(), -S[-1], rtol=0, atol=1e-10 * np.abs(S[-1]).max())
