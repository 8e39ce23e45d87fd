"""``tilefab bench pbit``: flips/cycle, G-set Max-Cut against best-known and a peer,
an energy-versus-sweep plot, and synthesized LUTs per p-bit.

Figures:
  * flips/cycle = update decisions / run cycles, against the architecture's limit:
    n/colours for the parallel array, lanes * n / edge entries for the lane array
    (each lane reads one edge per cycle);
  * cut after S sweeps (best of ``--reads`` anneals) / best-known (G-set README);
    hardware time projected as cycles / Fmax (nextpnr-ecp5 on a reference array);
  * dwave-samplers ``SimulatedAnnealingSampler`` at the same sweeps and reads, with its
    wall-clock time on this machine (the peer a user would pick instead);
  * LUT4 per p-bit: the slope of synthesized LUTs between two degree-4 parallel arrays
    (and between two lane arrays of 256 and 512 p-bits), so the controller is not
    charged to the p-bits; p-bits per ECP5-85F from those slopes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..configs import pbit_format
from ..gen import pnr
from ..gen.emit import to_verilog
from ..gen.errors import ConfigError, TilefabError
from ..gen.pbit import graph, maxcut
from ..gen.pbit.maxcut import fmt_kwargs
from ..gen.synth import synthesize
from ..golden.pbit import pbit_seeds
from ..hw.pbit.lanes import PBitLanes
from ..verif.tb_pbit import run_rtl
from .pbit_ttt import DEFAULT_GRAPHS, peer_call, ttt_bench

BEST_KNOWN = {"G1": 11624, "G2": 11620, "G11": 564, "G12": 556, "G14": 3064, "G15": 3050,
              "G22": 13359}
ECP5_85F_LUTS = 83640
ECP5_85F_DSPS = 156
FMAX_REF_N = 64
ECP5_85F_EBR = 208
LANE_REF = dict(lanes=8, edge_depth=2048, max_degree=64, n_colours=16)
LANE_REF_N = (256, 512)


def _gset_dir(arg) -> Path:
    if arg:
        return Path(arg)
    for cand in (Path.cwd().parent / "shared/data/gset", Path("/work/shared/data/gset"),
                 Path(__file__).resolve().parents[3] / "shared/data/gset"):
        if cand.exists():
            return cand
    raise ConfigError("--gset", "G-set folder not found; pass --gset DIR")


def _peer(gr, sweeps: int, reads: int, seed: int):
    """The peer's best cut over ``reads`` anneals and its wall time, or None without it."""
    try:
        cuts, seconds = peer_call(gr, sweeps, reads, seed)
    except ImportError:
        return None
    return int(cuts.max()), seconds


def _reference_array(n: int):

    gr = graph.random_sparse(n, 4, 2 * n, np.random.default_rng(1))
    gr.name = f"ref{n}"
    fmt = replace(pbit_format(), z_bits=maxcut.PARALLEL_Z_BITS)
    return maxcut.maxcut_array(gr, 8, fmt), f"pbit_ref{n}_z{fmt.z_bits}"


def synth_figures() -> dict:
    """LUT4 (and DSP) per p-bit on ECP5 and iCE40 from two degree-4 arrays."""

    out = {}
    for fam in ("ecp5", "ice40"):
        pts = []
        for n in (16, FMAX_REF_N):
            array, top = _reference_array(n)
            r = synthesize(to_verilog(array, top), top, fam)
            pts.append((n, r))
        (n1, r1), (n2, r2) = pts
        out[fam] = {"lut_per_pbit": (r2.lut - r1.lut) / (n2 - n1),
                    "ff_per_pbit": (r2.ff - r1.ff) / (n2 - n1),
                    "dsp_per_pbit": (r2.dsp - r1.dsp) / (n2 - n1),
                    "overhead": r1.lut - (r2.lut - r1.lut) / (n2 - n1) * n1,
                    "lines": [r1.line(), r2.line()]}
    return out


def _lane_reference(n: int):

    return PBitLanes(n=n, seeds=pbit_seeds(1, n), **LANE_REF, **fmt_kwargs(pbit_format())), \
        f"pbit_lanes_ref{n}"


def ebr_bound(avg_degree: int) -> int:
    """Largest n whose lane-array memories fit the ECP5-85F's DP16KD blocks.

    Edge entries ({nbr, J, last} <= 18 bits for n < 8192) pack 1024 to a block; node
    table and PRNG words (<= 36 bits each) 512 to a block.
    """
    n = 1
    while True:
        nxt = n * 2 if n < 1024 else n + 64
        if -(-nxt * avg_degree // 1024) + 2 * -(-nxt // 512) > ECP5_85F_EBR or nxt >= 8192:
            break
        n = nxt
    return n


def lane_synth_figures() -> dict:
    """Per-p-bit slope and totals of two lane arrays (8 lanes) on ECP5 and iCE40."""

    out = {}
    for fam in ("ecp5", "ice40"):
        pts = []
        for n in LANE_REF_N:
            array, top = _lane_reference(n)
            pts.append((n, synthesize(to_verilog(array, top), top, fam)))
        (n1, r1), (n2, r2) = pts
        per = {k: (getattr(r2, k) - getattr(r1, k)) / (n2 - n1)
               for k in ("lut", "ff", "dsp", "ram")}
        out[fam] = {"per": per, "r1": r1, "r2": r2,
                    "overhead": r1.lut - per["lut"] * n1, "lines": [r1.line(), r2.line()]}
    return out


def fmax_mhz(array=None, top=None) -> float | None:
    """nextpnr-ecp5 (85F) Fmax of ``array`` (default: the 64-p-bit degree-4 reference),
    or None when nextpnr is missing or fails."""
    if array is None:
        array, top = _reference_array(FMAX_REF_N)
        array = pnr.FmaxHarness(array)       # every port registered: the array's own paths
    try:
        return pnr.fmax(to_verilog(array, top), top, "ecp5").fmax_mhz
    except TilefabError:
        return None


def factor_bench(args) -> int:
    """Success rate and sweeps to solution of ``Fabric.factor`` on the golden backend over
    random semiprimes (``factor.semiprimes``: seeded, the smaller factor's width uniform),
    then one RTL spot check."""
    from ..gen.pbit import factor
    from ..gen.pbit.tile import sized_for
    from ..verif.runtime import FACTOR_BETA, Fabric

    lo, hi = args.factor_widths
    print(f"p-bit factoring: {args.factor_count} semiprimes per width (seed "
          f"{args.factor_seed}), restarts of {args.factor_sweeps} sweeps at beta "
          f"{FACTOR_BETA}, budget {args.factor_budget} sweeps per N, golden backend")
    print(f"{'bits':>4s} {'found':>7s} {'rate':>6s} {'median sweeps':>13s} "
          f"{'max sweeps':>10s} {'median s':>8s}  unbalanced (p < q/4)")
    rng = np.random.default_rng(args.factor_seed)
    failed = []

    def fabric(N, backend):
        progs = [factor.case_program(N, c, 256)[0] for c in factor.factor_cases(N)]
        values = {k: v for k, v in _shipped_tile().items() if k not in ("x", "y")}
        size = {}
        for p in progs:
            v = sized_for(values, p.J, int(p.colours.max()) + 1, "lanes")
            size = v if not size else {k: max(size[k], v[k]) if isinstance(v[k], int)
                                       else v[k] for k in v}
        return Fabric({"name": f"pbit_factor{size['n']}", "mesh": {"cols": 1, "rows": 1},
                       "packet": {"data_bits": 64, "addr_bits": 12},
                       "tiles": {"default": size}},
                      backend="golden" if backend == "golden" else "verilator")

    for bits in range(lo, hi + 1):
        found, secs, unbalanced = [], [], 0
        cases = factor.semiprimes(bits, args.factor_count, rng)
        for i, (N, p, q) in enumerate(cases):
            unbalanced += 4 * p < q
            r = fabric(N, "golden").factor(N, sweeps=args.factor_sweeps,
                                           budget_sweeps=args.factor_budget,
                                           budget_seconds=1e6, seed=1 + i)
            if r.found:
                assert (r.a, r.b) == (p, q), (N, r.a, r.b)
                found.append(r.sweeps)
                secs.append(r.seconds)
            else:
                failed.append(N)
        n = len(cases)
        med = f"{np.median(found):13.0f}" if found else f"{'-':>13s}"
        mx = f"{max(found):10d}" if found else f"{'-':>10s}"
        ms = f"{np.median(secs):8.1f}" if secs else f"{'-':>8s}"
        print(f"{bits:4d} {len(found):3d}/{n:<3d} {len(found) / n:6.0%} {med} {mx} {ms}  "
              f"{unbalanced}/{n}")
    if failed:
        print(f"not found within the budget: {', '.join(map(str, failed))}")
    if args.factor_rtl:
        N = args.factor_rtl
        r = fabric(N, "rtl").factor(N, sweeps=args.factor_sweeps,
                                    budget_sweeps=args.factor_budget, budget_seconds=1e6)
        verdict = (f"{N} = {r.a} x {r.b}" if r.found else f"{N}: not found ({r.stopped})")
        print(f"RTL spot check ({' + '.join(r.cases)} multipliers, Verilator): {verdict} in "
              f"{r.runs} restarts, {r.sweeps} sweeps, {r.cycles} cycles, {r.seconds:.0f} s, "
              f"RTL = golden: {'yes' if r.golden_ok else 'NO, ' + r.mismatch}")
        if not (r.found and r.golden_ok):
            return 1
    return 0


def _shipped_tile() -> dict:
    from ..configs import path as shipped
    from ..gen.config import load
    return dict(load(shipped("pbit"))["tile_map"][0])


def bench(args) -> int:
    if getattr(args, "factor", False):
        return factor_bench(args)
    gdir = _gset_dir(args.gset)
    if getattr(args, "ttt", False):
        args.graphs = args.graphs or DEFAULT_GRAPHS
        return ttt_bench(args, gdir, BEST_KNOWN)
    args.graphs = args.graphs or "G1,G11,G14,G22"
    names = [g.strip() for g in args.graphs.split(",") if g.strip()]
    rtl = {g.strip() for g in args.rtl.split(",") if g.strip()}
    S, reads = args.sweeps, args.reads
    fmt = pbit_format()
    print(f"p-bit Max-Cut, {S} sweeps, best of {reads} anneal(s), beta {maxcut.BETA0} -> "
          f"{maxcut.BETA1} geometric, format {fmt} (tilefab/configs/pbit.yaml)")
    fmax = {"parallel": None, "lanes": None}
    if not args.no_synth:
        fmax["parallel"] = fmax_mhz()
        fmax["lanes"] = fmax_mhz(*_lane_reference(LANE_REF_N[0]))
        if fmax["parallel"]:
            print(f"Fmax (nextpnr-ecp5, 85F) parallel array, {FMAX_REF_N} p-bits of degree 4: "
                  f"{fmax['parallel']:.1f} MHz (quantile rule: a colour's update in one "
                  f"cycle is the field tree and one comparison; thresholds, energy and "
                  f"best state pipelined after it; deeper adder trees are slower)")
        if fmax["lanes"]:
            print(f"Fmax (nextpnr-ecp5, 85F) lane array, {LANE_REF_N[0]} p-bits, "
                  f"{LANE_REF['lanes']} lanes, 6-stage pipeline: {fmax['lanes']:.1f} MHz "
                  f"(hw time below uses the Fmax of each row's architecture)")
    try:
        import dwave.samplers  # noqa: F401
        have_peer = True
    except ImportError:
        have_peer = False
        print("peer: dwave-samplers is not installed (pip install dwave-samplers); "
              "peer columns are left empty")
    hdr = (f"{'graph':5s} {'n':>5s} {'deg':>4s} {'col':>3s} {'arch':8s} {'run on':6s} "
           f"{'flips/cyc':>9s} {'limit':>6s} {'cut':>6s} {'best-known':>10s} {'ratio':>6s} {'hw time':>9s} "
           f"{'sim s':>6s} | {'peer cut':>8s} {'ratio':>6s} {'peer s':>7s}")
    print(hdr)
    print("-" * len(hdr))
    traces, checks = {}, []
    for name in names:
        gr = graph.read_rudy(gdir / f"{name}.txt")
        backend = "rtl" if name in rtl else "golden"
        kw = dict(trace_points=50, arch=args.arch, lanes=args.lanes)
        runs = [maxcut.run(gr, S, fmt, backend=backend, seed=1 + r, execute=run_rtl, **kw) for r in range(reads)]
        best = max(runs, key=lambda r: r.best_cut)
        if backend == "rtl":
            # The RTL must reproduce the bit-exact model's anneal exactly.
            for r, run in enumerate(runs):
                gold = maxcut.run(gr, S, fmt, backend="golden", seed=1 + r, **kw)
                same = (gold.cut, gold.best_cut, gold.trace, gold.cycles) == (
                    run.cut, run.best_cut, run.trace, run.cycles)
                checks.append(f"{name} read {r}: RTL {'matches' if same else 'DIFFERS FROM'} "
                              f"the golden model (cut {run.cut}, best {run.best_cut}, "
                              f"{len(run.trace)} trace points, {run.cycles} cycles)")
        traces[name] = best.trace
        cycles = sum(r.cycles for r in runs)
        f_arch = fmax[best.arch]
        hw = f"{cycles / (f_arch * 1e6) * 1e3:7.2f}ms" if f_arch else "      n/a"
        bk = BEST_KNOWN.get(name)
        ratio = f"{best.best_cut / bk:6.4f}" if bk else "     -"
        peer = _peer(gr, S, reads, seed=1) if have_peer else None
        pc, pr, ps = ("-", "-", "-") if peer is None else (
            str(peer[0]), f"{peer[0] / bk:.4f}" if bk else "-", f"{peer[1]:.3f}")
        print(f"{name:5s} {gr.n:5d} {int(gr.degrees().max()):4d} {best.colours:3d} "
              f"{best.arch:8s} {'RTL' if backend == 'rtl' else 'golden':6s} "
              f"{best.flips_per_cycle:9.3f} {best.flips_limit:6.3f} {best.best_cut:6d} "
              f"{bk or '-':>10} {ratio} {hw} {sum(r.seconds for r in runs):6.1f} | "
              f"{pc:>8s} {pr:>6s} {ps:>7s}")
    for line in checks:
        print(line)
    print("run on: RTL = Verilator model of the array (cycle counts from its counters); "
          "golden = bit-exact numpy model of the same array and its cycle count")
    print(f"limit: parallel = n/colours (one colour class per cycle); lanes = "
          f"{args.lanes} x n / edge entries (one edge per lane per cycle; lost to the busiest "
          f"lane of each colour and {6} cycles of drain per colour)")
    field_table(names, gdir, fmt, S, args.lanes, rtl_check=bool(rtl))
    if args.plot:
        _plot(traces, Path(args.plot))
        print(f"energy-vs-sweep plot: {args.plot}")
    if not args.no_synth:
        figs = synth_figures()
        for fam, f in figs.items():
            print(f"{fam}: {f['lut_per_pbit']:.0f} LUT4, {f['ff_per_pbit']:.0f} FF, "
                  f"{f['dsp_per_pbit']:.2f} DSP per p-bit (degree 4, slope 16 -> "
                  f"{FMAX_REF_N} p-bits); controller ~{f['overhead']:.0f} LUT4")
        e = figs["ecp5"]
        lut_bound = int((ECP5_85F_LUTS - e["overhead"]) // e["lut_per_pbit"])
        msg = f"ECP5-85F, parallel array: {lut_bound} degree-4 p-bits by LUTs"
        if e["dsp_per_pbit"] > 0:
            dsp_bound = int(ECP5_85F_DSPS / e["dsp_per_pbit"])
            msg += (f", {dsp_bound} by DSPs (yosys maps each shared beta multiplier to a "
                    f"MULT18X18D; {e['dsp_per_pbit']:.2f} per p-bit) -> "
                    f"{min(lut_bound, dsp_bound)}")
        print(msg)
        lf = lane_synth_figures()
        for fam, f in lf.items():
            p = f["per"]
            print(f"{fam} lane array ({LANE_REF['lanes']} lanes, edge_depth "
                  f"{LANE_REF['edge_depth']}): {p['lut']:.1f} LUT4, {p['ff']:.1f} FF, "
                  f"{p['dsp']:.2f} DSP, {p['ram']:.3f} RAM per p-bit (slope {LANE_REF_N[0]} -> "
                  f"{LANE_REF_N[1]}); totals: {f['lines'][0]} | {f['lines'][1]}")
        e = lf["ecp5"]
        lut_cap = int((ECP5_85F_LUTS - e["overhead"]) // max(e["per"]["lut"], 1e-9))
        print(f"ECP5-85F, lane array ({LANE_REF['lanes']} lanes): {lut_cap} p-bits by LUTs; "
              f"{e['r2'].dsp} of {ECP5_85F_DSPS} DSPs (one per lane)")
        for deg in (20, 48):
            n_ebr = ebr_bound(deg)
            print(f"  block RAM (model: DP16KD as 1024x18 for J entries, 512x36 for node "
                  f"table and PRNG state): {n_ebr} p-bits of average degree {deg} fill the "
                  f"{ECP5_85F_EBR} DP16KD -> {min(lut_cap, n_ebr)} p-bits at degree {deg}")
    return 0


FIELD_RTL_GRAPH = {"n": 48, "max_degree": 8, "edges": 150, "sweeps": 60}


def field_table(names, gdir: Path, fmt, sweeps: int, lanes: int, rtl_check: bool):
    """Lane array with recomputed against incremental fields on the same anneal (golden
    model: the same spins, so the same cut; cycles from each variant's cycle model), and
    an RTL check of the incremental variant on a small random graph."""
    print(f"lane array, {lanes} lanes: recomputed vs incremental fields, {sweeps} sweeps, "
          f"golden model (bit-exact with the RTL, cycles = its counters)")
    hdr = (f"{'graph':5s} {'n':>5s} {'deg':>4s} {'fields':11s} {'cyc/sweep':>9s} "
           f"{'flips/sw':>8s} {'flips/cyc':>9s} {'dec/cyc':>7s} {'limit':>6s} {'cut':>6s} "
           f"{'speedup':>7s}")
    print(hdr)
    print("-" * len(hdr))
    for name in names:
        gr = graph.read_rudy(gdir / f"{name}.txt")
        runs = {f: maxcut.run(gr, sweeps, fmt, backend="golden", arch="lanes", lanes=lanes,
                              fields=f, trace_points=50)
                for f in ("recompute", "incremental")}
        rec, inc = runs["recompute"], runs["incremental"]
        same = (rec.cut, rec.best_cut, rec.trace) == (inc.cut, inc.best_cut, inc.trace)
        for f, r in runs.items():
            per_sweep = r.flips / sweeps
            if f == "recompute":
                limit = r.flips_limit
            else:      # decisions/cycle at this flip rate: n / (n/lanes + flips x R/n)
                limit = r.n / (-(-r.n // lanes) + per_sweep * r.rows / r.n)
            print(f"{name:5s} {r.n:5d} {int(gr.degrees().max()):4d} {f:11s} "
                  f"{r.cycles / sweeps:9.1f} {per_sweep:8.1f} {r.flips / r.cycles:9.3f} "
                  f"{r.flips_per_cycle:7.3f} {limit:6.3f} {r.best_cut:6d} "
                  f"{rec.cycles / r.cycles:6.2f}x")
        if not same:
            print(f"{name}: the two field modes DIFFER (cut {rec.cut} vs {inc.cut})")
    print(f"dec/cyc: update decisions per cycle; limit: recompute = {lanes} x n / edge "
          f"entries; incremental = n / (ceil(n/{lanes}) + flips/sweep x R/n), R = edge rows "
          f"per lane (a flip of p-bit i costs rows_i = the most neighbours of i in one lane). "
          f"Incremental: cycles/sweep = the busiest lane's decisions per colour + the "
          f"flips' rows + 5 per colour (recompute: the busiest lane's edges per colour + 6); "
          f"flips are applied one at a time, so at most 1 flip/cycle (n/R on average)")
    if rtl_check:
        c = FIELD_RTL_GRAPH
        gr = graph.random_sparse(c["n"], c["max_degree"], c["edges"],
                                 np.random.default_rng(11))
        gr.name = f"rand{c['n']}"
        rtl = maxcut.run(gr, c["sweeps"], fmt, backend="rtl", arch="lanes", lanes=lanes,
                         fields="incremental", execute=run_rtl, trace_points=c["sweeps"])
        gold = maxcut.run(gr, c["sweeps"], fmt, backend="golden", arch="lanes", lanes=lanes,
                          fields="incremental", trace_points=c["sweeps"])
        same = (rtl.cut, rtl.best_cut, rtl.trace, rtl.cycles) == (
            gold.cut, gold.best_cut, gold.trace, gold.cycles)
        print(f"RTL check, incremental fields ({c['n']}-node random graph, degree <= "
              f"{c['max_degree']}, {c['sweeps']} sweeps, Verilator): {rtl.cycles} cycles, "
              f"cut {rtl.best_cut}; {'matches' if same else 'DIFFERS FROM'} the golden model "
              f"({gold.cycles} cycles, cut {gold.best_cut})")


def _plot(traces: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, tr in traces.items():
        if not tr:
            continue
        s, c = zip(*tr)
        bk = BEST_KNOWN.get(name, max(c))
        ax.plot(s, np.array(c) / bk, label=name)
    ax.set_xlabel("sweep")
    ax.set_ylabel("cut / best-known (= energy, rescaled)")
    ax.set_title("p-bit anneal: cut along the beta ramp")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
