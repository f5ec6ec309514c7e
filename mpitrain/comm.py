"""The one communicator: a private duplicate of an MPI communicator that moves NumPy buffers.

Everything in mpitrain that communicates takes a :class:`Comm`, and every public entry point
converts what it is given with :func:`as_comm`: None (the world), a Comm, or an mpi4py
intracommunicator (which gets its own private duplicate, made once and kept), so library
messages never match a user's receive on the original. ``mpitrain.collectives``, one layer
up, builds its algorithms on the point-to-point calls here; this module never imports it.

Only this module (through ``_mpi``, which picks the thread level) uses mpi4py. Creating a Comm
starts MPI; importing this module does not. Arrays travel only through the buffer calls
(``Allreduce``, ``Bcast``, ``Gatherv``, ``Sendrecv``, ...); the lower-case pickling calls appear
only for short strings (error messages, host names) and the benchmark's reference.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any, Callable, Optional

import numpy as np

from . import _mpi, agree
from .errors import UsageError

MPI: Any = None  # mpi4py.MPI, set when the first Comm is made
_OPS: dict[str, Any] = {}


def _start() -> ModuleType:
    """Start MPI (once) and fill the module's handles on it."""
    global MPI
    if MPI is None:
        MPI = _mpi.init()
        _OPS.update(sum=MPI.SUM, max=MPI.MAX, min=MPI.MIN)
    return MPI


class Comm:
    """A private duplicate of an MPI intracommunicator with the calls mpitrain needs.

    Creating one is collective over ``base`` (None: ``COMM_WORLD``) and checks that every rank
    runs MPI at the same thread level. ``busy`` is True while this rank is inside a collective
    (the watchdog reports it); ``plans`` caches what ``algorithm="auto"`` chose per byte count.
    """

    def __init__(self, base: Any = None) -> None:
        MPI = _start()
        base = MPI.COMM_WORLD if base is None else base
        if not isinstance(base, MPI.Intracomm):
            raise TypeError(f"comm must be a mpitrain Comm, an mpi4py intracommunicator or None, not {type(base).__name__}")
        self._comm = base.Dup()
        self.rank: int = self._comm.Get_rank()
        self.size: int = self._comm.Get_size()
        self.thread_level: str = _mpi.thread_level(MPI)
        self.busy = False
        self.plans: Optional[dict[int, str]] = None  # bytes -> algorithm, kept by collectives.auto
        self._scratch: dict[int, np.ndarray] = {}
        self._nodes: Optional[tuple[Comm, Optional[Comm], int]] = None
        level = np.array([MPI.Query_thread(), -MPI.Query_thread()], dtype=np.int64)
        self._comm.Allreduce(MPI.IN_PLACE, level, op=MPI.MAX)
        if level[0] != -level[1]:
            raise RuntimeError("ranks run MPI at different thread levels; set MPI4PY_RC_THREAD_LEVEL the same on every rank")
        if self.size > 1:
            _install_abort_hook()

    # -- reductions: the MPI library's buffer calls; our algorithms and auto are mpitrain.collectives --
    def Allreduce(self, buf: np.ndarray, op: str = "sum") -> np.ndarray:
        """``MPI_Allreduce`` of ``buf`` (contiguous, any shape) in place over all ranks; returns it.

        ``op`` is "sum", "max" or "min". The other algorithms, "auto" and compression are
        ``collectives.allreduce(buf, algorithm=..., comm=...)``.
        """
        self.busy = True
        self._comm.Allreduce(MPI.IN_PLACE, buf, op=_OPS[op])
        self.busy = False
        return buf

    def native_allreduce(self, buf: np.ndarray, op: str) -> None:
        """``MPI_Allreduce`` in place on ``buf`` (contiguous, any shape); ``op`` is sum, max or min."""
        self._comm.Allreduce(MPI.IN_PLACE, buf, op=_OPS[op])

    def native_reduce(self, buf: np.ndarray, op: str, root: int) -> None:
        """``MPI_Reduce`` in place: ``buf`` on ``root`` receives the reduction."""
        if self.rank == root:
            self._comm.Reduce(MPI.IN_PLACE, buf, op=_OPS[op], root=root)
        else:
            self._comm.Reduce(buf, None, op=_OPS[op], root=root)

    def native_reduce_scatter(self, buf: np.ndarray, counts: list[int], op: str) -> np.ndarray:
        """``MPI_Reduce_scatter`` of ``buf`` (shape (sum(counts),)): this rank's reduced block, shape (counts[rank],)."""
        mine = np.empty(counts[self.rank], dtype=buf.dtype)
        self._comm.Reduce_scatter(buf, mine, counts, op=_OPS[op])
        return mine

    def native_allgather(self, buf: np.ndarray, counts: list[int]) -> None:
        """``MPI_Allgatherv`` in place: every rank's block of ``buf`` (shape (sum(counts),)) is filled in."""
        displs = [sum(counts[:i]) for i in range(len(counts))]
        self._comm.Allgatherv(MPI.IN_PLACE, [buf, (counts, displs)])

    def Bcast(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        """Overwrite ``buf`` on every rank with root's copy and return it."""
        self.busy = True
        self._comm.Bcast(buf, root=root)
        self.busy = False
        return buf

    def allgather_int(self, value: int) -> np.ndarray:
        """Return an int64 array of shape (size,) holding every rank's ``value``."""
        out = np.zeros(self.size, dtype=np.int64)
        out[self.rank] = value
        return self.Allreduce(out)

    def gather_rows(self, local: np.ndarray, root: int = 0) -> Optional[np.ndarray]:
        """Concatenate every rank's ``local`` (shape (n_k, ...)) in rank order on ``root``.

        Returns the array of shape (sum n_k, ...) on root and None elsewhere.
        """
        local = np.ascontiguousarray(local)
        row = int(np.prod(local.shape[1:], dtype=np.int64))
        counts = self.allgather_int(local.shape[0]) * row
        out = None
        if self.rank == root:
            out = np.empty((int(counts.sum()) // max(row, 1),) + local.shape[1:], dtype=local.dtype)
        self.busy = True
        self._comm.Gatherv(local, [out, counts] if out is not None else None, root=root)
        self.busy = False
        return out

    def gather_text(self, text: str) -> list[str]:
        """Every rank's short ``text``, in rank order, on every rank."""
        return self._comm.allgather(text)  # small control object (strings), never arrays

    def Allgatherv(self, buf: np.ndarray, counts: list[int]) -> np.ndarray:
        """Fill every rank's block of ``buf`` (shape (sum(counts),); rank r's at sum(counts[:r])) from its owner."""
        displs = [sum(counts[:r]) for r in range(len(counts))]
        self.busy = True
        self._comm.Allgatherv(MPI.IN_PLACE, [buf, (list(counts), displs)])
        self.busy = False
        return buf

    def node(self) -> "Comm":
        """Collective: the ranks that share this rank's node (shared-memory domain), as a Comm of their own."""
        base = self._comm.Split_type(MPI.COMM_TYPE_SHARED)
        node = Comm(base)
        base.Free()
        return node

    def Sendrecv(self, send: np.ndarray, dest: int, recv: np.ndarray, source: int) -> np.ndarray:
        """Send ``send`` to rank ``dest`` while receiving ``recv`` (same dtype) from rank ``source``; returns recv."""
        self.busy = True
        self._comm.Sendrecv(send, dest, 0, recv, source, 0)
        self.busy = False
        return recv

    def barrier(self) -> None:
        """Wait until every rank arrives."""
        self._comm.Barrier()

    # -- point-to-point, for the algorithms in mpitrain.collectives ----------------------------
    def sendrecv(self, send: np.ndarray, dest: int, recv: np.ndarray, source: int, tag: int = 0) -> None:
        """Send ``send`` (any shape) to ``dest`` while receiving ``recv`` from ``source``."""
        self._comm.Sendrecv(send, dest, tag, recv, source, tag)

    def send(self, buf: np.ndarray, dest: int, tag: int = 0) -> None:
        """Blocking send of ``buf`` to ``dest``."""
        self._comm.Send(buf, dest, tag)

    def recv(self, buf: np.ndarray, source: int, tag: int = 0) -> None:
        """Blocking receive into ``buf`` from ``source``."""
        self._comm.Recv(buf, source, tag)

    def isend(self, buf: np.ndarray, dest: int, tag: int) -> Any:
        """Start sending ``buf`` to ``dest``; the request completes in ``test_all`` or ``wait_all``."""
        return self._comm.Isend(buf, dest, tag)

    def irecv(self, buf: np.ndarray, source: int, tag: int) -> Any:
        """Start receiving into ``buf`` from ``source``; the request completes in ``test_all`` or ``wait_all``."""
        return self._comm.Irecv(buf, source, tag)

    @staticmethod
    def test_all(requests: list) -> bool:
        """Whether every request has completed; lets MPI progress them either way."""
        return bool(MPI.Request.Testall(requests))

    @staticmethod
    def wait_all(requests: list) -> None:
        """Block until every request has completed."""
        MPI.Request.Waitall(requests)

    def scratch(self, count: int, dtype: Any, slot: int = 0) -> np.ndarray:
        """A reusable work array of shape (count,) and ``dtype``, valid until the next call for ``slot``.

        Reusing memory avoids the page faults a fresh large array costs on every call. Algorithm
        files use slot 0; the layers that call them (compression, fixed point) use other slots.
        """
        nbytes = count * np.dtype(dtype).itemsize
        held = self._scratch.get(slot)
        if held is None or held.nbytes < nbytes:
            held = self._scratch[slot] = np.empty(max(nbytes, 2 * (0 if held is None else held.nbytes)), dtype=np.uint8)
        return held[:nbytes].view(dtype)

    # -- nodes ---------------------------------------------------------------------------------
    def nodes(self) -> tuple["Comm", Optional["Comm"], int]:
        """(this node's ranks, the node leaders or None on other ranks, the number of nodes); collective once.

        A node is a shared-memory domain (``Split_type(COMM_TYPE_SHARED)``); its leader is its
        rank 0. The leaders' communicator orders them by world rank.
        """
        if self._nodes is None:
            split = self._comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
            node = Comm(split)
            split.Free()
            lead = self._comm.Split(0 if node.rank == 0 else MPI.UNDEFINED, self.rank)
            leaders = None
            if node.rank == 0:
                leaders = Comm(lead)
                lead.Free()
            count = int(self.Allreduce(np.array([1 if node.rank == 0 else 0], dtype=np.int64))[0])
            self._nodes = (node, leaders, count)
        return self._nodes

    def ranks_on_node(self) -> int:
        """How many ranks share this rank's node (shared-memory domain)."""
        return self.nodes()[0].size

    # -- benchmark references ------------------------------------------------------------------
    def raw_allreduce(self) -> Callable[[np.ndarray], None]:
        """The bare bound call ``comm.Allreduce(MPI.IN_PLACE, buf)`` (sum), the benchmark baseline."""
        comm, in_place = self._comm, MPI.IN_PLACE
        return lambda buf: comm.Allreduce(in_place, buf)

    def pickled_allreduce(self, buf: np.ndarray) -> np.ndarray:
        """mpi4py's pickling ``allreduce`` of ``buf`` (sum); a benchmark reference only."""
        return self._comm.allreduce(buf)  # the pickling object call, on purpose: the benchmark's reference

    # -- agreement (see mpitrain.agree) and failure --------------------------------------------
    def together(self) -> AbstractContextManager[None]:
        """``agree.together(self)``: a UsageError or OSError on any rank fails every rank alike."""
        return agree.together(self)

    def raise_if_any(self, error: str) -> None:
        """``agree.raise_if_any(self, error)``."""
        agree.raise_if_any(self, error)

    def identical(self, arr: np.ndarray) -> bool:
        """``agree.identical(self, arr)``: the same bits on every rank."""
        return agree.identical(self, arr)

    def agree_int(self, what: str, value: int, context: str) -> None:
        """``agree.agree_int(self, what, value, context)``."""
        agree.agree_int(self, what, value, context)

    def abort(self, code: int) -> None:
        """End the whole job now with exit status ``code`` (never 0 for an error)."""
        sys.stdout.flush()
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(code)

    def info(self) -> dict:
        """Versions, thread level and processor names (collective)."""
        import mpi4py

        return {
            "numpy": np.__version__,
            "mpi4py": mpi4py.__version__,
            "mpi_library": MPI.Get_library_version().strip().splitlines()[0],
            "mpi_standard": "%d.%d" % MPI.Get_version(),
            "world_size": self.size,
            "thread_level": self.thread_level,
            "processors": self.gather_text(MPI.Get_processor_name()),
        }


_world: Optional[Comm] = None
_known: list[tuple[Any, Comm]] = []  # (user's mpi4py communicator, its private duplicate)


def world() -> Comm:
    """The process-wide private duplicate of COMM_WORLD, created on first use (collective then)."""
    global _world
    if _world is None:
        _world = Comm()
    return _world


def as_comm(comm: Any) -> Comm:
    """The Comm for ``comm``: None means ``world()``, a Comm is itself, an mpi4py intracommunicator
    gets one private duplicate, made on first use (collective then) and kept for the process."""
    if comm is None:
        return _world if _world is not None else world()
    if isinstance(comm, Comm):
        return comm
    for known, found in _known:
        if known is comm:
            return found
    found = Comm(comm)
    _known.append((comm, found))
    return found


_hook_installed = False


def _install_abort_hook() -> None:
    """Make an uncaught exception on any rank print once (with the rank) and abort the job."""
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True

    def hook(kind, value, tb):  # type: ignore[no-untyped-def]
        report_and_abort(value, tb)

    sys.excepthook = hook


def report_and_abort(exc: BaseException, tb=None) -> None:  # type: ignore[no-untyped-def]
    """Print ``exc`` prefixed with this rank, then end the whole job with a non-zero status.

    Before MPI has started the process just exits: the launcher ends the other ranks.
    """
    mpi = _mpi.started()
    size = mpi.COMM_WORLD.Get_size() if mpi is not None else 1
    where = f"rank {mpi.COMM_WORLD.Get_rank()} of {size}" if mpi is not None else f"process {os.getpid()}"
    if isinstance(exc, UsageError):
        code, text = 2, f"mpitrain: error{f' on {where}' if size > 1 else ''}: {exc}\n"
    elif isinstance(exc, KeyboardInterrupt):
        code, text = 130, f"mpitrain: interrupted on {where}\n"
    else:
        code = 1
        lines = traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)
        text = "".join(f"[{where}] {line}" for line in "".join(lines).splitlines(True))
        text = f"mpitrain: unexpected error on {where}; traceback follows\n{text}"
    sys.stderr.write(text)
    sys.stderr.flush()
    sys.stdout.flush()
    if mpi is not None and size > 1:
        time.sleep(0.25)  # let the launcher forward this rank's output before Abort tears it down
        mpi.COMM_WORLD.Abort(code)
    os._exit(code)
