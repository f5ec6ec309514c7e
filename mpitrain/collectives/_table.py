"""The calibrated ``auto`` table: thread level -> ranks -> [[upper bound in bytes, algorithm], ...].

Each list is sorted; a buffer of b bytes takes the first entry whose bound exceeds b (None means
no bound). Only what was measured is here: other rank counts and thread levels use ``native``.
Made on the development machine (2 cores, MPICH 5.0.2 from PyPI, mpi4py 4.1.2, float64 sums)
with ``python -m mpitrain bench allreduce --calibrate --rounds 7`` under each thread level, then
pasted from runs/bench/allreduce-table.json; see docs/collectives.md.
"""
TABLE: dict = {
    "multiple": {
        "2": [[11863283, "native"], [23726566, "rabenseifner"], [47453133, "ring"], [None, "rabenseifner"]],
    },
    "serialized": {
        "2": [[46341, "native"], [185364, "ring"], [370728, "rabenseifner"], [741455, "ring"],
              [47453133, "rabenseifner"], [None, "ring"]],
    },
}
