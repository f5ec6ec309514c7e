"""Shared test set-up. Under ``mpiexec ... pytest --with-mpi`` every rank runs the whole session:
rank 0 reports to the terminal, the other ranks to files (shown if they fail), and the session
stops at once if the world size is not the one the Makefile asked for."""
from __future__ import annotations

import os
import sys

import pytest


def _mpi_session(config: pytest.Config) -> bool:
    return bool(config.getoption("--with-mpi", default=False))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not _mpi_session(config):
        return
    from mpi4py import MPI

    rank, size = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
    expected = os.environ.get("MPITRAIN_TEST_NP")
    if expected and int(expected) != size:
        sys.stderr.write(
            f"this pytest session expected {expected} MPI ranks but runs on {size}: the mpiexec used "
            "does not belong to the MPI that mpi4py loaded (set MPIEXEC to the matching launcher)\n"
        )
        os._exit(3)
    if rank > 0:
        folder = os.environ.get("MPITRAIN_TEST_LOGS", "build/test-logs")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"np{size}-rank{rank}.log")
        config._rank_log = path  # type: ignore[attr-defined]
        sys.stdout = open(path, "w", buffering=1)  # noqa: SIM115 - closed at interpreter exit


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = getattr(session.config, "_rank_log", None)
    if path and exitstatus not in (0, 5):
        sys.stdout.flush()
        with open(path) as f:
            sys.stderr.write(f"----- report of a failing rank ({path}) -----\n{f.read()}")


@pytest.fixture(scope="session")
def comm():
    """mpitrain's private duplicate of COMM_WORLD."""
    from mpitrain import world

    return world()
