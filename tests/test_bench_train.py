"""`python -m mpitrain bench train --tiny`: real mpiexec jobs on 1 and 2 ranks, a complete report."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

RUN_FIELDS = {"workload", "impl", "ranks", "repeat", "batch", "seconds", "compute_seconds", "comm_seconds", "wait_seconds",
              "iterations", "samples", "final_loss"}
SUMMARY_FIELDS = {"workload", "impl", "ranks", "repeats", "batch", "efficiency", "samples_per_second", "step_ms", "compute_ms", "comm_ms",
                  "wait_ms", "final_loss", "predicted_step_ms", "speedup_vs_1_rank", "ratio_vs_baseline"}


def test_tiny_benchmark_writes_every_field_and_follows_the_baselines_trajectory(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mpitrain", "bench", "train", "--tiny", "--repeats", "1",
                           "--workloads", "mlp,softmax", "--impls", "mpitrain,overlap,baseline", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "train.json").read_text())
    assert {"benchmark", "date", "command", "machine", "threads", "tiny", "notes", "runs", "summary"} <= set(report)
    assert report["threads"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert len(report["runs"]) == 2 * 3 * 2
    for run in report["runs"]:
        assert set(run) == RUN_FIELDS
    rows = {(r["workload"], r["impl"], r["ranks"]): r for r in report["summary"]}
    assert set(rows) == {(w, i, n) for w in ("mlp", "softmax") for i in ("mpitrain", "overlap", "baseline")
                         for n in (1, 2)}
    for row in rows.values():
        assert set(row) == SUMMARY_FIELDS
        assert row["samples_per_second"] > 0 and row["step_ms"] > 0 and row["compute_ms"] > 0
        assert row["comm_ms"] >= 0 and row["wait_ms"] >= 0 and row["predicted_step_ms"] > 0
    for (workload, impl, ranks), row in rows.items():
        # the same rows in the same order from the same start: float32 rounding apart, the same loss
        baseline = rows[(workload, "baseline", ranks)]["final_loss"]
        assert row["final_loss"] == pytest.approx(baseline, rel=1e-4), (workload, impl, ranks)
    table = (tmp_path / "train.md").read_text()
    assert table.count("\n| mlp |") == 6 and table.count("\n| softmax |") == 6
    assert report["scaling"] == "strong" and {row["batch"] for row in rows.values()} == {256}
    for row in rows.values():  # samples/s per rank over the 1-rank rate
        one = rows[(row["workload"], row["impl"], 1)]["samples_per_second"]
        assert row["efficiency"] == pytest.approx(row["samples_per_second"] / (row["ranks"] * one))


def test_weak_scaling_grows_the_global_batch_with_the_ranks(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mpitrain", "bench", "train", "--tiny", "--repeats", "1",
                           "--workloads", "mlp", "--impls", "mpitrain,baseline", "--per-rank-batch", "8",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "train.json").read_text())
    assert report["scaling"] == "weak" and report["per_rank_batch"] == 8
    rows = {(r["impl"], r["ranks"]): r for r in report["summary"]}
    assert {(impl, n): r["batch"] for (impl, n), r in rows.items()} == {(i, n): 8 * n for i in ("mpitrain", "baseline")
                                                                        for n in (1, 2)}
    for (impl, ranks), row in rows.items():  # both follow the same trajectory with the larger batches
        assert row["final_loss"] == pytest.approx(rows[("baseline", ranks)]["final_loss"], rel=1e-4)
    assert "Weak scaling: 8 rows per rank" in (tmp_path / "train.md").read_text()
