"""The one layer of ``mpitrain.collectives`` that imports mpi4py: point-to-point on NumPy buffers.

Every algorithm file talks to MPI only through a :class:`Channel`, a private duplicate of a
communicator, so library messages never match a user's receive on the original one. Arrays
travel only through the buffer calls (upper-case ``Sendrecv``, ``Send``, ``Recv``, ``Isend``, ``Irecv``).
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Optional

import numpy as np

from .._mpi import MPI

_MPI_OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
_LEVELS = {
    MPI.THREAD_SINGLE: "single",
    MPI.THREAD_FUNNELED: "funneled",
    MPI.THREAD_SERIALIZED: "serialized",
    MPI.THREAD_MULTIPLE: "multiple",
}


class Channel:
    """A private duplicate of an MPI intracommunicator with the calls the algorithms need.

    Creating one is collective over ``base``. ``thread_level`` and ``table_digest`` are
    checked to agree on every rank, because both feed the ``auto`` plan.
    """

    def __init__(self, base: Any, table_digest: bytes = b"") -> None:
        if not isinstance(base, MPI.Intracomm):
            raise TypeError(
                f"comm must be an mpi4py intracommunicator or None, not {type(base).__name__}"
            )
        self.comm = base.Dup()
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.thread_level: str = _LEVELS.get(MPI.Query_thread(), "unknown")
        self._scratch: dict[int, np.ndarray] = {}
        mine = np.array(
            [MPI.Query_thread(), int.from_bytes(hashlib.blake2b(table_digest, digest_size=7).digest(), "little")],
            dtype=np.int64,
        )
        both = np.concatenate([mine, -mine])
        self.comm.Allreduce(MPI.IN_PLACE, both, op=MPI.MAX)
        if both[0] != -both[2]:
            raise RuntimeError(
                "ranks run MPI at different thread levels; set MPI4PY_RC_THREAD_LEVEL the same on every rank"
            )
        if both[1] != -both[3]:
            raise RuntimeError(
                "ranks loaded different allreduce tables; point MPITRAIN_ALLREDUCE_TABLE at one shared file"
            )

    # -- point-to-point ---------------------------------------------------------------------
    def sendrecv(self, send: np.ndarray, dest: int, recv: np.ndarray, source: int, tag: int = 0) -> None:
        """Send ``send`` (any shape) to ``dest`` while receiving ``recv`` from ``source``."""
        self.comm.Sendrecv(send, dest, tag, recv, source, tag)

    def send(self, buf: np.ndarray, dest: int, tag: int = 0) -> None:
        """Blocking send of ``buf`` to ``dest``."""
        self.comm.Send(buf, dest, tag)

    def recv(self, buf: np.ndarray, source: int, tag: int = 0) -> None:
        """Blocking receive into ``buf`` from ``source``."""
        self.comm.Recv(buf, source, tag)

    def isend(self, buf: np.ndarray, dest: int, tag: int) -> Any:
        """Start sending ``buf`` to ``dest``; the request completes in ``test_all`` or ``wait_all``."""
        return self.comm.Isend(buf, dest, tag)

    def irecv(self, buf: np.ndarray, source: int, tag: int) -> Any:
        """Start receiving into ``buf`` from ``source``; the request completes in ``test_all`` or ``wait_all``."""
        return self.comm.Irecv(buf, source, tag)

    @staticmethod
    def test_all(requests: list) -> bool:
        """Whether every request has completed; lets MPI progress them either way."""
        return bool(MPI.Request.Testall(requests))

    @staticmethod
    def wait_all(requests: list) -> None:
        """Block until every request has completed."""
        MPI.Request.Waitall(requests)

    # -- the MPI library's own collectives ----------------------------------------------------
    def native_allreduce(self, buf: np.ndarray, op: str) -> None:
        """``MPI_Allreduce`` in place on ``buf`` (contiguous, any shape)."""
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=_MPI_OPS[op])

    def native_reduce(self, buf: np.ndarray, op: str, root: int) -> None:
        """``MPI_Reduce`` in place: ``buf`` on ``root`` receives the reduction."""
        if self.rank == root:
            self.comm.Reduce(MPI.IN_PLACE, buf, op=_MPI_OPS[op], root=root)
        else:
            self.comm.Reduce(buf, None, op=_MPI_OPS[op], root=root)

    def native_bcast(self, buf: np.ndarray, root: int) -> None:
        """``MPI_Bcast`` of ``buf`` from ``root``."""
        self.comm.Bcast(buf, root=root)

    def native_reduce_scatter(self, buf: np.ndarray, counts: list[int], op: str) -> np.ndarray:
        """``MPI_Reduce_scatter`` of ``buf`` (shape (sum(counts),)): this rank's reduced block, shape (counts[rank],)."""
        mine = np.empty(counts[self.rank], dtype=buf.dtype)
        self.comm.Reduce_scatter(buf, mine, counts, op=_MPI_OPS[op])
        return mine

    def native_allgather(self, buf: np.ndarray, counts: list[int]) -> None:
        """``MPI_Allgatherv`` in place: every rank's block of ``buf`` is filled in."""
        displs = [sum(counts[:i]) for i in range(len(counts))]
        self.comm.Allgatherv(MPI.IN_PLACE, [buf, (counts, displs)])

    # -- benchmark references -----------------------------------------------------------------
    def raw_allreduce(self) -> Callable[[np.ndarray], None]:
        """The bare bound call ``comm.Allreduce(MPI.IN_PLACE, buf)`` (sum), the benchmark baseline."""
        comm, in_place = self.comm, MPI.IN_PLACE
        return lambda buf: comm.Allreduce(in_place, buf)

    def pickled_allreduce(self, buf: np.ndarray) -> np.ndarray:
        """mpi4py's pickling ``allreduce`` of ``buf`` (sum); a benchmark reference only."""
        return self.comm.allreduce(buf)  # the pickling object call, on purpose: the benchmark's reference

    def barrier(self) -> None:
        """Wait until every rank arrives."""
        self.comm.Barrier()

    def max_over_ranks(self, values: np.ndarray) -> np.ndarray:
        """Element-wise maximum of a small float64 array over ranks (returns a new array)."""
        out = np.array(values, dtype=np.float64)
        self.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.MAX)
        return out

    # -- memory ---------------------------------------------------------------------------------
    def scratch(self, count: int, dtype: np.dtype, slot: int = 0) -> np.ndarray:
        """A reusable work array of shape (count,) and ``dtype``, valid until the next call for ``slot``.

        Reusing memory avoids the page faults a fresh large array costs on every call. Algorithm
        files use slot 0; the layers that call them (compression, fixed point) use other slots.
        """
        nbytes = count * np.dtype(dtype).itemsize
        held = self._scratch.get(slot)
        if held is None or held.nbytes < nbytes:
            held = self._scratch[slot] = np.empty(max(nbytes, 2 * (0 if held is None else held.nbytes)), dtype=np.uint8)
        return held[:nbytes].view(dtype)


def library_info() -> dict:
    """MPI library, version, mpi4py version and thread level of this process."""
    import mpi4py

    return {
        "mpi_library": MPI.Get_library_version().strip().splitlines()[0].strip(),
        "mpi_standard": "%d.%d" % MPI.Get_version(),
        "mpi4py": mpi4py.__version__,
        "thread_level": _LEVELS.get(MPI.Query_thread(), "unknown"),
        "processor": MPI.Get_processor_name(),
    }


_channels: list[tuple[Any, Channel]] = []  # (user communicator, its private duplicate)
_world: Optional[Channel] = None


def channel(comm: Any, table_digest: bytes) -> Channel:
    """The Channel for ``comm``: None means a private duplicate of COMM_WORLD.

    Each communicator gets one duplicate, created on first use and kept for the process.
    """
    global _world
    if isinstance(comm, Channel):
        return comm
    if comm is None:
        if _world is None:
            _world = Channel(MPI.COMM_WORLD, table_digest)
        return _world
    for known, found in _channels:
        if known is comm:
            return found
    found = Channel(comm, table_digest)
    _channels.append((comm, found))
    return found
