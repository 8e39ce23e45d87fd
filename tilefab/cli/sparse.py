"""``tilefab bench sparse``: the sparse units' figures against their limits.

The bench runs in sections (``tilefab.bench.sparse.SECTIONS``; today ``gather``),
all by default, or those named by ``--sections``.
"""

from __future__ import annotations

from ..bench.sparse import SECTIONS, parse_configs, run_bench
from .core import _seed_arg


def _bench(args) -> int:
    args.configs = parse_configs(args.configs) if args.configs else None
    return run_bench(args)


def register(commands, bench):
    b = bench.add_parser("sparse", help="sparse units: gather accesses per lane per cycle vs "
                                        "lanes, banks, window and index pattern (Verilator)")
    b.add_argument("--quick", action="store_true",
                   help="two gather units (8 lanes, 16 banks, window 4 and in order), 512 "
                        "indices per lane")
    b.add_argument("--sections", default=None,
                   help=f"comma-separated sections to run (default all: {', '.join(SECTIONS)})")
    b.add_argument("--configs", default=None, metavar="LxBxW[xP],...",
                   help="gather units to measure, lanes x banks x window [x ports, default "
                        "2] (default: a sweep)")
    b.add_argument("--n", type=int, default=0, help="indices per lane (default 2048, quick 512)")
    b.add_argument("--seed", type=_seed_arg, default=1, help="seeds the index patterns")
    b.add_argument("--plot", default="build/sparse_bench.png", help="where to write the PNG")
    b.add_argument("--json", default=None, help="also write the figures as JSON")
    b.set_defaults(func=_bench)
