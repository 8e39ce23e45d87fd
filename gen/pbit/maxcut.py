"""Max-Cut on a p-bit array: J = -W, h = 0, annealed with a geometric beta ramp.

Two architectures (``arch``): ``parallel`` generates a ``PBitArray`` with the graph
as its topology (one J register and adder-tree input per edge end, one colour class
per cycle); ``lanes`` generates a ``PBitLanes`` whose J lives in per-lane block RAM,
read one edge per lane per cycle, for graphs whose degree would make adder trees
huge and slow. ``auto`` picks ``lanes`` above degree ``PARALLEL_MAX_DEGREE``.
``backend="golden"`` runs the bit-exact model of the chosen architecture instead of
Verilator (same spins, same cut, same cycle count).
With E = -(1/2 m^T J m) and J = -W, cut = (sum of edge weights - E) / 2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ...golden.pbit import PBitFormat, PBitMachine, lane_rows, pbit_seeds
from ...hw.pbit.array import PBitArray
from ...hw.pbit.lanes import PBitLanes, edge_depth_for
from ..errors import ConfigError
from . import driver, graph, quant
from .factor import anneal_schedule

BETA0, BETA1 = 0.1, 3.0  # the fixed ramp (``beta_range(..., fixed=True)``)
HOT_SPREAD = 0.6         # beta0 x the RMS field of a random state
BETA_COLD = 3.9          # near the largest beta of the default format (255/64)
SCHED_ENTRIES = 64       # steps of the geometric beta ramp (schedule entries)


def beta_range(gr: graph.Graph, fixed: bool = False) -> tuple[float, float]:
    """The geometric ramp's ends for ``gr``: beta0 = HOT_SPREAD / the RMS local field of
    a uniformly random state (sqrt of the mean over nodes of sum_j w_ij^2), so the first
    sweeps flip most spins whatever the degree, down to beta1 = BETA_COLD, where any
    field of 1 or more holds a spin with probability >= 0.9995.
    ``fixed``: the graph-independent ramp BETA0 -> BETA1."""
    if fixed:
        return BETA0, BETA1
    W = gr.W()
    rms = float(np.sqrt(np.mean((W ** 2).sum(axis=1)))) if gr.n else 1.0
    return min(HOT_SPREAD / max(rms, 1e-9), BETA_COLD / 2), BETA_COLD
PARALLEL_MAX_DEGREE = 16
PARALLEL_Z_BITS = 10      # the parallel array decides by the quantile rule (2^10 bins)
LANES = 16
ARCHS = ("auto", "parallel", "lanes")


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
    arch: str = "parallel"
    flips_limit: float = 0.0     # the architecture's bound on decisions per cycle
    limit_text: str = ""         # what that bound is
    trace: list = field(default_factory=list)      # (sweep, cut) along the anneal
    fields: str = "recompute"    # the lane array's field mode
    flips: int | None = None     # spins changed (golden backend; the RTL does not count)
    rows: int = 0                # incremental fields: edge rows of every lane (R)

    @property
    def flips_per_cycle(self) -> float:
        return self.updates / self.cycles


def setup(gr: graph.Graph, fmt: PBitFormat, n_colours: int | None = None):
    q = quant.quantize(-gr.W(), np.zeros(gr.n), fmt, scale=1.0)
    nb = gr.neighbours()
    colours = graph.dsatur(nb)
    graph.check_colouring(nb, colours, n_colours)
    return q, colours


def choose_arch(gr: graph.Graph, arch: str) -> str:
    if arch not in ARCHS:
        raise ConfigError("--arch", f"must be one of {', '.join(ARCHS)}, got {arch!r}")
    if arch == "auto":
        return "lanes" if int(gr.degrees().max()) > PARALLEL_MAX_DEGREE else "parallel"
    return arch


def fmt_kwargs(fmt: PBitFormat) -> dict:
    """The format's fields as array keyword arguments."""
    return {k: getattr(fmt, k) for k in fmt.__dataclass_fields__}


def maxcut_array(gr: graph.Graph, n_colours: int, fmt: PBitFormat, seed: int = 1,
                 sched_depth: int = 8) -> PBitArray:
    """The parallel array for ``gr``; p-bits of different DSATUR colours share the beta
    multiplier and tanh read (``setup`` programs that same colouring)."""
    nb = gr.neighbours()
    return PBitArray(neighbours=nb, max_degree=max(1, int(gr.degrees().max())),
                     n_colours=n_colours, seeds=pbit_seeds(seed, gr.n), word_bits=32,
                     share=graph.colour_groups(graph.dsatur(nb)), sched_depth=sched_depth,
                     **fmt_kwargs(fmt))


def lane_array(gr: graph.Graph, n_colours: int, fmt: PBitFormat, seed: int = 1,
               lanes: int = LANES, fields: str = "recompute", sched_depth: int = 8
               ) -> PBitLanes:
    """A lane array just deep enough for ``gr`` (edge memory depth ``edge_depth_for``)."""
    entries = driver.lane_entries(gr.W())
    per_lane = int(np.bincount(np.arange(gr.n) % lanes, weights=entries,
                               minlength=lanes).max())
    if fields == "incremental":          # every lane holds every p-bit's rows
        per_lane = max(per_lane, int(lane_rows(gr.W(), lanes).sum()))
    return PBitLanes(n=gr.n, lanes=lanes, edge_depth=edge_depth_for(per_lane),
                     max_degree=max(1, int(gr.degrees().max())), n_colours=n_colours,
                     seeds=pbit_seeds(seed, gr.n), word_bits=32, fields=fields,
                     sched_depth=sched_depth, **fmt_kwargs(fmt))


def balance_lanes(entries, colours, lanes: int) -> np.ndarray:
    """Relabelling ``order`` (new p-bit k = old node order[k]) that evens out lane work.

    A lane array puts p-bit k in lane k mod lanes and a colour pass lasts as long as its
    busiest lane, so each colour's nodes are dealt heaviest first to the lane with the
    least work in that colour that still has a free slot.
    """
    n = len(entries)
    free = [len(range(l, n, lanes)) for l in range(lanes)]
    members = [[] for _ in range(lanes)]
    for c in np.unique(colours):
        load = np.zeros(lanes)
        for i in sorted(np.flatnonzero(colours == c), key=lambda i: -entries[i]):
            ok = [l for l in range(lanes) if free[l]]
            lane = min(ok, key=lambda l: (load[l], l))
            load[lane] += entries[i]
            free[lane] -= 1
            members[lane].append(int(i))
    order = np.empty(n, dtype=np.int64)
    for lane, nodes in enumerate(members):
        order[lane::lanes] = nodes
    return order


def flips_limit(gr: graph.Graph, arch: str, colours: int, lanes: int = LANES
                ) -> tuple[float, str]:
    """The architecture's ceiling on update decisions per cycle, and its name."""
    if arch == "parallel":
        return gr.n / colours, "n/colours"
    edges = int(driver.lane_entries(gr.W()).sum())
    return lanes * gr.n / edges, f"lanes*n/edge entries ({lanes} edges/cycle)"


@dataclass
class Prepared:
    """A graph set up once for many anneals: quantized J, colouring and (lanes) the
    lane-balancing relabelling, so restarts pay only for the anneal itself."""
    gr: graph.Graph               # relabelled for ``lanes`` (cuts do not depend on labels)
    q: object
    colours: np.ndarray
    arch: str
    lanes: int
    fields: str
    fmt: PBitFormat
    entries: int = SCHED_ENTRIES
    betas: tuple = (BETA0, BETA1)

    @property
    def n_colours(self) -> int:
        return int(self.colours.max()) + 1

    def array(self, seed: int = 1):
        """The RTL array that runs this graph (its topology or lanes, its colours)."""
        k, depth = self.n_colours, max(8, self.entries)
        if self.arch == "parallel":
            return maxcut_array(self.gr, k, self.fmt, seed, sched_depth=depth)
        return lane_array(self.gr, k, self.fmt, seed, self.lanes, self.fields,
                          sched_depth=depth)

    def schedule(self, sweeps: int) -> list:
        return anneal_schedule(self.fmt, sweeps, *self.betas, self.entries)

    def machine(self, seed: int = 1) -> PBitMachine:
        """The bit-exact model of ``array(seed)`` from the initial state of ``run(seed=)``;
        it keeps its spins and generators between runs, as the array does."""
        return PBitMachine(self.fmt, self.q.J, self.q.h, self.colours,
                           pbit_seeds(seed, self.gr.n),
                           state=np.random.default_rng(seed).choice([-1, 1], self.gr.n),
                           lanes=self.lanes if self.arch == "lanes" else None,
                           fields=self.fields if self.arch == "lanes" else "recompute")

    def run(self, sweeps: int, *, backend: str = "rtl", seed: int = 1,
            trace_points: int = 0, execute=None) -> MaxCutResult:
        if not isinstance(sweeps, int) or not 1 <= sweeps <= 8 * 65535:
            raise ConfigError("--sweeps", f"must be an integer in [1, {8 * 65535}], got "
                                          f"{sweeps}")
        gr, q, colours, arch = self.gr, self.q, self.colours, self.arch
        lanes, fields, k = self.lanes, self.fields, self.n_colours
        schedule = self.schedule(sweeps)
        every = max(1, sweeps // trace_points) if trace_points else 0
        total_w = int(gr.weights.sum())
        state = np.random.default_rng(seed).choice([-1, 1], gr.n)
        prog = driver.Program(q.J, q.h, colours, state=state)
        t0 = time.perf_counter()
        if backend == "rtl":
            if execute is None:
                raise ConfigError("--backend", "rtl needs a simulator (execute=run_rtl)")
            results, _ = execute(self.array(seed), [prog, driver.Run(schedule, k, every)],
                                 name=f"pbit_{arch}_{gr.name or gr.n}".lower())
            r = results[0]
        elif backend == "golden":
            r = self.machine(seed).run(schedule, k, every)
        else:
            raise ConfigError("--backend", f"must be 'rtl' or 'golden', got {backend!r}")
        samples, cycles, final, best = r.samples, r.cycles, r.state, r.best_state
        seconds = time.perf_counter() - t0
        trace = [((i + 1) * every, (total_w - e) // 2) for i, (_, e) in enumerate(samples)]
        limit, limit_text = flips_limit(gr, arch, k, lanes)
        inc = arch == "lanes" and fields == "incremental"
        return MaxCutResult(gr.name, gr.n, k, sweeps, gr.cut(final), gr.cut(best),
                            sweeps * gr.n, cycles, seconds, backend, q.report(), arch, limit,
                            limit_text, trace, fields if arch == "lanes" else "recompute",
                            r.flips if backend == "golden" else None,
                            int(lane_rows(q.J, lanes).sum()) if inc else 0)


def prepare(gr: graph.Graph, fmt: PBitFormat, *, arch: str = "auto", lanes: int = LANES,
            fields: str = "recompute", entries: int = SCHED_ENTRIES,
            betas: tuple | None = None, z_bits: int | None = None) -> Prepared:
    """Quantize, colour and (lanes) relabel ``gr`` once; see ``Prepared``. ``betas``:
    the ramp's ends (default ``beta_range(gr)``). ``z_bits``: the decision rule (0 the
    tanh table); by default the parallel array takes the quantile rule with
    ``PARALLEL_Z_BITS`` unless ``fmt`` names one, and the lane array the table."""
    arch = choose_arch(gr, arch)
    if z_bits is not None:
        fmt = replace(fmt, z_bits=z_bits)
    elif arch == "parallel" and not fmt.z_bits:
        fmt = replace(fmt, z_bits=PARALLEL_Z_BITS)
    betas = tuple(betas) if betas is not None else beta_range(gr)
    q, colours = setup(gr, fmt)
    if arch == "lanes":
        # Relabel so lanes share each colour's work evenly; cuts do not depend on labels.
        order = balance_lanes(driver.lane_entries(q.J), colours, lanes)
        gr = graph.Graph(gr.n, np.sort(np.argsort(order)[gr.edges], axis=1), gr.weights,
                         gr.name)
        q, colours = quant.quantize(-gr.W(), np.zeros(gr.n), fmt, scale=1.0), \
            colours[order]
    return Prepared(gr, q, colours, arch, lanes, fields, fmt, entries, betas)


def run(gr: graph.Graph, sweeps: int, fmt: PBitFormat, *, backend: str = "rtl", seed: int = 1,
        trace_points: int = 0, arch: str = "auto", lanes: int = LANES,
        execute=None, fields: str = "recompute", entries: int = SCHED_ENTRIES,
        betas: tuple | None = None) -> MaxCutResult:
    """Anneal ``gr`` in the number formats ``fmt``; ``backend="rtl"`` runs the array through ``execute(array, ops, name=)``
    (``tilefab.verif.tb_pbit.run_rtl``), ``"golden"`` the bit-exact model."""
    return prepare(gr, fmt, arch=arch, lanes=lanes, fields=fields, entries=entries,
                   betas=betas).run(
        sweeps, backend=backend, seed=seed, trace_points=trace_points, execute=execute)
