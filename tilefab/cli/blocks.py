"""``tilefab bench blocks``: every block's reference resources and Fmax
(``tilefab.bench.blocks``)."""

from __future__ import annotations

from .args import integer


def _bench(args) -> int:
    from ..bench.blocks import bench

    return bench(args)


def register(commands, bench):
    b = bench.add_parser("blocks", help="resources and Fmax (ECP5-85F) of every block's "
                                        "reference configuration")
    b.add_argument("--seeds", type=integer("--seeds", 1, 20), default=1,
                   help="nextpnr seeds per block; Fmax is their median (default 1)")
    b.add_argument("--only", type=lambda s: [w for w in s.split(",") if w], default=None,
                   help="comma-separated parts of block names to run (e.g. router,gemm)")
    b.set_defaults(func=_bench)
