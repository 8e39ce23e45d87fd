"""Factor a semiprime by running a p-bit multiplier backwards.

The multiplier's topology depends only on the factor widths, so one generated array
factors every N of that product width: the product bits are clamped (frozen spins) by
the program, the factor bits are free, and each run anneals beta upwards. A run
succeeds when the best state it kept has a * b == N (a ground state of the clamped
circuit). ``factor_program`` builds the clamped circuit's program and
``factor_array`` the parallel array over the multiplier's own topology; the
runtime's ``Fabric.factor`` runs the program on any p-bit tile.
"""

from __future__ import annotations

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


def factor_widths(N: int, bits=None) -> tuple[int, int]:
    """Factor widths for N: ``bits`` = (na, nb), or by default the smallest near-equal
    widths whose products reach N."""
    if isinstance(N, bool) or not isinstance(N, int) or N < 4:
        raise ConfigError("N", f"{N!r} is not allowed, must be an integer >= 4")
    L = N.bit_length()
    if bits:
        na, nb = bits
    else:
        # Half of N's width each, rounded up, and b one bit wider while the widths'
        # largest product, (2**na - 1)(2**nb - 1), is below N (15 needs 2x3 bits).
        na = nb = (L + 1) // 2
        while ((1 << na) - 1) * ((1 << nb) - 1) < N:
            nb += 1
    if na < 1 or nb < 1:
        raise ConfigError("bits", f"factor widths must be >= 1, got {na} and {nb}")
    if na + nb < L:
        raise ConfigError("bits", f"{na}+{nb} factor bits cannot make the {L}-bit N={N}")
    return na, nb


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
