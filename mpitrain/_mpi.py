"""Starting MPI: the one place that chooses mpi4py's thread level, on first use, never on import.

``init()`` sets the thread level and imports ``mpi4py.MPI`` (which initialises MPI); importing
this module starts nothing, so ``import mpitrain.optim`` and friends never start MPI.

The level is ``serialized`` at every world size. Measured with MPICH 5.0.2 (docs/collectives.md):

- 2 ranks, 2 cores: small native allreduces are about 2x faster than at ``multiple``; above
  64 KiB native is about 3x slower, and ``auto`` uses our ring or Rabenseifner there.
- 4 and 16 ranks, 16 cores: an 8-byte native allreduce takes 5.1 us against 13.0 us at
  ``multiple``; 1 MiB native takes 2,096 us against 1,057 us at ``multiple``, but our
  Rabenseifner takes 823 us at ``serialized``, and a 1 MB MLP step trained at 121.6k / 125.8k
  samples/s (4 / 16 ranks) with it against 107.2k / 118.0k at ``multiple``.

So ``serialized`` wins at every measured size, provided ``auto`` never picks the native call
for large buffers there (see ``costmodel.ALGORITHM_COSTS``). ``MPI4PY_RC_THREAD_LEVEL`` still
overrides it. Only the main thread of an mpitrain process calls MPI, as ``serialized`` requires.
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Callable, Optional

THREAD_LEVEL = "serialized"
LEVELS = ("single", "funneled", "serialized", "multiple")  # MPI.THREAD_SINGLE ... THREAD_MULTIPLE: 0 ... 3


after_init: list[Callable[[], None]] = []  # called once MPI is initialised (guard.SignalGuard registers here)


def init() -> ModuleType:
    """``mpi4py.MPI``, initialising MPI at ``THREAD_LEVEL`` (or $MPI4PY_RC_THREAD_LEVEL) if nothing has yet."""
    found = sys.modules.get("mpi4py.MPI")
    if found is not None:
        return found
    import mpi4py

    mpi4py.rc.thread_level = THREAD_LEVEL
    from mpi4py import MPI

    for call in after_init:  # e.g. the command line's signal guard takes back the SIGUSR1 handler MPI installed
        call()
    return MPI


def started() -> Optional[ModuleType]:
    """``mpi4py.MPI`` if MPI is initialised and not finalised in this process, else None (starts nothing)."""
    found = sys.modules.get("mpi4py.MPI")
    if found is None or not found.Is_initialized() or found.Is_finalized():
        return None
    return found


def thread_level(MPI: ModuleType) -> str:
    """The thread level MPI runs at, as mpi4py spells it ("serialized", ...)."""
    level = MPI.Query_thread()
    return LEVELS[level] if 0 <= level < len(LEVELS) else str(level)
