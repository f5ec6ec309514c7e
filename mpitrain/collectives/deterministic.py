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

from ._p2p import Channel

FRACTION_BITS = 46
MAX_CONTRIBUTIONS = 1 << (62 - FRACTION_BITS)


def sum_shards(
    ch: Channel, shards: np.ndarray, out: np.ndarray, int_allreduce: Callable[[np.ndarray], None]
) -> None:
    """Write into ``out`` (shape (n,)) the sum of every rank's rows of ``shards`` (shape (k, n)).

    The bits of ``out`` depend only on the multiset of rows over all ranks; ``k`` may differ
    between ranks (including 0). ``int_allreduce`` sums an int64 array in place over ranks.
    """
    peak, rows = ch.max_over_ranks(
        np.array([np.max(np.abs(shards)) if shards.size else 0.0, shards.shape[0]])
    )
    if not np.isfinite(peak):
        raise ValueError("deterministic sums need finite inputs, but some rank has inf or nan")
    if rows * ch.size > MAX_CONTRIBUTIONS:
        raise ValueError(
            f"deterministic sums allow at most {MAX_CONTRIBUTIONS} contributions, but {ch.size} ranks "
            f"pass up to {int(rows)} rows each; sum fewer, larger shards"
        )
    shift = 0 if peak == 0 else FRACTION_BITS - int(np.frexp(peak)[1])
    total = np.rint(np.ldexp(shards.astype(np.float64, copy=False), shift)).astype(np.int64).sum(axis=0)
    int_allreduce(total)
    np.ldexp(total.astype(np.float64), -shift, out=out, casting="unsafe")
