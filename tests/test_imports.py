"""Importing mpitrain's modules starts no MPI: only making a communicator does."""
import subprocess
import sys

MODULES = ["mpitrain.optim", "mpitrain.models", "mpitrain.data", "mpitrain.params", "mpitrain.comm", "mpitrain.agree",
           "mpitrain.collectives", "mpitrain.costmodel", "mpitrain.bench.allreduce"]


def test_importing_starts_no_mpi():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES)
            + "print('mpi4py.MPI' in sys.modules)\n"
            + "import mpitrain.comm\nmpitrain.comm.world()\nprint('mpi4py.MPI' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
