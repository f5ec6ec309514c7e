"""End to end, `predict` as a new user meets it: the run directory, the format of --out, the label column."""
import json

import numpy as np
import pytest

from launch import run

pytestmark = pytest.mark.e2e

CLASSES = "synthetic:classification,n=400,d=4"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A logistic run trained on a CSV whose label column, named "target", comes first."""
    pd = pytest.importorskip("pandas")
    folder = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    y = np.where(X @ [1.0, -2.0, 0.5] > 0, "yes", "no")
    frame = pd.DataFrame({"target": y, "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})
    frame.to_csv(folder / "labelled.csv", index=False)
    frame.drop(columns="target").to_csv(folder / "features.csv", index=False)
    out = folder / "run"
    done = run("train", "--model", "logistic", "--algorithm", "gd", "--data", str(folder / "labelled.csv"),
               "--label-column", "target", "--steps", "50", "--lr", "0.5", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    return folder, out


def test_predict_takes_the_run_directory_and_writes_labels_as_csv_with_a_header(trained, tmp_path):
    folder, out = trained
    done = run("predict", "--from", str(out), "--data", str(folder / "features.csv"), "--out", str(tmp_path / "p.csv"))
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "prediction" and len(lines) == 121 and set(lines[1:]) <= {"yes", "no"}
    # The same model and rows through .npy (the file itself as --from) give the same labels
    again = run("predict", "--from", str(out / "model.npz"), "--data", str(folder / "features.csv"),
                "--out", str(tmp_path / "p.npy"), ranks=3)
    assert again.returncode == 0, again.stderr
    assert np.load(tmp_path / "p.npy").tolist() == lines[1:]


def test_probabilities_round_trip_exactly_through_csv_and_parquet(trained, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    folder, out = trained
    for name in ("p.npy", "p.csv", "p.parquet"):
        done = run("predict", "--from", str(out), "--data", str(folder / "features.csv"), "--out", str(tmp_path / name),
                   "--proba")
        assert done.returncode == 0, done.stderr
    reference = np.load(tmp_path / "p.npy")
    from_csv = pd.read_csv(tmp_path / "p.csv", engine="python")  # the exact float parser
    from_parquet = pd.read_parquet(tmp_path / "p.parquet")
    assert list(from_csv.columns) == list(from_parquet.columns) == ["proba_yes"]  # of the second class, "yes"
    assert np.array_equal(from_csv["proba_yes"].to_numpy(), reference)
    assert np.array_equal(from_parquet["proba_yes"].to_numpy(), reference)


def test_the_label_column_comes_from_the_model(trained, tmp_path):
    folder, out = trained
    done = run("predict", "--from", str(out), "--data", str(folder / "labelled.csv"), "--out", str(tmp_path / "p.npy"))
    assert done.returncode == 0, done.stderr
    assert "the label column is 'target', as in training" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    scored = float(done.stdout.split("accuracy ")[1].split(";")[0])
    assert scored == pytest.approx(summary["final_train_metric"], abs=1e-4)  # the training rows, scored again
    features_only = run("predict", "--from", str(out), "--data", str(folder / "features.csv"),
                        "--out", str(tmp_path / "q.npy"))
    assert features_only.returncode == 0 and "accuracy" not in features_only.stdout
    assert np.array_equal(np.load(tmp_path / "p.npy"), np.load(tmp_path / "q.npy"))


@pytest.mark.parametrize("case, message", [
    ("no-model", "has no model.npz: the run has not finished"),
    ("extension", "ends in .txt; give a file ending in .npy, .csv, .tsv, .parquet"),
    ("model-as-out", "is the same file as the model"),
])
def test_predict_mistakes_get_one_line(trained, tmp_path, case, message):
    folder, out = trained
    source, target = str(out), str(tmp_path / "p.txt")
    if case == "no-model":
        (tmp_path / "unfinished").mkdir()
        source, target = str(tmp_path / "unfinished"), str(tmp_path / "p.npy")
    elif case == "model-as-out":
        target = str(out / "model.npz")
    done = run("predict", "--from", source, "--data", str(folder / "features.csv"), "--out", target)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("error:") == 1


def test_whole_number_labels_are_written_as_integers(tmp_path):
    out = tmp_path / "run"
    done = run("train", "--data", "synthetic:classification,n=200,d=3,classes=3", "--algorithm", "gd", "--steps", "20",
               "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    done = run("predict", "--from", str(out), "--data", "synthetic:classification,n=200,d=3,classes=3",
               "--out", str(tmp_path / "p.csv"))
    assert done.returncode == 0, done.stderr
    assert set((tmp_path / "p.csv").read_text().splitlines()[1:]) <= {"0", "1", "2"}


def test_the_old_name_model_still_works(trained, tmp_path):
    folder, out = trained
    done = run("predict", "--model", str(out / "model.npz"), "--data", str(folder / "features.csv"),
               "--out", str(tmp_path / "p.npy"))
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "p.npy").shape == (120,)
