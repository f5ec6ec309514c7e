"""fp16/bf16 payloads: error bounded by the stated rate, same bits on every rank, no overflow."""
from __future__ import annotations

import numpy as np
import pytest

from mpitrain import collectives
from mpitrain.collectives.compress import BF16, FP16
from .refs import WORLD, everywhere, gather_rows, inputs, lengths, same_on_all_ranks

UNIT = {"fp16": 2.0**-11, "bf16": 2.0**-8}


@pytest.mark.mpi
@pytest.mark.parametrize("codec", ["fp16", "bf16"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["sum", "avg"])
def test_compressed_sum(codec: str, dtype: type, op: str) -> None:
    p, r = WORLD.Get_size(), WORLD.Get_rank()
    for n in lengths(p):
        x = inputs(r, n, dtype) * 1e3  # up to ~1e6 * p: far beyond fp16's 65504 without the scale
        result = collectives.allreduce(x, np.empty_like(x), op=op, compress=codec)
        assert same_on_all_ranks(result)
        rows = gather_rows(x).astype(np.float64)
        expected = rows.sum(axis=0) / (p if op == "avg" else 1)
        peak = p * float(np.abs(rows).max(initial=0))
        error = np.abs(result - expected).max(initial=0)
        assert error <= 2 * p * UNIT[codec] * peak / (p if op == "avg" else 1), (n, error)


@pytest.mark.mpi
def test_compressed_tiny_values_keep_precision() -> None:
    """The shared scale lifts small gradients out of fp16's subnormal range."""
    x = np.full(64, 1e-9 * (WORLD.Get_rank() + 1), dtype=np.float32)
    result = collectives.allreduce(x, np.empty_like(x), compress="fp16")
    p = WORLD.Get_size()
    assert everywhere(np.allclose(result, 1e-9 * p * (p + 1) / 2, rtol=p * 2.0**-10))


@pytest.mark.parametrize("codec", [FP16(), BF16()])
def test_codec_round_trip_is_nearest(codec: object) -> None:
    x = np.array([1.0, -2.5, 3.140625, 1e-3, 1000.0, 0.0], dtype=np.float32)
    wire = np.empty(x.size, dtype=codec.wire)
    codec.encode(x, wire)
    back = np.empty_like(x)
    codec.decode(wire, back)
    step = 2.0**-11 if isinstance(codec, FP16) else 2.0**-8
    assert np.all(np.abs(back - x) <= step * np.abs(x))


def test_every_codec_travels_as_a_type_every_mpi_has() -> None:
    """Open MPI has no float16 datatype: payloads must go as uint16 bits (checked on any MPI)."""
    for codec in (FP16(), BF16()):
        assert codec.wire == np.uint16
    x = np.array([1.0, 65504.0, 2.0**-24, -0.1, np.inf], dtype=np.float32)
    wire = np.empty(x.size, dtype=np.uint16)
    FP16().encode(x, wire)
    assert np.array_equal(wire, x.astype(np.float16).view(np.uint16))  # IEEE half bits, rounded by NumPy


def test_error_feedback_carries_the_encoding_error() -> None:
    grads = np.linspace(-1, 1, 101) * 1e-2 + 1e-6
    state = collectives.feedback_init(grads)
    send, state = collectives.feedback_apply(grads, state, "bf16")
    assert np.array_equal(send, grads)
    assert 0 < np.abs(state.residual).max() <= 2.0**-8 * np.abs(grads).max()
    send2, _ = collectives.feedback_apply(grads, state, "bf16")
    assert np.allclose(send2, grads + state.residual)
