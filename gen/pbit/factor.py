"""Factor a semiprime by running a p-bit multiplier backwards.

The multiplier's topology depends only on the factor widths, so one generated array
factors every N of that product width: the product bits are clamped (frozen spins) by
the program, the factor bits are free, and each run anneals beta upwards. A run
succeeds when the best state it kept has a * b == N (a ground state of the clamped
circuit). ``backend="rtl"`` runs on Verilator, ``"golden"`` on the bit-exact model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ...golden.pbit import PBitFormat, PBitMachine, pbit_seeds
from ...hw.pbit.array import PBitArray
from ..errors import ConfigError
from . import driver, graph, logic

FORMAT = PBitFormat(w_bits=5, w_frac=0, h_bits=7, beta_bits=8, beta_frac=6,
                    lut_size=64, lut_step_frac=3, rand_bits=16)
N_COLOURS = 8


def anneal_schedule(fmt: PBitFormat, sweeps: int, beta0: float, beta1: float,
                    entries: int = 8) -> list[tuple[int, int]]:
    """Geometric beta ramp in ``entries`` steps of (nearly) equal sweeps."""
    if sweeps < entries:
        entries = max(1, sweeps)
    per = [sweeps // entries + (k < sweeps % entries) for k in range(entries)]
    betas = np.geomspace(beta0, beta1, entries)
    return [(fmt.beta_code(b), s) for b, s in zip(betas, per)]


def factor_array(na: int, nb: int, seed: int = 1) -> tuple[PBitArray, logic.Multiplier]:
    mult = logic.multiplier(na, nb)
    nbrs = mult.circuit.neighbours()
    # factor_program colours the same topology the same way, so groups never clash
    array = PBitArray(neighbours=nbrs, max_degree=max(map(len, nbrs)), n_colours=N_COLOURS,
                      seeds=pbit_seeds(seed, mult.circuit.n), word_bits=32,
                      share=graph.colour_groups(graph.dsatur(nbrs)),
                      **{k: getattr(FORMAT, k) for k in FORMAT.__dataclass_fields__})
    return array, mult


def factor_widths(N: int, bits=None) -> tuple[int, int]:
    """Factor widths for N: ``bits`` = (na, nb), or half of N's width each, rounded up."""
    if isinstance(N, bool) or not isinstance(N, int) or N < 4:
        raise ConfigError("N", f"{N!r} is not allowed, must be an integer >= 4")
    L = N.bit_length()
    na, nb = bits if bits else ((L + 1) // 2, (L + 1) // 2)
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


@dataclass
class FactorResult:
    N: int
    a: int | None
    b: int | None
    runs: int
    sweeps: int
    updates: int
    cycles: int
    seconds: float
    backend: str


def factor(N: int, *, na: int | None = None, nb: int | None = None, sweeps: int = 1000,
           runs: int = 8, backend: str = "rtl", seed: int = 1, execute=None) -> FactorResult:
    """Anneal up to ``runs`` times; report the first run whose best state factors N."""
    if not isinstance(N, int) or N < 4:
        raise ConfigError("N", f"must be an integer >= 4, got {N!r}")
    L = N.bit_length()
    na = na or (L + 1) // 2
    nb = nb or (L + 1) // 2
    if na < 1 or nb < 1:
        raise ConfigError("bits", f"factor widths must be >= 1, got {na} and {nb}")
    if na + nb < L:
        raise ConfigError("bits", f"{na}+{nb} factor bits cannot make the {L}-bit N={N}")
    if not 1 <= runs <= 64:
        raise ConfigError("runs", f"must lie in [1, 64], got {runs}")
    prog, mult = factor_program(N, na, nb)
    n_col = int(prog.colours.max()) + 1
    schedule = anneal_schedule(FORMAT, sweeps, 0.05, 1.0)
    ops = [prog] + [driver.Run(schedule, n_col) for _ in range(runs)]
    t0 = time.perf_counter()
    if backend == "rtl":
        if execute is None:
            raise ConfigError("backend", "rtl needs a simulator (execute=run_rtl)")
        array, _ = factor_array(na, nb, seed)
        results, _ = execute(array, ops, name=f"pbit_mult{na}x{nb}")
    elif backend == "golden":
        m = PBitMachine(FORMAT, prog.J, prog.h, prog.colours, pbit_seeds(seed, len(prog.h)),
                        state=prog.state, frozen=prog.clamp)
        results = []
        for op in ops[1:]:
            r = m.run(op.schedule, op.n_colours)
            results.append(driver.Result(state=r.state, energy=r.energy,
                                         best_state=r.best_state, best_energy=r.best_energy,
                                         cycles=r.cycles, update_cycles=r.update_cycles))
    else:
        raise ConfigError("backend", f"must be 'rtl' or 'golden', got {backend!r}")
    seconds = time.perf_counter() - t0
    free = int((~prog.clamp).sum())
    cycles = updates = 0
    for k, r in enumerate(results):
        cycles += r.cycles
        updates += r.update_cycles // n_col * free
        a, b = mult.value(r.best_state, mult.a), mult.value(r.best_state, mult.b)
        if a * b == N:
            return FactorResult(N, a, b, k + 1, (k + 1) * sweeps, updates, cycles, seconds,
                                backend)
    return FactorResult(N, None, None, runs, runs * sweeps, updates, cycles, seconds, backend)
