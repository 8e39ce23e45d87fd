"""xorshift32 (Marsaglia; shifts 13, 17, 5): the generator every hardware block draws from.

``xorshift32(x)`` is the successor of the 32-bit state ``x`` as an Amaranth expression
(combinational; the caller owns the register and decides when it steps);
``xorshift32_int(x)`` is the same step on a Python integer, for initial states.
A state of zero stays zero, so seeds must be non-zero.
"""

from __future__ import annotations

MASK32 = 0xFFFF_FFFF


def xorshift32(x):
    """The next xorshift32 state of the 32-bit value ``x``."""
    x = x ^ (x << 13)[:32]
    x = x ^ (x >> 17)
    return x ^ (x << 5)[:32]


def xorshift32_int(x: int) -> int:
    x ^= (x << 13) & MASK32
    x ^= x >> 17
    x ^= (x << 5) & MASK32
    return x
