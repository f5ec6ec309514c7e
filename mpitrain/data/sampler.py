"""Which local rows a rank visits at each step. NumPy only, no communication."""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def epoch_order(seed: int, epoch: int, start: int, stop: int) -> np.ndarray:
    """The visiting order of global rows [start, stop) in ``epoch``, as local indices.

    Each row's sort key is a hash of (seed, epoch, global row index), so the relative order
    of two rows does not depend on how the data is partitioned over ranks. The hash (xor with
    a salt, then SplitMix64's finaliser) is a bijection of the row index, so keys never tie
    and any sorting algorithm gives the same order; the default one is the fastest.
    """
    salt = _mix(np.array([seed], dtype=np.uint64) ^ _mix(np.array([epoch], dtype=np.uint64)))
    keys = _mix(np.arange(start, stop, dtype=np.uint64) ^ salt)
    return np.argsort(keys)


class BatchSampler:
    """This rank's fixed share of every global mini-batch, drawn without replacement per local epoch.

    Step t takes positions [t*share, (t+1)*share) of an endless stream that concatenates the
    epoch orders of the local rows, so the batch at any step is a function of (seed, step).
    """

    def __init__(self, start: int, n_local: int, share: int, seed: int) -> None:
        if share > 0 and n_local == 0:
            raise ValueError(f"a share of {share} rows per step needs rows, but this partition is empty")
        self.start, self.n_local, self.share, self.seed = start, n_local, share, seed
        self._cached: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def _order(self, epoch: int) -> np.ndarray:
        if self._cached[0] != epoch:
            self._cached = (epoch, epoch_order(self.seed, epoch, self.start, self.start + self.n_local))
        return self._cached[1]

    def indices(self, step: int) -> np.ndarray:
        """Local row indices of this rank's share at ``step``, shape (share,)."""
        if self.share == 0:
            return np.empty(0, dtype=np.int64)
        first, last = step * self.share, (step + 1) * self.share
        parts = []
        while first < last:
            epoch, offset = divmod(first, self.n_local)
            take = min(last - first, self.n_local - offset)
            parts.append(self._order(epoch)[offset : offset + take])
            first += take
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
