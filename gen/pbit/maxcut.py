"""Max-Cut on a p-bit array: J = -W, h = 0, annealed with a geometric beta ramp.

The array is generated with the graph as its topology (one J register per edge end),
so every G-set graph fits the sparse variant; ``backend="golden"`` runs the bit-exact
model instead of Verilator (same spins, same cut) for graphs too large to simulate.
With E = -(1/2 m^T J m) and J = -W, cut = (sum of edge weights - E) / 2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ...golden.pbit import PBitFormat, PBitMachine, pbit_seeds
from ...hw.pbit.array import PBitArray
from ..errors import ConfigError
from . import driver, graph, quant
from .factor import anneal_schedule

FORMAT = PBitFormat(w_bits=4, w_frac=0, h_bits=2, beta_bits=8, beta_frac=6,
                    lut_size=64, lut_step_frac=3, rand_bits=16)
BETA0, BETA1 = 0.1, 3.0


@dataclass
class MaxCutResult:
    graph: str
    n: int
    colours: int
    sweeps: int
    cut: int
    best_cut: int
    updates: int
    cycles: int
    seconds: float
    backend: str
    quant_report: str
    trace: list = field(default_factory=list)      # (sweep, cut) along the anneal

    @property
    def flips_per_cycle(self) -> float:
        return self.updates / self.cycles

    @property
    def flips_limit(self) -> float:
        return self.n / self.colours


def setup(gr: graph.Graph, n_colours: int | None = None):
    q = quant.quantize(-gr.W(), np.zeros(gr.n), FORMAT, scale=1.0)
    nb = gr.neighbours()
    colours = graph.dsatur(nb)
    graph.check_colouring(nb, colours, n_colours)
    return q, colours


def maxcut_array(gr: graph.Graph, n_colours: int, seed: int = 1) -> PBitArray:
    return PBitArray(neighbours=gr.neighbours(), max_degree=max(1, int(gr.degrees().max())),
                     n_colours=n_colours, seeds=pbit_seeds(seed, gr.n), word_bits=32,
                     **{k: getattr(FORMAT, k) for k in FORMAT.__dataclass_fields__})


def run(gr: graph.Graph, sweeps: int, *, backend: str = "rtl", seed: int = 1,
        trace_points: int = 0) -> MaxCutResult:
    if not isinstance(sweeps, int) or not 1 <= sweeps <= 8 * 65535:
        raise ConfigError("--sweeps", f"must be an integer in [1, {8 * 65535}], got {sweeps}")
    q, colours = setup(gr)
    k = int(colours.max()) + 1
    schedule = anneal_schedule(FORMAT, sweeps, BETA0, BETA1)
    every = max(1, sweeps // trace_points) if trace_points else 0
    total_w = int(gr.weights.sum())
    state = np.random.default_rng(seed).choice([-1, 1], gr.n)
    prog = driver.Program(q.J, q.h, colours, state=state)
    t0 = time.perf_counter()
    if backend == "rtl":
        array = maxcut_array(gr, k, seed)
        results, _ = driver.run_rtl(array, [prog, driver.Run(schedule, k, every)],
                                    name=f"pbit_maxcut_{gr.name or gr.n}".lower())
        r = results[0]
        samples, cycles = r.samples, r.cycles
        final, best = r.state, r.best_state
    elif backend == "golden":
        m = PBitMachine(FORMAT, q.J, q.h, colours, pbit_seeds(seed, gr.n), state=state)
        r = m.run(schedule, k, every)
        samples, cycles = r.samples, r.cycles
        final, best = r.state, r.best_state
    else:
        raise ConfigError("--backend", f"must be 'rtl' or 'golden', got {backend!r}")
    seconds = time.perf_counter() - t0
    trace = [((i + 1) * every, (total_w - e) // 2) for i, (_, e) in enumerate(samples)]
    return MaxCutResult(gr.name, gr.n, k, sweeps, gr.cut(final), gr.cut(best),
                        sweeps * gr.n, cycles, seconds, backend, q.report(), trace)
