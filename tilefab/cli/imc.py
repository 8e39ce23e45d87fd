"""``tilefab imc mvm``, ``tilefab imc report`` and ``tilefab bench imc``.

``imc mvm`` and ``imc report`` take a fabric YAML with one or more crossbar tiles
(a single crossbar is a 1x1 fabric, see examples/imc/). ``mvm`` runs on the
runtime (``Fabric.mvm``), tiled over every crossbar tile; ``report`` evaluates
the energy model for one tile.
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

import numpy as np

from ..bench.imc import run_bench
from ..gen.config import load, tile_params
from ..gen.errors import TilefabError
from ..gen.imc.energy import FIGURES, energy_per_mvm
from ..gen.imc.tile import golden_params
from ..gen.loader import clip, read_bytes
from ..verif.runtime import Fabric
from .args import check_elements, fraction, integer, tile_xy
from .core import _MEM, MAX_DIM, MAX_VECTORS, _seed_arg

MAX_WEIGHTS_BYTES = 64 << 20


def _describe(p) -> str:
    adc = (f"ADC {p.adc_bits} bit [{p.adc_min:g}, {p.adc_max:g}]" if p.adc_bits
           else "ideal ADC")
    if p.adc_share > 1:
        adc += f" shared by {p.adc_share} columns"
    return (f"{p.rows}x{p.cols}, {p.levels} levels x {p.slices} slice(s) (|w| <= {p.w_max}), "
            f"{p.input_bits}-bit inputs, {adc}, programming noise {p.prog_sigma:g} "
            f"({p.prog_noise}), read noise {p.read_sigma:g} level")


def _weights(path, p, shape=None) -> np.ndarray:
    """An integer matrix from ``.npy`` or text (CSV or whitespace), rows = inputs."""
    path = Path(path)
    data = read_bytes(path, "weights file", MAX_WEIGHTS_BYTES)
    try:
        w = np.load(io.BytesIO(data), allow_pickle=False) if path.suffix == ".npy" else \
            np.loadtxt(io.StringIO(data.decode("utf-8")),
                       delimiter="," if path.suffix == ".csv" else None, ndmin=2)
    except (OSError, ValueError, EOFError, TypeError) as exc:
        raise TilefabError(f"--weights {path}: cannot read an integer matrix "
                           f"({clip(str(exc), 80, text=True)})") from None
    want = shape or (p.rows, p.cols)
    if not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)) \
            or not np.all(np.isfinite(w)):
        raise TilefabError(f"--weights {path}: must hold finite numbers, not {w.dtype}")
    if w.ndim != 2 or w.shape != want:
        raise TilefabError(f"--weights {path}: shape {w.shape} is not allowed, must be "
                           f"{want[0]}x{want[1]} (inputs x outputs)")
    if np.any(np.mod(w, 1)) or np.abs(w).max(initial=0) > p.w_max:
        raise TilefabError(f"--weights {path}: weights must be integers in [-{p.w_max}, "
                           f"{p.w_max}] (levels**slices - 1 with levels {p.levels}, slices "
                           f"{p.slices})")
    return w.astype(np.int64)


def _figure(text: str):
    name, _, value = text.partition("=")
    if name not in FIGURES:
        raise argparse.ArgumentTypeError(f"--figure {clip(text)}: unknown figure, must be one of "
                                         f"{', '.join(sorted(FIGURES))}")
    try:
        v = float(value)
    except ValueError:
        v = -1.0
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"--figure {clip(text)}: the value must be a finite "
                                         f"number >= 0")
    return name, v


def _crossbars(config: dict) -> list:
    tiles = [t for t in config["tile_map"] if t["kind"] == "crossbar"]
    if not tiles:
        raise TilefabError(f"{config['name']}: this fabric has no crossbar tiles")
    return tiles


def _mvm(args) -> int:
    if args.vectors < 1:
        raise TilefabError(f"--vectors: {args.vectors} is not allowed, must be >= 1")
    check_elements("--inputs x --outputs", args.inputs, args.outputs)   # before building
    check_elements("--vectors x --inputs", args.vectors, args.inputs)
    fab = Fabric(args.config, seed=args.seed, in_stall=args.stall_in,
                 out_stall=args.stall_out)
    tiles = fab.tiles_of("crossbar")
    p = tiles[0].params
    k = args.inputs or p.rows
    m = args.outputs or p.cols
    check_elements("--inputs x --outputs", k, m)
    check_elements("--vectors x --inputs", args.vectors, k)
    rng = np.random.default_rng(args.seed)
    if args.weights:
        wt = _weights(args.weights, p, (k, m))
        source = f"weights from {args.weights}"
    else:
        wt = rng.integers(-p.w_max, p.w_max + 1, (k, m))
        source = "random weights"
    lo, hi = golden_params(p).x_range
    xs = rng.integers(lo, hi + 1, (args.vectors, k))
    print(f"{fab.config['name']}: {len(tiles)} crossbar tile(s), {_describe(p)}")
    print(f"seed {args.seed}: W {k} inputs x {m} outputs ({source}), {args.vectors} random "
          f"input vectors")
    r = fab.mvm(wt.T, xs, seed=args.seed)
    if r.golden_ok:
        print(f"RTL = golden: yes, {args.vectors} vectors x {m} outputs bit-exact, "
              f"{r.jobs} block(s) over tiles {' '.join(map(str, r.tiles))}")
    else:
        print(f"RTL = golden: NO, {r.mismatch}")
    ideal = r.ideal
    diff = r.estimate - ideal
    print(f"error vs ideal x @ W: rel rms {100 * r.error:.2f} %, max |err| "
          f"{np.abs(diff).max(initial=0):.3g}, mean {diff.mean():+.3g} "
          f"(ideal rms {np.sqrt(np.mean(ideal ** 2)):.3g})")
    for v in range(min(args.vectors, args.show)):
        print(f"  y[{v}] RTL {r.y[v].tolist()} -> {np.round(r.estimate[v], 2).tolist()}  "
              f"ideal {ideal[v].astype(int).tolist()}")
    limit = len(r.tiles) * golden_params(p).macs_per_cycle
    print(f"cycles: {r.cycles} for programming and {args.vectors} vectors, "
          f"{r.macs / r.cycles:.2f} MACs/cycle; limit {len(r.tiles)} x rows*cols/"
          f"(input_bits*adc_share) = {limit:.2f} MACs/cycle; energy {r.energy_pj:.1f} pJ "
          f"({1e3 * r.energy_pj / r.macs:.2f} fJ/MAC)")
    return 0 if r.golden_ok else 1


def _report(args) -> int:
    config = load(args.config)
    tiles = _crossbars(config)
    if args.tile:
        found = [t for t in tiles if (t["x"], t["y"]) == args.tile]
        if not found:
            raise TilefabError(f"--tile {args.tile}: not a crossbar tile of {config['name']} "
                               f"(they are at {', '.join(str((t['x'], t['y'])) for t in tiles)})")
        tiles = found
    t = tiles[0]
    p = tile_params(t, config["packet"])
    w = _weights(args.weights, p) if args.weights else None
    overrides = dict(args.figure)
    cb = golden_params(p)
    rep = energy_per_mvm(cb, overrides, w)
    print(f"{config['name']}: crossbar tile ({t['x']}, {t['y']}), {_describe(p)}")
    print(f"per MVM: {cb.rows * cb.cols} MACs, {cb.in_bits} input planes x "
          f"{cb.adc_share} phase(s) = {cb.cycles_per_mvm} cycles, {rep.conversions} ADC "
          f"conversions on {rep.adcs} ADCs ({rep.conversions_per_adc} each), "
          f"{rep.mvm_ns:g} ns")
    for line in rep.lines():
        print("  " + line)
    print(f"energy per MAC {rep.per_mac_fj:.2f} fJ, {rep.tops_per_watt:.1f} TOPS/W "
          f"(2 ops/MAC); weights {'from ' + args.weights if w is not None else 'uniform random'}")
    if overrides:
        print("figures overridden: " + ", ".join(f"{k}={v:g}"
                                                 for k, v in sorted(overrides.items())))
    return 0


def _bench(args) -> int:
    return run_bench(args)


def register(commands, bench):
    imc = commands.add_parser("imc", help="in-memory-compute crossbar tiles")
    sub = imc.add_subparsers(dest="imc", required=True, metavar="ACTION")
    mvm = sub.add_parser("mvm", help="run random MVMs on the fabric's crossbar tiles (Verilator)"
                                     " and check them against the golden and the ideal MVM")
    mvm.add_argument("config", help="fabric YAML with crossbar tiles (see examples/imc/)")
    mvm.add_argument("--seed", type=_seed_arg, default=1,
                     help="seeds the weights, the inputs and the device noise")
    mvm.add_argument("--vectors", type=integer("--vectors", 1, MAX_VECTORS, _MEM), default=8, help="input vectors (default 8)")
    mvm.add_argument("--inputs", type=integer("--inputs", 0, MAX_DIM, _MEM), default=0,
                     help="rows of W (default: a tile's rows; more are tiled)")
    mvm.add_argument("--outputs", type=integer("--outputs", 0, MAX_DIM, _MEM), default=0,
                     help="columns of W (default: a tile's cols; more are tiled)")
    mvm.add_argument("--weights", default=None,
                     help="integer W, inputs x outputs, from .npy or CSV/text")
    mvm.add_argument("--stall-in", type=fraction("--stall-in"), default=0.0,
                     help="probability of a host-port input stall each cycle")
    mvm.add_argument("--stall-out", type=fraction("--stall-out"), default=0.0,
                     help="probability of a host-port output stall each cycle")
    mvm.add_argument("--show", type=integer("--show", 0, MAX_VECTORS), default=0, help="print the first N results")
    mvm.set_defaults(func=_mvm)
    rep = sub.add_parser("report", help="energy per MVM and per MAC of a crossbar tile, "
                                        "with its breakdown")
    rep.add_argument("config", help="fabric YAML with crossbar tiles")
    rep.add_argument("--tile", type=tile_xy, default=None,
                     help="X,Y of the crossbar tile (default: the first)")
    rep.add_argument("--weights", default=None,
                     help="integer W, rows x cols, from .npy or CSV/text (default: uniform)")
    rep.add_argument("--figure", type=_figure, action="append", default=[],
                     metavar="NAME=VALUE",
                     help=f"override an energy figure ({', '.join(sorted(FIGURES))})")
    rep.set_defaults(func=_report)

    b = bench.add_parser("imc", help="crossbar: MACs/cycle vs limit, error vs ADC bits and "
                                     "levels, energy per MAC, ECP5 resources")
    b.add_argument("--quick", action="store_true",
                   help="fewer seeds, skip the 64x64 synthesis")
    b.add_argument("--no-synth", action="store_true", help="skip synthesis")
    b.add_argument("--sizes", default="16,32,64",
                   help="array sizes to synthesize (default 16,32,64)")
    b.add_argument("--adc-share", default="1",
                   help="columns per ADC to synthesize each size at, comma-separated "
                        "(default 1; e.g. 1,4)")
    b.add_argument("--plot", default="imc_error_vs_adc_bits.png",
                   help="where to write the error plot")
    b.add_argument("--json", default=None, help="also write the figures as JSON")
    b.set_defaults(func=_bench)
