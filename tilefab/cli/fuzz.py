"""``tilefab bench fuzz``: hostile inputs to every command, counted by outcome."""

from __future__ import annotations

from ..bench.fuzz import ELABORATE, TIMEOUT, bench
from .args import integer, seed


def register(commands, bench_):
    p = bench_.add_parser("fuzz", help="hostile and careless inputs to every command: counts "
                                       "of ok, clean error, traceback, memory kill, vacuous "
                                       "pass and timeout")
    p.add_argument("--cases", type=integer("--cases", 1, 10_000_000), default=10_000)
    p.add_argument("--seed", type=seed, default=1)
    p.add_argument("--timeout", type=integer("--timeout", 1, 3600), default=int(TIMEOUT),
                   help="seconds per case")
    p.add_argument("--show", type=integer("--show", 0, 10_000), default=10,
                   help="print this many of the failing cases")
    p.add_argument("--elaborate", type=integer("--elaborate", 0, 100_000), default=ELABORATE,
                   help="valid configs whose RTL is generated (the rest are loaded only)")
    p.set_defaults(func=bench)
