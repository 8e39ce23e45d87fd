"""CSR SpMV figures on a fabric of spmv tiles (and, if it has them, GEMM tiles).

``spmv_figures(config, densities=..., m=..., k=...)`` runs ``y = A x`` on Verilator for
random int8 matrices of each density (uniformly placed nonzeros) and prints a table:

- ``nnz/cyc``: nonzeros over the whole run (first flit in to last flit out; the host
  sends one flit per cycle, with ``nz_per_word`` nonzeros each, which bounds it);
- ``fill``: nonzeros over the nonzero slots of the tiles while their engines ran,
  ``nnz / (lanes x sum of busy cycles)`` (target >= 0.70), and the lowest tile's;
- with GEMM tiles on the mesh, the dense GEMM of the same matrix (``A @ x[:, None]``)
  on them: ``engine x`` is the dense engines' busy cycles over the sparse ones (the
  busiest tile of each), ``peak x`` the dense peak (``m k / (PEs x lanes)`` cycles)
  over the sparse engine cycles, ``run x`` the whole-run cycles; target for both
  speedups ``0.8 / density`` (for densities >= 1/16).
Every run is checked against its exact model; ``ok`` says whether all agreed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..verif.runtime import Fabric

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "spmv2x2.yaml"
DENSITIES = (1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32)
FILL_TARGET = 0.70
SPEEDUP_TARGET = 0.8          # x 1/density, for densities >= 1/16


def random_matrix(rng, m: int, k: int, density: float, bits: int = 8):
    lim = 1 << (bits - 1)
    def values(n):                 # never 0, so every stored entry is a nonzero
        return rng.choice(np.r_[-lim:0, 1:lim], n)
    return sp.random(m, k, density=density, format="csr", random_state=rng,
                     data_rvs=values).astype(np.int64)


def spmv_figures(config=DEFAULT_CONFIG, densities=DENSITIES, *, m: int = 64,
                 k: int = 256, seed: int = 1, fab: Fabric | None = None,
                 dense: bool = True, quiet: bool = False) -> list:
    """One row per density (see the module docstring); prints the table unless quiet."""
    fab = fab or Fabric(config, seed=seed)
    has_gemm = dense and any(t.kind == "gemm" for t in fab.tiles.values())
    rng = np.random.default_rng(seed)
    rows = []
    for d in densities:
        a = random_matrix(rng, m, k, d)
        x = rng.integers(-128, 128, k)
        s = fab.spmv(a, x)
        row = {"density": d, "m": m, "k": k, "nnz": s.nnz, "tiles": len(s.tiles),
               "lanes": s.lanes, "passes": s.passes, "cycles": s.cycles,
               "engine_cycles": s.engine_cycles, "nnz_per_cycle": s.nnz_per_cycle,
               "slot_fill": s.slot_fill,
               "min_tile_fill": min(s.tile_fill().values(), default=0.0),
               "ok": s.golden_ok, "target": 0.8 / d if d >= 1 / 16 else None}
        if has_gemm:
            g = fab.gemm(a.toarray(), x.reshape(-1, 1))
            busy = max(c["busy"] for c in g.counters.values())
            peak = m * k / (g.pes * g.lanes)
            eng = max(s.engine_cycles, 1)
            row.update(dense_cycles=g.cycles, dense_engine_cycles=busy,
                       engine_speedup=busy / eng, peak_speedup=peak / eng,
                       run_speedup=g.cycles / s.cycles if s.cycles else 0.0,
                       ok=row["ok"] and g.golden_ok and bool(np.array_equal(g.c[:, 0], s.y)))
        rows.append(row)
    if not quiet:
        print_spmv(rows)
    return rows


def print_spmv(rows: list):
    head = (f"{'density':>8s} {'nnz':>6s} {'tiles':>5s} {'passes':>6s} {'cycles':>7s} "
            f"{'engine':>7s} {'nnz/cyc':>7s} {'fill':>5s} {'min':>5s}")
    dense = any("engine_speedup" in r for r in rows)
    if dense:
        head += (f" {'dense eng':>9s} {'engine x':>8s} {'peak x':>7s} {'run x':>6s} "
                 f"{'target x':>8s}")
    print(head + "  ok")
    for r in rows:
        line = (f"{'1/%g' % (1 / r['density']):>8s} {r['nnz']:6d} {r['tiles']:5d} "
                f"{r['passes']:6d} {r['cycles']:7d} {r['engine_cycles']:7d} "
                f"{r['nnz_per_cycle']:7.3f} {r['slot_fill']:5.2f} {r['min_tile_fill']:5.2f}")
        if dense:
            tgt = f"{r['target']:8.1f}" if r["target"] else f"{'-':>8s}"
            line += (f" {r['dense_engine_cycles']:9d} {r['engine_speedup']:8.1f} "
                     f"{r['peak_speedup']:7.1f} {r['run_speedup']:6.2f} {tgt}")
        print(line + ("  yes" if r["ok"] else "  NO"), flush=True)
    print(verdict(rows))


def verdict(rows: list) -> str:
    """Whether the fill and speedup targets hold over the rows (speedups where a dense
    run was made, for densities >= 1/16)."""
    fill = min(r["min_tile_fill"] for r in rows)
    parts = [(f"fill >= {FILL_TARGET:.0%}: lowest {fill:.2f}, "
              f"{'meets' if fill >= FILL_TARGET else 'misses'}")]
    judged = [r for r in rows if r.get("target") and "run_speedup" in r]
    for key, what in (("peak_speedup", "engine vs dense peak"),
                      ("run_speedup", "whole run vs dense GEMM run")):
        if judged:
            worst = min(judged, key=lambda r: r[key] * r["density"])
            ok = all(r[key] >= r["target"] for r in judged)
            parts.append(f"{what} >= 0.8/density: worst {worst[key]:.1f}x at 1/"
                         f"{1 / worst['density']:g} (target {worst['target']:.1f}x), "
                         f"{'meets' if ok else 'misses'}")
    return "targets: " + "; ".join(parts)


def plot_spmv(rows: list, ax):
    """Measured speedups against density, beside 1/density and the 0.8/density target."""
    d = np.array([r["density"] for r in rows])
    ax.loglog(1 / d, 1 / d, "k--", label="1/density")
    ax.loglog(1 / d, SPEEDUP_TARGET / d, "k:", label="target 0.8/density")
    for key, label in (("peak_speedup", "engine vs dense peak"),
                       ("run_speedup", "whole run vs dense GEMM run")):
        if all(key in r for r in rows):
            ax.loglog(1 / d, [r[key] for r in rows], "o-", label=label)
    ax.set_xlabel("1 / density")
    ax.set_ylabel("speedup over dense")
    ax.set_title("CSR SpMV on the spmv tiles")
    ax.legend(fontsize=7)


def spmv_section(args) -> tuple[dict, bool, list]:
    """``tilefab bench sparse`` section: (figures, every run exact, plotters)."""
    quick = getattr(args, "quick", False)
    m, k = (64, 128) if quick else (128, 256)
    densities = (1 / 4, 1 / 16) if quick else DENSITIES
    print(f"== spmv: CSR SpMV on examples/spmv2x2.yaml, {m}x{k} int8, one vector "
          f"(targets: fill >= {FILL_TARGET:.0%}; speedup >= 0.8/density for densities "
          f">= 1/16, of the engines and of the whole run)")
    rows = spmv_figures(densities=densities, m=m, k=k, seed=getattr(args, "seed", 1))
    return {"rows": rows}, all(r["ok"] for r in rows), [lambda ax: plot_spmv(rows, ax)]


__all__ = ["DENSITIES", "FILL_TARGET", "SPEEDUP_TARGET", "plot_spmv", "print_spmv", "random_matrix",
           "spmv_figures", "spmv_section", "verdict"]
