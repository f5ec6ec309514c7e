"""Second-order and exact solvers against serial references, on uneven blocks, under mpiexec.

Every assertion is on values that every rank computes alike, so a failure fails on all ranks
instead of leaving the others waiting in a collective.
"""
import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain.algorithms.base import Hooks, State
from mpitrain.algorithms.solve import fit_lbfgs, fit_newton_cg, fit_normal
from helpers import ridge, with_intercept

pytestmark = pytest.mark.mpi


def same_bits_everywhere(theta: np.ndarray) -> bool:
    """True if every rank holds exactly these bytes (checked independently of mpitrain)."""
    return len(set(MPI.COMM_WORLD.allgather(theta.tobytes()))) == 1


def uneven_counts(n: int, size: int) -> np.ndarray:
    """Rows per rank in proportion to (rank + 1)^2, with rank 1 empty when there are 3 or more ranks."""
    weights = np.arange(1, size + 1, dtype=float) ** 2
    if size >= 3:
        weights[1] = 0
    counts = np.floor(n * weights / weights.sum()).astype(np.int64)
    counts[-1] += n - counts.sum()
    return counts


def blocks(X: np.ndarray, y: np.ndarray, comm) -> mt.Dataset:
    """This rank's block of (X, y) under ``uneven_counts``."""
    counts = uneven_counts(len(y), comm.size)
    start = int(counts[:comm.rank].sum())
    stop = start + int(counts[comm.rank])
    return mt.Dataset(X[start:stop], y[start:stop], start, len(y), "test", counts)


def regression(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with means up to 50 and scales 0.1 to 10 (centring matters), and noisy labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.geomspace(0.1, 10, d) + np.linspace(-50, 50, d)
    y = X @ rng.normal(size=d) + 3.0 + rng.normal(size=n)
    return X, y


@pytest.mark.parametrize("n, d", [(40, 3), (1001, 12)])
def test_normal_equals_lstsq_without_l2(comm, n, d):
    X, y = regression(n, d)
    model = mt.create_model("linear", d)
    result = fit_normal(model, blocks(X, y, comm), comm)
    expected = np.linalg.lstsq(with_intercept(X), y, rcond=None)[0]
    np.testing.assert_allclose(result.theta, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("offset, scale, passes", [(0.5, 1.0, 1), (1e4, 1.0, 2), (1e-2, 1e-7, 2)])
def test_normal_takes_one_pass_unless_large_means_would_cancel_digits(comm, offset, scale, passes):
    """Small means: one pass and one reduction of uncentred sums. Means 1e4 times the spread (also
    for columns whose values are all small): the sums are taken again about the means, and the
    answer still equals lstsq on centred columns."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(700, 6)) * scale + offset
    y = X @ rng.normal(size=6) - 2.0 + 0.1 * rng.normal(size=700)
    records = []
    result = fit_normal(mt.create_model("linear", 6), blocks(X, y, comm), comm, log=records.append)
    mean = X.mean(axis=0)
    w = np.linalg.lstsq(X - mean, y - y.mean(), rcond=None)[0]
    expected = np.append(w, y.mean() - mean @ w)
    assert records[0]["passes"] == passes
    np.testing.assert_allclose(result.theta, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("l2", [1e-4, 0.3])
def test_normal_equals_closed_form_ridge(comm, l2):
    X, y = regression(501, 7, seed=1)
    model = mt.create_model("linear", 7)
    records = []
    result = fit_normal(model, blocks(X, y, comm), comm, l2=l2, log=records.append)
    expected = ridge(X, y, l2)
    np.testing.assert_allclose(result.theta, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    assert records[0]["solve"] == "cholesky" and records[0]["gradient_max"] < 1e-8
    residual = with_intercept(X) @ expected - y
    w = expected[:-1]
    assert abs(records[0]["loss"] - (residual @ residual / (2 * len(y)) + l2 / 2 * w @ w)) < 1e-9
    assert result.objective == records[0]["loss"] and result.gradient_max == records[0]["gradient_max"]
    assert result.evaluations == 0 and result.products == 0  # no gradient evaluations: one exact solve
    assert abs(records[0]["metric"] - np.sqrt(residual @ residual / len(y))) < 1e-9
    assert same_bits_everywhere(result.theta)


def test_normal_singular_matrix_falls_back_to_least_squares(comm):
    X, y = regression(300, 4, seed=2)
    X = np.hstack([X, X[:, :1]])  # a repeated column: X^T X is singular
    model = mt.create_model("linear", 5)
    records = []
    result = fit_normal(model, blocks(X, y, comm), comm, log=records.append)
    expected = np.linalg.lstsq(with_intercept(X), y, rcond=None)[0]
    assert records[0]["solve"] == "lstsq"
    # The solution is not unique: compare the fitted values, which are.
    np.testing.assert_allclose(model.predict(result.theta, X), with_intercept(X) @ expected, rtol=0, atol=1e-9)
    assert same_bits_everywhere(result.theta)


def test_normal_refuses_cholesky_past_a_condition_number_of_1e12(comm):
    """Two columns equal to 1e-7: the condition number is near 1e15, so the solve is least squares."""
    X, y = regression(300, 3, seed=5)
    X = np.hstack([X, X[:, :1] + 1e-7 * np.random.default_rng(6).normal(size=(300, 1))])
    records = []
    result = fit_normal(mt.create_model("linear", 4), blocks(X, y, comm), comm, log=records.append)
    assert records[0]["solve"] == "lstsq"
    best = np.linalg.lstsq(with_intercept(X), y, rcond=None)[0]
    rss, least = (float(np.sum((with_intercept(X) @ t - y) ** 2)) for t in (result.theta, best))
    assert least <= rss <= least * (1 + 1e-3)  # the direction of the 1e-7 difference is cut: nearly the least


@pytest.mark.parametrize("spread_means, passes", [(False, 1), (True, 2)])
def test_normal_logs_zero_loss_for_an_exact_fit(comm, spread_means, passes):
    X = regression(120, 3, seed=7)[0] if spread_means else np.random.default_rng(7).normal(size=(120, 3))
    y = X @ np.array([0.5, -1.0, 2.0]) + 4.0
    records = []
    fit_normal(mt.create_model("linear", 3), blocks(X, y, comm), comm, log=records.append)
    assert records[0]["passes"] == passes
    assert records[0]["loss"] < 1e-12 and records[0]["metric"] < 1e-6


def test_normal_keeps_float32_data_in_float32(comm):
    X, y = regression(200, 3, seed=3)
    model = mt.create_model("linear", 3)
    result = fit_normal(model, blocks(X.astype(np.float32), y.astype(np.float32), comm), comm, 0.01)
    assert result.theta.dtype == np.float32
    expected = ridge(X.astype(np.float32).astype(float), y.astype(np.float32).astype(float), 0.01)
    np.testing.assert_allclose(result.theta, expected, rtol=1e-5, atol=1e-5)


def test_normal_sums_float32_rows_in_float64(comm):
    """20,000 float32 rows: sums in float32 would lose digits; summed in float64, the answer is the
    float64 solution on the same numbers, rounded once to float32."""
    rng = np.random.default_rng(8)
    X = (rng.normal(size=(20_000, 4)) + 20.0).astype(np.float32)  # means 20: centring is 1 pass yet amplifies errors
    y = (X.astype(float) @ np.array([1.0, -2.0, 0.5, 3.0]) + rng.normal(size=20_000)).astype(np.float32)
    result = fit_normal(mt.create_model("linear", 4), blocks(X, y, comm), comm, 0.01)
    expected = ridge(X.astype(float), y.astype(float), 0.01)
    np.testing.assert_allclose(result.theta, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


def test_normal_refuses_too_many_features_with_the_memory_it_needs(comm):
    X, y = regression(20, 300)
    with pytest.raises(ValueError, match=r"300 features need \d+ MiB per rank, more than the limit of 1 MiB") as error:
        fit_normal(mt.create_model("linear", 300), blocks(X, y, comm), comm, memory_limit=2**20)
    need = int(str(error.value).split(" need ")[1].split()[0])
    # at least what memory_needed says it counts (the Gram matrix, its scratch, the matrix to factor,
    # its factor and the packed buffer: 4.5 d^2 numbers), and not wildly more
    assert 4.5 * 8 * 300 * 300 / 2**20 <= need <= 10 * 8 * 300 * 300 / 2**20


def test_normal_refuses_a_negative_l2_and_data_without_rows(comm):
    X, y = regression(20, 3)
    with pytest.raises(ValueError, match="l2 must be a finite number >= 0, not -0.5"):
        fit_normal(mt.create_model("linear", 3), blocks(X, y, comm), comm, -0.5)
    empty = mt.Dataset(X[:0], y[:0], 0, 0, "empty", np.zeros(comm.size, dtype=np.int64))
    with pytest.raises(ValueError, match="at least one row, and no rank has any"):
        fit_normal(mt.create_model("linear", 3), empty, comm)


def test_normal_refuses_other_models(comm):
    X, y = regression(20, 3)
    with pytest.raises(TypeError, match="linear regression only, not the logistic model"):
        fit_normal(mt.create_model("logistic", 3), blocks(X, (y > 0).astype(float), comm), comm)


def classification(n: int, d: int, classes: int = 2, scales: tuple = (0.3, 3.0), seed: int = 0):
    """Features of scales spread over ``scales`` and labels from a noisy linear rule."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.geomspace(*scales, d)
    scores = X @ (rng.normal(size=(d, classes)) / np.geomspace(*scales, d)[:, None]) + rng.gumbel(size=(n, classes))
    return X, np.argmax(scores, axis=1).astype(float)


def sklearn_fit(X, y, l2, solver, tol=1e-4):
    """scikit-learn's LogisticRegression on mean loss + (l2/2)||w||^2: (theta in mpitrain's layout, iterations)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1 / (len(y) * l2), tol=tol, solver=solver, max_iter=10_000).fit(X, y)
    coef = clf.coef_[0] if clf.coef_.shape[0] == 1 else clf.coef_.T.ravel()
    return np.concatenate([coef, clf.intercept_]), int(clf.n_iter_[0])


def serial_objective(model, theta, X, y, l2):
    """Mean loss + (l2/2)||w||^2 on all rows, on this process alone."""
    loss, _ = model.sums(theta, X, y)
    w = theta[:model.n_penalized]
    return loss / len(y) + 0.5 * l2 * w @ w


@pytest.mark.parametrize("kind, classes, solver", [("logistic", 2, "lbfgs"), ("softmax", 4, "lbfgs"),
                                                   ("logistic", 2, "newton-cg"), ("softmax", 3, "newton-cg")])
def test_solvers_match_scikit_learn_on_the_same_objective(comm, kind, classes, solver):
    X, y = classification(900, 6, classes, seed=classes)
    l2 = 1e-3
    model = mt.create_model(kind, 6, **({"n_classes": classes} if kind == "softmax" else {}))
    fit = fit_lbfgs if solver == "lbfgs" else fit_newton_cg
    records = []
    result = fit(model, blocks(X, y, comm), comm, l2, tol=1e-6, log=records.append)
    expected, iterations = sklearn_fit(X, y, l2, solver, tol=1e-6)
    assert result.converged and result.gradient_max <= 1e-6
    optimum = serial_objective(model, expected, X, y, l2)
    assert abs(result.objective - optimum) <= 1e-9 * optimum
    assert abs(serial_objective(model, result.theta, X, y, l2) - result.objective) <= 1e-12 * optimum
    assert abs(result.steps - iterations) <= 0.2 * iterations + 1
    assert (result.products >= result.steps) if solver == "newton-cg" else (result.products == 0)
    assert result.message.startswith("the largest gradient entry")
    # one record per iteration, an epoch each, with the objective and the metric over all rows at that point
    assert [r["step"] for r in records] == list(range(1, result.steps + 1))
    assert [r["epoch"] for r in records] == [float(r["step"]) for r in records]
    assert abs(records[-1]["loss"] - result.objective) <= 1e-12 * optimum
    assert records[-1]["metric"] == model.metric(model.sums(result.theta, X, y)[1], len(y))
    assert all(r["evaluations"] >= 1 for r in records) and records[-1]["gradient_max"] == result.gradient_max
    assert same_bits_everywhere(result.theta)


@pytest.mark.parametrize("solver", [fit_lbfgs, fit_newton_cg])
def test_distributed_iterates_equal_the_serial_solver_on_all_rows(comm, solver):
    X, y = classification(700, 5, scales=(0.05, 20.0), seed=4)
    model = mt.create_model("logistic", 5)
    distributed = solver(model, blocks(X, y, comm), comm, l2=1e-4, max_iter=30)
    alone = mt.Comm(MPI.COMM_SELF)
    serial = solver(model, mt.Dataset(X, y, 0, len(y), "all", np.array([len(y)])), alone, 1e-4, max_iter=30)
    assert distributed.steps == serial.steps and distributed.evaluations == serial.evaluations
    np.testing.assert_allclose(distributed.theta, serial.theta, rtol=1e-7, atol=1e-9)
    assert same_bits_everywhere(distributed.theta)


def test_lbfgs_on_linear_regression_reaches_ridge(comm):
    X, y = regression(400, 5, seed=5)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    result = fit_lbfgs(mt.create_model("linear", 5), blocks(X, y, comm), comm, 0.01, tol=1e-10)
    np.testing.assert_allclose(result.theta, ridge(X, y, 0.01), rtol=0, atol=1e-8)
    assert same_bits_everywhere(result.theta)


def test_lbfgs_trains_an_mlp_in_full_batch(comm):
    X, y = classification(300, 4, 3, seed=6)
    model = mt.create_model("mlp", 4, hidden=(8,), n_classes=3)
    data = blocks(X, y, comm)
    start = model.init(1)
    result = fit_lbfgs(model, data, comm, 1e-3, max_iter=40, theta=start)
    before = serial_objective(model, start, X, y, 1e-3)
    assert result.objective < 0.8 * before
    assert abs(serial_objective(model, result.theta, X, y, 1e-3) - result.objective) <= 1e-12 * before
    assert same_bits_everywhere(result.theta)


def test_newton_cg_refuses_a_model_without_hessian_products(comm):
    X, y = classification(30, 3, 3)
    with pytest.raises(TypeError, match="newton-cg needs Hessian-vector products, which the mlp model"):
        fit_newton_cg(mt.create_model("mlp", 3, hidden=(4,), n_classes=3), blocks(X, y, comm), comm)


@pytest.fixture
def shared_dir():
    """A temporary directory made by rank 0 and known to every rank."""
    import tempfile

    path = tempfile.mkdtemp() if MPI.COMM_WORLD.rank == 0 else None
    yield MPI.COMM_WORLD.bcast(path, root=0)
    MPI.COMM_WORLD.Barrier()


@pytest.mark.parametrize("options", [mt.LBFGS(history=3, tol=0.0), mt.NewtonCG(tol=0.0)])
def test_resuming_a_solver_from_a_checkpoint_takes_the_same_steps_bit_for_bit(comm, shared_dir, options):
    X, y = classification(400, 5, 3, scales=(0.1, 10.0), seed=7)
    model = mt.create_model("softmax", 5, n_classes=3)
    data = blocks(X, y, comm)
    whole = mt.fit(model, data, comm, options, steps=9, l2=1e-3)
    out = f"{shared_dir}/run"
    mt.train(model, data, comm, options, steps=4, l2=1e-3, out=out, checkpoint_every=4)
    resumed = mt.train(model, data, comm, options, steps=9, l2=1e-3, out=out, resume="auto")
    assert resumed.resumed_from == 4 and resumed.result.steps == 9
    assert np.array_equal(resumed.result.theta, whole.theta)
    assert same_bits_everywhere(resumed.result.theta)


def test_the_solvers_run_through_fit_and_train_with_typed_options(comm, shared_dir):
    X, y = regression(300, 4, seed=8)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    model = mt.create_model("linear", 4)
    data = blocks(X, y, comm)
    exact = mt.fit(model, data, comm, "normal", l2=0.1)
    assert exact.converged and exact.message == "solved exactly" and exact.steps == 1
    np.testing.assert_allclose(exact.theta, ridge(X, y, 0.1), rtol=0, atol=1e-10 * np.abs(exact.theta).max())
    run = mt.train(model, data, comm, mt.LBFGS(tol=1e-8), l2=0.1, out=f"{shared_dir}/lbfgs")
    assert run.result.converged and run.summary["algorithm"] == "lbfgs"
    np.testing.assert_allclose(run.result.theta, exact.theta, rtol=0, atol=1e-7 * np.abs(exact.theta).max())
    with pytest.raises(mt.OptionError, match="history must be an integer >= 1, not 0"):
        mt.LBFGS(history=0)


class Supervisor(Hooks):
    """Hooks that record the checkpoints asked for; ``voter`` (a rank) votes to stop at every step."""

    listens = True

    def __init__(self, voter: int = -1, every: int = 0) -> None:
        self.voter, self.every, self.saved = voter, every, []

    def stop_vote(self) -> float:
        return 1.0 if MPI.COMM_WORLD.rank == self.voter else 0.0

    def checkpoint_due(self, steps_done: int) -> bool:
        return self.every > 0 and steps_done % self.every == 0

    def save(self, state: State, synced: bool) -> None:
        self.saved.append((state.step, synced))


@pytest.mark.parametrize("options", [mt.LBFGS(tol=0.0), mt.NewtonCG(tol=0.0)])
def test_a_stop_vote_from_one_rank_stops_a_solver_after_its_step_with_one_shared_checkpoint(comm, options):
    X, y = classification(200, 4, seed=9)
    hooks = Supervisor(voter=comm.size - 1)
    result = mt.fit(mt.create_model("logistic", 4), blocks(X, y, comm), comm, options, steps=10, l2=1e-3, hooks=hooks)
    assert result.stopped and result.steps == 1 and not result.converged
    assert hooks.saved == [(1, True)]  # theta and the solver's memory are the same on every rank: one record
    assert same_bits_everywhere(result.theta)


def test_normal_solves_once_whatever_the_steps_and_checkpoints_one_shared_record(comm):
    X, y = regression(120, 3, seed=10)
    hooks = Supervisor(every=1)
    result = mt.fit(mt.create_model("linear", 3), blocks(X, y, comm), comm, mt.Normal(), steps=5, l2=0.1, hooks=hooks)
    assert result.steps == 1 and not result.stopped and result.converged
    assert hooks.saved == [(1, True)]
    np.testing.assert_allclose(result.theta, ridge(X, y, 0.1), rtol=0, atol=1e-10 * np.abs(result.theta).max())


def test_a_solver_started_at_its_minimum_takes_no_iteration(comm):
    X, y = classification(200, 4, seed=11)
    model, data = mt.create_model("logistic", 4), blocks(X, y, comm)
    result = mt.fit(model, data, comm, mt.LBFGS(tol=10.0), steps=10)
    assert result.steps == 0 and result.converged and not result.stopped and result.evaluations == 1
    assert result.message.startswith("the largest gradient entry") and np.array_equal(result.theta, np.zeros(5))


def test_a_solver_that_runs_out_of_steps_says_so(comm):
    X, y = classification(300, 5, seed=12)
    result = fit_lbfgs(mt.create_model("logistic", 5), blocks(X, y, comm), comm, l2=1e-4, tol=1e-12, max_iter=3)
    assert result.steps == 3 and not result.converged
    assert result.message == "3 steps done before the gradient test (tol = 1e-12)"


def test_a_solver_counts_the_rows_its_evaluations_visit_as_samples(comm):
    X, y = classification(300, 5, seed=13)
    model = mt.create_model("logistic", 5)
    rows, sums = [0], model.sums

    def counting(theta, X, *args, **kwargs):
        rows[0] += len(X)
        return sums(theta, X, *args, **kwargs)

    model.sums = counting
    result = fit_lbfgs(model, blocks(X, y, comm), comm, l2=1e-3, max_iter=5)
    assert result.samples == MPI.COMM_WORLD.allreduce(rows[0]) and result.samples >= 5 * len(y)


def test_a_solver_refuses_labels_its_model_cannot_take_on_any_rank(comm):
    X, y = classification(60, 3, seed=14)
    y[-1] = 2.0  # in the last rank's block
    with pytest.raises(mt.JobError, match="logistic regression needs labels 0 or 1, but row 59 has 2.0"):
        fit_lbfgs(mt.create_model("logistic", 3), blocks(X, y, comm), comm)


def test_the_solver_functions_default_to_no_l2_seed_0_and_their_typed_options_defaults(comm):
    import inspect

    X, y = classification(300, 4, 3, seed=6)
    model = mt.create_model("mlp", 4, hidden=(8,), n_classes=3)
    data = blocks(X, y, comm)
    implicit = fit_lbfgs(model, data, comm, max_iter=12)
    explicit = mt.fit(model, data, comm, mt.LBFGS(), steps=12, l2=0.0, theta=model.init(0))
    assert implicit.steps == 12 and not implicit.converged  # premise: more iterations than the 10 pairs kept
    assert np.array_equal(implicit.theta, explicit.theta)
    linear = mt.create_model("logistic", 4)
    two = blocks(X, (y > 0).astype(float), comm)
    assert np.array_equal(fit_newton_cg(linear, two, comm).theta, mt.fit(linear, two, comm, mt.NewtonCG(), l2=0.0).theta)
    given = {name: p.default for f in (fit_lbfgs, fit_newton_cg) for name, p in inspect.signature(f).parameters.items()}
    assert (given["history"], given["tol"], given["max_inner"]) == (mt.LBFGS().history, mt.NewtonCG().tol,
                                                                    mt.NewtonCG().max_inner)
    assert given["max_iter"] == 100 and mt.LBFGS().tol == mt.NewtonCG().tol


def test_ranks_that_start_from_different_points_end_in_an_error_not_in_different_models(comm):
    if comm.size < 2:
        pytest.skip("needs two ranks or more: one rank cannot disagree with itself")
    X, y = classification(200, 4, seed=15)
    with pytest.raises(RuntimeError, match="parameters differ between ranks after training"):
        fit_lbfgs(mt.create_model("logistic", 4), blocks(X, y, comm), comm, l2=1e-3, max_iter=3,
                  theta=np.full(5, 0.1 * comm.rank))
