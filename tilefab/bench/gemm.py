"""``tilefab bench gemm``: utilization of the GEMM mesh against its peak MAC rate.

For each size the same fabric build runs C = A·B of random int operands on
Verilator through pyverilator and the product is checked against numpy.
Utilization = MACs / (PEs x lanes x cycles), with cycles from the first flit
into the fabric to the last flit out of it (Gemmini's definition). The table
gives the engine-cycle breakdown (busy, waiting for operands, waiting for the
NoC to take results, idle), the host port's injection rate against its limit
of one flit per cycle, and the simulator's speed; a PNG heatmap shows each
PE's busy fraction at the largest size.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..cli.args import seed as seed_arg
from ..gen.errors import TilefabError
from ..golden import nm
from ..golden.gemm import gemm_exact
from ..verif.runtime import Fabric
from ..verif.stimulus import random_operands

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "gemm4x4.yaml"


def _sizes(text: str):
    out = []
    for part in text.split(","):
        dims = part.lower().split("x")
        try:
            vals = [int(d) for d in dims]
        except ValueError:
            raise TilefabError(f"--sizes: {part!r} is not allowed, must be N (for N^3) or "
                               f"MxKxN, comma separated") from None
        if len(vals) == 1:
            vals *= 3
        if len(vals) != 3 or min(vals) < 1:
            raise TilefabError(f"--sizes: {part!r} is not allowed, must be N or MxKxN, all >= 1")
        out.append(tuple(vals))
    return out


def heatmap(run, cols: int, rows: int, path: Path, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.full((rows, cols), np.nan)
    for (x, y), u in run.pe_utilization().items():
        grid[y, x] = u
    fig, ax = plt.subplots(figsize=(1.2 * cols + 1.5, 1.2 * rows + 0.8))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    for y in range(rows):
        for x in range(cols):
            if not np.isnan(grid[y, x]):
                ax.text(x, y, f"{grid[y, x]:.0%}", ha="center", va="center",
                        color="white" if grid[y, x] < 0.6 else "black", fontsize=9)
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="MAC engine busy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_gemm_bench(config, sizes, seed: int, plot) -> int:

    t0 = time.perf_counter()
    fabric = Fabric(config, seed=seed)
    build = time.perf_counter() - t0
    fabric.tiles_of("gemm")
    info = fabric.manifest["gemm"]
    w, lanes = info["params"]["op_bits"], info["params"]["lanes"]
    cfg = fabric.config
    cols, rows = cfg["mesh"]["cols"], cfg["mesh"]["rows"]
    pes = len(info["pes"])
    print(f"{cfg['name']}: {cols}x{rows} mesh, {pes} PEs x {lanes} lanes = "
          f"{pes * lanes} MACs/cycle peak, int{w}, packet data {cfg['packet']['data_bits']} "
          f"bits; build/load {build:.1f} s")
    head = (f"{'M x K x N':>16} {'cycles':>8} {'ideal':>7} {'util':>6} {'busy':>6} "
            f"{'wait op':>7} {'wait noc':>8} {'idle':>6} {'in/cyc':>7} {'cyc/s':>8} exact")
    print(head)
    rng = np.random.default_rng(seed)
    last = None
    failed = 0
    pattern = nm.parse_sparsity(info["params"].get("sparsity", "dense"))
    for m, k, n in sizes:
        a, b = random_operands(rng, m, k, n, w)
        if pattern:
            b = nm.prune(b, *pattern)      # N:M tiles: util can reach M/N of the dense peak
        c0 = fabric.backend.top.cycles
        t = time.perf_counter()
        run = fabric.gemm(a, b)
        wall = time.perf_counter() - t
        speed = (fabric.backend.top.cycles - c0) / wall
        ok = np.array_equal(run.c, gemm_exact(a, b, w))
        failed += not ok
        st = run.stall_breakdown()
        ideal = -(-run.macs // run.peak_macs_per_cycle)
        print(f"{f'{m}x{k}x{n}':>16} {run.cycles:>8} {ideal:>7} {run.utilization:>6.1%} "
              f"{st['busy']:>6.1%} {st['stall_operands']:>7.1%} {st['stall_noc']:>8.1%} "
              f"{st['idle']:>6.1%} {run.flits_in / run.cycles:>7.2f} {speed:>8,.0f} "
              f"{'yes' if ok else 'NO'}")
        last = (run, (m, k, n))
    print("util = MACs / (PEs x lanes x cycles), cycles from first flit in to last flit out; "
          "busy / wait op / wait noc / idle: mean share of each PE's engine cycles; "
          "in/cyc: host flits injected per cycle (limit 1)")
    if last is not None:
        run, (m, k, n) = last
        path = Path(plot or f"gemm-{cfg['name']}-{m}x{k}x{n}.png")
        heatmap(run, cols, rows, path,
                f"{cfg['name']} {m}x{k}x{n}: utilization {run.utilization:.1%}")
        print(f"per-PE busy heatmap: {path}")
    return 1 if failed else 0


def _bench(args) -> int:
    return run_gemm_bench(args.config, _sizes(args.sizes), args.seed, args.plot)


def register_bench(bench):
    p = bench.add_parser("gemm", help="GEMM utilization, stall breakdown and simulator speed")
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="fabric YAML with gemm tiles (default examples/gemm4x4.yaml)")
    p.add_argument("--sizes", default="64,128,256",
                   help="comma-separated N (for N^3) or MxKxN (default 64,128,256)")
    p.add_argument("--seed", type=seed_arg, default=1)
    p.add_argument("--plot", default=None, help="heatmap PNG path")
    p.set_defaults(func=_bench)
