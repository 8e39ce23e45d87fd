"""``tilefab sim CONFIG [all|mvm|anneal|maxcut|factor]``: jobs on the runtime, one table.

Each job runs on the Verilator model through ``tilefab.Fabric`` and is checked
against its golden model; the table gives the tile(s), the job, its cycles and
the verdict. ``all`` runs one job of every kind the fabric holds.
"""

from __future__ import annotations

import numpy as np

from ..gen.config import load
from ..gen.errors import TilefabError
from ..gen.pbit import factor
from ..golden.packet import Op
from ..verif.runtime import Fabric
from ..verif.stimulus import random_operands
from .gemm import default_k

JOBS = ("memory", "gemm", "mvm", "anneal", "maxcut", "factor")


def _tiles(run_tiles) -> str:
    return " ".join(f"({x},{y})" for x, y in run_tiles)


def memory_job(fab: Fabric, rng, requests: int):
    """Random WRITEs then READs of every written word, one session per memory tile."""
    rows = []
    bits = fab.config["packet"]["data_bits"]
    for t in fab.tiles_of("memory"):
        depth = t.geometry["depth"]
        want = {}
        for _ in range(max(1, requests // 2)):
            addr = int(rng.integers(depth))
            want[addr] = int.from_bytes(rng.bytes((bits + 7) // 8), "little") & ((1 << bits) - 1)
        reqs = [(Op.WRITE, a, v) for a, v in want.items()] + [(Op.READ, a, 0) for a in want]
        got = fab.transact(t.x, t.y, reqs, replies=len(want))
        bad = [a for a, (op, addr, data) in zip(want, got)
               if (op, addr, data) != (Op.REPLY, a, want[a])]
        rows.append((_tiles([t.xy]), f"memory: {len(want)} words written and read back",
                     None, "PASS (RTL = golden)" if not bad else f"FAIL at addr {bad[0]}"))
    return rows


def run_jobs(args) -> int:
    cfg = load(args.config)
    kinds = {t["kind"] for t in cfg["tile_map"]}
    wanted = args.workload
    if wanted == "all":
        wanted = [j for j, k in (("memory", "memory"), ("gemm", "gemm"), ("mvm", "crossbar"),
                                 ("anneal", "pbit"), ("factor", "pbit")) if k in kinds]
    else:
        wanted = [wanted]
    for opt, job, value in (("--factor", "factor", getattr(args, "factor", None)),
                            ("--graph", "maxcut", getattr(args, "graph", None))):
        if value is not None and job not in wanted:
            raise TilefabError(f"{opt}: given, but no {job} job runs on {cfg['name']} "
                               f"({', '.join(sorted(kinds))} tiles, jobs: "
                               f"{', '.join(wanted) or 'none'}), so it would be ignored")
    # built only once the arguments are known to be honoured: the build takes seconds
    fab = Fabric(cfg, seed=args.seed, in_stall=args.stall_in, out_stall=args.stall_out)
    rng = np.random.default_rng(args.seed)
    rows = []
    for job in wanted:
        if job == "memory":
            rows += memory_job(fab, rng, min(args.requests, 512))
        elif job == "gemm":
            t = fab.tiles_of("gemm")[0]
            k = default_k(args, min(g.values["max_k"] for g in fab.tiles_of("gemm")))
            a, b = random_operands(rng, args.m, k, args.n, t.values["op_bits"])
            r = fab.gemm(a, b)
            rows.append((f"{r.pes} gemm", f"gemm {args.m}x{k}x{args.n}, utilization "
                         f"{r.utilization:.1%}", r.cycles, _verdict(r, "numpy")))
        elif job == "mvm":
            p = fab.tiles_of("crossbar")[0].params
            m, k = args.mvm_rows or 2 * p.cols - 3, args.mvm_cols or p.rows + 5
            w = rng.normal(size=(m, k))
            x = rng.normal(size=(args.vectors, k))
            r = fab.mvm(w, x, seed=args.seed)
            rows.append((_tiles(r.tiles), f"mvm {m}x{k} x {args.vectors} vectors, {r.jobs} "
                         f"blocks, error vs ideal {r.error:.1%}, {r.energy_pj:.1f} pJ",
                         r.cycles, _verdict(r, "golden")))
        elif job == "anneal":
            n = min(fab.tiles_of("pbit")[0].params.config()["n"], 24)
            j = rng.integers(-3, 4, (n, n)) * (rng.random((n, n)) < 4 / n)
            j = np.triu(j, 1)
            j = j + j.T
            r = fab.anneal(j, rng.integers(-3, 4, n), sweeps=args.sweeps, seed=args.seed)
            rows.append((_tiles([r.tile]), f"anneal {n} p-bits x {r.sweeps} sweeps, best E "
                         f"{r.best_energy}, {r.flips_per_cycle:.2f} flips/cycle", r.cycles,
                         _verdict(r, "golden")))
        elif job == "maxcut":
            if not args.graph:
                raise TilefabError("sim maxcut: --graph FILE (a rudy/G-set file) is required")
            r = fab.maxcut(args.graph, sweeps=args.sweeps, seed=args.seed)
            rows.append((_tiles([r.tile]), f"maxcut {args.graph}: cut {r.cut}, "
                         f"{r.flips_per_cycle:.2f} flips/cycle", r.cycles,
                         _verdict(r, "golden")))
        elif job == "factor":
            r = fab.factor(args.factor or default_semiprime(fab), sweeps=args.sweeps,
                           seed=args.seed)
            found = f"{r.a} x {r.b}" if r.a else "not found"
            rows.append((_tiles([r.tile]), f"factor {r.N} = {found} ({r.runs} runs)",
                         r.cycles, _verdict(r, "golden") if r.a or r.mismatch else "FAIL"))
    if not rows:
        raise TilefabError(f"sim {args.workload}: {fab.config['name']} has no tile that runs "
                           f"this job ({', '.join(sorted(kinds))}), so nothing would be checked")
    print(f"{fab.config['name']}: {len(fab.tiles)} tiles "
          f"({', '.join(sorted(kinds))}) on Verilator, seed {args.seed}")
    print(f"{'tile':<14} {'job':<72} {'cycles':>8}  check")
    for tile, job, cycles, verdict in rows:
        print(f"{tile:<14} {job:<72} {'' if cycles is None else cycles:>8}  {verdict}")
    return 0 if all(v.startswith("PASS") for *_, v in rows) else 1


def default_semiprime(fab: Fabric) -> int:
    """143, or the first of 35 and 15 whose multiplier fits the first p-bit tile."""
    n = fab.tiles_of("pbit")[0].params.config()["n"]
    for N in (143, 35, 15):
        prog, _ = factor.factor_program(N, *factor.factor_widths(N), n_colours=256)
        if len(prog.h) <= n:
            return N
    return 143        # too small for any: the runtime names the limit


def _verdict(run, what: str) -> str:
    return f"PASS (RTL = {what})" if run.golden_ok else f"FAIL: {run.mismatch}"
