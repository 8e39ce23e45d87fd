"""N:M sparse GEMM against dense on the same mesh: cycles, speedup and its limit.

``nm_speedup_table(config, shapes)`` builds the fabric of ``config`` once per
sparsity (its GEMM tiles ``dense``, ``2:4``, ``4:8``; the mesh, lanes, operand
width and scratchpads stay as configured) and runs C = A·B for every shape on
each through pyverilator. Per shape, A and B are drawn once and B is pruned to
each pattern (the dense fabric runs the 2:4 B; its cycles do not depend on the
values); every product is checked against numpy. Cycles run from the first
flit into the fabric to the last flit out. Speedup = dense cycles / N:M cycles;
its limit is M/N (the MAC work shrinks by N/M, loading A and draining C do not,
B's words shrink by less), so small shapes, bound by the host port, gain less.
Utilization is given against the dense peak (PEs x lanes MACs per cycle: up to
M/N on N:M tiles) and against the N:M peak (PEs x lanes x M/N).

``nm_section(args)`` is the same table as a section of ``tilefab bench sparse``
(``(figures, every product exact, plotters)``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from ..gen.config import as_config, load
from ..gen.errors import TilefabError
from ..golden import nm
from ..golden.gemm import gemm_exact
from ..verif.runtime import Fabric
from ..verif.stimulus import random_operands

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "gemm2x2.yaml"
DEFAULT_SHAPES = ((8, 16, 8), (16, 64, 16), (32, 64, 32), (64, 64, 64), (64, 256, 64))
QUICK_SHAPES = ((8, 16, 8), (16, 64, 16), (64, 64, 64))
SPARSITIES = ("2:4", "4:8")
TARGET = 1.8            # 2:4 against dense, K >= 64


def with_sparsity(config, sparsity: str) -> dict:
    """``config`` (a path or a mapping) with every GEMM tile set to ``sparsity``."""
    raw = copy.deepcopy(load(config) if not isinstance(config, dict) else as_config(config))
    tiles = raw["tiles"]
    gemm = [t for t in [tiles.get("default", {}), *tiles.get("at", [])]
            if t.get("kind") == "gemm"]
    if not gemm:
        raise TilefabError(f"{raw['name']}: no gemm tiles to make sparse")
    for t in gemm:
        # Dense is the default: leaving it out keeps a dense config's hash (and build).
        t.pop("sparsity", None)
        if sparsity != "dense":
            t["sparsity"] = sparsity
    if sparsity != "dense":
        # examples/gemm2x2_sparse24.yaml is gemm2x2's: the same config, the same build.
        raw["name"] = f"{raw['name']}_sparse{sparsity.replace(':', '')}"
    raw.pop("tile_map", None)
    return as_config(raw)


def nm_speedup_table(config=DEFAULT_CONFIG, shapes=DEFAULT_SHAPES, *, seed: int = 1,
                     sparsities=SPARSITIES, out=print) -> list[dict]:
    """Measure and print the table; one row per (shape, sparsity), dense rows included.

    Row: ``shape``, ``sparsity``, ``cycles``, ``speedup`` (dense cycles over these),
    ``limit`` (M/N), ``utilization`` (against the dense peak), ``sparse_utilization``
    (against the N:M peak), ``words`` (operand words sent: A, B values and
    metadata), ``exact``.
    """
    fabrics = {"dense": Fabric(with_sparsity(config, "dense"), seed=seed)}
    for sparsity in sparsities:
        fabrics[sparsity] = Fabric(with_sparsity(config, sparsity), seed=seed)
    dense = fabrics["dense"]
    info = dense.manifest["gemm"]
    w, lanes, pes = info["params"]["op_bits"], info["params"]["lanes"], len(info["pes"])
    max_k = info["params"]["max_k"]
    cfg = dense.config
    out(f"{cfg['name']}: {cfg['mesh']['cols']}x{cfg['mesh']['rows']} mesh, {pes} GEMM PEs x "
        f"{lanes} lanes, int{w}; dense and {', '.join(sparsities)} on the same mesh "
        f"(pyverilator)")
    out(f"{'M x K x N':>12} {'sparsity':>8} {'cycles':>8} {'speedup':>8} {'limit':>6} "
        f"{'util/dense':>10} {'util/N:M':>9} {'words in':>8} exact")
    rng = np.random.default_rng(seed)
    rows = []
    for m, k, n in shapes:
        if k > max_k:
            raise TilefabError(f"shape {m}x{k}x{n}: K = {k} is above the tiles' max_k = "
                               f"{max_k}")
        a, b = random_operands(rng, m, k, n, w)
        cycles = {}
        first = nm.parse_sparsity(sparsities[0]) if sparsities else None
        for sparsity in ("dense", *sparsities):
            pattern = nm.parse_sparsity(sparsity) or first
            b_run = nm.prune(b, *pattern) if pattern else b
            run = fabrics[sparsity].gemm(a, b_run)
            cycles[sparsity] = run.cycles
            n_m = nm.parse_sparsity(sparsity)
            row = {"shape": [m, k, n], "sparsity": sparsity, "cycles": run.cycles,
                   "speedup": cycles["dense"] / run.cycles,
                   "limit": n_m[1] / n_m[0] if n_m else 1.0,
                   "utilization": run.utilization,
                   "sparse_utilization": run.sparse_utilization,
                   "words": sum(c["words"] for c in run.counters.values()),
                   "exact": bool(np.array_equal(run.c, gemm_exact(a, b_run, w)))}
            rows.append(row)
            out(f"{f'{m}x{k}x{n}':>12} {sparsity:>8} {run.cycles:>8} "
                f"{row['speedup']:>7.2f}x {row['limit']:>5.1f}x {row['utilization']:>10.1%} "
                f"{row['sparse_utilization']:>9.1%} {row['words']:>8} "
                f"{'yes' if row['exact'] else 'NO'}")
    out("cycles: first flit in to last flit out; speedup: dense cycles / these; limit: M/N; "
        "util/dense: m*k*n MACs / (PEs x lanes x cycles), up to M/N for N:M; util/N:M: "
        "against PEs x lanes x M/N; words in: operand words sent (A, B values, metadata)")
    big = [r for r in rows if r["sparsity"] == "2:4" and r["shape"][1] >= 64]
    if big:
        worst = min(big, key=lambda r: r["speedup"])
        verdict = "meets" if worst["speedup"] >= TARGET else "misses"
        out(f"target: 2:4 at K >= 64, {TARGET}x fewer cycles than dense: worst "
            f"{worst['speedup']:.2f}x at {'x'.join(map(str, worst['shape']))}, {verdict}")
    return rows


def plot_nm(rows: list, ax):
    """Speedup against dense per shape, one bar per sparsity, with its limit."""
    shapes = list(dict.fromkeys(tuple(r["shape"]) for r in rows))
    kinds = [s for s in dict.fromkeys(r["sparsity"] for r in rows) if s != "dense"]
    width = 0.8 / max(1, len(kinds))
    for i, kind in enumerate(kinds):
        ys = [next(r["speedup"] for r in rows if tuple(r["shape"]) == s and r["sparsity"] == kind)
              for s in shapes]
        ax.bar([x + i * width for x in range(len(shapes))], ys, width, label=kind)
    limit = max((r["limit"] for r in rows), default=1.0)
    ax.axhline(limit, color="black", linestyle="--", linewidth=1, label=f"limit M/N = {limit:g}")
    ax.axhline(TARGET, color="red", linestyle=":", linewidth=1, label=f"target {TARGET}x")
    ax.set_xticks([x + width * (len(kinds) - 1) / 2 for x in range(len(shapes))])
    ax.set_xticklabels(["x".join(map(str, s)) for s in shapes], fontsize=7)
    ax.set_ylabel("cycles dense / cycles N:M")
    ax.set_title("N:M sparse GEMM tiles against dense, same mesh (Verilator)")
    ax.legend(fontsize=7)


def nm_section(args) -> tuple[dict, bool, list]:
    """``tilefab bench sparse`` section: (figures, every product exact, plotters)."""
    shapes = QUICK_SHAPES if getattr(args, "quick", False) else DEFAULT_SHAPES
    config = getattr(args, "gemm_config", None) or DEFAULT_CONFIG
    print("== nm: N:M sparse GEMM tiles against dense on the same mesh")
    rows = nm_speedup_table(config, shapes, seed=getattr(args, "seed", 1))
    return {"rows": rows}, all(r["exact"] for r in rows), [lambda ax: plot_nm(rows, ax)]


if __name__ == "__main__":
    nm_speedup_table()
