"""The command line's ways to aggregate: each runs at 3 ranks, and flags that cannot apply fail once."""
import json

import pytest

from launch import run

pytestmark = pytest.mark.e2e

BASE = ["train", "--model", "logistic", "--data", "synthetic:classification,n=1003,d=5", "--steps", "24", "--lr", "0.5",
        "--batch-size", "48"]


@pytest.mark.parametrize("flags", [
    ["--algorithm", "sgd", "--accumulate", "4"],
    ["--algorithm", "post-local-sgd", "--switch-step", "8", "--sync-every", "4"],
    ["--algorithm", "slowmo", "--sync-every", "4", "--slow-momentum", "0.5", "--slow-lr", "1.0", "--max-drift", "100"],
    ["--algorithm", "hierarchical-sgd", "--sync-every", "2", "--sync-every-global", "6"],
    ["--algorithm", "gossip", "--graph", "exponential", "--consensus-every", "5"],
    ["--algorithm", "zero-1", "--optimizer", "adam", "--lr", "0.05"],
    ["--algorithm", "sgd", "--sampling", "global", "--deterministic"],
], ids=lambda flags: flags[1])
def test_each_algorithm_trains_from_the_command_line(tmp_path, flags):
    done = run(*BASE, *flags, "--out", str(tmp_path / "run"), ranks=3)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["algorithm"] == flags[1] and summary["final_train_metric"] > 0.8
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert ("drift_rms" in records[-1]) == (flags[1] not in ("sgd", "zero-1"))


@pytest.mark.parametrize("flags, message", [
    (["--algorithm", "local-sgd", "--sync-every", "2", "--accumulate", "2"], "--accumulate only applies to --algorithm sgd"),
    (["--algorithm", "post-local-sgd", "--sync-every", "2"], "needs --switch-step"),
    (["--algorithm", "slowmo"], "needs --sync-every"),
    (["--algorithm", "hierarchical-sgd", "--sync-every", "2"], "needs --sync-every-global"),
    (["--algorithm", "sgd", "--deterministic"], "--deterministic needs --sampling='global'"),
    (["--algorithm", "local-sgd", "--sync-every", "2", "--deterministic"], "--deterministic only applies to --algorithm gd or sgd"),
    (["--algorithm", "zero-1", "--allreduce", "tree"], "zero-1 reduce-scatters with the ring"),
    (["--algorithm", "gossip", "--sync-every", "2"], "--sync-every only applies to --algorithm local-sgd (or post-local-sgd, slowmo, hierarchical-sgd)"),
    (["--algorithm", "sgd", "--slow-lr", "0.5"], "--slow-lr only applies to --algorithm slowmo"),
    (["--algorithm", "slowmo", "--sync-every", "2", "--slow-momentum", "1.5"], "--slow-momentum must be below 1"),
    (["--algorithm", "sgd", "--accumulate", "4", "--overlap"], "cannot be combined with --accumulate=4"),
])
def test_flags_that_cannot_apply_fail_with_one_message(tmp_path, flags, message):
    done = run(*BASE, *flags, "--out", str(tmp_path / "run"), ranks=2, timeout=60)
    assert done.returncode != 0
    assert done.stderr.count(message) == 1, done.stderr
    assert "Traceback" not in done.stderr
