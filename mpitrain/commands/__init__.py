"""The command line's subcommands that do the work, one module each (``cli.py`` parses and dispatches).

``train`` and ``predict`` run on every rank of the job; rank 0 alone prints (``say``).
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Optional, TextIO

if TYPE_CHECKING:
    from ..comm import Comm

LAUNCHER_RANKS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")


def launcher_rank() -> int:
    """This process's rank as the launcher told it (0 when started alone); starts no MPI."""
    for var in LAUNCHER_RANKS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def say(comm: "Comm", text: str, stream: Optional[TextIO] = None) -> None:
    """Print ``text`` on rank 0 only (to ``stream``, default standard output)."""
    if comm.rank == 0:
        print(text, file=stream or sys.stdout, flush=True)
