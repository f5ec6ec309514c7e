"""Compressed allreduce: fp16 or bf16 on the wire, float32 accumulation, a shared power-of-two scale.

The scale 2^k is agreed by a max-reduction so that every partial sum (at most p * max|x|)
stays below 2^15 and fp16 cannot overflow; scaling by a power of two is exact. Blocks are
re-encoded after each ring step, so the error grows with p: roughly p * 2^-11 (fp16) or
p * 2^-8 (bf16) of max|x|. Error feedback (``feedback_init`` / ``feedback_apply``) lets a
training loop carry each rank's own encoding error into its next gradient.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import ring
from ..comm import Comm

WIRE_LIMIT_EXPONENT = 15  # partial sums are scaled below 2^15 < 65504, fp16's largest value


class FP16:
    """IEEE half precision (NumPy rounds to nearest even) carried as its uint16 bits.

    Open MPI has no float16 datatype; every MPI has a 16-bit unsigned integer.
    """

    wire = np.dtype(np.uint16)

    def encode(self, block: np.ndarray, out: np.ndarray) -> None:
        """Round ``block`` (float32, shape (n,)) to fp16 bits into ``out`` (uint16)."""
        out.view(np.float16)[...] = block

    def decode(self, wire: np.ndarray, out: np.ndarray) -> None:
        """Widen fp16 bits ``wire`` (uint16, shape (n,)) into ``out`` (float32)."""
        out[...] = wire.view(np.float16)


class BF16:
    """bfloat16 (the top 16 bits of float32, rounded to nearest even) carried as uint16."""

    wire = np.dtype(np.uint16)

    def encode(self, block: np.ndarray, out: np.ndarray) -> None:
        """Round ``block`` (float32, shape (n,)) to bf16 bits into ``out`` (uint16)."""
        bits = block.view(np.uint32)
        out[...] = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16

    def decode(self, wire: np.ndarray, out: np.ndarray) -> None:
        """Widen bf16 bits ``wire`` (uint16, shape (n,)) into ``out`` (float32)."""
        out.view(np.uint32)[...] = wire.astype(np.uint32) << 16


CODECS = {"fp16": FP16(), "bf16": BF16()}


def shared_exponent(ch: Comm, buf: np.ndarray) -> int:
    """k such that size * max|buf| * 2^k < 2^15 on every rank (collective), within [-1000, 1000]."""
    peak = ch.Allreduce(np.array([max(buf.max(), -buf.min()) if buf.size else 0.0], dtype=np.float64), "max")[0]
    if not np.isfinite(peak):
        raise ValueError("compressed allreduce needs finite inputs, but some rank has inf or nan; pass compress=None")
    if peak == 0:
        return 0
    return int(np.clip(WIRE_LIMIT_EXPONENT - int(np.frexp(peak * ch.size)[1]), -1000, 1000))


def allreduce(ch: Comm, buf: np.ndarray, op: str, codec: str) -> None:
    """Sum ``buf`` (float32 or float64, shape (n,)) in place with ``codec`` payloads on a ring."""
    k = shared_exponent(ch, buf)
    work = ch.scratch(buf.size, np.float32, slot=1)
    np.multiply(buf, np.float64(2.0**k), out=work, casting="unsafe")  # in float64: exact, no overflow
    offsets = ring.reduce_scatter(ch, work, op, CODECS[codec])
    wire = ch.scratch(work.size, CODECS[codec].wire, slot=2)
    mine = slice(offsets[ch.rank], offsets[ch.rank + 1])
    CODECS[codec].encode(work[mine], wire[mine])
    ring.allgather(ch, wire, offsets)
    CODECS[codec].decode(wire, work)
    np.multiply(work, np.float64(2.0**-k), out=buf, casting="unsafe")


class Feedback(NamedTuple):
    """Error-feedback state: each rank's encoding error not yet sent, shape like the gradient."""

    residual: np.ndarray


def feedback_init(grads: np.ndarray) -> Feedback:
    """Zero residual shaped like ``grads``."""
    return Feedback(np.zeros_like(grads))


def feedback_apply(grads: np.ndarray, state: Feedback, codec: str) -> tuple[np.ndarray, Feedback]:
    """Add the carried residual to ``grads``; return (what to send, new state).

    The new residual is what encoding the compensated gradient with its own power-of-two scale
    loses; pass the returned array to ``allreduce(..., compress=codec)``.
    """
    if codec not in CODECS:
        raise ValueError(f"compress must be one of {sorted(CODECS)}, not {codec!r}")
    send = grads + state.residual
    flat = send.reshape(-1)
    peak = float(np.max(np.abs(flat))) if flat.size else 0.0
    k = 0 if peak == 0 or not np.isfinite(peak) else WIRE_LIMIT_EXPONENT - int(np.frexp(peak)[1])
    scaled = np.ldexp(flat, k).astype(np.float32)
    wire = np.empty(flat.size, dtype=CODECS[codec].wire)
    CODECS[codec].encode(scaled, wire)
    CODECS[codec].decode(wire, scaled)
    residual = send - np.ldexp(scaled, -k).reshape(send.shape).astype(send.dtype)
    return send, Feedback(residual)
