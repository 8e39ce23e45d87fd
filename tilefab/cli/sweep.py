"""``tilefab sweep SPEC.yaml``: a design-space sweep (``tilefab.sweep``)."""

from __future__ import annotations

from .args import integer


def _sweep(args) -> int:
    from ..sweep import main

    main(args.spec, args.out, engine=args.engine, address=args.address,
         workers=args.workers, progress=not args.quiet)
    return 0


def register(commands, bench):
    p = commands.add_parser("sweep", help="a grid over config fields: metrics per point "
                                          "(cached), a CSV and a Pareto plot")
    p.add_argument("spec", help="sweep spec YAML (see examples/sweeps/)")
    p.add_argument("-o", "--out", default=None,
                   help="output folder (default build/sweep/NAME)")
    p.add_argument("--engine", default="local", choices=("local", "dask", "ray"),
                   help="where the points run: a local process pool (default), a Dask "
                        "distributed scheduler or a Ray cluster")
    p.add_argument("--address", default=None,
                   help="scheduler address for dask or ray (default: a local cluster)")
    p.add_argument("--workers", type=integer("--workers", 1, 64), default=2,
                   help="local processes or local-cluster workers (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)
