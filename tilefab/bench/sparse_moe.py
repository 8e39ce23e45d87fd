"""MoE routing on the GEMM tiles: tokens per cycle and the load on every expert and tile.

``moe_figures(config, cases)`` builds the fabric of ``config`` once and runs
``fab.moe`` for every case and placement (``"static"``: round robin, as the
experts would live on the tiles; ``"balanced"``: tiles given by this call's load)
through pyverilator, each checked bit for bit against ``golden.moe``. A case is (tokens, d_in, d_out, experts, top_k, routing): routing
``"uniform"`` draws the tokens and the gate at random (the load is whatever the
logits give); ``"skewed"`` makes expert 0 win every token (non-negative tokens,
gate column 0 at the largest operand, the others at the smallest, so the rest of a
token's top-k goes to experts 1, 2, ... by the tie rule).

Cycles are the gate session plus the expert session, each first flit in to last
flit out (the host's top-k between them is not counted). Tokens per cycle =
tokens / cycles. Its limit here is the host port: every operand word (tokens
again for each of their experts, and every expert's weights, since nothing stays
resident between calls) enters through one port at one flit per cycle, and the
results leave through one, so tokens / max(flits in, flits out) bounds it ("port
bound"); and the MAC engines: no run is shorter than the busiest tile's issue
cycles (its ``busy`` counter over both sessions), so tokens / max busy bounds it
too ("MAC bound"; with a skewed load the hot expert's tile sets it).
Utilization is MACs (gate and experts) / (tiles x lanes x cycles). Expert load is tokens per expert; tile load is the routed token rows
each tile multiplied (experts map to tiles round robin when there are more
experts than tiles, ``shared``; with fewer, an expert's batch is split over
several tiles).

``moe_section(args)`` is the same table as a section of ``tilefab bench sparse``
(``(figures, every run exact, plotters)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..gen.errors import TilefabError
from ..gen.moe import PLACEMENTS
from ..golden.gemm import operand_range
from ..verif.runtime import Fabric

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "gemm2x2.yaml"
# (tokens, d_in, d_out, experts, top_k, routing)
DEFAULT_CASES = ((64, 64, 32, 4, 2, "uniform"), (64, 64, 32, 8, 2, "uniform"),
                 (64, 64, 32, 2, 1, "uniform"), (64, 64, 32, 4, 4, "uniform"),
                 (64, 64, 32, 4, 1, "skewed"), (64, 64, 32, 8, 2, "skewed"))
QUICK_CASES = ((32, 32, 16, 4, 2, "uniform"), (32, 32, 16, 8, 2, "uniform"),
               (32, 32, 16, 4, 1, "skewed"))
ROUTINGS = ("uniform", "skewed")


def moe_operands(rng: np.random.Generator, tokens: int, d_in: int, d_out: int, experts: int,
                 op_bits: int, routing: str):
    """(tokens, gate_w, experts) for one case (module docstring)."""
    lo, hi = operand_range(op_bits)
    w = rng.integers(lo, hi + 1, (experts, d_in, d_out))
    if routing == "uniform":
        return rng.integers(lo, hi + 1, (tokens, d_in)), rng.integers(lo, hi + 1,
                                                                      (d_in, experts)), w
    if routing == "skewed":
        gate = np.full((d_in, experts), lo)
        gate[:, 0] = hi
        return rng.integers(1, hi + 1, (tokens, d_in)), gate, w
    raise TilefabError(f"routing: {routing!r} is not allowed, must be one of "
                       f"{', '.join(ROUTINGS)}")


def _measure(fab: Fabric, case: tuple, placement: str, x, g, w, out) -> dict:
    """One run of ``case`` with ``placement``: its row, printed."""
    t, d, o, e, k, routing = case
    gemm = fab.tiles_of("gemm")
    lanes = gemm[0].values["lanes"]
    run = fab.moe(x, g, w, top_k=k, placement=placement)
    row = {"case": list(case), "placement": placement, "tiles": len(gemm),
           "shared": run.shared, "gate_cycles": run.gate_cycles,
           "expert_cycles": run.expert_cycles, "cycles": run.cycles,
           "tokens_per_cycle": run.tokens_per_cycle,
           "port_bound": t / max(run.flits_in, run.flits_out),
           "mac_bound": t / max(1, max(c["busy"] for c in run.counters.values())),
           "utilization": run.macs / (len(gemm) * lanes * run.cycles),
           "expert_load": run.expert_load.tolist(),
           "tile_load": {f"{x_},{y_}": n for (x_, y_), n in run.tile_load.items()},
           "tile_experts": {f"{x_},{y_}": es for (x_, y_), es in run.tile_experts().items()},
           "imbalance": run.imbalance, "exact": run.golden_ok}
    out(f"{f'{t}x{d}x{o}':>12} {e:>3} {k:>2} {routing:>8} {placement:>8} {run.gate_cycles:>6} "
        f"{run.expert_cycles:>7} {run.cycles:>7} {run.tokens_per_cycle:>8.4f} "
        f"{row['port_bound']:>8.4f} {row['mac_bound']:>8.4f} {row['utilization']:>6.1%} "
        f"{run.imbalance:>5.2f} {'yes' if run.golden_ok else 'NO':>5}"
        f"  {' '.join(map(str, row['expert_load']))}")
    tiles = "  ".join(f"({xy}) e{','.join(map(str, row['tile_experts'][xy])) or '-'}: {n}"
                      for xy, n in row["tile_load"].items())
    out(f"{'':>12} tokens per tile: {tiles}{'  (shared tiles)' if run.shared else ''}")
    return row


def moe_figures(config=DEFAULT_CONFIG, cases=DEFAULT_CASES, *, seed: int = 1,
                placements=PLACEMENTS, in_stall: float = 0.0, out_stall: float = 0.0,
                out=print) -> list[dict]:
    """Measure and print the table; one row per (case, placement).

    Row: ``case`` (tokens, d_in, d_out, experts, top_k, routing), ``placement``, ``tiles``,
    ``shared``, ``gate_cycles``, ``expert_cycles``, ``cycles``, ``tokens_per_cycle``,
    ``port_bound`` (tokens per cycle the host port allows), ``mac_bound`` (... the busiest
    tile's MAC engine allows), ``utilization``, ``expert_load`` (list),
    ``tile_load`` ({"x,y": token rows}), ``tile_experts``, ``imbalance`` (busiest
    expert over the mean), ``exact``.
    """
    fab = Fabric(config, seed=seed, in_stall=in_stall, out_stall=out_stall)
    gemm = fab.tiles_of("gemm")
    params = gemm[0].values
    cfg = fab.config
    out(f"{cfg['name']}: {cfg['mesh']['cols']}x{cfg['mesh']['rows']} mesh, {len(gemm)} GEMM "
        f"tiles x {params['lanes']} lanes, int{params['op_bits']}; gate on every GEMM tile, "
        f"experts placed {' or '.join(placements)} (pyverilator"
        f"{f', in_stall {in_stall}, out_stall {out_stall}' if in_stall or out_stall else ''})")
    out(f"{'T x D x O':>12} {'E':>3} {'k':>2} {'routing':>8} {'place':>8} {'gate':>6} "
        f"{'experts':>7} {'cycles':>7} {'tok/cyc':>8} {'port bnd':>8} {'MAC bnd':>8} {'util':>6} {'imbal':>5} "
        f"exact  expert load")
    rng = np.random.default_rng(seed)
    rows = []
    for case in cases:
        t, d, o, e, _, routing = case
        x, g, w = moe_operands(rng, t, d, o, e, params["op_bits"], routing)
        for placement in placements:
            rows.append(_measure(fab, case, placement, x, g, w, out))
    out("gate/experts/cycles: the two sessions, first flit in to last flit out; tok/cyc: "
        "tokens / cycles; port bnd: tokens / max(flits in, flits out), the host port's limit; "
        "MAC bnd: tokens / the busiest tile's MAC issue cycles; util: MACs / (tiles x lanes x "
        "cycles); "
        "imbal: busiest expert's tokens over the mean; expert load: tokens per expert")
    return rows


def plot_moe(rows: list, ax):
    """Tokens per cycle per case against the host-port and MAC bounds."""
    labels = [f"E{r['case'][3]} k{r['case'][4]}\n{r['case'][5]}\n{r['placement']}"
              for r in rows]
    xs = range(len(rows))
    ax.bar(xs, [r["tokens_per_cycle"] for r in rows], 0.6, label="measured")
    ax.scatter(xs, [r["port_bound"] for r in rows], marker="_", color="black", s=200,
               zorder=3, label="host-port bound")
    ax.scatter(xs, [r["mac_bound"] for r in rows], marker="_", color="red", s=200,
               zorder=3, label="MAC bound (busiest tile)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("tokens per cycle")
    ax.set_title("MoE routing on the GEMM tiles (Verilator)")
    ax.legend(fontsize=7)


def moe_section(args) -> tuple[dict, bool, list]:
    """``tilefab bench sparse`` section: (figures, every run exact, plotters)."""
    cases = QUICK_CASES if getattr(args, "quick", False) else DEFAULT_CASES
    config = getattr(args, "gemm_config", None) or DEFAULT_CONFIG
    print("== moe: mixture-of-experts routing on the GEMM tiles")
    rows = moe_figures(config, cases, seed=getattr(args, "seed", 1))
    return {"rows": rows}, all(r["exact"] for r in rows), [lambda ax: plot_moe(rows, ax)]


if __name__ == "__main__":
    moe_figures()
