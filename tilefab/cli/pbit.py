"""``tilefab pbit maxcut|factor`` and ``tilefab bench pbit``."""

from __future__ import annotations

import argparse

from ..bench.pbit import bench
from ..gen.pbit import graph, maxcut
from ..gen.pbit.factor import factor
from ..gen.pbit.maxcut import ARCHS, LANES, PARALLEL_MAX_DEGREE
from ..verif.tb_pbit import run_rtl


def _positive(name):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = 0
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}")
        return v
    return parse


def _maxcut(args) -> int:

    gr = graph.read_rudy(args.file)
    res = maxcut.run(gr, args.sweeps, backend=args.backend, seed=args.seed, arch=args.arch,
                     lanes=args.lanes, execute=run_rtl)
    where = "Verilator RTL" if res.backend == "rtl" else "bit-exact golden model"
    print(f"{gr.name}: {gr.n} nodes, {len(gr.edges)} edges, max degree "
          f"{int(gr.degrees().max())}, {res.colours} colours (DSATUR), {res.arch} array  "
          f"[{where}]")
    print(res.quant_report)
    print(f"cut {res.cut} (best seen {res.best_cut}) after {res.sweeps} sweeps")
    print(f"flips {res.updates}, cycles {res.cycles}, flips/cycle "
          f"{res.flips_per_cycle:.2f} (limit {res.limit_text} = {res.flips_limit:.2f}), "
          f"{res.seconds:.1f} s")
    return 0


def _factor(args) -> int:

    res = factor(args.N, na=args.bits[0] if args.bits else None,
                 nb=args.bits[1] if args.bits else None, sweeps=args.sweeps, runs=args.runs,
                 backend=args.backend, seed=args.seed, execute=run_rtl)
    where = "Verilator RTL" if res.backend == "rtl" else "bit-exact golden model"
    if res.a is None:
        print(f"{res.N}: no factorization found in {res.runs} runs of {args.sweeps} sweeps "
              f"[{where}]")
        return 1
    a, b = sorted((res.a, res.b))
    print(f"{res.N} = {a} x {b}  [{where}]")
    print(f"runs {res.runs}, sweeps {res.sweeps}, flips {res.updates}, cycles {res.cycles}")
    return 0


def _bench(args) -> int:

    return bench(args)


def _lanes(text):
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1 or v > 64 or v & (v - 1):
        raise argparse.ArgumentTypeError(f"--lanes must be a power of two in [1, 64], "
                                         f"got {text!r}")
    return v


def _arch_args(p):

    p.add_argument("--arch", choices=ARCHS, default="auto",
                   help=f"parallel: one adder tree per p-bit; lanes: J in block RAM, one "
                        f"edge per lane per cycle; auto: lanes above degree "
                        f"{PARALLEL_MAX_DEGREE}")
    p.add_argument("--lanes", type=_lanes, default=LANES,
                   help="update lanes of the lanes array (power of two)")


def register(commands, bench):
    p = commands.add_parser("pbit", help="p-bit Ising machine: Max-Cut and factoring")
    sub = p.add_subparsers(dest="pbit", required=True, metavar="TASK")
    mc = sub.add_parser("maxcut", help="anneal Max-Cut on a G-set/rudy graph file")
    mc.add_argument("file", help="graph in rudy format: 'n m' then m lines 'i j w'")
    mc.add_argument("--sweeps", type=_positive("--sweeps"), default=1000)
    mc.add_argument("--backend", choices=("rtl", "golden"), default="rtl",
                    help="rtl: Verilator model of the array; golden: bit-exact numpy model")
    mc.add_argument("--seed", type=int, default=1)
    _arch_args(mc)
    mc.set_defaults(func=_maxcut)
    fa = sub.add_parser("factor", help="factor N with a p-bit multiplier run backwards")
    fa.add_argument("N", type=_positive("N"))
    fa.add_argument("--bits", type=_positive("--bits"), nargs=2, metavar=("A", "B"),
                    help="factor widths (default: half of N's width each, rounded up)")
    fa.add_argument("--sweeps", type=_positive("--sweeps"), default=1000,
                    help="sweeps per annealing run")
    fa.add_argument("--runs", type=_positive("--runs"), default=4)
    fa.add_argument("--backend", choices=("rtl", "golden"), default="rtl")
    fa.add_argument("--seed", type=int, default=1)
    fa.set_defaults(func=_factor)
    b = bench.add_parser("pbit", help="p-bit flips/cycle, G-set Max-Cut vs peer, LUTs/p-bit")
    b.add_argument("--sweeps", type=_positive("--sweeps"), default=1000)
    b.add_argument("--graphs", default="G1,G11,G14,G22")
    b.add_argument("--gset", default=None, help="folder with G-set files "
                                                "(default ../shared/data/gset)")
    b.add_argument("--rtl", default="G11,G14,G22",
                   help="graphs to run on Verilator; the rest run on the bit-exact model")
    _arch_args(b)
    b.add_argument("--reads", type=_positive("--reads"), default=1,
                   help="annealing runs per instance (p-bits and peer alike)")
    b.add_argument("--png", default="build/pbit_energy.png")
    b.add_argument("--no-synth", action="store_true")
    b.set_defaults(func=_bench)
