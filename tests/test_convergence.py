"""--tol for gd and sgd: the stopping rule against scikit-learn's, and the run's record of it."""
import numpy as np
import pytest

import mpitrain as mt
from mpitrain.algorithms.config import OptionError
from mpitrain.algorithms.loop import Convergence


def sklearn_counts(losses, tol):
    """scikit-learn's own no-improvement counter (the one its MLP and SGD estimators share) over ``losses``."""
    nn = pytest.importorskip("sklearn.neural_network")
    mlp = nn.MLPClassifier(tol=tol)
    mlp.loss_curve_, mlp.best_loss_, mlp._no_improvement_count = [], np.inf, 0
    counts = []
    for loss in losses:
        mlp.loss_curve_.append(loss)
        mlp._update_no_improvement_count(False, None, None, None)
        counts.append(mlp._no_improvement_count)
    return counts


@pytest.mark.parametrize("seed", range(5))
def test_the_rule_counts_as_scikit_learn_and_stops_at_n_iter_no_change(seed):
    rng = np.random.default_rng(seed)
    losses = list(np.maximum.accumulate(rng.uniform(0, 0.05, 60))[::-1] + rng.normal(0, 0.003, 60))
    tol, n = 0.002, 3
    rule, mine = Convergence(tol, n), []
    stopped = None
    for i, loss in enumerate(losses):
        done = rule.update(loss)
        mine.append(rule.count)
        if done and stopped is None:
            stopped = i
    assert mine == sklearn_counts(losses, tol)
    # scikit-learn's SGD ends the epoch where the count reaches n_iter_no_change (``>=``)
    assert stopped == next((i for i, c in enumerate(mine) if c >= n), None)


def test_gd_with_tol_stops_records_convergence_and_python_takes_the_keyword(tmp_path):
    comm = mt.world()
    data = mt.load("synthetic:classification,n=200,d=5,noise=1.0,seed=4", comm)
    model = mt.create_model("logistic", data.n_features)
    records = []
    run = mt.train(model, data, comm, mt.GD(tol=1e-4, n_iter_no_change=3), steps=5000, lr=0.5, on_log=records.append,
                   out=str(tmp_path / "r"))
    assert run.result.converged and run.summary["converged"] and run.summary["steps_run"] == run.result.steps < 5000
    losses = [r["loss"] for r in records]
    assert len(losses) == run.result.steps  # gd logs every step
    assert sklearn_counts(losses, 1e-4)[-1] == 3 and max(sklearn_counts(losses, 1e-4)[:-1]) < 3
    never = mt.train(model, data, comm, mt.GD(tol=1e-4), steps=20, lr=0.5)
    assert never.result.converged is False and never.summary["converged"] is False
    plain = mt.train(model, data, comm, mt.GD(), steps=20, lr=0.5)
    assert plain.result.converged is None and "converged" not in plain.summary
    assert np.array_equal(plain.result.theta, never.result.theta)  # the test changes nothing until it stops


def test_sgd_tests_each_epoch_and_settings_feed_the_solvers():
    comm = mt.world()
    data = mt.load("synthetic:classification,n=256,d=5,noise=1.0,seed=4", comm)
    model = mt.create_model("logistic", data.n_features)
    records = []
    run = mt.train(model, data, comm, "sgd", mt.Settings(steps=4000, lr=0.1, batch_size=32, tol=1e-3),
                   on_log=records.append)
    assert run.result.converged and run.result.steps % 8 == 0 and run.result.steps < 4000  # at an epoch end
    assert sklearn_counts([r["loss"] for r in records], 1e-3)[-1] == 5
    assert mt.Settings(steps=5, lr=1.0, tol=1e-7).loop("lbfgs").tol == 1e-7
    assert mt.Settings(steps=5, lr=1.0).loop("newton-cg").tol == 1e-4
    with pytest.raises(OptionError, match="n_iter_no_change must be an integer >= 1"):
        mt.SGD(32, tol=1e-3, n_iter_no_change=0)
    with pytest.raises(OptionError, match="tol must be a finite number >= 0"):
        mt.GD(tol=-1.0)
