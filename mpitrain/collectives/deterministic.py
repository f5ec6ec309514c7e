"""Sums whose bits do not depend on the number of ranks, the partition or the order of arrival.

Every contribution is rounded once to fixed point, q = rint(x * 2^s) in int64, with one scale
2^s for the whole job chosen from max|x| (agreed by a max-reduction): |q| <= 2^46. Integer
addition is exact and associative, so any algorithm, any grouping and any number of ranks give
the same integer sum, converted back once. 16 bits of headroom allow up to 2^16 contributions.

Accuracy: each contribution loses at most 2^-47 * 2^e, where 2^(e-1) <= max|x| < 2^e, so the
sum of K contributions is within K * 2^-46 * max|x| of the exact sum before the final rounding
to the output dtype. Cost: one extra small max-reduction, an int64 buffer (the payload of a
float64 sum, twice that of a float32 one) and three passes over the data.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..comm import Comm

FRACTION_BITS = 46
MAX_CONTRIBUTIONS = 1 << (62 - FRACTION_BITS)


def sum_shards(
    ch: Comm, shards: np.ndarray, out: np.ndarray, int_allreduce: Callable[[np.ndarray], None]
) -> None:
    """Write into ``out`` (shape (n,)) the sum of every rank's rows of ``shards`` (shape (k, n)).

    The bits of ``out`` depend only on the multiset of rows over all ranks; ``k`` may differ
    between ranks (including 0). ``int_allreduce`` sums an int64 array in place over ranks.
    """
    peak, rows = ch.Allreduce(
        np.array([max(shards.max(), -shards.min()) if shards.size else 0.0, shards.shape[0]], dtype=np.float64), "max"
    )
    if not np.isfinite(peak):
        raise ValueError("deterministic sums need finite inputs, but some rank has inf or nan")
    if rows * ch.size > MAX_CONTRIBUTIONS:
        raise ValueError(
            f"deterministic sums allow at most {MAX_CONTRIBUTIONS} contributions, but {ch.size} ranks "
            f"pass up to {int(rows)} rows each; sum fewer, larger shards"
        )
    shift = 0 if peak == 0 else FRACTION_BITS - int(np.frexp(peak)[1])
    n = shards.shape[1]
    scaled, total = ch.scratch(n, np.float64, slot=1), ch.scratch(n, np.int64, slot=2)
    if shards.shape[0] == 0:
        total[:] = 0
    for k, row in enumerate(shards):
        np.rint(_times_power_of_two(row, shift, scaled), out=scaled)
        if k == 0:
            np.copyto(total, scaled, casting="unsafe")  # exact: integers below 2^47
        else:
            fixed = ch.scratch(n, np.int64, slot=3)
            np.copyto(fixed, scaled, casting="unsafe")
            total += fixed
    int_allreduce(total)
    _times_power_of_two(total, -shift, out)


def _times_power_of_two(x: np.ndarray, shift: int, out: np.ndarray) -> np.ndarray:
    """``out`` (shape of x) = x * 2^shift computed in float64 (int64 x rounded once), then cast to out's dtype."""
    if -1000 < shift < 1000:
        return np.multiply(x, np.float64(2.0**shift), out=out, casting="unsafe")
    np.copyto(out, np.ldexp(x.astype(np.float64), shift), casting="unsafe")
    return out
