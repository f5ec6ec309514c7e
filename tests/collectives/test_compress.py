"""fp16/bf16 payloads: error bounded by the stated rate, same bits on every rank, no overflow."""
from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from mpitrain import collectives
from mpitrain.collectives import compress
from mpitrain.collectives.compress import BF16, FP16
from mpitrain.comm import as_comm
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


def nearest_bf16(x: np.ndarray) -> np.ndarray:
    """Each float32 of x rounded to the nearest bfloat16 by value (ties: the even last bit), as float32."""
    bits = x.view(np.uint32) & np.uint32(0xFFFF0000)
    low = bits.view(np.float32).astype(np.float64)
    high = (bits + np.uint32(0x10000)).view(np.float32).astype(np.float64)  # one bf16 step further from 0
    wide = x.astype(np.float64)
    to_high = (np.abs(high - wide) < np.abs(wide - low)) | (
        (np.abs(high - wide) == np.abs(wide - low)) & (((bits >> 16) & 1) == 1))
    return np.where(to_high, high, low).astype(np.float32)


def test_bf16_rounds_to_the_nearest_value_and_ties_to_even() -> None:
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(4000) * 10.0 ** rng.integers(-20, 20, 4000)).astype(np.float32)
    ties = (np.arange(64, dtype=np.uint32) << 16 | np.uint32(0x8000)) + np.uint32(0x3F800000)  # halfway, odd and even
    x = np.concatenate([x, ties.view(np.float32), -ties.view(np.float32)])
    wire = np.empty(x.size, dtype=np.uint16)
    BF16().encode(x, wire)
    back = np.empty_like(x)
    BF16().decode(wire, back)
    assert np.array_equal(back, nearest_bf16(x))


@pytest.mark.parametrize("peak", [1.0, 0.75, 3.0, 65504.0, 1e-30, 2.0**-1000, 1e300, 1e306])
def test_the_shared_exponent_is_the_largest_that_keeps_the_sums_below_2_to_the_15(peak: float) -> None:
    """k with max|x| * 2^k < 2^15 <= max|x| * 2^(k + 1) (one rank), clipped to [-1000, 1000]."""
    one = as_comm(MPI.COMM_SELF)
    buf = np.array([0.5 * peak, -peak, 0.0])
    k = compress.shared_exponent(one, buf)
    if -1000 < k < 1000:
        assert peak * 2.0**k < 2.0**15 <= peak * 2.0 ** (k + 1)
    else:
        assert k == (1000 if peak < 1 else -1000) and (peak < 2.0**-985 or peak >= 2.0**1015)
    assert compress.shared_exponent(one, np.zeros(3)) == 0 and compress.shared_exponent(one, np.zeros(0)) == 0


@pytest.mark.parametrize("scale", [1e-3, 1.0, 7.0, 3e4])
def test_error_feedback_keeps_what_fp16_on_the_largest_scale_loses(scale: float) -> None:
    """The residual is send - fp16(send * 2^k) / 2^k, k the largest with max|send| * 2^k < 2^15,
    fp16 as NumPy rounds it."""
    rng = np.random.default_rng(9)
    grads = rng.standard_normal((5, 7)) * scale
    state = collectives.feedback_init(grads)
    state.residual[:] = rng.standard_normal((5, 7)) * scale * 1e-3
    send, new = collectives.feedback_apply(grads, state, "fp16")
    peak = np.abs(send).max()
    k = next(k for k in range(60, -60, -1) if peak * 2.0**k < 2.0**15)
    expected = send - (send * 2.0**k).astype(np.float32).astype(np.float16).astype(np.float64) / 2.0**k
    assert np.array_equal(new.residual, expected)
    zero = collectives.feedback_apply(np.zeros(4), collectives.feedback_init(np.zeros(4)), "fp16")[1]
    assert not zero.residual.any()
    one = np.array([1.0, 0.3, -0.7, 1e-6, -3e-7])  # max|send| exactly 2^0: k = 14 keeps 1e-6 a normal fp16
    residual = collectives.feedback_apply(one, collectives.feedback_init(one), "fp16")[1].residual
    assert np.array_equal(residual, one - (one * 2.0**14).astype(np.float16).astype(np.float64) / 2.0**14)
