"""The typed training options check themselves once, in library words, and fit takes any optimizer pair."""
import numpy as np
import pytest

import mpitrain as mt
from mpitrain import optim
from mpitrain.testing import ModelCheckError, check_model


@pytest.mark.parametrize("build, words", [
    (lambda: mt.SGD(batch_size=None), "batch_size must be an integer >= 1, not None"),
    (lambda: mt.SGD(batch_size=0), "batch_size must be an integer >= 1, not 0"),
    (lambda: mt.LocalSGD(batch_size=8, sync_every=0), "sync_every must be an integer >= 1, not 0"),
    (lambda: mt.LocalSGD(8, 2, local_state="share"), "unknown local_state 'share'"),
    (lambda: mt.Reduce("fastest"), "unknown allreduce algorithm 'fastest'"),
    (lambda: mt.Reduce(compress="fp8"), "unknown compression 'fp8'"),
    (lambda: mt.Reduce(compress="bf16", overlap=True), "cannot be combined"),
    (lambda: mt.Settings(steps=10, lr=-0.1), "lr must be a finite number > 0"),
    (lambda: mt.Settings(steps=0, lr=0.1), "steps must be an integer >= 1, not 0"),
    (lambda: mt.Settings(steps=5, lr=0.1, seed=2**70), "seed must be an integer in [0, 2**63)"),
    (lambda: mt.Settings(steps=5, lr=0.1, l2=float("nan")), "l2 must be a finite number >= 0"),
])
def test_bad_options_raise_a_value_error_that_names_the_option_and_value(build, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")
                       .replace("[", r"\[")):
        build()


def test_settings_name_the_missing_loop_option():
    with pytest.raises(mt.OptionError, match="sgd needs batch_size"):
        mt.Settings(steps=5, lr=0.1).loop("sgd")
    # One Settings serves several algorithms: each takes the fields it uses.
    assert mt.Settings(steps=5, lr=0.1, batch_size=4, sync_every=3).loop("gd") == mt.GD()
    assert mt.Settings(steps=5, lr=0.1, batch_size=4, sync_every=3).loop("sgd") == mt.SGD(4)
    with pytest.raises(mt.OptionError, match="local-sgd needs sync_every"):
        mt.Settings(steps=5, lr=0.1, batch_size=4).loop("local-sgd")
    assert mt.Settings(steps=5, lr=0.1, batch_size=4, sync_every=2).loop("local-sgd") == mt.LocalSGD(4, 2)


def test_compression_and_overlap_are_refused_for_averaging_loops():
    with pytest.raises(mt.OptionError, match="compress applies to the gradient reduction"):
        mt.Reduce(compress="bf16").check(mt.LocalSGD(8, 2))
    with pytest.raises(mt.OptionError, match="overlap applies"):
        mt.Reduce(overlap=True).check(mt.OneShot(8))
    mt.Reduce(compress="fp16").check(mt.SGD(8))


def serial_data(n=64, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X @ np.arange(1.0, d + 1) + 0.5
    return mt.Dataset(X, y, 0, n, "memory", np.array([n]))


class OneRank(mt.Comm):
    """A communicator of one rank without MPI: reductions leave buffers as they are."""

    rank, size, busy = 0, 1, False

    def __init__(self) -> None:  # no MPI communicator behind it
        pass

    def Allreduce(self, buf, op="sum"):
        return buf

    def Bcast(self, buf, root=0):
        return buf

    def agree_int(self, what, value, context):
        pass

    def raise_if_any(self, error):
        if error:
            raise mt.JobError(error)

    def identical(self, arr):
        return True

    def ranks_on_node(self):
        return 1


def test_fit_takes_a_users_own_optimizer_pair_and_schedule():
    data, model = serial_data(), mt.create_model("linear", 3)
    calls = []

    def init(params):
        return ()

    def update(grad, state, params):  # sign descent, an optimizer mpitrain does not ship
        calls.append(1)
        return np.sign(grad), state

    result = mt.fit(model, data, OneRank(), mt.GD(), steps=4, lr=lambda step: 0.5 / (step + 1),
                    optimizer=optim.GradientTransformation(init, update))
    # Independent reference: the same sign steps on the mean squared-error gradient, by hand.
    A = np.hstack([data.X, np.ones((64, 1))])
    theta = np.zeros(4)
    for step in range(4):
        theta -= 0.5 / (step + 1) * np.sign(A.T @ (A @ theta - data.y) / 64)
    np.testing.assert_array_equal(result.theta, theta)
    assert len(calls) == 4


def test_fit_rejects_what_is_not_an_optimizer():
    with pytest.raises(mt.OptionError, match="optimizer must be"):
        mt.fit(mt.create_model("linear", 3), serial_data(), OneRank(), mt.GD(), steps=1, lr=0.1, optimizer=42)


@pytest.mark.parametrize("loop", [mt.LBFGS(), mt.NewtonCG(), mt.Normal(), "lbfgs", "normal"])
@pytest.mark.parametrize("given, words", [
    ({"lr": 0.1}, "lr does not apply to {}, which"), ({"optimizer": "adam"}, "optimizer does not apply to {}"),
    ({"reduce": mt.Reduce(compress="fp16")}, "compress applies to the gradient reduction of gd and sgd, not to {}"),
])
def test_the_solvers_refuse_the_options_of_gradient_steps_instead_of_ignoring_them(loop, given, words, tmp_path):
    name = loop if isinstance(loop, str) else loop.name
    model, data = mt.create_model("linear", 3), serial_data()
    with pytest.raises(mt.OptionError, match=words.format(name)):
        mt.fit(model, data, OneRank(), loop, **given)
    if "reduce" not in given:  # train refuses before it claims the output directory
        with pytest.raises(mt.OptionError, match=words.format(name)):
            mt.train(model, data, OneRank(), loop, out=str(tmp_path / "r"), **given)
        assert not (tmp_path / "r").exists()
    mt.fit(model, data, OneRank(), loop)  # the same call without them runs


@pytest.mark.parametrize("field, value", [("lr", 0.1), ("optimizer", "adam"), ("schedule", "cosine"),
                                          ("warmup_steps", 2), ("momentum", 0.5)])
def test_settings_for_a_solver_refuse_a_step_size_or_optimizer_field(field, value):
    settings = mt.Settings(steps=5, **{field: value})
    with pytest.raises(mt.OptionError, match=f"{field} does not apply to lbfgs"):
        mt.fit(mt.create_model("linear", 3), serial_data(), OneRank(), "lbfgs", settings)
    with pytest.raises(mt.OptionError, match="sgd takes gradient steps and needs lr"):
        mt.Settings(steps=5, batch_size=4).options("sgd", 3)
    assert mt.Settings(steps=5, batch_size=4).options("lbfgs", 3)["loop"] == mt.LBFGS()


def test_sgd_without_a_batch_size_is_refused_not_run_as_full_batch():
    with pytest.raises(mt.OptionError, match="sgd needs options"):
        mt.fit(mt.create_model("linear", 3), serial_data(), OneRank(), "sgd", steps=1, lr=0.1)
    with pytest.raises(mt.OptionError, match="sgd needs batch_size"):
        mt.fit(mt.create_model("linear", 3), serial_data(), OneRank(), "sgd", mt.Settings(steps=1, lr=0.1))


class Quadratic(mt.Model):
    """loss_i = (x_i . w - y_i)^2 / 2; the ``accumulate`` flavour writes grad += ..., the classic mistake."""

    name = "test-quadratic"
    metric_name = "mse"

    def __init__(self, n_features, accumulate=False, foreign_ready=False):
        self.n_features, self.accumulate, self.foreign_ready = n_features, accumulate, foreign_ready
        self.layout = mt.Layout(weights={"w": (n_features,)}, biases={})

    def sums(self, theta, X, y, grad=None, ready=None):
        r = X @ theta - y
        if grad is not None:
            if self.accumulate:
                grad += X.T @ r
            else:
                grad[...] = X.T @ r
            if ready is not None:
                ready(grad.copy() if self.foreign_ready else grad)
        return 0.5 * float(r @ r), float(r @ r)

    def metric(self, s, n):
        return s / n

    def predict(self, theta, X):
        return X @ theta

    def check_labels(self, y, start=0):
        return None


def test_check_model_passes_a_correct_model_and_the_built_in_ones():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 4))
    check_model(Quadratic(4), X, rng.standard_normal(20))
    check_model(mt.create_model("mlp", 4, hidden=(5,), n_classes=3), X, rng.integers(0, 3, 20))
    check_model(mt.create_model("logistic", 4), X, rng.integers(0, 2, 20))


def test_check_model_catches_grad_plus_equals():
    X = np.random.default_rng(2).standard_normal((20, 4))
    with pytest.raises(ModelCheckError, match="must overwrite grad"):
        check_model(Quadratic(4, accumulate=True), X, np.ones(20))


def test_check_model_catches_a_ready_part_outside_grad():
    X = np.random.default_rng(3).standard_normal((20, 4))
    with pytest.raises(ModelCheckError, match="view inside grad"):
        check_model(Quadratic(4, foreign_ready=True), X, np.ones(20))


def test_check_model_catches_a_wrong_gradient():
    class Halved(Quadratic):
        name = "test-halved"

        def sums(self, theta, X, y, grad=None, ready=None):
            out = super().sums(theta, X, y, grad, ready)
            if grad is not None:
                grad *= 0.5
            return out

    X = np.random.default_rng(4).standard_normal((20, 4))
    with pytest.raises(ModelCheckError, match="finite differences"):
        check_model(Halved(4), X, np.ones(20))


def test_a_registered_model_saves_and_loads_by_name(tmp_path):
    from mpitrain.models import register, save_arrays
    from mpitrain.outputs import write_npz

    register(Quadratic)
    model, theta = Quadratic(3), np.array([1.0, -2.0, 0.5])
    write_npz(str(tmp_path / "m.npz"), save_arrays(model, theta))
    loaded, back = mt.load_model(str(tmp_path / "m.npz"))
    assert isinstance(loaded, Quadratic) and np.array_equal(back, theta)
    with pytest.raises(ValueError, match="already registered"):
        register(type("Other", (Quadratic,), {}))


def test_loading_an_unregistered_model_says_how_to_register_it(tmp_path):
    from mpitrain.models import save_arrays
    from mpitrain.outputs import write_npz

    class Unknown(Quadratic):
        name = "never-registered"

    write_npz(str(tmp_path / "m.npz"), save_arrays(Unknown(2), np.zeros(2)))
    with pytest.raises(mt.UsageError, match="register_model"):
        mt.load_model(str(tmp_path / "m.npz"))


def test_a_loss_that_grows_by_orders_of_magnitude_is_divergence_even_while_finite():
    data, model = serial_data(n=200, d=4), mt.create_model("linear", 4)
    data.X *= 3.0  # curvature ~9: lr 0.5 multiplies the error by about 3.5 a step
    with pytest.raises(mt.JobError, match=r"the loss grew from .* by step \d+.*diverged; lower --lr"):
        mt.fit(model, data, OneRank(), mt.GD(), steps=40, lr=0.5)
    # The same data with a stable step trains through.
    assert np.isfinite(mt.fit(model, data, OneRank(), mt.GD(), steps=40, lr=0.05).theta).all()


def test_a_model_too_large_for_the_node_is_refused_with_the_memory_it_needs():
    data = serial_data(n=50, d=5)
    model = mt.create_model("mlp", 5, hidden=(10**6, 10**6), n_classes=2)  # 10^12 parameters
    data.y = (data.y > 0).astype(float)

    with pytest.raises(mt.JobError, match=r"needs at least \d+\.\d GiB per rank \(1,000,00\d,\d{3},\d{3} parameters\)"):
        mt.fit(model, data, OneRank(), mt.SGD(batch_size=10), steps=1, lr=0.1)


def test_a_decay_factor_that_is_not_a_decay_is_refused():
    with pytest.raises(mt.OptionError, match=r"decay_factor must be in \(0, 1\]"):
        mt.Settings(steps=10, lr=0.1, schedule="step", decay_every=2, decay_factor=1e300)


def test_an_overflow_at_the_first_step_blames_the_data_not_the_learning_rate():
    data, model = serial_data(n=20, d=3), mt.create_model("linear", 3)
    data.X[7, 1] = 1e308  # finite, but its square is not
    with pytest.raises(mt.JobError, match="at the first step, before any update: the data hold values too large"):
        mt.fit(model, data, OneRank(), mt.GD(), steps=3, lr=0.1, theta=np.ones(4))
