"""Factor a semiprime by running a p-bit multiplier backwards.

The multiplier's topology depends only on the factor widths, so one generated array
factors every N of that product width: the product bits are clamped (frozen spins) by
the program, the factor bits are free, and each run anneals beta upwards. A run
succeeds when the best state it kept has a * b == N (a ground state of the clamped
circuit). ``factor_program`` builds the clamped circuit's program and
``factor_array`` the parallel array over the multiplier's own topology; the
runtime's ``Fabric.factor`` runs the program on any p-bit tile.

``trivial`` answers N without annealing when it is prime, even or a square.
``factor_cases`` splits the search for an odd N by the bit length k of the smaller
factor p (2 <= k <= bits of isqrt(N)): case k runs a k x nb multiplier, nb the bits of
N // (smallest odd k-bit p), with p's top bit and both factors' lowest bits clamped to 1
(and q's top bit when every q of the case has the same width). The cases together cover
every factorization 1 < p <= q; each is a smaller and more constrained circuit than one
multiplier of the covering widths, so the unbalanced ones are found in a few sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt

import numpy as np

from ...golden.pbit import PBitFormat, pbit_seeds
from ...hw.pbit.array import PBitArray
from ..errors import ConfigError
from . import driver, graph, logic

N_COLOURS = 8


def anneal_schedule(fmt: PBitFormat, sweeps: int, beta0: float, beta1: float,
                    entries: int = 8) -> list[tuple[int, int]]:
    """Geometric beta ramp in ``entries`` steps of (nearly) equal sweeps."""
    if sweeps < entries:
        entries = max(1, sweeps)
    per = [sweeps // entries + (k < sweeps % entries) for k in range(entries)]
    betas = np.geomspace(beta0, beta1, entries)
    return [(fmt.beta_code(b), s) for b, s in zip(betas, per)]


def factor_array(na: int, nb: int, fmt: PBitFormat, seed: int = 1
                 ) -> tuple[PBitArray, logic.Multiplier]:
    mult = logic.multiplier(na, nb)
    nbrs = mult.circuit.neighbours()
    # factor_program colours the same topology the same way, so groups never clash
    array = PBitArray(neighbours=nbrs, max_degree=max(map(len, nbrs)), n_colours=N_COLOURS,
                      seeds=pbit_seeds(seed, mult.circuit.n), word_bits=32,
                      share=graph.colour_groups(graph.dsatur(nbrs)),
                      **{k: getattr(fmt, k) for k in fmt.__dataclass_fields__})
    return array, mult


def check_N(N) -> int:
    """N as an int, or a ConfigError naming what is allowed."""
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 2:
        raise ConfigError("N", f"{N!r} is not allowed, must be an integer >= 2")
    return int(N)


def is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin (these bases are exact below 3.3e24)."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for p in bases:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def trivial(N) -> tuple[str, int | None, int | None] | None:
    """``("prime", None, None)``, ``("even"|"square", p, q)`` with p * q == N, or None
    when N is odd, composite and not a square (the case the p-bits anneal)."""
    N = check_N(N)
    if is_prime(N):
        return "prime", None, None
    if N % 2 == 0:
        return "even", 2, N // 2
    r = isqrt(N)
    if r * r == N:
        return "square", r, r
    return None


def factor_widths(N: int, bits=None) -> tuple[int, int]:
    """Factor widths for N: ``bits`` = (na, nb), or by default widths that hold every
    factorization 1 < p <= q of N: p <= isqrt(N) (at most ceil(bits/2) bits) and
    q <= N // 2 for even N, N // 3 for odd N (at most bits - 1 bits)."""
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 4:
        raise ConfigError("N", f"{N!r} is not allowed, must be an integer >= 4")
    N = int(N)
    L = N.bit_length()
    if bits:
        na, nb = bits
    else:
        na = isqrt(N).bit_length()
        nb = (N // (2 if N % 2 == 0 else 3)).bit_length()
    if na < 1 or nb < 1:
        raise ConfigError("bits", f"factor widths must be >= 1, got {na} and {nb}")
    if na + nb < L:
        raise ConfigError("bits", f"{na}+{nb} factor bits cannot make the {L}-bit N={N}")
    return na, nb


@dataclass(frozen=True)
class Case:
    """One part of the search: factors p (``na`` bits) and q (``nb`` bits) with the bits
    ``fixed`` (("a"|"b", bit) -> 0/1) clamped besides N's product bits."""
    na: int
    nb: int
    fixed: tuple = ()
    p_range: tuple = (0, 0)      # the smaller factors this case covers
    q_range: tuple = (0, 0)

    @property
    def label(self) -> str:
        return f"{self.na}x{self.nb}"


def factor_cases(N: int, bits=None) -> list[Case]:
    """The multipliers that together cover every factorization of an odd composite N
    (module docstring), or the one multiplier of ``bits`` = (na, nb) with only the
    factors' lowest bits clamped to 1 (N odd)."""
    N = check_N(N)
    if N % 2 == 0 or N < 9:
        raise ConfigError("N", f"{N} is not an odd composite (use trivial(N))")
    if bits:
        na, nb = factor_widths(N, bits)
        return [Case(na, nb, (("a", 0, 1), ("b", 0, 1)), (3, (1 << na) - 1),
                     (3, (1 << nb) - 1))]
    out = []
    for k in range(2, isqrt(N).bit_length() + 1):
        p_lo, p_hi = (1 << (k - 1)) + 1, min((1 << k) - 1, isqrt(N))
        if p_lo > p_hi:
            continue
        q_lo, q_hi = max(p_lo, -(-N // p_hi)), N // p_lo
        if q_lo > q_hi:
            continue            # no q >= p of this case (p = 3 with 3 > N / 3 ...)
        nb = q_hi.bit_length()
        fixed = [("a", 0, 1), ("a", k - 1, 1), ("b", 0, 1)]
        if q_lo.bit_length() == nb and nb > 1:
            fixed.append(("b", nb - 1, 1))
        out.append(Case(k, nb, tuple(fixed), (p_lo, p_hi), (q_lo, q_hi)))
    return out


def factor_program(N: int, na: int, nb: int, n_colours: int = N_COLOURS
                   ) -> tuple[driver.Program, logic.Multiplier]:
    mult = logic.factor_circuit(N, na, nb)
    c = mult.circuit
    J, h = c.ising()
    colours = graph.dsatur(c.neighbours())
    if colours.max() >= n_colours:
        raise ConfigError("n_colours", f"the {na}x{nb} multiplier needs "
                                       f"{colours.max() + 1} colours, the array has {n_colours}")
    clamp = np.zeros(c.n, bool)
    state = np.ones(c.n, dtype=np.int64)
    for node, v in c.clamps.items():
        clamp[node] = True
        state[node] = 1 if v else -1
    return driver.Program(J, h, colours, clamp=clamp, state=state), mult


def case_program(N: int, case: Case, n_colours: int = N_COLOURS
                 ) -> tuple[driver.Program, logic.Multiplier]:
    """``factor_program`` of the case's widths with its ``fixed`` bits clamped as well."""
    prog, mult = factor_program(N, case.na, case.nb, n_colours)
    clamp, state = np.asarray(prog.clamp).copy(), np.asarray(prog.state).copy()
    for reg, bit, v in case.fixed:
        node = (mult.a if reg == "a" else mult.b)[bit]
        clamp[node] = True
        state[node] = 1 if v else -1
    return driver.Program(prog.J, prog.h, prog.colours, clamp=clamp, state=state), mult


def semiprimes(bits: int, count: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """``count`` distinct (N, p, q), N = p q of exactly ``bits`` bits, p <= q odd primes;
    p's bit length uniform in 2..ceil(bits/2), so unbalanced factors are as common as
    balanced ones."""
    if not isinstance(bits, int) or not 6 <= bits <= 40:
        raise ConfigError("bits", f"{bits!r} is not allowed, must be an integer 6..40")
    out, seen = [], set()
    for _ in range(200 * count):
        if len(out) == count:
            break
        k = int(rng.integers(2, (bits + 1) // 2 + 1))
        p = int(rng.integers(1 << (k - 1), 1 << k)) | 1
        lo, hi = max(p, -(-(1 << (bits - 1)) // p)), ((1 << bits) - 1) // p
        if not is_prime(p) or lo > hi:
            continue
        for _ in range(64):
            q = int(rng.integers(lo, hi + 1))
            if is_prime(q) and p * q not in seen:
                seen.add(p * q)
                out.append((p * q, p, q))
                break
    return out
