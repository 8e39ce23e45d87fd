"""GEMM commands: ``tilefab sim CONFIG gemm`` and ``tilefab bench gemm``."""

from __future__ import annotations

import time

import numpy as np

from ..bench.gemm import register_bench
from ..gen.config import load
from ..gen.errors import TilefabError
from ..golden import nm
from ..golden.gemm import gemm_exact
from ..verif.runtime import Fabric
from ..verif.stimulus import random_operands


def default_k(args, max_k: int) -> int:
    """``--k``, or 64 capped at the GEMM tiles' ``max_k``."""
    return args.k if args.k is not None else min(64, max_k)


def _dims(args, max_k: int):
    k = default_k(args, max_k)
    for name, v in (("m", args.m), ("k", k), ("n", args.n)):
        if v < 1:
            raise TilefabError(f"--{name}: {v} is not allowed, must be >= 1")
    return args.m, k, args.n


def sim_gemm(args) -> int:
    cfg = load(args.config)
    tiles = [t for t in cfg["tile_map"] if t["kind"] == "gemm"]
    if not tiles:
        raise TilefabError(f"{args.config}: no gemm tiles (set tiles.default.kind: gemm)")
    max_k = min(t["max_k"] for t in tiles)
    m, k, n = _dims(args, max_k)
    if k > max_k:
        raise TilefabError(f"--k: {k} is not allowed, must be 1..{max_k} (the tiles' max_k, "
                           f"which sizes their accumulators)")
    fabric = Fabric(cfg, seed=args.seed)
    fabric.tiles_of("gemm")
    info = fabric.manifest["gemm"]
    w = info["params"]["op_bits"]
    a, b = random_operands(np.random.default_rng(args.seed), m, k, n, w)
    pattern = nm.parse_sparsity(info["params"].get("sparsity", "dense"))
    if pattern:
        b = nm.prune(b, *pattern)          # the tiles take B with their N:M pattern
    t0 = time.perf_counter()
    run = fabric.gemm(a, b)
    wall = time.perf_counter() - t0
    want = gemm_exact(a, b, w)
    err = int(np.max(np.abs(run.c - want))) if want.size else 0
    pes, lanes = run.pes, run.lanes
    print(f"C = A.B with M={m} K={k} N={n}, int{w} operands, {info['acc_bits']}-bit "
          f"accumulators, on {pes} PEs x {lanes} lanes ({fabric.config['name']})")
    peak = run.sparse_peak_macs_per_cycle       # the dense peak on dense tiles
    print(f"cycles: {run.cycles} (first flit in to last flit out); ideal at "
          f"{peak:g} {'dense-equivalent ' if pattern else ''}MACs/cycle: "
          f"{-(-run.macs // int(peak))}")
    print(f"utilization: {run.utilization:.1%} = {run.macs} MACs / ({pes} PEs x {lanes} lanes "
          f"x {run.cycles} cycles)" + (" against the dense peak" if pattern else ""))
    if pattern:
        print(f"{info['params']['sparsity']} sparse B: {run.sparse_utilization:.1%} of the "
              f"sparse peak ({run.sparse_peak_macs_per_cycle:g} dense-equivalent MACs/cycle)")
    st = run.stall_breakdown()
    print("engine cycles (mean over PEs): " +
          ", ".join(f"{name} {v:.1%}" for name, v in st.items()))
    print(f"host port: {run.flits_in} flits in ({run.flits_in / run.cycles:.2f}/cycle, "
          f"limit 1), {run.flits_out} flits out")
    print(f"simulated in {wall:.1f} s ({fabric.backend.top.cycles / wall:,.0f} Verilator "
          f"cycles/s through pyverilator)")
    print(f"max |C - numpy| = {err}: {'PASS, exact' if err == 0 else 'FAIL'}")
    return 0 if err == 0 else 1


def register(commands, bench):
    register_bench(bench)
