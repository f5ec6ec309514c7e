"""The alpha-beta allreduce model and `mpitrain explain`."""
import json
import subprocess
import sys

import pytest

from mpitrain import costmodel
from mpitrain.errors import UsageError


@pytest.mark.parametrize("ranks", [2, 3, 4, 8])
def test_fit_recovers_alpha_and_beta_from_exact_measurements(ranks):
    truth = costmodel.CostModel(alpha=3e-6, beta=2e-10, source="truth")
    sizes = [8, 1024, 65536, 1 << 20, 1 << 24]
    fitted = costmodel.fit(sizes, [truth.allreduce_seconds(m, ranks) for m in sizes], ranks, "test")
    assert fitted.alpha == pytest.approx(3e-6, rel=1e-9) and fitted.beta == pytest.approx(2e-10, rel=1e-9)


def test_model_shape():
    model = costmodel.CostModel(alpha=1e-6, beta=1e-9, source="x")
    assert model.allreduce_seconds(1e6, 1) == 0.0
    assert model.allreduce_seconds(1e6, 2) == pytest.approx(2e-6 + 1e-3)  # one round each way, m bytes
    assert model.allreduce_seconds(1e6, 4) == pytest.approx(4e-6 + 1.5e-3)  # 2 rounds each way, 3/2 m


def test_from_bench_reads_a_bench_allreduce_json(tmp_path):
    truth = costmodel.CostModel(alpha=2e-6, beta=1e-10, source="truth")
    sizes = [8, 4096, 1 << 20]
    report = {"benchmark": "allreduce", "ranks": 2, "bytes": sizes, "environment": {"thread_level": "serialized"},
              "methods": {"auto": {"latency_us": [1e6 * truth.allreduce_seconds(m, 2) for m in sizes]}}}
    (tmp_path / "b.json").write_text(json.dumps(report))
    fitted = costmodel.from_bench(str(tmp_path / "b.json"))
    assert fitted.alpha == pytest.approx(2e-6, rel=1e-9) and "serialized" in fitted.source
    with pytest.raises(UsageError, match="not a `bench allreduce` JSON"):
        costmodel.from_bench(str(tmp_path / "missing.json"))


def test_explain_prints_a_prediction_per_world_size():
    done = subprocess.run([sys.executable, "-m", "mpitrain", "explain", "--model", "mlp", "--hidden", "32",
                           "--features", "20", "--batch-size", "64", "--ranks", "1,2,4"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "mlp: 1,002 parameters, an allreduce of 8,040 bytes a step" in lines[0]
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert [int(r[0]) for r in rows] == [1, 2, 4] and [int(r[1]) for r in rows] == [64, 32, 16]
    assert float(rows[0][3]) == 0.0 and all(float(r[3]) > 0 for r in rows[1:])  # no allreduce on one rank


def test_explain_says_why_when_an_efficiency_exceeds_100_percent(monkeypatch):
    import argparse

    from mpitrain import explain

    # Per-row cost falls with fewer rows (as when a share fits the cache): 2 us/row at 256, 1.5 at 128.
    monkeypatch.setattr(explain, "compute_seconds", lambda model, rows, seed=0: rows * (2e-6 if rows > 128 else 1.5e-6))
    args = argparse.Namespace(model="linear", features=8, classes=2, hidden="4", batch_size=256, ranks="1,2",
                              calibration=None)
    report = explain.run(args)
    efficiency_cells = [line.split("|")[-2].strip() for line in report.splitlines() if line.startswith("| 2 ")]
    assert efficiency_cells and efficiency_cells[0].endswith("%*") and int(efficiency_cells[0][:-2]) > 100
    assert "* above 100%: the measured computation per row is faster on a rank's share (1.50 us/row at 128 rows)" \
        in report and "(2.00 us/row at 256 rows)" in report


def test_explain_times_with_one_blas_thread_until_stable(monkeypatch):
    from mpitrain import explain

    times = iter([1.0, 2.0, 1.5, 1.52, 9.0])
    monkeypatch.setattr(explain, "_compute_once", lambda model, rows, seed: next(times))
    assert explain.compute_seconds(None, 10) == 1.5  # 1.0 -> 2.0 -> 1.5 -> 1.52: the first pair within 5%


def test_the_allreduce_chart_gives_every_method_its_own_colour(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from mpitrain.bench import allreduce

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    names = ["mpi", "auto", "native", "ring", "recursive_doubling", "rabenseifner", "tree", "ordered", "deterministic",
             "fp16", "bf16", "pickle"]
    report = {"bytes": [8, 64], "ranks": 2, "dtype": "float64", "environment": {"thread_level": "serialized"},
              "methods": {n: {"latency_us": [1.0 + i, 2.0 + i]} for i, n in enumerate(names)}}
    allreduce._plot(report, str(tmp_path / "a.png"))
    colours = [line.get_color() for line in kept[0].axes[0].get_lines()]
    assert len(colours) == len(names) and len(set(map(str, colours))) == len(names)
