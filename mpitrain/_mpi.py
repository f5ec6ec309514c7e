"""Starting MPI: the one place that chooses mpi4py's thread level before MPI is initialised.

mpi4py's default is ``multiple``; with MPICH that disables the fast shared-memory path of small
allreduces. ``serialized`` makes them about 2x faster and ``collectives``' ring covers the large
ones (measured in docs/collectives.md). ``MPI4PY_RC_THREAD_LEVEL`` still overrides it. Only the
main thread of an mpitrain process calls MPI, as ``serialized`` requires.
"""
import mpi4py

mpi4py.rc.thread_level = "serialized"

from mpi4py import MPI  # noqa: E402

from .guard import guard_signals  # noqa: E402

if guard_signals() is not None:  # the command line: MPI's initialisation installed a SIGUSR1 handler
    guard_signals().catch()

__all__ = ["MPI"]
