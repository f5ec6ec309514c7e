"""The survivors of recursive doubling's fold-in, numbered 0..2^k-1, at world sizes 1-40.

MPI runs reach sizes 1-5, where at most one pair folds (rem <= 1); the rank arithmetic for
rem >= 2 is checked here against the rule written out in recursive_doubling's docstring.
"""
from mpitrain.collectives.recursive_doubling import real_rank


def survivors(size: int) -> list[int]:
    """The ranks left after the first 2*rem pair up and each even one sits out, in rank order."""
    pof2 = 1
    while pof2 * 2 <= size:
        pof2 *= 2
    rem = size - pof2
    return [r for r in range(size) if r >= 2 * rem or r % 2 == 1]


def test_real_rank_numbers_the_survivors_in_rank_order():
    for size in range(1, 41):
        expected = survivors(size)
        assert len(expected) & (len(expected) - 1) == 0, size  # a power of two
        assert [real_rank(v, size) for v in range(len(expected))] == expected, size
