"""The Makefile's test targets, run with a stand-in launcher."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_make_test_mpi_runs_every_size_and_lists_the_failures_at_the_end(tmp_path):
    if not shutil.which("make") or not os.path.exists(os.path.join(sys.prefix, ".installed")):
        pytest.skip("needs make and an environment made by `make install`")
    sizes = tmp_path / "sizes"
    fake = tmp_path / "mpiexec"
    fake.write_text(f'#!/bin/sh\necho "$2" >> {sizes}\ncase "$2" in 2|3) exit 1;; esac\n')  # -n N python ...
    fake.chmod(0o755)
    installed = os.path.join(sys.prefix, ".installed")  # -o: taken as up to date, whatever pyproject.toml says
    done = subprocess.run(["make", "--no-print-directory", "-o", installed, "test-mpi", f"MPIEXEC={fake}",
                           "MPI_SIZES=1 2 3 4", f"VENV={sys.prefix}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert sizes.read_text().split() == ["1", "2", "3", "4"]  # it went on after size 2 failed
    assert "MPI tests FAILED on rank count(s): 2 3" in done.stdout
