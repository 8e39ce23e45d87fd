"""``tilefab bench noc``: accepted throughput and latency versus offered load.

Every tile injects open-loop Bernoulli traffic at each rate of the sweep on the
Verilator model of a ``mesh`` top built with one router kind (``fifo`` or
``voq``, at a queue depth); accepted throughput is flits delivered per node per
cycle within the measurement window and is compared with the physical limit
min(1, bisection bound). Latency runs from the cycle a packet is made to its
delivery (source queueing included). The sweep stops at the first rate whose
packets cannot drain (saturation); saturation is the peak accepted throughput,
reported as a fraction of the bound. With a plot path, both router kinds are
swept (the other one at its default depth) and drawn on one latency-versus-load
plot with the bound.

``--soak N`` instead pushes N random packets in all, split evenly over three
meshes (4x4, the non-square 5x3 and 8x8) and the routers: uniform unicast, a quarter of them
multicast to random rectangles, 1 % unroutable (outside the mesh, or an empty
rectangle), with random backpressure on every source and sink; the golden
delivery checker counts what was lost, duplicated, reordered or misdelivered,
and every count must be 0.

``--resources`` instead synthesizes one interior router of each kind (yosys,
ECP5 and iCE40) and prints its LUTs and flip-flops.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..gen.config import resolve
from ..gen.emit import to_verilog
from ..gen.generate import layout_for, packet_format
from ..gen.synth import FAMILIES, synthesize
from ..golden.noc import MeshModel, mean_hops_uniform, saturation_bound
from ..hw.noc.router import Router
from ..hw.noc.router_voq import VoqRouter
from ..verif.noc import SOAK_FAULTS
from ..verif.runner import run_generated

ROUTERS = ("fifo", "voq")
DEFAULT_DEPTH = {"fifo": 2, "voq": 4}      # the config schema's defaults
DEPTH_FIELD = {"fifo": "fifo_depth", "voq": "voq_depth"}


SOAK_SHAPES = ((4, 4), (5, 3), (8, 8))
def mesh_config(cols: int, rows: int, router: str, depth: int, multicast: bool = False) -> dict:
    spec = {"name": f"noc_{cols}x{rows}_{router}{depth}{'_mc' if multicast else ''}",
            "mesh": {"cols": cols, "rows": rows, "router": router, DEPTH_FIELD[router]: depth}}
    if multicast:
        spec["packet"] = {"multicast": True}
    return resolve(spec)


def run_noc_bench(cols: int, rows: int, *, pattern: str, points: int, warmup: int,
                  measure: int, seed: int, router: str = "fifo", depth: int | None = None,
                  plot: str | None = None, resources: bool = False, soak: int = 0,
                  soak_routers=None, jobs: int = 2) -> int:
    if soak:
        return run_soak(soak, seed=seed, routers=soak_routers or ROUTERS, jobs=jobs)
    depth = depth or DEFAULT_DEPTH[router]
    if resources:
        return print_resources(cols, rows, router, depth)
    bound = saturation_bound(cols, rows)
    cfg = mesh_config(cols, rows, router, depth)
    model = MeshModel(cols, rows, (0, 0), packet_format(cfg))
    zero_load = np.mean([model.zero_load_latency(s, d) for s in model.nodes()
                         for d in model.nodes()])
    print(f"NoC {cols}x{rows} XY mesh, {pattern} traffic; bound min(1, bisection) = "
          f"{bound:.3f} flits/node/cycle; mean hops {mean_hops_uniform(cols, rows):.2f}; "
          f"golden zero-load latency {zero_load:.2f} cycles")
    runs = [(router, depth)]
    if plot:
        other = next(r for r in ROUTERS if r != router)
        runs.append((other, DEFAULT_DEPTH[other]))
    curves = []
    for kind, d in runs:
        pts = sweep(cols, rows, kind, d, pattern=pattern, points=points, warmup=warmup,
                    measure=measure, seed=seed, bound=bound)
        curves.append((kind, d, pts))
    if len(curves) > 1:
        print("saturation: " + "; ".join(f"{kind} depth {d} {_peak(pts) / bound:.1%}"
                                         for kind, d, pts in curves) + " of the bound")
    if plot:
        _plot(curves, bound, zero_load, cols, rows, pattern, plot)
        print(f"latency-versus-load plot: {plot}")
    return 0


def sweep(cols, rows, router, depth, *, pattern, points, warmup, measure, seed, bound) -> list:
    """Run the injection sweep on one router kind and print its table and saturation."""
    cfg = mesh_config(cols, rows, router, depth)
    rates = [round(bound * f, 4) for f in np.linspace(0.1, 1.0, points)]
    print(f"\nrouter {router}, queue depth {depth} "
          f"({'input FIFOs' if router == 'fifo' else 'virtual output queues'})")
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
    best = _peak(pts)
    saturated = any(_state(p) != "ok" for p in pts)
    print(f"{router} depth {depth}: saturation {best:.3f} flits/node/cycle = "
          f"{best / bound:.1%} of the bound {bound:.3f}"
          f"{'' if saturated else ' (never saturated: at least this)'}")
    return pts


def _peak(pts) -> float:
    return max(p["accepted"] for p in pts)


def _state(p) -> str:
    if not p["drained"]:
        return "saturated (did not drain)"
    return "saturated" if p["accepted"] < 0.95 * p["offered"] else "ok"


def build_router(cols: int, rows: int, router: str, depth: int):
    """The router at (1, 1) (interior from 3x3 up) of the mesh config with this router."""
    cfg = mesh_config(cols, rows, router, depth)
    host = cfg["host"]
    place = {"layout": layout_for(cfg), "x": min(1, cols - 1), "y": min(1, rows - 1),
             "cols": cols, "rows": rows, "host": (host["x"], host["y"], host["side"])}
    if router == "fifo":
        return Router(fifo_depth=depth, **place), place
    return VoqRouter(depth=depth, **place), place


def print_resources(cols: int, rows: int, router: str, depth: int) -> int:
    """Synthesize one router of each kind (``router`` at ``depth``, the other at its
    default depth) for every family and print LUTs and flip-flops."""
    kinds = [(router, depth)] + [(r, DEFAULT_DEPTH[r]) for r in ROUTERS if r != router]
    print(f"one router of a {cols}x{rows} mesh, yosys synth_<family>, packet "
          f"{packet_format(mesh_config(cols, rows, router, depth)).width} bits")
    for kind, d in sorted(kinds):
        component, place = build_router(cols, rows, kind, d)
        name = f"router_{kind}{d}"
        text = to_verilog(component, name)
        queues = (f"{len(component.queues)} VOQs" if kind == "voq" else "5 input FIFOs")
        for family in FAMILIES:
            res = synthesize(text, name, family)
            extra = f" LUTRAM {res.lutram}" if res.lutram else ""
            extra += f" RAM {res.ram}" if res.ram else ""
            print(f"  {kind:4} depth {d:2} at ({place['x']}, {place['y']}), {queues}: "
                  f"{family:5} LUT4 {res.lut:5}  FF {res.ff:5}{extra}")
    return 0


def _plot(curves, bound, zero_load, cols, rows, pattern, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (kind, depth, pts), style in zip(curves, ("o-", "s-")):
        ok = [p for p in pts if p["mean_latency"] is not None]
        ax.plot([p["accepted"] for p in ok], [p["mean_latency"] for p in ok], style,
                label=f"{kind} (depth {depth}), mean")
    ax.axvline(bound, color="k", linestyle=":", label=f"bound {bound:.2f}")
    ax.axhline(zero_load, color="g", linestyle=":", label=f"zero-load {zero_load:.1f}")
    ax.set_xlabel("accepted throughput (flits/node/cycle)")
    ax.set_ylabel("mean latency (cycles)")
    ax.set_title(f"{cols}x{rows} mesh, {pattern} traffic")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _soak_one(cols: int, rows: int, router: str, packets: int, seed: int) -> dict:
    cfg = mesh_config(cols, rows, router, DEFAULT_DEPTH[router], multicast=True)
    t0 = time.monotonic()
    run = run_generated(cfg, "mesh", "tilefab.verif.tb_noc", testcase="soak", seed=seed,
                        params={"packets": packets, "batch": 20000, "multicast": 0.25,
                                "bad": 0.01, "src_stall": 0.3, "sink_stall": 0.3,
                                "seed": seed, "check": False})
    counts = json.loads((run / "result.json").read_text())
    return {"mesh": f"{cols}x{rows}", "router": router, "seconds": time.monotonic() - t0,
            **counts}


def run_soak(packets: int, *, seed: int, routers=ROUTERS, jobs: int = 2) -> int:
    """At least ``packets`` random packets in all, an equal share through every soak
    mesh on every router; 1 if any packet was lost, duplicated, reordered or
    misdelivered."""
    runs = [(c, r, kind) for c, r in SOAK_SHAPES for kind in routers]
    share = -(-packets // len(runs))
    print(f"soak: {share * len(runs)} packets, {share} per mesh and router, 25 % multicast "
          f"to random rectangles, 1 % unroutable, backpressure 0.3 on every source and sink")
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_soak_one, c, r, kind, share, seed + i)
                   for i, (c, r, kind) in enumerate(runs)]
        results = [f.result() for f in futures]
    head = (f"{'mesh':>5} {'router':>6} {'packets':>9} {'multicast':>9} {'unroutable':>10} "
            f"{'copies':>10} {'cycles':>8} {'lost':>5} {'dup':>4} {'reord':>5} "
            f"{'misdel':>6} {'proto':>5} {'drops':>5} {'s':>6}")
    print(head)
    for r in results:
        print(f"{r['mesh']:>5} {r['router']:>6} {r['packets']:9} {r['multicast']:9} "
              f"{r['unroutable']:10} {r['delivered']:10} {r['cycles']:8} {r['lost']:5} "
              f"{r['duplicated']:4} {r['reordered']:5} {r['misdelivered']:6} "
              f"{r['protocol_errors']:5} {r['drop_mismatches']:5} {r['seconds']:6.0f}")
    total = {k: sum(r[k] for r in results) for k in ("packets", "multicast", "delivered",
                                                      *SOAK_FAULTS)}
    print(f"total: {total['packets']} packets ({total['multicast']} multicast), "
          f"{total['delivered']} copies delivered; lost {total['lost']}, duplicated "
          f"{total['duplicated']}, reordered {total['reordered']}, misdelivered "
          f"{total['misdelivered']}, stream-rule errors {total['protocol_errors']}, "
          f"drop-count mismatches {total['drop_mismatches']}")
    return 1 if any(total[k] for k in SOAK_FAULTS) else 0
