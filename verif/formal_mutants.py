"""Deliberately broken routers: each must fail one property of ``verif.formal``.

A mutant is a subclass of the router that overrides one method: ``_route`` (the
routing function) or ``elaborate``, which elaborates the real router and then
appends a few statements that override its arbiter (later assignments win). A
proof that every mutant fails shows its property is not vacuous.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Fragment, Signal

from ..hw.noc.router import DIRECTIONS, E, L, Router, W
from .formal import (
    FAIR_READY,
    FIFO,
    Harness,
    Result,
    RouterKind,
    lookup,
    named_signals,
    plan,
    run,
)


class LosesFlits(Router):
    """Drops every local-bound flit whose data is 1, although it is routable."""

    def _route(self, m, flit, out, drop):
        good_out, good_drop = Signal(5), Signal()
        super()._route(m, flit, good_out, good_drop)
        lose = good_out[L] & (flit.data == 1)
        m.d.comb += [out.eq(Cat(good_out[:L], good_out[L] & ~lose)), drop.eq(good_drop | lose)]


class SwapsEastWest(Router):
    """Sends east-bound flits west and west-bound flits east."""

    def _route(self, m, flit, out, drop):
        good = Signal(5)
        super()._route(m, flit, good, drop)
        swapped = [good[d] for d in range(5)]
        swapped[E], swapped[W] = good[W], good[E]
        m.d.comb += out.eq(Cat(*swapped))


class _Patched(Router):
    """Elaborates ``Router`` and hands its signals, by name, to ``patch``."""

    def elaborate(self, platform):
        frag = Fragment.get(super().elaborate(platform), platform)
        signals = named_signals(frag)
        self.patch(frag, lambda kind, d: lookup(signals, f"{kind}_{DIRECTIONS[d]}"))
        return frag


class ForgetsHeld(_Patched):
    """Never remembers an offered flit, so arbitration may switch while an output stalls."""

    def patch(self, frag, sig):
        frag.add_statements("sync", *[sig("held", o).eq(0) for o in range(5)])


class FixedPriority(_Patched):
    """Never moves the round-robin pointer: input N always wins, so others starve."""

    def patch(self, frag, sig):
        frag.add_statements("sync", *[sig("prio", o).eq(0) for o in range(5)])



class GreedyGrant(_Patched):
    """On a transfer, reads every input that requests the output, not just the winner."""

    def patch(self, frag, sig):
        for k in range(5):
            read = 0
            for o in range(5):
                taken = self.o[o].valid & self.o[o].ready
                read = read | (taken & ((sig("sel", o) == k) | sig("req", o)[k]))
            frag.add_statements("comb", sig("read", k).eq(read))


class GrantsEmptyInputs(_Patched):
    """Grants a ready output to an input whose queue is empty when its stale head points there."""

    def patch(self, frag, sig):
        for k in range(5):
            read = 0
            for o in range(5):
                taken = self.o[o].valid & self.o[o].ready
                stale = self.o[o].ready & sig("route", k)[o]
                read = read | (taken & (sig("sel", o) == k)) | stale
            frag.add_statements("comb", sig("read", k).eq(read))


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: RouterKind
    cls: type
    prop: str           # the property it must fail


MUTANTS = (
    Mutant("loses-flits", FIFO, LosesFlits, "integrity"),
    Mutant("swaps-east-west", FIFO, SwapsEastWest, "route"),
    Mutant("forgets-held", FIFO, ForgetsHeld, "stream"),
    Mutant("greedy-grant", FIFO, GreedyGrant, "grant"),
    Mutant("grants-empty-inputs", FIFO, GrantsEmptyInputs, "grant"),
    Mutant("fixed-priority", FIFO, FixedPriority, "wait"),
)


MUTANT_DEPTH = 8        # BMC steps: every mutant above fails well within them


def run_mutant(mutant: Mutant) -> Result:
    """BMC of the mutant's property alone (no lemmas): FAIL with a trace is the expected end."""
    harness = Harness(mutant.kind, mutant.prop, router_cls=mutant.cls, lemmas=False)
    depth = max(MUTANT_DEPTH, plan(mutant.prop, harness.kind.view.wait_bound(harness.router, FAIR_READY))[1])
    return run(harness, mode="bmc", depth=depth, label=mutant.name)
