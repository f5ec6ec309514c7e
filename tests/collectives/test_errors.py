"""Bad input fails with TypeError/ValueError on every rank, before any message is sent."""
from __future__ import annotations

import numpy as np
import pytest

from mpitrain import collectives


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: collectives.allreduce([1.0, 2.0]), TypeError, "numpy.ndarray"),
        (lambda: collectives.allreduce(np.ones(3, dtype=np.complex128)), TypeError, "astype"),
        (lambda: collectives.allreduce(np.ones(3, dtype=np.int32), op="avg"), TypeError, "float dtype"),
        (lambda: collectives.allreduce(np.ones(3), op="prod"), ValueError, "op must be"),
        (lambda: collectives.allreduce(np.ones(3), algorithm="butterfly"), ValueError, "algorithm must be"),
        (lambda: collectives.allreduce(np.ones((3, 4))[:, 1]), ValueError, "C-contiguous"),
        (lambda: collectives.allreduce(np.ones(3), np.ones(4)), ValueError, "empty_like"),
        (lambda: collectives.allreduce(np.ones(4), np.ones(4, dtype=np.float32)), ValueError, "empty_like"),
        (lambda: (lambda a: collectives.allreduce(a[:4], a[2:]))(np.ones(6)), ValueError, "overlaps"),
        (lambda: collectives.allreduce(np.ones(3), compress="int8"), ValueError, "compress must be"),
        (lambda: collectives.allreduce(np.ones(3, dtype=np.int64), compress="fp16"), ValueError, "float sums"),
        (lambda: collectives.allreduce(np.ones(3), compress="fp16", algorithm="tree"), ValueError, "'ring'"),
        (lambda: collectives.allreduce(np.ones(3), compress="fp16", deterministic=True), ValueError, "deterministic"),
        (lambda: collectives.sum_shards(np.ones(3)), TypeError, "shape \\(k, n\\)"),
    ],
)
def test_bad_input(call, error: type, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=words):
        call()


def test_read_only_buffer() -> None:
    x = np.ones(3)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        collectives.allreduce(x)


def test_allreduce_many_needs_one_dtype() -> None:
    with pytest.raises(TypeError, match="one dtype at a time"):
        collectives.allreduce_many([np.ones(2), np.ones(2, dtype=np.float32)])
