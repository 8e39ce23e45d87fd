"""Random stimulus shared by testbenches, the CLI and the benchmarks."""

from __future__ import annotations

import numpy as np


def random_operands(rng: np.random.Generator, m: int, k: int, n: int, op_bits: int):
    """Uniform random operands with the extreme values planted in both matrices."""
    lo, hi = -(1 << (op_bits - 1)), (1 << (op_bits - 1)) - 1
    a = rng.integers(lo, hi + 1, size=(m, k))
    b = rng.integers(lo, hi + 1, size=(k, n))
    for x in (a, b):
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, size=max(1, flat.size // 16))] = lo
        flat[rng.integers(0, flat.size, size=max(1, flat.size // 16))] = hi
    return a, b
