"""The examples run as a user runs them, under mpiexec, and do what they say."""
import os
import subprocess
import sys

import numpy as np
import pytest

from launch import ENV, mpiexec

pytestmark = pytest.mark.e2e
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name: str, *args: str, ranks: int = 2) -> subprocess.CompletedProcess:
    done = subprocess.run([*mpiexec(), "-n", str(ranks), sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **ENV})
    assert done.returncode == 0, done.stderr
    return done


def test_custom_model_trains_with_every_algorithm_saves_loads_and_predicts(tmp_path):
    done = run_example("custom_model.py", str(tmp_path), ranks=3)
    lines = [line for line in done.stdout.splitlines() if "train MAE" in line]
    assert [line.split(":")[0].strip() for line in lines] == ["gd", "sgd", "local-sgd", "one-shot"]
    # The Huber regression must beat predicting the mean by far (noise 0.2 on a unit-scale target).
    for line in lines:
        assert float(line.split("train MAE")[1].split()[0]) < 0.35, line
    for name in ("gd", "sgd", "local-sgd", "one-shot"):
        with np.load(tmp_path / name / "model.npz", allow_pickle=False) as f:
            assert str(f["model"]) == "tanh-huber" and int(f["hidden"]) == 8


def test_python_run_stops_checkpoints_and_resumes_bitwise(tmp_path):
    done = run_example("train_and_resume.py", str(tmp_path / "run"))
    assert "stopped: True after step 121" in done.stdout
    assert "resumed from step 121" in done.stdout and "same as uninterrupted: True" in done.stdout
    assert os.path.join("run", "checkpoints", "step-000000121") in done.stdout
    with np.load(tmp_path / "run" / "model.npz") as a, np.load(tmp_path / "run-whole" / "model.npz") as b:
        assert np.array_equal(a["coef"], b["coef"]) and np.array_equal(a["intercept"], b["intercept"])


def test_the_equivalence_harness_passes_equal_runs_and_catches_a_world_size_dependence(tmp_path):
    module = tmp_path / "user_training.py"
    module.write_text(
        "import numpy as np\nimport mpitrain as mt\n\n"
        "def gd_linear(comm):\n"
        "    data = mt.load('synthetic:regression,n=101,d=4,seed=5', comm)\n"
        "    model = mt.create_model('linear', data.n_features)\n"
        "    return mt.fit(model, data, comm, mt.GD(), steps=30, lr=0.3, reduce=mt.Reduce('ordered')).theta\n\n"
        "def per_rank_mean(comm):\n"
        "    data = mt.load('synthetic:regression,n=101,d=4,seed=5', comm)\n"
        "    means = np.zeros(comm.size); means[comm.rank] = data.y.mean()\n"
        "    return comm.Allreduce(means).mean()  # the mean of block means: depends on the split\n")
    code = ("import sys; sys.path.insert(0, {folder!r}); import user_training\n"
            "from mpitrain.testing import assert_same_at_world_sizes\n"
            "assert_same_at_world_sizes(user_training.gd_linear, (1, 2, 3), rtol=1e-10)\n"
            "try:\n    assert_same_at_world_sizes(user_training.per_rank_mean, (1, 3))\n"
            "except AssertionError as exc:\n    print('caught:', str(exc).splitlines()[0])\n"
            "else:\n    print('missed')\n").format(folder=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **ENV, "PYTHONPATH": str(tmp_path), "MPIEXEC": " ".join(mpiexec())},
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "caught: user_training:per_rank_mean: result at 3 ranks differs" in done.stdout
