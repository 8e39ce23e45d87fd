"""``tilefab formal router``: SymbiYosys proofs of the mesh routers on a one-router harness."""

from __future__ import annotations

from ..verif import formal
from ..verif.formal_mutants import MUTANTS, run_mutants


def register(commands, bench_):
    p = commands.add_parser("formal", help="prove properties of a block with SymbiYosys")
    blocks = p.add_subparsers(dest="block", required=True, metavar="BLOCK")
    r = blocks.add_parser("router", help="no loss, duplication or change, XY port (unicast "
                                         "and multicast), stream rule, one-hot grants, "
                                         "bounded wait, no multicast branch twice, for "
                                         "every router kind")
    r.add_argument("--router", choices=[k.name for k in formal.router_kinds()],
                   help="only this router kind (default: all)")
    r.add_argument("--property", choices=formal.PROPERTIES, help="only this property")
    r.add_argument("--together", action="store_true",
                   help="prove a router's properties in one run (faster; one row, "
                        "property 'all' if none is picked)")
    r.add_argument("--mutants", action="store_true",
                   help="also check that each broken router fails its property "
                        "(one cover run per router)")
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
        props = [p for p in formal.PROPERTIES if not args.property or p == args.property]
        for chosen in ([tuple(props)] if args.together else [(p,) for p in props]):
            res = formal.run(formal.Harness(kind, chosen))
            ok = res.status == "PASS"
            failed += not ok
            note = f"{res.mode} depth {res.depth}"
            if not ok:
                note += f" ({res.status}, see {res.trace or res.workdir})"
            name = "all" if chosen == formal.PROPERTIES else "+".join(chosen)
            _row(name, kind.name, "PASS" if ok else "FAIL", res.seconds, note)
    if args.mutants:
        chosen = [m for m in MUTANTS
                  if not (args.router and m.kind.name != args.router
                          or args.property and m.prop != args.property)]
        for mutant, res in run_mutants(chosen):
            caught = res.status == "FAIL" and res.trace is not None
            failed += not caught
            how = (f"the router's cover run, step {res.depth}" if res.mode == "cover"
                   else f"{res.mode} depth {res.depth}")
            note = (f"mutant ({how}), FAIL expected: counterexample {res.trace}" if caught
                    else f"mutant NOT caught ({how}): the property is too weak")
            _row(mutant.prop, mutant.label,
                 "FAIL" if res.status == "FAIL" else res.status, res.seconds, note)
    return 1 if failed else 0
