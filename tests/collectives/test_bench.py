"""The allreduce benchmark runs end to end on tiny sizes and writes its JSON and markdown."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from mpitrain.bench import allreduce as bench
from .refs import WORLD, everywhere
from launch import ENV


def parse(argv: list[str]) -> argparse.Namespace:
    """The bench's own flags, parsed as the CLI would."""
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers(dest="bench"))
    return parser.parse_args(["allreduce"] + argv)


def test_flag_types() -> None:
    args = parse(["--sizes", "8,1k,4M", "--methods", "mpi,auto,ring"])
    assert args.sizes == [8, 1024, 4 << 20] and args.methods == ("mpi", "auto", "ring")
    with pytest.raises(SystemExit):
        parse(["--methods", "butterfly"])
    with pytest.raises(SystemExit):
        parse(["--sizes", "0"])


@pytest.mark.mpi
@pytest.mark.parametrize("calibrate", [False, True])
def test_run_writes_reports(calibrate: bool) -> None:
    """Rank 0 writes the files; every rank checks rank 0's verdict.

    Each rank makes its own temporary folder with tempfile: pytest's tmp_path machinery is shared
    by the concurrent ranks of one session and may race when it cleans up.
    """
    with tempfile.TemporaryDirectory() as out:
        check_run(out, calibrate)


def check_run(out: str, calibrate: bool) -> None:
    """Run the benchmark into ``out`` and assert on rank 0's view of the files (every rank)."""
    methods = "native,ring" if calibrate else "mpi,auto,ring,deterministic,bf16,pickle"
    flags = ["--sizes", "8,1000", "--rounds", "1", "--max-iters", "3", "--methods", methods, "--out", out]
    assert bench.run(parse(flags + (["--calibrate", "--job"] if calibrate else []))) == 0
    ok = True
    if WORLD.Get_rank() == 0:
        names = os.listdir(out)
        reports = [n for n in names if n.startswith(f"allreduce-p{WORLD.Get_size()}-") and n.endswith(".json")]
        ok = len(reports) == 1 and ("allreduce-table.json" in names) == calibrate
        if ok:
            with open(os.path.join(out, reports[0])) as f:
                report = json.load(f)
            ok = report["bytes"] == [8, 1000] and set(report["methods"]) == set(methods.split(","))
            ok = ok and all(np.isfinite(v["latency_us"]).all() for v in report["methods"].values())
    assert everywhere(ok)


def test_calibrate_launches_a_job_per_world_size_and_writes_one_table(tmp_path) -> None:
    flags = ["--ranks", "2,3", "--sizes", "8,1000", "--rounds", "1", "--max-iters", "3", "--methods", "native,ring"]
    done = subprocess.run([sys.executable, "-m", "mpitrain", "bench", "allreduce", "--calibrate", *flags,
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **ENV, "MPI4PY_RC_THREAD_LEVEL": "serialized"})
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "allreduce-table.json") as f:
        table = json.load(f)
    assert sorted(table["serialized"]) == ["2", "3"]
    assert all(row[1] in ("native", "ring") for rows in table["serialized"].values() for row in rows)
    assert "MPITRAIN_ALLREDUCE_TABLE=" in done.stdout


def test_calibrate_refuses_to_run_inside_a_job(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "mpitrain.bench.allreduce", "--calibrate", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PMI_SIZE": "4"})
    assert done.returncode != 0 and "without mpiexec" in done.stderr
