"""The solvers from the command line: --algorithm lbfgs|newton-cg|normal, --history and --tol."""
import json

import numpy as np
import pytest

from launch import run

SPEC = "synthetic:classification,n=2000,d=8,noise=1"


@pytest.mark.parametrize("flags, message", [
    (["--model", "logistic", "--algorithm", "normal"], "--algorithm normal solves --model linear exactly, not logistic"),
    (["--model", "logistic", "--algorithm", "gd", "--history", "5"], "--history only applies to --algorithm lbfgs"),
    (["--model", "linear", "--algorithm", "normal", "--tol", "1e-3"],
     "--tol only applies to --algorithm gd, sgd, lbfgs or newton-cg"),
    (["--model", "mlp", "--hidden", "4", "--algorithm", "newton-cg"], "which --model mlp lacks; use lbfgs"),
    (["--model", "logistic", "--algorithm", "lbfgs", "--batch-size", "10"], "--batch-size has no effect with --algorithm lbfgs"),
    (["--model", "logistic", "--algorithm", "lbfgs", "--optimizer", "adam"],
     "--optimizer has no effect with --algorithm lbfgs, which chooses its own step sizes; drop it"),
    (["--model", "logistic", "--algorithm", "lbfgs", "--lr", "0.5"],
     "--lr has no effect with --algorithm lbfgs, which chooses its own step sizes; drop it"),
    (["--model", "softmax", "--algorithm", "newton-cg", "--lr", "0.5"],
     "--lr has no effect with --algorithm newton-cg, which chooses its own step sizes; drop it"),
    (["--model", "linear", "--algorithm", "normal", "--lr", "0.5"],
     "--lr has no effect with --algorithm normal, which solves exactly in one pass; drop it"),
    (["--model", "logistic", "--algorithm", "lbfgs", "--schedule", "cosine"], "--schedule has no effect with --algorithm lbfgs"),
    (["--model", "logistic", "--algorithm", "lbfgs", "--warmup-steps", "5"], "--warmup-steps has no effect with"),
    (["--model", "logistic", "--algorithm", "newton-cg", "--momentum", "0.5"], "--momentum has no effect with"),
    (["--model", "logistic", "--algorithm", "lbfgs", "--clip-norm", "1"], "--clip-norm has no effect with"),
])
def test_solver_flags_that_do_not_apply_give_one_usage_error(tmp_path, flags, message):
    done = run("train", *flags, "--data", SPEC, "--out", str(tmp_path / "r"), timeout=60)
    assert done.returncode == 2
    assert done.stderr.count(message) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("algorithm", ["lbfgs", "newton-cg"])
def test_solvers_reach_scikit_learns_objective_from_the_command_line(tmp_path, algorithm):
    sklearn = pytest.importorskip("sklearn.linear_model")
    from mpitrain.data import open_source

    l2, out = 1e-3, tmp_path / "r"
    tol = ["--history", "5", "--tol", "1e-7"] if algorithm == "lbfgs" else ["--tol", "1e-7"]
    done = run("train", "--model", "logistic", "--algorithm", algorithm, *tol, "--data", SPEC, "--l2", str(l2),
               "--out", str(out), "--quiet", timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, len(records) + 1)) and len(records) < 100
    assert records[-1]["gradient_max"] <= 1e-7 and all(r["evaluations"] >= 1 for r in records)
    source = open_source(SPEC)
    X, y = source.read(0, source.n_total)
    clf = sklearn.LogisticRegression(C=1 / (len(y) * l2), tol=1e-8, max_iter=1000).fit(X, y)
    z = X @ clf.coef_[0] + clf.intercept_[0]
    optimum = np.mean(np.logaddexp(0, z) - y * z) + l2 / 2 * clf.coef_[0] @ clf.coef_[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == algorithm and abs(summary["final_train_loss"] - optimum) <= 1e-9 * optimum


def test_a_solver_given_only_its_defaults_runs_and_prints_no_lr(tmp_path):
    """Default resolution must not trip the refusal: no --lr note, no lr in --print-config, and a
    config printed for a solver runs again as it is."""
    common = ["--model", "logistic", "--algorithm", "lbfgs", "--data", SPEC]
    printed = run("train", *common, "--print-config", "--out", str(tmp_path / "p"), timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert "lr = " not in printed.stdout and "optimizer = \"sgd\"" in printed.stdout
    config = tmp_path / "run.toml"
    config.write_text(printed.stdout.replace(str(tmp_path / "p"), str(tmp_path / "r")))
    done = run("train", "--config", str(config), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--lr" not in done.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["algorithm"] == "lbfgs" and summary["settings"]["lr"] is None
