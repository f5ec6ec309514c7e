"""The MPI library's own collectives, one of the candidates ``auto`` chooses from."""
from __future__ import annotations

import numpy as np

from ..comm import Comm


def allreduce(ch: Comm, buf: np.ndarray, op: str) -> None:
    """``MPI_Allreduce`` in place on ``buf`` (shape (n,))."""
    ch.native_allreduce(buf, op)
