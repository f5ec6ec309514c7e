"""Issue 12, class 7: bad input files give one message naming the file, a non-zero exit and no
traceback, at 2 ranks; string labels in y.npy train the model their class indices give."""
import os

import numpy as np
import pytest

from launch import run

pytestmark = pytest.mark.e2e


def truncated(folder):
    np.save(folder / "X.npy", np.ones((50, 3)))
    np.save(folder / "y.npy", np.zeros(50))
    whole = (folder / "X.npy").read_bytes()
    (folder / "X.npy").write_bytes(whole[: len(whole) // 2])


def npy_folder(X, y):
    def write(folder):
        np.save(folder / "X.npy", X, allow_pickle=True)
        np.save(folder / "y.npy", y)
    return write


CASES = {
    # name: (write the data into a folder and return the --data path inside it, words the message holds)
    "header-only csv": (lambda d: (d / "h.csv").write_text("a,b,y\n"), "h.csv", "no rows (only a header line)"),
    "X.npy with 0 rows": (npy_folder(np.zeros((0, 3)), np.zeros(0)), "", "has no rows"),
    "truncated X.npy": (truncated, "X.npy", "is not a complete .npy file"),
    "empty X.npy": (lambda d: ((d / "X.npy").write_bytes(b""), np.save(d / "y.npy", np.zeros(2))), "X.npy",
                    "is not a complete .npy file"),
    "X.npy of objects": (npy_folder(np.array([[1, 2], [3, None]], dtype=object), np.zeros(2)), "X.npy",
                         "holds Python objects"),
    "latin-1 header": (lambda d: (d / "l.csv").write_bytes("caf\xe9,b,y\n1,2,0\n3,4,1\n".encode("latin-1")),
                       "l.csv", "the header line holds byte 0xe9 that is not UTF-8"),
    "latin-1 cell": (lambda d: (d / "l.csv").write_bytes(b"a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,\xe9,1\n"),
                     "l.csv", "row 3 holds byte 0xe9 that is not UTF-8"),
    "text labels for a regressor": (npy_folder(np.ones((4, 2)), np.array(["a", "b", "a", "b"])), "",
                                    "--model linear predicts numbers, but the labels"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_message_naming_the_file(tmp_path, case):
    write, name, words = CASES[case]
    folder = tmp_path / "data"
    folder.mkdir()
    write(folder)
    model = "linear" if "regressor" in case else "logistic"
    data = folder / name if name.endswith(".csv") else folder
    done = run("train", "--model", model, "--steps", "3", "--data", str(data), "--out", str(tmp_path / "run"), ranks=2)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and words in errors[0], output
    assert str(folder / name).rstrip(os.sep) in errors[0]


@pytest.mark.parametrize("dtype", ["U", "S"])
def test_string_labels_in_y_npy_train_the_model_of_their_class_indices(tmp_path, dtype):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 3))
    index = (X @ [1.0, -2.0, 0.5] > 0).astype(int)  # 0 -> "cat", 1 -> "dog": the sorted classes
    coefs = {}
    for kind, y in (("text", np.array(["cat", "dog"], dtype=dtype)[index]), ("numbers", index.astype(float))):
        folder = tmp_path / kind
        folder.mkdir()
        np.save(folder / "X.npy", X)
        np.save(folder / "y.npy", y)
        done = run("train", "--model", "logistic", "--algorithm", "gd", "--steps", "20", "--data", str(folder),
                   "--out", str(tmp_path / f"run-{kind}"), ranks=2)
        assert done.returncode == 0, done.stderr
        with np.load(tmp_path / f"run-{kind}" / "model.npz", allow_pickle=False) as f:
            coefs[kind] = f["coef"]
            if kind == "text":
                assert list(f["classes"]) == ["cat", "dog"]
    np.testing.assert_array_equal(coefs["text"], coefs["numbers"])


def test_a_bad_test_file_stops_the_run_before_it_says_where_it_writes(tmp_path):
    """--test-data is read after --data: its error comes before 'writing to', and no run directory is made."""
    train = tmp_path / "train.csv"
    train.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    test = tmp_path / "test.csv"
    test.write_text("a,b,y\n")
    done = run("train", "--model", "logistic", "--steps", "3", "--data", str(train), "--test-data", str(test),
               "--out", str(tmp_path / "run"), ranks=2)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(test) in errors[0], output
    assert "writing to" not in output and not (tmp_path / "run").exists(), output
