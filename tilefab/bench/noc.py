"""``tilefab bench noc``: accepted throughput and latency versus offered load.

Every tile injects open-loop Bernoulli traffic at each rate of the sweep on the
Verilator model of a ``mesh`` top; accepted throughput is flits delivered per
node per cycle within the measurement window and is compared with the physical
limit min(1, bisection bound). Latency runs from the cycle a packet is made to
its delivery (source queueing included). The sweep stops at the first rate whose
packets cannot drain (saturation).
"""

from __future__ import annotations

import json

import numpy as np

from ..gen.config import resolve
from ..gen.generate import packet_format
from ..golden.noc import MeshModel, mean_hops_uniform, saturation_bound
from ..verif.runner import run_generated


def run_noc_bench(cols: int, rows: int, *, pattern: str, points: int, warmup: int,
                  measure: int, seed: int, fifo_depth: int, plot: str | None) -> int:

    cfg = resolve({"name": f"noc_{cols}x{rows}",
                   "mesh": {"cols": cols, "rows": rows, "fifo_depth": fifo_depth}})
    bound = saturation_bound(cols, rows)
    rates = [round(bound * f, 4) for f in np.linspace(0.1, 1.0, points)]
    model = MeshModel(cols, rows, (0, 0), packet_format(cfg))
    zero_load = np.mean([model.zero_load_latency(s, d) for s in model.nodes()
                         for d in model.nodes()])
    print(f"NoC {cols}x{rows} XY mesh, {pattern} traffic, FIFO depth {fifo_depth}; "
          f"bound min(1, bisection) = {bound:.3f} flits/node/cycle; mean hops "
          f"{mean_hops_uniform(cols, rows):.2f}; golden zero-load latency {zero_load:.2f} cycles")
    run = run_generated(cfg, "mesh", "tilefab.verif.tb_noc", testcase="sweep", seed=seed,
                        params={"pattern": pattern, "rates": rates, "warmup": warmup,
                                "measure": measure, "seed": seed})
    pts = json.loads((run / "result.json").read_text())["points"]
    print(f"{'offered':>8} {'accepted':>9} {'/bound':>7} {'mean lat':>9} {'p99 lat':>8}  state")
    for p in pts:
        lat = f"{p['mean_latency']:9.1f}" if p["mean_latency"] is not None else f"{'-':>9}"
        p99 = f"{p['p99_latency']:8.0f}" if p["p99_latency"] is not None else f"{'-':>8}"
        print(f"{p['offered']:8.3f} {p['accepted']:9.3f} {p['accepted'] / bound:7.1%} "
              f"{lat} {p99}  {_state(p)}")
    best = max(p["accepted"] for p in pts)
    print(f"peak accepted throughput {best:.3f} flits/node/cycle = {best / bound:.1%} of the "
          f"bound {bound:.3f}")
    path = plot or f"noc-{cols}x{rows}-{pattern}.png"
    _plot(pts, bound, zero_load, cols, rows, pattern, path)
    print(f"latency-versus-load plot: {path}")
    return 0


def _state(p) -> str:
    if not p["drained"]:
        return "saturated (did not drain)"
    return "saturated" if p["accepted"] < 0.95 * p["offered"] else "ok"


def _plot(pts, bound, zero_load, cols, rows, pattern, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [p for p in pts if p["mean_latency"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["accepted"] for p in ok], [p["mean_latency"] for p in ok], "o-", label="mean")
    ax.plot([p["accepted"] for p in ok], [p["p99_latency"] for p in ok], "s--", label="p99")
    ax.axvline(bound, color="k", linestyle=":", label=f"bound {bound:.2f}")
    ax.axhline(zero_load, color="g", linestyle=":", label=f"zero-load {zero_load:.1f}")
    ax.set_xlabel("accepted throughput (flits/node/cycle)")
    ax.set_ylabel("latency (cycles)")
    ax.set_title(f"{cols}x{rows} mesh, {pattern} traffic")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
