"""End to end, issue 13: files as users have them give the right model, say what was decided, and
Python gives the numbers the command line gives."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from launch import ENV, mpiexec, run

pytestmark = pytest.mark.e2e

GD = ["--algorithm", "gd", "--lr", "1", "--steps", "60"]


def rows(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)) * [1.0, 5.0, 0.1]
    return X, (X @ [1.0, -0.2, 4.0] > 0).astype(int)


def model_file(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_pandas_index_and_headerless_files_train_the_model_of_the_plain_file(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = rows()
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=y)
    frame.to_csv(tmp_path / "plain.csv", index=False)
    frame.to_csv(tmp_path / "indexed.csv")  # index column with an empty name: once read as a feature
    frame.to_csv(tmp_path / "bare.csv", index=False, header=False)  # no header: once lost its first row
    coefs = {}
    for name in ("plain", "indexed", "bare"):
        done = run("train", "--model", "logistic", *GD, "--data", str(tmp_path / f"{name}.csv"),
                   "--out", str(tmp_path / name), ranks=2)
        assert done.returncode == 0, done.stderr
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["n_samples"] == 200 and summary["n_features"] == 3
        coefs[name] = model_file(tmp_path / name / "model.npz")["coef"]
        line = next(x for x in done.stdout.splitlines() if x.startswith("data "))
        if name == "indexed":
            assert "first column has no name" in line and "left out" in line
        if name == "bare":
            assert "first line is all numbers" in line and "label column '3'" in line
        else:
            assert "label column 'label'" in line and summary["data_schema"]["feature_names"] == ["a", "b", "c"]
    np.testing.assert_array_equal(coefs["indexed"], coefs["plain"])
    np.testing.assert_array_equal(coefs["bare"], coefs["plain"])
    saved = model_file(tmp_path / "indexed" / "model.npz")
    assert str(saved["label_name"]) == "label" and list(saved["feature_names"]) == ["a", "b", "c"]


@pytest.mark.parametrize("model, labels", [("softmax", [0, 1, 100]), ("logistic", [-1, 1]),
                                           ("softmax", ["ham", "spam", "eggs"])])
def test_gapped_signed_and_text_labels_become_classes_and_predict_writes_them(tmp_path, model, labels):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((150, 2))
    index = np.argmax(X @ rng.standard_normal((2, len(labels))), axis=1)
    words = np.array(labels)[index]
    text = "x1,x2,kind\n" + "".join(f"{a!r},{b!r},{w}\n" for (a, b), w in zip(X.tolist(), words))
    (tmp_path / "d.csv").write_text(text)
    done = run("train", "--model", model, *GD, "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "r"), ranks=3)
    assert done.returncode == 0, done.stderr
    saved = model_file(tmp_path / "r" / "model.npz")
    assert [str(c) if isinstance(labels[0], str) else c for c in saved["classes"]] == sorted(labels)
    if model == "softmax":
        assert int(saved["n_classes"]) == len(labels)  # not 101 for {0, 1, 100}
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["final_train_metric"] > 0.9
    pred = run("predict", "--from", str(tmp_path / "r" / "model.npz"), "--data", str(tmp_path / "d.csv"),
               "--out", str(tmp_path / "p.npy"), ranks=2)
    assert pred.returncode == 0, pred.stderr
    predicted = np.load(tmp_path / "p.npy", allow_pickle=False)
    assert set(predicted.tolist()) <= set(labels)
    assert np.mean(predicted == words) == pytest.approx(summary["final_train_metric"], abs=1e-12)
    proba = run("predict", "--from", str(tmp_path / "r" / "model.npz"), "--data", str(tmp_path / "d.csv"),
                "--out", str(tmp_path / "q.npy"), "--proba", ranks=2)
    assert proba.returncode == 0, proba.stderr
    q = np.load(tmp_path / "q.npy")
    assert q.shape == ((150,) if model == "logistic" else (150, len(labels)))


PYTHON_PREDICT = """
import sys, numpy as np, mpitrain as mt
comm = mt.world()
model, theta = mt.load_model(sys.argv[1])
data = mt.load(sys.argv[2], comm, require_labels=False, n_features=model.n_features)
p, metric = mt.predict(model, theta, data, comm)
if comm.rank == 0:
    np.save(sys.argv[3], p)
    print(f"metric {float(metric)!r}")
"""


def test_python_load_model_and_predict_give_the_numbers_of_the_command_line(tmp_path):
    X, y = rows(300, seed=4)
    X = X * [1.0, 1000.0, 0.001] + [0.0, 500.0, 0.0]  # scaled so that ignoring --standardize shows
    np.savetxt(tmp_path / "d.csv", np.c_[X, y], delimiter=",", header="a,b,c,y", comments="")
    done = run("train", "--model", "logistic", *GD, "--standardize", "--data", str(tmp_path / "d.csv"),
               "--out", str(tmp_path / "r"), "--quiet", ranks=2)
    assert done.returncode == 0, done.stderr
    pred = run("predict", "--from", str(tmp_path / "r" / "model.npz"), "--data", str(tmp_path / "d.csv"),
               "--out", str(tmp_path / "cli.npy"), "--proba", ranks=3)
    assert pred.returncode == 0, pred.stderr
    (tmp_path / "p.py").write_text(PYTHON_PREDICT)
    python = subprocess.run([*mpiexec(), "-n", "2", sys.executable, str(tmp_path / "p.py"), str(tmp_path / "r" / "model.npz"),
                             str(tmp_path / "d.csv"), str(tmp_path / "py.npy")], capture_output=True, text=True,
                            timeout=120, env={**os.environ, **ENV})
    assert python.returncode == 0, python.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "py.npy"), np.load(tmp_path / "cli.npy"))
    accuracy = float(python.stdout.split("metric ")[1])
    assert f"accuracy {accuracy:.4f}" in pred.stdout and accuracy > 0.95


def test_missing_cells_stop_the_run_by_name_unless_imputed_and_predict_fills_them_alike(tmp_path):
    rng = np.random.default_rng(5)
    X = np.round(rng.standard_normal((120, 3)), 3)
    y = X @ [1.0, 2.0, -1.0] + 0.5
    holes = X.copy()
    holes[rng.random(X.shape) < 0.1] = np.nan
    holes[:, 0][:3] = [1.0, 2.0, 3.0]
    text = "u,v,w,target\n" + "".join(",".join("" if np.isnan(v) else repr(v) for v in row) + f",{t!r}\n"
                                       for row, t in zip(holes.tolist(), y.tolist()))
    (tmp_path / "d.csv").write_text(text)
    first = np.argwhere(np.isnan(holes))[0]
    done = run("train", "--model", "linear", *GD, "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "r"),
               ranks=3, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count(f"row {first[0]}, column {'uvw'[first[1]]!r} is missing (NaN)") == 1
    done = run("train", "--model", "linear", *GD, "--impute", "median", "--data", str(tmp_path / "d.csv"),
               "--out", str(tmp_path / "r"), ranks=3)
    assert done.returncode == 0, done.stderr
    assert "missing cells filled with the training median" in done.stdout
    saved = model_file(tmp_path / "r" / "model.npz")
    np.testing.assert_array_equal(saved["impute_values"], np.nanmedian(holes, axis=0))
    pred = run("predict", "--from", str(tmp_path / "r" / "model.npz"), "--data", str(tmp_path / "d.csv"),
               "--out", str(tmp_path / "p.npy"), ranks=2)
    assert pred.returncode == 0, pred.stderr
    filled = np.where(np.isnan(holes), np.nanmedian(holes, axis=0), holes)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), filled @ saved["coef"] + saved["intercept"], rtol=1e-12)


def test_libsvm_rows_train_and_predict_sparse_scaled_without_centring_and_refuse_imputation(tmp_path):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(6)
    n, d = 300, 2000
    lines, truth = [], rng.standard_normal(d)
    for _ in range(n):
        cols = np.sort(rng.choice(d, 8, replace=False))
        vals = rng.standard_normal(8)
        lines.append(f"{'+1' if vals @ truth[cols] > 0 else '-1'} " + " ".join(f"{c + 1}:{v!r}" for c, v in zip(cols.tolist(), vals.tolist())))
    (tmp_path / "d.svm").write_text("\n".join(lines) + "\n")
    done = run("train", "--model", "logistic", *GD, "--data", str(tmp_path / "d.svm"), "--out", str(tmp_path / "r"),
               ranks=2)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["n_features"] <= d and summary["data_schema"]["classes"] == [-1.0, 1.0]
    pred = run("predict", "--from", str(tmp_path / "r" / "model.npz"), "--data", str(tmp_path / "d.svm"),
               "--out", str(tmp_path / "p.npy"), ranks=3)
    assert pred.returncode == 0, pred.stderr
    labels = np.array([1.0 if line.startswith("+") else -1.0 for line in lines])
    predicted = np.load(tmp_path / "p.npy")
    assert set(predicted.tolist()) <= {-1.0, 1.0}
    assert np.mean(predicted == labels) == pytest.approx(summary["final_train_metric"], abs=1e-12)
    # --standardize divides sparse rows by each feature's standard deviation, as scikit-learn's
    # StandardScaler(with_mean=False), and predict does the same to the sparse rows it reads.
    from sklearn.datasets import load_svmlight_file
    from sklearn.preprocessing import StandardScaler

    scaled = run("train", "--model", "logistic", *GD, "--standardize", "--data", str(tmp_path / "d.svm"),
                 "--out", str(tmp_path / "s"), ranks=2, timeout=180)
    assert scaled.returncode == 0 and "not centred" in scaled.stdout, scaled.stderr
    saved = model_file(tmp_path / "s" / "model.npz")
    X, _ = load_svmlight_file(str(tmp_path / "d.svm"), n_features=saved["feature_scale"].size)
    scaler = StandardScaler(with_mean=False).fit(X)
    np.testing.assert_allclose(saved["feature_scale"], scaler.scale_, rtol=1e-12)
    assert not saved["feature_mean"].any()
    pred = run("predict", "--from", str(tmp_path / "s" / "model.npz"), "--data", str(tmp_path / "d.svm"),
               "--out", str(tmp_path / "ps.npy"), "--proba", ranks=3)
    assert pred.returncode == 0, pred.stderr
    z = scaler.transform(X) @ saved["coef"].ravel() + saved["intercept"].ravel()
    np.testing.assert_allclose(np.load(tmp_path / "ps.npy"), 1 / (1 + np.exp(-z)), rtol=1e-9)
    refused = run("train", "--model", "logistic", *GD, "--impute", "mean", "--data", str(tmp_path / "d.svm"),
                  "--out", str(tmp_path / "i"), ranks=2, timeout=180)
    assert refused.returncode == 2 and refused.stderr.count("which have no missing cells to impute") == 1
