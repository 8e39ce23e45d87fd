"""Core subcommands: generate, lint, synth, sim and the NoC benchmark."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..bench.noc import run_noc_bench
from ..gen import toolchain
from ..gen.config import load
from ..gen.errors import TilefabError
from ..gen.generate import TOPS, generate
from ..gen.lint import LINT_WAIVERS, lint_file
from ..gen.loader import clip, read_text
from ..gen.names import check_name
from ..gen.synth import synthesize
from ..verif.runner import run_generated
from .args import check_elements, fraction, integer, seed
from .gemm import sim_gemm
from .jobs import JOBS, run_jobs

# Bounds on sizes a run allocates: beyond them a run is refused, not attempted.
MAX_REQUESTS = 1_000_000
MAX_DIM = 4096          # a GEMM/MVM operand side: 4096 x 4096 int64 is 128 MB
MAX_VECTORS = 65_536
MAX_SWEEPS = 1_000_000
MAX_FACTOR = (1 << 32) - 1
MAX_CYCLES = 1_000_000
_MEM = "larger operands would not fit this machine's memory"


def _generate(args) -> int:
    cfg = load(args.config)
    g = generate(cfg, args.top, args.output)
    m = g.manifest
    mesh = cfg["mesh"]
    print(f"{g.module}: {mesh['cols']}x{mesh['rows']} mesh, "
          f"{len(cfg['tile_map'])} tiles, packet {m['packet']['width']} bits, "
          f"hash {m['hash']}{' (cached)' if g.cached else ''}")
    print(f"wrote {g.verilog}")
    print(f"wrote {g.manifest_path}")
    return 0


def _lint(args) -> int:
    target = Path(args.target)
    if target.suffix in (".yaml", ".yml"):
        g = generate(load(target), args.top)
        files = [(g.verilog, g.module)]
    elif target.is_dir():
        module = _manifest_module(target / "manifest.json")
        files = [(f, module) for f in sorted(target.glob("*.v"))]
        if not files:
            raise TilefabError(f"{target}: no .v files to lint (run tilefab generate first)")
    elif target.exists():
        files = [(target, None)]
    else:
        raise TilefabError(f"{target}: no such file or directory")
    failed = 0
    for path, module in files:
        proc = lint_file(path, module)
        if proc.returncode != 0:
            failed += 1
            print(f"{path}: lint FAILED", file=sys.stderr)
            print(proc.stderr, file=sys.stderr)
        else:
            print(f"{path}: lint clean (verilator {toolchain.verilator_version()} -Wall, "
                  f"waived: {', '.join(LINT_WAIVERS)})")
    return 1 if failed else 0


def _manifest_module(manifest: Path):
    """The top module a manifest names, None without one; a broken one is an error."""
    if not manifest.exists():
        return None
    try:
        module = json.loads(read_text(manifest, "manifest"))["module"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TilefabError(f"{manifest}: not a tilefab manifest ({clip(str(exc), 80, text=True)}"
                           f"); run tilefab generate again") from None
    why = check_name(module)
    if why:
        raise TilefabError(f"{manifest}: module {clip(module)} {why}")
    return module


def _synth(args) -> int:
    cfg = load(args.config)
    g = generate(cfg, args.top)
    res = synthesize(g.text(), g.module, args.family)
    print(f"{g.module} ({cfg['mesh']['cols']}x{cfg['mesh']['rows']}, top {args.top}) "
          f"{res.line()}")
    if args.json:
        print(json.dumps(res.as_dict(), indent=2))
    return 0


def _sim(args) -> int:
    if args.factor is not None and args.factor < 4:
        raise TilefabError(f"--factor: {args.factor} is not allowed, must be >= 4")
    k = args.k or 64
    check_elements("--m x --k", args.m, k)
    check_elements("--k x --n", k, args.n)
    check_elements("--m x --n", args.m, args.n)
    check_elements("--mvm-rows x --mvm-cols", args.mvm_rows, args.mvm_cols)
    check_elements("--vectors x --mvm-cols", args.vectors, args.mvm_cols)
    cfg = load(args.config)
    memory_only = all(t["kind"] == "memory" for t in cfg["tile_map"])
    workload = args.workload or ("memory" if memory_only else "all")
    if workload == "gemm" and args.stall_in == args.stall_out == 0:
        return sim_gemm(args)
    if workload != "memory" or not memory_only:
        args.workload = workload
        return run_jobs(args)
    print(f"simulating {cfg['name']}: {cfg['mesh']['cols']}x{cfg['mesh']['rows']} memory "
          f"tiles on Verilator, {args.requests} host requests (seed {args.seed})")
    try:
        run = run_generated(cfg, "fabric", "tilefab.verif.tb_fabric", testcase="memory",
                            params={"requests": args.requests, "seed": args.seed,
                                    "bad": args.bad}, seed=args.seed)
    except AssertionError as exc:
        raise TilefabError(f"simulation does not match the golden model: {exc}") from None
    r = json.loads((run / "result.json").read_text())
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["requests_by_kind"].items()))
    print(f"requests: {kinds}")
    print(f"replies checked against the golden memory-tile model: {r['replies_checked']} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(r['replies_by_op'].items()))})")
    print(f"unroutable packets dropped and counted: {r['dropped_at_host_router']}")
    print(f"cycles: {r['cycles']}  (log: {run / 'sim.log'})")
    if not r["replies_checked"]:
        print("FAIL: no reply was checked, so nothing was verified", file=sys.stderr)
        return 1
    print("PASS: RTL matches the golden model")
    return 0


_seed_arg = seed          # the name the other CLI modules import


def _mesh_arg(text: str):
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise TilefabError(f"--mesh: {text!r} is not allowed, must be COLSxROWS, e.g. 4x4") \
            from None
    if not (1 <= cols <= 16 and 1 <= rows <= 16):
        raise TilefabError(f"--mesh: {text!r} is not allowed, cols and rows must be 1..16")
    return cols, rows


def _bench_noc(args) -> int:
    cols, rows = _mesh_arg(args.mesh)
    args.router_given = args.router is not None
    args.router = args.router or "fifo"
    return run_noc_bench(cols, rows, pattern=args.pattern, points=args.points,
                         warmup=args.warmup, measure=args.measure, seed=args.seed,
                         router=args.router, depth=args.depth, plot=args.plot,
                         resources=args.resources, soak=args.soak,
                         soak_routers=[args.router] if args.router_given else None,
                         jobs=args.jobs)


def register(commands, bench):
    p = commands.add_parser("generate", help="write a config's Verilog and manifest.json")
    p.add_argument("config", help="fabric YAML")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--top", choices=TOPS, default="fabric",
                   help="fabric (tiles + NoC + host port) or mesh (NoC alone)")
    p.set_defaults(func=_generate)

    p = commands.add_parser("lint", help="Verilator lint of generated Verilog")
    p.add_argument("target", help="an output directory of tilefab generate, a .v file, "
                                  "or a config YAML")
    p.add_argument("--top", choices=TOPS, default="fabric")
    p.set_defaults(func=_lint)

    p = commands.add_parser("synth", help="synthesize with yosys and print LUT/FF/RAM/DSP")
    p.add_argument("config", help="fabric YAML")
    p.add_argument("--family", choices=("ecp5", "ice40"), default="ecp5")
    p.add_argument("--top", choices=TOPS, default="fabric")
    p.add_argument("--json", action="store_true", help="also print the cell counts as JSON")
    p.set_defaults(func=_synth)

    p = commands.add_parser("sim", help="simulate a fabric on Verilator against the golden model")
    p.add_argument("config", help="fabric YAML")
    p.add_argument("workload", nargs="?", default=None, choices=("all", *JOBS),
                   help="all (the default unless every tile is memory): one job of every "
                        "kind; memory: random host reads/writes/malformed requests; gemm: "
                        "C = A.B on the GEMM tiles vs numpy; mvm: W.x tiled over the crossbar "
                        "tiles; anneal, maxcut, factor: on the p-bit tile vs the golden model")
    p.add_argument("--requests", type=integer("--requests", 1, MAX_REQUESTS), default=2000, help="memory: requests to send")
    p.add_argument("--bad", type=fraction("--bad"), default=0.05,
                   help="memory: fraction of malformed requests")
    p.add_argument("--m", type=integer("--m", 1, MAX_DIM, _MEM), default=64, help="gemm: rows of A and C")
    p.add_argument("--k", type=integer("--k", 1, MAX_DIM, _MEM), default=None,
                   help="gemm: columns of A, rows of B (default 64, or the tiles' max_k if less)")
    p.add_argument("--n", type=integer("--n", 1, MAX_DIM, _MEM), default=64, help="gemm: columns of B and C")
    p.add_argument("--vectors", type=integer("--vectors", 1, MAX_VECTORS, _MEM), default=4, help="mvm: input vectors")
    p.add_argument("--mvm-rows", type=integer("--mvm-rows", 0, MAX_DIM, _MEM), default=0, help="mvm: rows of W (default 2*cols-3)")
    p.add_argument("--mvm-cols", type=integer("--mvm-cols", 0, MAX_DIM, _MEM), default=0, help="mvm: columns of W")
    p.add_argument("--sweeps", type=integer("--sweeps", 1, MAX_SWEEPS), default=200, help="anneal/maxcut/factor: sweeps")
    p.add_argument("--graph", default=None, help="maxcut: a rudy (G-set) graph file")
    p.add_argument("--factor", type=integer("--factor", 4, MAX_FACTOR), default=None,
                   help="factor: the semiprime (default 143, or 35 or 15 when 143's "
                        "multiplier does not fit the p-bit tile)")
    p.add_argument("--stall-in", type=fraction("--stall-in"), default=0.0,
                   help="probability the host pauses its sends in a cycle")
    p.add_argument("--stall-out", type=fraction("--stall-out"), default=0.0,
                   help="probability the host refuses output in a cycle")
    p.add_argument("--seed", type=seed, default=1)
    p.set_defaults(func=_sim)

    p = bench.add_parser("noc", help="throughput and latency versus injection rate")
    p.add_argument("--mesh", default="4x4", help="COLSxROWS (default 4x4)")
    p.add_argument("--pattern", choices=("uniform", "hotspot"), default="uniform")
    p.add_argument("--points", type=integer("--points", 1, 1000), default=10, help="injection rates in the sweep")
    p.add_argument("--warmup", type=integer("--warmup", 0, MAX_CYCLES), default=300, help="cycles before measuring")
    p.add_argument("--measure", type=integer("--measure", 1, MAX_CYCLES), default=1000, help="cycles measured per rate")
    p.add_argument("--router", choices=("fifo", "voq"), default=None,
                   help="fifo: one FIFO per input; voq: virtual output queues (default fifo)")
    p.add_argument("--depth", "--fifo-depth", dest="depth", type=integer("--depth", 1, 64),
                   default=None, help="the router's queue depth: input FIFO entries (fifo, "
                                      "default 2) or entries per virtual output queue (voq, "
                                      "default 4)")
    p.add_argument("--seed", type=seed, default=1)
    p.add_argument("--plot", default=None,
                   help="PNG path: sweep both routers (the other at its default depth) and "
                        "plot latency versus accepted load with the bound")
    p.add_argument("--resources", action="store_true",
                   help="instead of the sweep, synthesize one interior router of each kind "
                        "(ECP5, iCE40) and print LUT/FF")
    p.add_argument("--soak", type=integer("--soak", 1, 10 ** 8), default=0, metavar="N",
                   help="instead of the sweep, push N random packets in all (unicast, "
                        "multicast, unroutable), an equal share through each of the 4x4, "
                        "5x3 and 8x8 meshes on both routers (or the one --router names), "
                        "and print the counts lost, duplicated and reordered")
    p.add_argument("--jobs", type=integer("--jobs", 1, 64), default=2,
                   help="soak: simulations run in parallel (default 2)")
    p.set_defaults(func=_bench_noc)
