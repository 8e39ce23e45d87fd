"""``tilefab bench sparse``: the sparse units' figures, measured on Verilator against limits.

The bench is a list of sections (``SECTIONS``), run in order; each prints its tables,
may add to the plot, and returns its figures (for ``--json``) and whether every run
agreed with its golden model.

``nm``: cycles of dense against 2:4 and 4:8 GEMM on the same mesh for every shape,
small ones included, the speedup beside its limit M/N (``tilefab.bench.sparse_nm``).

``spmv``: CSR SpMV on the spmv tiles against density: nonzeros per cycle, slot fill,
speedup over the dense GEMM of the same matrix beside 1/density
(``tilefab.bench.sparse_spmv``).

``synth``: yosys ``synth_ecp5`` resources of the 8x16 gather unit and of a 1x1 fabric
of each sparse tile beside the dense GEMM tile (``tilefab.bench.sparse_synth``).

``moe``: mixture-of-experts routing on the GEMM tiles, tokens per cycle and the load
on each expert and tile (``tilefab.bench.sparse_moe``).

``gather``: ``SparseGather`` accesses per lane per cycle against lanes, banks, the
reorder window and the index pattern. Each figure is measured from Verilator cycle
counts: every lane's index source always offers and its sink is always ready, and
the figure is ``accesses / (lanes * cycles)`` with ``cycles`` from the first index
taken to the last record delivered. Beside it: the limit (one access per lane per
cycle: ``lanes`` accesses per cycle), the bound the pattern itself sets (busiest bank
or lane), and the golden cycle model's figure (the testbench checks every transfer
cycle against it, so a difference fails the run).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..gen.errors import TilefabError
from ..hw.sparse import check_gather_params
from ..verif.tb_gather import PATTERNS, run_on_verilator
from . import sparse_synth
from .sparse_moe import moe_section
from .sparse_nm import nm_section
from .sparse_spmv import spmv_section

# (lanes, banks, window, ports)
GATHER_CONFIGS = ((8, 16, 4, 2), (8, 16, 4, 1), (8, 16, 4, 4), (8, 16, 2, 2), (8, 16, 1, 1),
                  (8, 8, 4, 2), (8, 8, 1, 1), (8, 32, 4, 2), (16, 16, 4, 2), (16, 16, 1, 1))
GATHER_QUICK = ((8, 16, 4, 2), (8, 16, 1, 1))
GATHER_N, GATHER_N_QUICK = 2048, 512
TARGET = 0.95            # accesses per lane per cycle, 8 lanes, 16 banks, window 4, uniform
ROWS_PER_BANK = 512      # one 512 x 36 block RAM per bank on ECP5


def gather_hw(lanes: int, banks: int, window: int, ports: int = 2) -> dict:
    """The benchmarked unit: 512 rows of 32-bit words per bank, one index bit more than
    the depth needs (so out-of-range indices exist)."""
    depth = ROWS_PER_BANK * banks
    return {"lanes": lanes, "banks": banks, "window": window, "ports": ports,
            "depth": depth, "value_bits": 32, "index_bits": (depth - 1).bit_length() + 1}


def gather_figures(hw: dict, patterns=PATTERNS, n: int = GATHER_N, seed: int = 1) -> list:
    """One row per pattern for the unit ``hw``, measured on Verilator."""
    runs = [{"pattern": p, "n": n, "rewrite": 0.0} for p in patterns]
    rows = []
    for run, rec in zip(runs, run_on_verilator(hw, runs, seed=seed)):
        accesses = rec["accesses"]
        rows.append({"lanes": hw["lanes"], "banks": hw["banks"], "window": hw["window"],
                     "ports": min(hw.get("ports", 2), hw["window"], hw["banks"]),
                     "pattern": run["pattern"], "n": n,
                     "per_lane_per_cycle": rec["per_lane_per_cycle"],
                     "model": rec["model_per_lane_per_cycle"], "bound": rec["bound"],
                     "limit": 1.0, "cycles": rec["span"],
                     "conflicts_per_access": sum(rec["conflicts"]) / accesses,
                     "stalls_per_access": sum(rec["stalls"]) / accesses})
    return rows


def _header():
    print(f"{'lanes':>5s} {'banks':>5s} {'window':>6s} {'ports':>5s} {'pattern':>10s} "
          f"{'cycles':>7s} "
          f"{'acc/lane/cyc':>12s} {'model':>6s} {'bound':>6s} {'limit':>6s} "
          f"{'conflicts/acc':>13s} {'stalls/acc':>10s}")


def _row(r):
    print(f"{r['lanes']:5d} {r['banks']:5d} {r['window']:6d} {r['ports']:5d} "
          f"{r['pattern']:>10s} "
          f"{r['cycles']:7d} {r['per_lane_per_cycle']:12.3f} {r['model']:6.3f} "
          f"{r['bound']:6.3f} {r['limit']:6.2f} {r['conflicts_per_access']:13.3f} "
          f"{r['stalls_per_access']:10.3f}", flush=True)


def print_gather(rows: list):
    _header()
    for r in rows:
        _row(r)


def plot_gather(rows: list, ax):
    """Grouped bars: one group per unit, one bar per pattern, the pattern's bound as a
    tick above each bar and the limit as a line."""
    units = list(dict.fromkeys(_unit(r) for r in rows))     # in the order measured
    patterns = [p for p in PATTERNS if any(r["pattern"] == p for r in rows)]
    width = 0.8 / max(1, len(patterns))
    for k, p in enumerate(patterns):
        xs, ys, bs = [], [], []
        for u, unit in enumerate(units):
            for r in rows:
                if _unit(r) == unit and r["pattern"] == p:
                    xs.append(u + (k - (len(patterns) - 1) / 2) * width)
                    ys.append(r["per_lane_per_cycle"])
                    bs.append(r["bound"])
        ax.bar(xs, ys, width, label=p)
        ax.scatter(xs, bs, marker="_", color="black", s=120, zorder=3)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="limit (1 per lane)")
    ax.axhline(TARGET, color="red", linestyle=":", linewidth=1, label=f"target {TARGET}")
    ax.set_xticks(range(len(units)))
    ax.set_xticklabels([f"{lanes}L/{banks}B\nw{w} p{p}" for lanes, banks, w, p in units],
                       fontsize=7)
    ax.set_ylabel("accesses per lane per cycle")
    ax.set_ylim(0, 1.1)
    ax.set_title("SparseGather on Verilator (ticks: bound set by the pattern)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=6)


def gather_section(args) -> tuple[dict, bool, list]:
    """(figures, all runs agreed with the golden model, plotters)."""
    configs = args.configs or (GATHER_QUICK if args.quick else GATHER_CONFIGS)
    n = args.n or (GATHER_N_QUICK if args.quick else GATHER_N)
    if n < 1:
        raise TilefabError(f"--n: {n} is not allowed, must be >= 1")
    print(f"== gather: accesses per lane per cycle, {n} indices per lane, no backpressure "
          f"(Verilator; limit 1 per lane = lanes accesses/cycle)")
    _header()
    rows = []
    for unit in configs:
        for r in gather_figures(gather_hw(*unit), n=n, seed=args.seed):
            rows.append(r)
            _row(r)
    agree = all(r["per_lane_per_cycle"] == r["model"] for r in rows)
    for r in rows:
        if _unit(r) == (8, 16, 4, 2) and r["pattern"] == "uniform":
            verdict = "meets" if r["per_lane_per_cycle"] >= TARGET else "misses"
            print(f"target: 8 lanes, 16 banks, window 4 (2 ports), uniform: "
                  f"{r['per_lane_per_cycle']:.3f} accesses/lane/cycle, {verdict} {TARGET}")
    return {"rows": rows}, agree, [lambda ax: plot_gather(rows, ax)]


def synth_section(args) -> tuple[dict, bool, list]:
    return sparse_synth.synth_section(args, [gather_hw(8, 16, 4, 2)])


SECTIONS = {"gather": gather_section, "nm": nm_section, "spmv": spmv_section,
            "moe": moe_section, "synth": synth_section}


def _unit(r) -> tuple:
    return r["lanes"], r["banks"], r["window"], r["ports"]


def parse_configs(text: str) -> tuple:
    """``"8x16x4,8x16x1x1"`` -> ((8, 16, 4, 2), (8, 16, 1, 1)): lanes x banks x window
    [x ports, default 2], each checked as a ``SparseGather`` parameter."""
    out = []
    for part in filter(None, text.split(",")):
        try:
            values = [int(v) for v in part.split("x")]
            if len(values) not in (3, 4):
                raise ValueError
        except ValueError:
            raise TilefabError(f"--configs: {part!r} is not allowed, must be "
                               f"LANESxBANKSxWINDOW[xPORTS], e.g. 8x16x4") from None
        unit = tuple(values) + ((2,) if len(values) == 3 else ())
        try:
            check_gather_params(gather_hw(*unit))
        except ValueError as exc:
            raise TilefabError(f"--configs {part}: {exc}") from None
        out.append(unit)
    if not out:
        raise TilefabError("--configs: give at least one LANESxBANKSxWINDOW[xPORTS]")
    return tuple(out)


def run_bench(args) -> int:
    names = [s for s in (args.sections or ",".join(SECTIONS)).split(",") if s]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        raise TilefabError(f"--sections: {unknown[0]!r} is not allowed, must be among "
                           f"{', '.join(SECTIONS)}")
    figures, ok, plotters = {}, True, []
    for name in names:
        fig, agree, plots = SECTIONS[name](args)
        figures[name] = fig
        ok &= agree
        plotters.extend(plots)
        print()
    if args.plot and plotters:
        plot(plotters, args.plot)
        print(f"wrote {args.plot}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)
    if not ok:
        print("some RTL figures differ from the golden cycle model")
    return 0 if ok else 1


def plot(plotters: list, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(plotters), 1, figsize=(8, 4 * len(plotters)), squeeze=False)
    for draw, ax in zip(plotters, np.ravel(axes)):
        draw(ax)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
