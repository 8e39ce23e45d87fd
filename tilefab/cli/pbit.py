"""``tilefab pbit maxcut|factor`` and ``tilefab bench pbit``.

Both tasks run on a p-bit tile through the runtime (``Fabric.maxcut``,
``Fabric.factor``). With ``--config`` they use that fabric's p-bit tile as it is
configured (``--tile X,Y`` picks one); a problem that does not fit gets an error
naming the limit. Without it they use the shipped 1x1 config
(``tilefab/configs/pbit.yaml``: its number formats) with the tile sized to the
problem (``gen.pbit.tile.sized_for``; ``--arch``, ``--lanes``).
``--backend golden`` runs the same jobs on the tile's bit-exact model only.
"""

from __future__ import annotations

import argparse

import numpy as np

from ..bench.pbit import bench
from ..configs import path as shipped
from ..gen.config import load
from ..gen.errors import TilefabError
from ..gen.pbit import factor as factor_
from ..gen.pbit import graph
from ..gen.pbit.maxcut import flips_limit
from ..gen.pbit.sparsify import sparsify
from ..gen.pbit.tile import sized_for
from ..verif.runtime import (
    FACTOR_BUDGET_SECONDS,
    FACTOR_BUDGET_SWEEPS,
    FACTOR_SWEEPS,
    Fabric,
    as_graph,
)
from .args import fraction, integer, number, tile_xy
from .core import MAX_FACTOR, MAX_SWEEPS, _seed_arg

ARCHS = ("auto", "parallel", "lanes")
DEFAULT_LANES = 16


def _positive(name, hi=MAX_SWEEPS):
    return integer(name, 1, hi)


_seconds = number("--budget-seconds", lambda v: 0 < v < 1e7, "a number of seconds > 0")
_target = number("--ttt-target", lambda v: 0 < v <= 1, "a fraction in (0, 1]")
_mhz = number("--ttt-mhz", lambda v: 0 < v <= 1000, "a clock in MHz in (0, 1000]")


def _lanes(text):
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1 or v > 64 or v & (v - 1):
        raise argparse.ArgumentTypeError(f"--lanes must be a power of two in [1, 64], "
                                         f"got {text!r}")
    return v


def _fabric(args, J, n_colours: int, also=()) -> Fabric:
    """The fabric to run on: ``--config`` as it is, or the shipped one sized to ``J``
    (and large enough for every ``(J, n_colours)`` in ``also``)."""
    if args.config:
        if args.arch != "auto" or args.lanes is not None:
            raise TilefabError("--arch/--lanes: they size the shipped p-bit tile; with "
                               "--config the tile is used as configured")
        return Fabric(args.config, backend=args.backend, in_stall=args.stall_in,
                      out_stall=args.stall_out)
    cfg = load(shipped("pbit"))
    raw = {"name": cfg["name"], "mesh": {"cols": 1, "rows": 1}, "packet": {
        k: cfg["packet"][k] for k in ("data_bits", "addr_bits")}}
    values = {k: v for k, v in cfg["tile_map"][0].items() if k not in ("x", "y")}
    if args.lanes is not None:
        values["lanes"] = args.lanes
    sized = sized_for(values, J, n_colours, args.arch)
    for J2, k2 in also:
        other = sized_for(values, J2, k2, sized["arch"])
        for key in ("n", "n_colours", "edge_depth", "max_degree"):
            if key in sized:
                sized[key] = max(sized[key], other[key])
    values = sized
    raw["name"] = f"pbit_{values['arch']}{values['n']}"
    raw["tiles"] = {"default": values}
    return Fabric(raw, backend=args.backend, in_stall=args.stall_in, out_stall=args.stall_out)


def _where(fab: Fabric, xy, backend: str) -> str:
    t = fab.tile(*xy)
    run_on = "Verilator RTL" if backend != "golden" else "bit-exact golden model"
    return f"{t.values['arch']} p-bit tile {xy} of {fab.config['name']}  [{run_on}]"


def _maxcut(args) -> int:
    gr = as_graph(args.file)
    run_gr, D, fab = gr, None, None
    if args.sparsify is not None:
        D = args.sparsify or None
        if args.config:
            fab = _fabric(args, None, 0)
            t = fab.tiles_of("pbit")[0] if args.tile is None else fab.tile(*args.tile)
            D = D or t.params.config()["max_degree"]
        D = D or load(shipped("pbit"))["tile_map"][0]["max_degree"]
        run_gr = sparsify(gr, D).graph
    k = int(graph.dsatur(run_gr.neighbours()).max(initial=0)) + 1
    fab = fab or _fabric(args, run_gr.W(), k)
    r = fab.maxcut(gr, sweeps=args.sweeps, seed=args.seed, tile=args.tile, max_degree=D)
    t = fab.tile(*r.tile)
    arch = t.values["arch"]
    limit, text = flips_limit(run_gr, arch, k, t.values.get("lanes", 1))
    print(f"{gr.name or args.file}: {gr.n} nodes, {len(gr.edges)} edges, max degree "
          f"{int(gr.degrees().max(initial=0))}, {k} colours (DSATUR), on the "
          f"{_where(fab, r.tile, args.backend)}")
    if r.split is not None and r.split.split_nodes:
        s = r.split
        print(f"sparsified to degree <= {D}: {s.split_nodes} nodes split into "
              f"{s.graph.n - gr.n + s.split_nodes} copies, {s.graph.n} p-bits, max degree "
              f"{int(s.graph.degrees().max(initial=0))}, copy couplings J_copy "
              f"{int(s.j_copy.min())}..{int(s.j_copy.max())}; copies "
              f"disagreeing with their first copy in the best state: {r.disagreements}")
    elif r.split is not None:
        print(f"sparsify: no node has degree above {D}, the graph runs as it is")
    print(f"cut {r.final_cut} (best seen {r.cut}) after {r.sweeps} sweeps")
    print(f"flips {r.flips}, cycles {r.cycles}, flips/cycle {r.flips_per_cycle:.2f} "
          f"(limit {text} = {limit:.2f})")
    if args.backend != "golden":
        print("RTL = golden: " + ("yes" if r.golden_ok else f"NO, {r.mismatch}"))
    if args.assignment:
        try:
            np.savetxt(args.assignment, r.assignment[None, :], fmt="%d", delimiter=" ")
        except OSError as exc:
            raise TilefabError(f"--assignment {args.assignment}: cannot write "
                               f"({exc.strerror or exc})") from None
        print(f"best cut's sides (0/1 per node) written to {args.assignment}")
    return 0 if r.golden_ok else 1


def _factor(args) -> int:
    N = factor_.check_N(args.N)
    easy = factor_.trivial(N)
    if easy is not None:
        kind, p, q = easy
        print(f"{N} is prime (no annealing)" if kind == "prime" else
              f"{N} = {p} x {q}  ({kind}, no annealing)")
        return 0
    progs = []
    for case in factor_.factor_cases(N, args.bits):
        prog, _ = factor_.case_program(N, case, n_colours=256)
        progs.append((prog.J, int(prog.colours.max()) + 1))
    big = max(progs, key=lambda jk: len(jk[0]))
    fab = _fabric(args, *big, also=progs)
    r = fab.factor(N, bits=args.bits, sweeps=args.sweeps, runs=args.runs,
                   budget_sweeps=args.budget_sweeps, budget_seconds=args.budget_seconds,
                   seed=args.seed, tile=args.tile)
    where = _where(fab, r.tile, args.backend)
    search = (f"{' + '.join(r.cases)}-bit multipliers run backwards: runs {r.runs} (restarts of "
              f"{args.sweeps} sweeps), sweeps {r.sweeps}, cycles {r.cycles}, "
              f"{r.seconds:.1f} s")
    if r.mismatch:
        print(f"{r.N}: RTL = golden: NO, {r.mismatch}  on the {where}")
        return 1
    if not r.found:
        print(f"{r.N}: no factorization found, budget {r.stopped} ran out, on the {where}")
        print(search)
        return 1
    print(f"{r.N} = {r.a} x {r.b}  on the {where}")
    print(search + (", RTL = golden: yes" if args.backend != "golden" else ""))
    return 0


def _bench(args) -> int:
    return bench(args)


def _run_args(p):
    p.add_argument("--config", default=None,
                   help="fabric YAML whose p-bit tile to use (default: the shipped 1x1 "
                        "config, sized to the problem)")
    p.add_argument("--tile", type=tile_xy, default=None,
                   help="X,Y of the p-bit tile (default: the first)")
    p.add_argument("--arch", choices=ARCHS, default="auto",
                   help="shipped tile only: parallel (all-to-all, up to 32 p-bits), lanes "
                        "(J in block RAM), auto: parallel when it fits")
    p.add_argument("--lanes", type=_lanes, default=None,
                   help=f"shipped tile only: update lanes of a lanes tile (power of two, "
                        f"default {DEFAULT_LANES})")
    p.add_argument("--backend", choices=("verilator", "golden"), default="verilator",
                   help="verilator: the generated RTL, checked against the golden model; "
                        "golden: the bit-exact model alone")
    p.add_argument("--seed", type=_seed_arg, default=1)
    p.add_argument("--stall-in", type=fraction("--stall-in"), default=0.0,
                   help="probability of a host-port input stall each cycle")
    p.add_argument("--stall-out", type=fraction("--stall-out"), default=0.0,
                   help="probability of a host-port output stall each cycle")


def register(commands, bench_):
    p = commands.add_parser("pbit", help="p-bit tiles: Max-Cut and factoring")
    sub = p.add_subparsers(dest="pbit", required=True, metavar="TASK")
    mc = sub.add_parser("maxcut", help="anneal Max-Cut on a G-set/rudy graph file")
    mc.add_argument("file", help="graph in rudy format: 'n m' then m lines 'i j w'")
    mc.add_argument("--sweeps", type=_positive("--sweeps"), default=1000)
    mc.add_argument("--sparsify", type=integer("--sparsify", 3, 4096), nargs="?", const=0,
                    default=None, metavar="D",
                    help="split nodes of degree > D into ferromagnetically chained copies "
                         "(exact sparsification; default D: the tile's max_degree)")
    mc.add_argument("--assignment", default=None,
                    help="write the best cut's sides (one 0/1 per node) to this file")
    _run_args(mc)
    mc.set_defaults(func=_maxcut)
    fa = sub.add_parser("factor", help="factor N with a p-bit multiplier run backwards")
    fa.add_argument("N", type=_positive("N", MAX_FACTOR))
    fa.add_argument("--bits", type=_positive("--bits", 32), nargs=2, metavar=("A", "B"),
                    help="search one multiplier of these factor widths (default: every "
                         "width of the smaller factor, each with its own multiplier)")
    fa.add_argument("--sweeps", type=_positive("--sweeps"), default=FACTOR_SWEEPS,
                    help=f"sweeps per restart (default {FACTOR_SWEEPS})")
    fa.add_argument("--runs", type=_positive("--runs", 1_000_000), default=None,
                    help="at most this many restarts (default: until a budget runs out)")
    fa.add_argument("--budget-sweeps", type=_positive("--budget-sweeps", 10**9),
                    default=FACTOR_BUDGET_SWEEPS,
                    help=f"stop after this many sweeps in all (default "
                         f"{FACTOR_BUDGET_SWEEPS})")
    fa.add_argument("--budget-seconds", type=_seconds, default=FACTOR_BUDGET_SECONDS,
                    help=f"stop after this much wall-clock time (default "
                         f"{FACTOR_BUDGET_SECONDS:g} s)")
    _run_args(fa)
    fa.set_defaults(func=_factor)
    b = bench_.add_parser("pbit", help="p-bit flips/cycle, G-set Max-Cut vs peer, LUTs/p-bit")
    b.add_argument("--sweeps", type=_positive("--sweeps"), default=1000)
    b.add_argument("--graphs", default=None,
                   help="G-set graphs (default G1,G11,G14,G22; with --ttt G1,G11,G12,G14,G22)")
    b.add_argument("--gset", default=None, help="folder with G-set files "
                                                "(default ../shared/data/gset)")
    b.add_argument("--rtl", default="G11,G14,G22",
                   help="graphs to run on Verilator; the rest run on the bit-exact model")
    b.add_argument("--arch", choices=ARCHS, default="auto",
                   help="parallel: one adder tree per p-bit over the graph's own topology; "
                        "lanes: J in block RAM, one edge per lane per cycle; auto: lanes "
                        "above degree 16")
    b.add_argument("--lanes", type=_lanes, default=DEFAULT_LANES,
                   help="update lanes of the lanes array (power of two)")
    b.add_argument("--reads", type=_positive("--reads", 10_000), default=1,
                   help="annealing runs per instance (p-bits and peer alike)")
    b.add_argument("--plot", default="build/pbit_energy.png",
                   help="where to write the energy-vs-sweep plot")
    b.add_argument("--no-synth", action="store_true")
    b.add_argument("--factor", action="store_true",
                   help="factoring instead: success rate and sweeps to solution over random "
                        "semiprimes (golden backend), and an RTL spot check")
    b.add_argument("--factor-widths", type=_positive("--factor-widths", 32), nargs=2,
                   default=[8, 16], metavar=("LO", "HI"), help="semiprime widths in bits")
    b.add_argument("--factor-count", type=_positive("--factor-count", 1000), default=10,
                   help="semiprimes per width")
    b.add_argument("--factor-seed", type=_seed_arg, default=1)
    b.add_argument("--factor-sweeps", type=_positive("--factor-sweeps"),
                   default=FACTOR_SWEEPS, help="sweeps per restart")
    b.add_argument("--factor-budget", type=_positive("--factor-budget", 10**9),
                   default=FACTOR_BUDGET_SWEEPS, help="sweeps per semiprime")
    b.add_argument("--factor-rtl", type=_positive("--factor-rtl", MAX_FACTOR), default=None,
                   metavar="N", help="also factor N on the Verilator RTL")
    b.add_argument("--ttt", action="store_true",
                   help="time to target instead: restarts until the cut reaches --ttt-target "
                        "of best-known, p-bits (bit-exact model, time at the build's "
                        "nextpnr Fmax) against dwave-samplers in the same run")
    b.add_argument("--ttt-target", type=_target, default=0.995,
                   help="fraction of the best-known cut to reach (default 0.995)")
    b.add_argument("--ttt-seeds", type=_positive("--ttt-seeds", 1000), default=10,
                   help="seeds per solver; the figure is their median (default 10)")
    b.add_argument("--ttt-sweeps", type=_positive("--ttt-sweeps"), nargs="+",
                   default=[50, 100, 200, 500, 1000, 2000, 5000, 10000], metavar="S",
                   help="sweeps per run to search, for each solver")
    b.add_argument("--ttt-max-runs", type=_positive("--ttt-max-runs", 10_000), default=20,
                   help="runs per seed before it counts as not reaching the target")
    b.add_argument("--ttt-fields", choices=("recompute", "incremental"),
                   default="incremental", help="field mode of lane-array builds")
    b.add_argument("--ttt-mhz", type=_mhz, default=None,
                   help="take this clock instead of running nextpnr on each build")
    b.set_defaults(func=_bench)
