"""End to end: `python -m mpitrain` under mpiexec with 2 ranks, as a user runs it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from launch import run

pytestmark = pytest.mark.e2e


TRAIN = ["train", "--model", "logistic", "--algorithm", "sgd", "--data", "synthetic:classification,n=2000,d=5",
         "--test-data", "synthetic:classification,n=500,d=5,split=test", "--epochs", "3", "--lr", "0.5",
         "--batch-size", "32"]


def test_train_writes_model_metrics_and_summary_then_predict_reads_them(tmp_path):
    out = tmp_path / "run"
    done = run(*TRAIN, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ["metrics.jsonl", "model.npz", "run.json", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    for key in ["algorithm", "world_size", "n_samples", "final_train_loss", "test_metric", "wall_seconds",
                "comm_seconds", "samples_per_second"]:
        assert key in summary, key
    assert summary["world_size"] == 2 and summary["n_samples"] == 2000 and summary["algorithm"] == "sgd"
    assert summary["test_metric"] > 0.9
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1.0, 2.0, 3.0]
    assert all({"step", "loss", "metric", "seconds"} <= set(r) for r in records)
    with np.load(out / "model.npz", allow_pickle=False) as f:
        assert f["coef"].shape == (5,) and str(f["model"]) == "logistic"
    assert done.stdout.count("trained logistic") == 1  # rank 0 alone reports

    pred = run("predict", "--from", str(out / "model.npz"), "--data", "synthetic:classification,n=500,d=5,split=test",
               "--out", str(tmp_path / "p.npy"), "--proba", ranks=3)
    assert pred.returncode == 0, pred.stderr
    p = np.load(tmp_path / "p.npy")
    assert p.shape == (500,) and ((p >= 0) & (p <= 1)).all()
    assert f"accuracy {summary['test_metric']:.4f}" in pred.stdout


def test_missing_data_file_fails_fast_with_one_message(tmp_path):
    # Fast means before any rank waits for another: a hang would hit the 300 s bound (or the 600 s watchdog).
    done = run("train", "--model", "linear", "--algorithm", "gd", "--data", str(tmp_path / "nope.csv"),
               "--lr", "0.1", "--watchdog-seconds", "600", "--out", str(tmp_path / "run"), ranks=3, timeout=300)
    assert done.returncode == 2 and "watchdog" not in done.stderr
    assert done.stderr.count("nope.csv") == 1 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_flag_gives_one_usage_error(tmp_path):
    done = run("train", "--model", "linear", "--algorithm", "sgd", "--sync-every", "3", "--data",
               "synthetic:regression", "--lr", "0.1", "--out", str(tmp_path / "run"), ranks=3, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("--sync-every only applies to --algorithm local-sgd") == 1 and "Traceback" not in done.stderr


def test_mismatched_features_name_the_ranks(tmp_path):
    model = tmp_path / "run"
    assert run(*TRAIN, "--out", str(model), "--quiet").returncode == 0
    done = run("predict", "--from", str(model / "model.npz"), "--data", "synthetic:classification,d=7",
               "--out", str(tmp_path / "p.npy"), timeout=30)
    assert done.returncode == 2 and done.stderr.count("has 7 features, but the model expects 5") == 1
    assert not (tmp_path / "p.npy").exists()


def test_help_on_every_subcommand():
    for command in ["train", "predict", "info"]:
        done = subprocess.run([sys.executable, "-m", "mpitrain", command, "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "usage:" in done.stdout


def test_info_reports_world_size_and_versions():
    done = run("info", ranks=2, timeout=30)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["world_size"] == 2 and len(info["processors"]) == 2 and info["mpi_library"]


def test_trace_has_one_lane_per_rank_with_non_overlapping_spans(tmp_path):
    done = run("train", "--model", "linear", "--algorithm", "gd", "--data", "synthetic:regression,n=300,d=3",
               "--steps", "20", "--lr", "0.1", "--out", str(tmp_path), "--trace", str(tmp_path / "trace.json"),
               ranks=3)
    assert done.returncode == 0, done.stderr
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    lanes = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M"}
    assert lanes == {0: "rank 0", 1: "rank 1", 2: "rank 2"}
    for lane in lanes:
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e["ph"] == "X" and e["tid"] == lane)
        assert len(spans) == 20 * 4  # data, forward+backward, allreduce, update per step
        assert all(end <= next_start + 1e-3 for (_, end), (next_start, _) in zip(spans, spans[1:]))
    phases = json.loads((tmp_path / "summary.json").read_text())["phases"]
    assert {"compute", "waiting", "allreduce"} <= set(phases) and phases["compute"]["max"] > 0


def test_without_thread_settings_each_rank_takes_its_share_of_the_cores_for_blas(tmp_path):
    unset = {var: "" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    done = run("train", "--model", "linear", "--algorithm", "gd", "--data", "synthetic:regression,n=200,d=3",
               "--steps", "2", "--lr", "0.1", "--out", str(tmp_path), "--quiet", env=unset)
    assert done.returncode == 0, done.stderr
    cores = len(os.sched_getaffinity(0))
    assert json.loads((tmp_path / "summary.json").read_text())["blas_threads"] == max(1, cores // 2)
    assert "BLAS threads" not in done.stderr  # nothing left to warn about


def test_plot_writes_png_charts_for_a_run_and_a_benchmark(tmp_path):
    assert run("train", "--model", "linear", "--algorithm", "sgd", "--batch-size", "20", "--epochs", "3",
               "--data", "synthetic:regression,n=200,d=3", "--lr", "0.1", "--out", str(tmp_path / "run"),
               "--quiet").returncode == 0
    bench = tmp_path / "bench" / "train.json"
    done = subprocess.run([sys.executable, "-m", "mpitrain", "bench", "train", "--tiny", "--repeats", "1",
                           "--workloads", "linear-gd", "--impls", "mpitrain,baseline", "--out", str(bench.parent)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(bench.read_text())
    assert {(r["impl"], r["ranks"]) for r in report["summary"]} == {(i, n) for i in ("mpitrain", "baseline")
                                                                   for n in (1, 2)}
    for row in report["summary"]:
        assert row["samples_per_second"] > 0 and row["final_loss"] > 0 and row["compute_ms"] is not None
    for target in (tmp_path / "run", bench):
        drawn = subprocess.run([sys.executable, "-m", "mpitrain", "plot", str(target)], capture_output=True,
                               text=True, timeout=120)
        assert drawn.returncode == 0, drawn.stderr
    for png in [tmp_path / "run" / "loss.png", tmp_path / "run" / "metric.png", tmp_path / "bench" / "train-scaling.png"]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_train_on_csv_and_predict_on_npy_directory(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((101, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.25
    csv = tmp_path / "train.csv"
    csv.write_text("target,a,b,c\n" + "".join(f"{t!r},{a!r},{b!r},{c!r}\n" for t, (a, b, c) in zip(y.tolist(), X.tolist())))
    done = run("train", "--model", "linear", "--algorithm", "gd", "--data", str(csv), "--label-column", "target",
               "--steps", "300", "--lr", "0.5", "--out", str(tmp_path / "run"), "--quiet", ranks=3)
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "run" / "model.npz", allow_pickle=False) as f:
        np.testing.assert_allclose(f["coef"], [1.0, -2.0, 0.5], atol=1e-8)
        np.testing.assert_allclose(f["intercept"], 0.25, atol=1e-8)
    (tmp_path / "npy").mkdir()
    np.save(tmp_path / "npy" / "X.npy", X)  # no y.npy: prediction without labels
    done = run("predict", "--from", str(tmp_path / "run" / "model.npz"), "--data", str(tmp_path / "npy"),
               "--out", str(tmp_path / "p.npy"), ranks=4)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), y, atol=1e-7)
