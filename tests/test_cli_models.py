"""End to end, issue 3: softmax/MLP models, optimizer flags and the built-in data sets under mpiexec."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from test_cli import run

pytestmark = pytest.mark.e2e

README_MLP = ["train", "--model", "mlp", "--hidden", "64", "--data", "digits", "--test-fraction", "0.25",
              "--standardize", "--algorithm", "sgd", "--optimizer", "adam", "--lr", "0.003", "--l2", "1e-4",
              "--batch-size", "32", "--steps", "1200", "--quiet"]


def test_mlp_on_digits_reaches_the_accuracy_target_and_predict_reuses_the_scaling(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "mlp"
    done = run(*README_MLP, "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_metric"] >= 0.96 and summary["n_samples"] == 1346
    assert summary["model_options"] == {"hidden": [64], "activation": "relu", "loss": "cross-entropy", "n_classes": 10}
    assert summary["settings"]["optimizer"] == "adam" and summary["preparation"]["standardize"] is True
    pred = run("predict", "--from", str(out / "model.npz"), "--data", "digits", "--out", str(tmp_path / "p.npy"),
               "--proba")
    assert pred.returncode == 0, pred.stderr
    p = np.load(tmp_path / "p.npy")
    assert p.shape == (1797, 10) and np.allclose(p.sum(axis=1), 1.0)
    # The model file carries the standardisation, so predict scores the raw rows as training saw them.
    from sklearn.datasets import load_digits

    assert np.mean(p.argmax(axis=1) == load_digits().target) >= 0.96


def test_scale_lr_applies_the_linear_scaling_rule(tmp_path):
    done = run("train", "--model", "logistic", "--algorithm", "sgd", "--data", "synthetic:classification,n=500,d=3",
               "--lr", "0.1", "--batch-size", "64", "--scale-lr", "32", "--optimizer", "nesterov", "--momentum", "0.5",
               "--schedule", "cosine", "--warmup-steps", "3", "--clip-norm", "5", "--steps", "20",
               "--out", str(tmp_path / "r"), "--quiet")
    assert done.returncode == 0, done.stderr
    settings = json.loads((tmp_path / "r" / "summary.json").read_text())["settings"]
    assert settings["lr"] == pytest.approx(0.2) and settings["lr_given"] == 0.1 and settings["momentum"] == 0.5
    assert done.stdout.count("linear scaling rule: lr 0.1 x 64 / 32 = 0.2") == 1


@pytest.mark.parametrize("flags, message", [
    (["--model", "logistic", "--hidden", "8"], "--hidden only applies to --model mlp"),
    (["--model", "logistic", "--momentum", "0.9"], "--momentum only applies to --optimizer momentum or nesterov"),
    (["--model", "logistic", "--optimizer", "adam", "--weight-decay", "0.1"], "--weight-decay only applies to --optimizer adamw"),
    (["--model", "logistic", "--schedule", "step"], "--schedule step needs --decay-every"),
    (["--model", "logistic", "--local-state", "average"], "--local-state only applies to --algorithm local-sgd"),
    (["--model", "mlp", "--hidden", "64,x"], "comma-separated integers"),
    (["--model", "logistic", "--test-fraction", "1.5"], "between 0 and 1"),
    (["--model", "logistic", "--overlap", "--compress", "bf16"], "--overlap reduces with the exact rank-ordered"),
    (["--model", "logistic", "--overlap", "--allreduce", "ring"], "drop --compress and --allreduce ring"),
    (["--model", "logistic", "--overlap", "--algorithm", "one-shot", "--batch-size", "10"],
     "--overlap only applies to gradients (--algorithm gd or sgd)"),
])
def test_flags_that_do_not_apply_give_one_usage_error(tmp_path, flags, message):
    algorithm = [] if "--algorithm" in flags else ["--algorithm", "gd"]
    done = run("train", *flags, *algorithm, "--data", "synthetic:classification,n=50", "--lr", "0.1",
               "--out", str(tmp_path / "r"), timeout=30)
    assert done.returncode == 2
    assert done.stderr.count(message) == 1 and "Traceback" not in done.stderr


def test_warmup_longer_than_training_fails_on_every_rank_with_one_message(tmp_path):
    done = run("train", "--model", "logistic", "--algorithm", "gd", "--data", "synthetic:classification,n=50",
               "--lr", "0.1", "--steps", "5", "--warmup-steps", "6", "--out", str(tmp_path / "r"), ranks=3, timeout=30)
    assert done.returncode == 2 and done.stderr.count("--warmup-steps 6 exceeds the 5 training steps") == 1


def test_the_python_example_runs_under_mpiexec():
    pytest.importorskip("sklearn")
    script = os.path.join(os.path.dirname(__file__), "..", "examples", "train_digits.py")
    launcher = os.environ.get("MPIEXEC") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    assert launcher, "no mpiexec: set MPIEXEC or install the mpich wheel (make install)"
    env = {**os.environ, "MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true", "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}
    done = subprocess.run([*launcher.split(), "-n", "2", sys.executable, script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("digits MLP on 2 rank(s): test accuracy") == 1
    assert float(done.stdout.split()[-1]) >= 0.96


def test_predict_with_labels_the_model_cannot_score_fails_with_one_message(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "iris"
    done = run("train", "--model", "softmax", "--data", "iris", "--algorithm", "gd", "--lr", "0.5", "--steps", "5",
               "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    # Four features as in iris, but a label 3 that a 3-class model cannot score.
    csv = tmp_path / "bad.csv"
    csv.write_text("a,b,c,d,label\n1,2,3,4,0\n1,2,3,4,3\n5,6,7,8,1\n")
    pred = run("predict", "--from", str(out / "model.npz"), "--data", str(csv), "--out", str(tmp_path / "p.npy"),
               ranks=3, timeout=30)
    assert pred.returncode == 2 and "Traceback" not in pred.stderr
    assert pred.stderr.count("bad.csv: row 1 has label 3, which is not one of the classes (0, 1, 2)") == 1
