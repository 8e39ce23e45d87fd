"""``tilefab formal router``: SymbiYosys proofs of the mesh routers on a one-router harness."""

from __future__ import annotations

from ..verif import formal
from ..verif.formal_mutants import MUTANTS, run_mutant


def register(commands, bench_):
    p = commands.add_parser("formal", help="prove properties of a block with SymbiYosys")
    blocks = p.add_subparsers(dest="block", required=True, metavar="BLOCK")
    r = blocks.add_parser("router", help="no loss or duplication, XY port, stream rule, "
                                         "one-hot grants, bounded wait, for every router kind")
    r.add_argument("--router", choices=[k.name for k in formal.router_kinds()],
                   help="only this router kind (default: all)")
    r.add_argument("--property", choices=formal.PROPERTIES, help="only this property")
    r.add_argument("--mutants", action="store_true",
                   help="also check that each broken router fails its property")
    r.set_defaults(func=formal_router)


def _row(prop, router, status, seconds, note=""):
    print(f"{prop:10s} {router:26s} {status:7s} {seconds:7.1f}  {note}".rstrip())


def formal_router(args) -> int:
    formal.tools()                      # a missing tool: TilefabError, exit 2
    failed = 0
    print(f"{'property':10s} {'router':26s} {'result':7s} {'time s':>7s}")
    for kind in formal.router_kinds():
        if args.router and kind.name != args.router:
            continue
        for prop in formal.PROPERTIES:
            if args.property and prop != args.property:
                continue
            res = formal.run(formal.Harness(kind, prop))
            ok = res.status == "PASS"
            failed += not ok
            note = f"{res.mode} depth {res.depth}"
            if not ok:
                note += f" ({res.status}, see {res.trace or res.workdir})"
            _row(prop, kind.name, "PASS" if ok else "FAIL", res.seconds, note)
    if args.mutants:
        for mutant in MUTANTS:
            if (args.router and mutant.kind.name != args.router
                    or args.property and mutant.prop != args.property):
                continue
            res = run_mutant(mutant)
            caught = res.status == "FAIL" and res.trace is not None
            failed += not caught
            note = (f"mutant, FAIL expected: counterexample {res.trace}" if caught
                    else "mutant NOT caught: the property is too weak")
            _row(mutant.prop, f"{mutant.kind.name}:{mutant.name}",
                 "FAIL" if res.status == "FAIL" else res.status, res.seconds, note)
    return 1 if failed else 0
