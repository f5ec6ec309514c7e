"""scripts/bench_algorithms.py (the digits table of docs/algorithms) runs every algorithm and counts
what each sends: a smoke test at 2 ranks and one epoch, checking the counts' structure."""
import json
import os
import subprocess
import sys

import pytest

from launch import ENV, HERE, mpiexec
from mpitrain import guard

SCRIPT = os.path.join(HERE, "..", "scripts", "bench_algorithms.py")


def test_every_algorithm_runs_and_its_traffic_is_counted(tmp_path):
    pytest.importorskip("sklearn")  # the digits data ship with scikit-learn
    done = subprocess.run([*mpiexec(), "-n", "2", sys.executable, SCRIPT, "--epochs", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env=guard.launch_env({**os.environ, **ENV}))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["algorithm"]: r for r in json.loads((tmp_path / "digits-p2.json").read_text())["rows"]}
    assert len(rows) == 15 and "| gossip ring |" in done.stdout
    assert all(0.1 < r["test_accuracy"] <= 1 for r in rows.values())
    steps = rows["sgd"]["steps"]
    # sgd: one reduction per step (plus fit's few checks); local-sgd H=4 one per 4 steps; one-shot a handful
    assert steps <= rows["sgd"]["collective_calls"] <= steps + 10
    assert rows["local-sgd H=4"]["collective_calls"] <= steps // 4 + 10 < steps
    assert rows["one-shot"]["collective_calls"] <= 10
    # only gossip exchanges with neighbours: one Sendrecv per mix at 2 ranks (no mix at the last step)
    assert {name for name, r in rows.items() if r["sendrecv_calls"]} == {"gossip ring", "gossip exponential"}
    assert rows["gossip ring"]["sendrecv_calls"] == rows["gossip exponential"]["sendrecv_calls"] == steps - 1
