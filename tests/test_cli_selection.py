"""The model-selection flags end to end: --metrics in metrics.jsonl, summary.json and the printed
test score, --monitor on one of them, and refusals in flag words."""
import json

import numpy as np
import pytest

from launch import run

pytestmark = pytest.mark.e2e
DATA = "synthetic:classification,n=300,d=5,noise=1.0,seed=4"


def test_metrics_are_scored_on_validation_and_test_rows_and_monitor_takes_them(tmp_path):
    out = tmp_path / "r"
    done = run("train", "--data", DATA, "--model", "logistic", "--algorithm", "gd", "--lr", "0.5", "--steps", "40",
               "--val-fraction", "0.25", "--test-fraction", "0.2", "--eval-every", "10", "--metrics", "f1,auc,log_loss",
               "--early-stopping", "--monitor", "val_auc", "--patience", "50", "--out", str(out),
               "--log-csv", str(tmp_path / "log.csv"))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in scored] == [10, 20, 30, 40]
    assert all({"val_accuracy", "val_f1", "val_auc", "val_log_loss"} <= set(r) for r in scored)
    # log_loss is the model's own loss without the penalty: the two agree here (--l2 0)
    assert all(r["val_log_loss"] == pytest.approx(r["val_loss"], rel=1e-12) for r in scored)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["test_metrics"]) == {"f1", "auc", "log_loss"}
    best = max(scored, key=lambda r: r["val_auc"])  # AUC is maximised; the first best wins ties
    assert summary["validation"]["monitor"] == "val_auc"
    assert summary["validation"]["best_value"] == best["val_auc"]
    assert summary["validation"]["best_step"] == min(r["step"] for r in scored if r["val_auc"] == best["val_auc"])
    assert f"test auc {summary['test_metrics']['auc']:.4f}" in done.stdout
    pytest.importorskip("matplotlib")
    drawn = run("plot", str(out), ranks=1)  # the validation lines are drawn beside the training ones
    assert drawn.returncode == 0, drawn.stderr
    for name in ("loss", "metric", "validation"):  # validation.png: the --metrics scores
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "step,name,value" and [r for r in rows if ",val_auc," in r] == [
        f"{r['step']},val_auc,{r['val_auc']!r}" for r in scored]


@pytest.mark.parametrize("flags, message", [
    (["--val-fraction", "0.2", "--metrics", "r2"], "--metrics r2 does not apply to --model logistic"),
    (["--metrics", "f2"], "unknown metric 'f2'"),
    (["--val-fraction", "0.2", "--early-stopping", "--monitor", "val_f1"], "--monitor val_f1 is not scored"),
    (["--metrics", "f1"], "--metrics scores validation or test rows"),
])
def test_metric_flags_that_cannot_apply_are_refused(tmp_path, flags, message):
    done = run("train", "--data", DATA, "--model", "logistic", "--steps", "2", *flags, "--out", str(tmp_path / "x"),
               ranks=1)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_auc_needs_two_classes(tmp_path):
    done = run("train", "--data", "synthetic:classification,n=90,d=4,classes=3", "--model", "softmax", "--steps", "2",
               "--val-fraction", "0.3", "--metrics", "auc", "--out", str(tmp_path / "x"), ranks=1)
    assert done.returncode != 0 and "binary tasks" in done.stderr, done.stderr
    assert np.char.count(done.stderr, "Traceback") == 0


def test_tol_ends_sgd_at_an_epoch_and_the_summary_says_so(tmp_path):
    out = tmp_path / "r"
    done = run("train", "--data", DATA, "--model", "logistic", "--algorithm", "sgd", "--batch-size", "30", "--lr", "0.1",
               "--epochs", "500", "--tol", "1e-3", "--n-iter-no-change", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["converged"] and summary["steps_run"] < 500 * 10 and summary["steps_run"] % 10 == 0
    assert f"converged (--tol 0.001) after {summary['steps_run']} steps" in done.stdout
    assert summary["settings"]["tol"] == 1e-3 and summary["settings"]["n_iter_no_change"] == 3
    refused = run("train", "--data", DATA, "--model", "logistic", "--algorithm", "gd", "--n-iter-no-change", "3",
                  "--out", str(tmp_path / "x"), ranks=1)
    assert refused.returncode == 2 and "--n-iter-no-change only applies to --tol with gd or sgd" in refused.stderr


def test_a_weight_column_trains_scikit_learns_weighted_model(tmp_path):
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X @ [1.0, -2.0] + rng.logistic(size=200) > 1.5).astype(int)
    w = rng.uniform(0.2, 3, 200)
    path = tmp_path / "w.csv"
    path.write_text("a,w,b,label\n" + "".join(f"{float(X[i, 0])!r},{float(w[i])!r},{float(X[i, 1])!r},{y[i]}\n"
                                              for i in range(200)))
    done = run("train", "--data", str(path), "--weight-column", "w", "--model", "logistic", "--algorithm", "lbfgs",
               "--tol", "1e-10", "--l2", "1e-3", "--out", str(tmp_path / "r"), ranks=3)
    assert done.returncode == 0, done.stderr
    ref = linear_model.LogisticRegression(C=1 / (1e-3 * w.sum()), tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=w)
    with np.load(tmp_path / "r" / "model.npz") as f:
        assert list(f["feature_names"]) == ["a", "b"]
        np.testing.assert_allclose(np.append(f["coef"], f["intercept"]), np.append(ref.coef_, ref.intercept_),
                                   rtol=1e-6, atol=1e-7)
    refused = run("train", "--data", str(path), "--model", "linear", "--class-weight", "balanced",
                  "--out", str(tmp_path / "x"), ranks=1)
    assert refused.returncode == 2 and "--class-weight applies to classifiers" in refused.stderr
    missing = run("train", "--data", str(path), "--model", "logistic", "--weight-column", "v", "--out",
                  str(tmp_path / "y"), ranks=2)
    assert missing.returncode != 0 and "has no column 'v'; its columns are a, w, b" in missing.stderr
    assert missing.stderr.count("has no column") == 1  # one message, not one per rank


def test_predict_prints_the_same_metrics_as_train_on_the_same_rows(tmp_path):
    test = "synthetic:classification,n=150,d=5,noise=1.0,seed=4,split=test"
    out = tmp_path / "r"
    done = run("train", "--data", DATA, "--model", "logistic", "--algorithm", "gd", "--lr", "0.5", "--steps", "30",
               "--standardize", "--test-data", test, "--metrics", "auc,f1,log_loss", "--out", str(out), ranks=2)
    assert done.returncode == 0, done.stderr
    want = json.loads((out / "summary.json").read_text())["test_metrics"]
    scored = run("predict", "--from", str(out), "--data", test, "--metrics", "auc,f1,log_loss",
                 "--out", str(tmp_path / "p.npy"), ranks=3)
    assert scored.returncode == 0, scored.stderr
    for name, value in want.items():
        assert f", {name} {value:.4f}" in scored.stdout, scored.stdout
    wrong = run("predict", "--from", str(out), "--data", test, "--metrics", "r2", "--out", str(tmp_path / "q.npy"),
                ranks=1)
    assert wrong.returncode != 0 and "--metrics: metric 'r2' does not apply to a classifier" in wrong.stderr
