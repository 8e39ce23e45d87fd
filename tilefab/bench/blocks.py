"""``tilefab bench blocks``: resources and Fmax of every block's reference configuration.

Each block is synthesized alone (yosys ``synth_ecp5``: LUT4, FF, DP16KD, MULT18X18D)
and placed and routed on the ECP5-85F (nextpnr-ecp5, speed 6) inside
``gen.pnr.FmaxHarness`` (its ports between registers, so the package's pins do not
limit it); Fmax is the median over ``--seeds`` seeds. Blocks: the NoC router
(``REFERENCE_ROUTER``) and, as a 1x1 fabric each (the tile with its router and the
host port), one tile of every kind with the parameters of the example fabric named
beside it, and the UART host bridge.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..gen import pnr
from ..gen.config import as_config, load
from ..gen.emit import to_verilog
from ..gen.errors import TilefabError
from ..gen.generate import build_top, layout_for
from ..gen.synth import synthesize

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# (name, example fabric, the kind of its tile to take)
TILES = (
    ("memory tile", "hetero3x3.yaml", "memory"),
    ("gemm tile", "gemm2x2.yaml", "gemm"),
    ("gemm 2:4 tile", "gemm2x2_sparse24.yaml", "gemm"),
    ("crossbar 8x8 tile", "hetero3x3.yaml", "crossbar"),
    ("crossbar 16x16 tile", "mlp2x2.yaml", "crossbar"),
    ("pbit lanes tile", "hetero3x3.yaml", "pbit"),
    ("pbit parallel tile", "pbit1x1.yaml", "pbit"),
    ("spmv tile", "spmv2x2.yaml", "spmv"),
)
REFERENCE_ROUTER = {"coord_bits": 2, "addr_bits": 12, "data_bits": 64, "fifo_depth": 2}


def one_tile(example: str, kind: str) -> dict:
    """A 1x1 fabric holding the first ``kind`` tile of ``example`` (its packet too)."""
    cfg = load(EXAMPLES / example)
    tile = next((t for t in cfg["tile_map"] if t["kind"] == kind), None)
    if tile is None:
        raise TilefabError(f"{example}: no {kind} tile")
    params = {k: v for k, v in tile.items() if k not in ("x", "y")}
    return as_config({"name": f"ref_{cfg['name']}_{kind}", "mesh": {"cols": 1, "rows": 1},
                      "packet": dict(cfg["packet"]), "tiles": {"default": params}})


def _router():
    from ..hw.noc.packet import packet_layout
    from ..hw.noc.router import Router

    r = REFERENCE_ROUTER
    layout = packet_layout(coord_bits=r["coord_bits"], addr_bits=r["addr_bits"],
                           data_bits=r["data_bits"])
    return lambda: Router(layout=layout, x=1, y=1, cols=3, rows=3, host=(0, 0, "west"),
                          fifo_depth=r["fifo_depth"])


def _bridge():
    from ..hw.bridge import UartBridge

    layout = layout_for(load(EXAMPLES / "hetero3x3.yaml"))
    return lambda: UartBridge(layout=layout, clk_hz=25_000_000)


def blocks() -> list:
    """(name, top name, make the component) of every reference block."""
    out = [("noc router (fifo)", "ref_router_fifo", _router())]
    for name, example, kind in TILES:
        cfg = one_tile(example, kind)
        out.append((name, cfg["name"], lambda cfg=cfg: build_top(cfg)))
    out.append(("uart bridge", "ref_uart_bridge", _bridge()))
    return out


def measure(name: str, top: str, make, seeds: int = 1) -> dict:
    res = synthesize(to_verilog(make(), top), top, "ecp5")
    harness = to_verilog(pnr.FmaxHarness(make()), f"{top}_h")
    runs = [pnr.fmax(harness, f"{top}_h", "ecp5", seed=s).fmax_mhz for s in range(1, seeds + 1)]
    return {"block": name, "lut": res.lut, "ff": res.ff, "ram": res.ram, "dsp": res.dsp,
            "fmax_mhz": statistics.median(runs), "seeds": seeds}


def bench(args) -> int:
    wanted = [b for b in blocks() if not args.only or any(w in b[0] for w in args.only)]
    if not wanted:
        raise TilefabError(f"--only {','.join(args.only)}: matches no block; blocks: "
                           f"{', '.join(b[0] for b in blocks())}")
    print(f"reference blocks on ECP5-85F (yosys synth_ecp5 of the block; nextpnr-ecp5 "
          f"Fmax, median of {args.seeds} seed(s), in a register harness)")
    print(f"{'block':22s} {'LUT4':>7s} {'FF':>7s} {'DP16KD':>7s} {'MULT18':>7s} "
          f"{'Fmax MHz':>9s}")
    rows = []
    for name, top, make in wanted:
        r = measure(name, top, make, args.seeds)
        rows.append(r)
        print(f"{name:22s} {r['lut']:7d} {r['ff']:7d} {r['ram']:7d} {r['dsp']:7d} "
              f"{r['fmax_mhz']:9.1f}", flush=True)
    return 0


__all__ = ["REFERENCE_ROUTER", "TILES", "bench", "blocks", "measure", "one_tile"]
