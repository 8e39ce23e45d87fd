"""``tilefab imc mvm``, ``tilefab imc report`` and ``tilefab bench imc``."""

from __future__ import annotations

import numpy as np

from ..bench.imc import run_bench
from ..gen.errors import TilefabError
from ..gen.imc import config
from ..gen.imc.energy import FIGURES, energy_per_mvm
from ..golden import imc as g
from ..verif.tb_crossbar import run_on_verilator


def _mvm(args) -> int:

    cfg = config.load(args.config)
    p = cfg.params
    if args.vectors < 1:
        raise TilefabError(f"--vectors: must be >= 1, not {args.vectors}")
    if not 0 <= args.stall < 1:
        raise TilefabError(f"--stall: must be in [0, 1), not {args.stall}")
    rng = np.random.default_rng(args.seed)
    w = cfg.weights if cfg.weights is not None else rng.integers(
        -p.w_max, p.w_max + 1, (p.rows, p.cols))
    lo, hi = p.x_range
    xs = rng.integers(lo, hi + 1, (args.vectors, p.rows))
    noise_seed = args.seed & 0xFFFF_FFFF
    print(f"{cfg.name}: {cfg.describe()}")
    print(f"seed {args.seed}: {'config' if cfg.weights is not None else 'random'} weights, "
          f"{args.vectors} random input vectors, noise seed {noise_seed}")
    rec = run_on_verilator(p, [{"noise_seed": noise_seed, "weights": w, "inputs": xs}],
                           stall_in=args.stall, stall_out=args.stall, stim_seed=args.seed)[0]
    rtl = np.array(rec["outputs"], dtype=np.int64)
    model = g.CrossbarModel(p, noise_seed)
    model.program(w)
    gold = model.mvm_batch(xs)
    mismatches = int(np.sum(np.any(rtl != gold, axis=1)))
    if mismatches:
        k = int(np.argmax(np.any(rtl != gold, axis=1)))
        print(f"RTL = golden: NO, {mismatches} of {len(xs)} vectors differ; first, vector "
              f"{k}: RTL {rtl[k].tolist()} golden {gold[k].tolist()}")
    else:
        print(f"RTL = golden: yes, {len(xs)} vectors x {p.cols} outputs bit-exact")
    ideal = g.ideal_mvm(w, xs)
    err = g.error_vs_ideal(model.estimate(rtl), ideal)
    print(f"error vs ideal x @ W: rel rms {100 * err['rel_rms']:.2f} %, rms {err['rms']:.3g}, "
          f"max |err| {err['max_abs']:.3g}, mean {err['mean']:+.3g} "
          f"(ideal rms {np.sqrt(np.mean(ideal ** 2)):.3g})")
    if args.show:
        for k in range(min(len(xs), args.show)):
            print(f"  y[{k}] RTL {rtl[k].tolist()} -> {np.round(model.estimate(rtl[k]), 2).tolist()}"
                  f"  ideal {ideal[k].astype(int).tolist()}")
    xc, yc = rec["cycles"]["x"], rec["cycles"]["y"]
    total = yc[-1] - xc[0] + 1
    limit = p.rows * p.cols / p.in_bits
    line = (f"cycles: {len(xs)} vectors in {total} cycles from first input to last output "
            f"({p.rows * p.cols * len(xs) / total:.2f} MACs/cycle")
    if len(yc) > 1:
        steady = (yc[-1] - yc[0]) / (len(yc) - 1)
        line += (f"; steady state {steady:.2f} cycles/vector = "
                 f"{p.rows * p.cols / steady:.2f} MACs/cycle")
    print(line + f"); limit rows*cols/in_bits = {limit:.2f} MACs/cycle")
    return 1 if mismatches else 0


def _report(args) -> int:

    cfg = config.load(args.config)
    p = cfg.params
    rep = energy_per_mvm(p, cfg.energy, cfg.weights)
    print(f"{cfg.name}: {cfg.describe()}")
    print(f"per MVM: {p.rows * p.cols} MACs, {p.in_bits} input planes, "
          f"{p.in_bits * p.slices * p.cols} ADC conversions")
    for line in rep.lines():
        print("  " + line)
    print(f"energy per MAC {rep.per_mac_fj:.2f} fJ, {rep.tops_per_watt:.1f} TOPS/W "
          f"(2 ops/MAC); weights {'from config' if cfg.weights is not None else 'uniform random'}")
    changed = {k: v for k, v in cfg.energy.items() if FIGURES.get(k) != v}
    if changed:
        print("figures overridden by the config: "
              + ", ".join(f"{k}={v:g}" for k, v in sorted(changed.items())))
    return 0


def _bench(args) -> int:

    return run_bench(args)


def register(commands, bench):
    imc = commands.add_parser("imc", help="in-memory-compute crossbar emulator")
    sub = imc.add_subparsers(dest="imc", required=True, metavar="ACTION")
    mvm = sub.add_parser("mvm", help="run random MVMs on the Verilator model and check them "
                                     "against the golden model and the ideal MVM")
    mvm.add_argument("config", help="crossbar YAML (see examples/imc/)")
    mvm.add_argument("--seed", type=int, default=1,
                     help="seeds the weights, the inputs and the device noise")
    mvm.add_argument("--vectors", type=int, default=8, help="input vectors (default 8)")
    mvm.add_argument("--stall", type=float, default=0.0,
                     help="probability of a stall on each stream each cycle")
    mvm.add_argument("--show", type=int, default=0, help="print the first N results")
    mvm.set_defaults(func=_mvm)
    rep = sub.add_parser("report", help="energy per MVM and per MAC, with its breakdown")
    rep.add_argument("config", help="crossbar YAML")
    rep.set_defaults(func=_report)

    b = bench.add_parser("imc", help="crossbar: MACs/cycle vs limit, error vs ADC bits and "
                                     "levels, energy per MAC, ECP5 resources")
    b.add_argument("--quick", action="store_true",
                   help="fewer seeds, skip the 64x64 synthesis")
    b.add_argument("--no-synth", action="store_true", help="skip synthesis")
    b.add_argument("--sizes", default="16,32,64",
                   help="array sizes to synthesize (default 16,32,64)")
    b.add_argument("--png", default="imc_error_vs_adc_bits.png",
                   help="where to write the error plot")
    b.add_argument("--json", default=None, help="also write the figures as JSON")
    b.set_defaults(func=_bench)

