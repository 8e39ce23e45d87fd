"""Board subcommands: ``build`` (bitstream + report), ``program`` and ``bench board``."""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..boards.build import MAX_SEEDS, build_board
from ..boards.platforms import BOARDS
from ..boards.program import find_bitstream, program
from ..gen.config import load
from ..gen.errors import TilefabError
from ..golden.packet import Op
from ..hw.bridge import DEFAULT_BAUD
from ..verif.runtime import Fabric
from ..verif.session import HostSession
from .args import integer


def _mhz(text: str) -> float:
    try:
        v = float(text) if len(text) < 20 else float("nan")
    except ValueError:
        v = float("nan")
    if not 1 <= v <= 400:
        raise argparse.ArgumentTypeError(f"--freq must be a clock in MHz, 1..400, not {text!r}")
    return v


def _board_arg(p):
    # Checked by boards.platforms.board(), so a bad name exits 2 naming the allowed ones.
    p.add_argument("--board", required=True, metavar="BOARD",
                   help=f"the board: {', '.join(BOARDS)}")


def _build(args) -> int:
    cfg = load(args.config)
    report = build_board(cfg, args.board, freq_mhz=args.freq, seeds=args.seeds,
                         baud=args.baud, out_dir=args.output)
    for line in report.lines():
        print(line)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.met else 1


def _program(args) -> int:
    target = args.target
    if target.endswith((".yaml", ".yml")):
        report = build_board(load(target), args.board, freq_mhz=args.freq)
        bit = find_bitstream(args.board, report.bitstream)
    else:
        bit = find_bitstream(args.board, target)
    loader = program(args.board, bit, flash=args.flash)
    print(f"programmed the {args.board} with {bit} ({loader})")
    return 0


def bench_board(config, *, flits: int = 64, baud: int = DEFAULT_BAUD) -> dict:
    """Payload bytes/s over the simulated UART, each direction, against baud/10.

    Host to board: ``flits`` posted WRITEs to a memory tile and one READ that fences
    them; board to host: ``flits`` READs of it (a few bytes each way, the replies
    carry the payload). Rates are at ``baud``: the model's divisor sets bit time."""
    fab = Fabric(config, backend="board-sim")
    mem = fab.tiles_of("memory")[0]
    depth = mem.values["depth"]
    be = fab.backend
    words = np.random.default_rng(1).integers(0, 1 << 16, flits)
    out = {}
    for name, requests, expect in (
            ("host_to_board", [(Op.WRITE, k % depth, int(w), 0) for k, w in enumerate(words)]
             + [(Op.READ, 0, 0, 0)], (1, 0)),
            ("board_to_host", [(Op.READ, k % depth, 0, 0) for k in range(flits)],
             (flits, 0))):
        session = HostSession.build(fab.fmt, {mem.xy: requests}, {mem.xy: expect})
        bytes_in, bytes_out, c0 = be.payload_in, be.payload_out, be.cycle
        be.run(session, timeout=200_000)
        cycles = be.cycle - c0
        payload = (be.payload_in - bytes_in) if name == "host_to_board" else \
            (be.payload_out - bytes_out)
        rate, limit = be.line_rate(payload, cycles, baud)
        out[name] = {"payload_bytes": payload, "cycles": cycles, "bytes_per_s": rate,
                     "line_rate": limit, "fraction": rate / limit}
        if name == "board_to_host":
            final = {k % depth: int(w) for k, w in enumerate(words)}
            want = [final[k % depth] for k in range(flits)]
            got = session.streams[mem.xy].replies
            if got != want:
                raise TilefabError(f"bench board: read back {got[:4]}..., expected "
                                   f"{want[:4]}...")
    out["divisor"] = be.divisor
    out["flit_bytes"] = be.geometry["flit_bytes"]
    out["max_flits"] = be.geometry["max_flits"]
    return out


def _bench(args) -> int:
    got = bench_board(args.config, flits=args.flits, baud=args.baud)
    print(f"board-sim UART, {got['flit_bytes']}-byte flits, up to {got['max_flits']} per "
          f"frame, simulated at divisor {got['divisor']}; rates at {args.baud:,} baud:")
    for name in ("host_to_board", "board_to_host"):
        r = got[name]
        print(f"  {name.replace('_', ' '):14s} {r['payload_bytes']:6d} payload bytes in "
              f"{r['cycles']:7d} cycles: {r['bytes_per_s']:9,.0f} B/s of the line rate "
              f"{r['line_rate']:,.0f} B/s ({100 * r['fraction']:.1f} %)")
    return 0


def register(commands, bench):
    b = commands.add_parser("build", help="a bitstream for a board, with utilization and "
                                          "Fmax (nextpnr)")
    b.add_argument("config", help="fabric YAML")
    _board_arg(b)
    b.add_argument("-o", "--output", default=None, help="copy the bitstream and "
                   "report.json here")
    b.add_argument("--freq", type=_mhz, default=None,
                   help="fabric clock in MHz (default: the board's oscillator, no PLL)")
    b.add_argument("--seeds", type=integer("--seeds", 1, MAX_SEEDS), default=1,
                   help="nextpnr seeds; Fmax is their median (default 1)")
    b.add_argument("--baud", type=integer("--baud", 1200, 12_000_000), default=DEFAULT_BAUD,
                   help=f"UART baud (default {DEFAULT_BAUD:,})")
    b.add_argument("--json", action="store_true", help="also print the report as JSON")
    b.set_defaults(func=_build)

    p = commands.add_parser("program", help="load a bitstream into a board "
                                            "(openFPGALoader or iceprog)")
    _board_arg(p)
    p.add_argument("target", help="a build folder (tilefab build -o DIR), a bitstream, or a "
                                  "config (built first, cached)")
    p.add_argument("--freq", type=_mhz, default=None, help="with a config: as for build")
    p.add_argument("--flash", action="store_true",
                   help="ULX3S: write the SPI flash instead of SRAM")
    p.set_defaults(func=_program)

    bb = bench.add_parser("board", help="payload bytes/s over the simulated board UART "
                                        "against the line rate")
    bb.add_argument("config", nargs="?", default="examples/board_icebreaker.yaml")
    bb.add_argument("--flits", type=integer("--flits", 1, 4096), default=64)
    bb.add_argument("--baud", type=integer("--baud", 1200, 12_000_000), default=DEFAULT_BAUD)
    bb.set_defaults(func=_bench)
