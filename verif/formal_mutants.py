"""Deliberately broken routers: each must fail one property of ``verif.formal``.

A mutation changes one thing in a router (``Router`` or ``VoqRouter``): ``route``
changes the routing function's answer, ``patch`` appends statements to the
elaborated router that override one of its signals (later assignments win). A
mutant router (``Mutated``) carries one or several mutations, each active only when
its ``select`` input is that mutation's index. A counterexample for every mutant,
from reset and without the lemmas, shows its property is not vacuous.

``run_mutants`` finds them cheaply: the mutants of one router share one router with
all their mutations and one cover run, with a cover per mutant: "selected, and its
property violated" (``Harness``'s ``covers``); each cover reached is that mutant's
counterexample, found as a BMC run of the mutant alone would (``run_mutant``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from amaranth import Cat, Fragment, Module, Mux, Signal

from ..hw.noc.router import DIRECTIONS, E, L, W
from ..hw.noc.router_voq import VoqRouter
from .formal import (
    FIFO,
    VOQ,
    Harness,
    Result,
    RouterKind,
    lookup,
    named_signals,
    run,
)

# --- the mutant router -----------------------------------------------------------------


class Mutated:
    """Mixin over a router: its ``mutations``, the one numbered ``select`` active."""

    mutations: tuple = ()

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.select = Signal(range(len(self.mutations) + 1), name="mutant_select")

    def _route(self, m, flit, out, drop):
        good_out, good_drop = Signal(5), Signal()
        super()._route(m, flit, good_out, good_drop)
        new_out, new_drop = good_out, good_drop
        for i, mutation in enumerate(self.mutations):
            if hasattr(mutation, "route"):
                bad_out, bad_drop = mutation.route(self, flit, good_out, good_drop)
                on = self.select == i
                new_out, new_drop = Mux(on, bad_out, new_out), Mux(on, bad_drop, new_drop)
        m.d.comb += [out.eq(new_out), drop.eq(new_drop)]

    def elaborate(self, platform):
        frag = Fragment.get(super().elaborate(platform), platform)
        signals = named_signals(frag)
        for i, mutation in enumerate(self.mutations):
            if hasattr(mutation, "patch"):
                patch = Module()
                with patch.If(self.select == i):
                    mutation.patch(self, patch, lambda *path: lookup(signals, *path))
                for domain, stmts in Fragment.get(patch, platform).statements.items():
                    frag.add_statements(domain, *stmts)
        return frag


def _transfer(router, o):
    return router.o[o].valid & router.o[o].ready


# --- routing -----------------------------------------------------------------------


class LosesFlits:
    """Drops every local-bound unicast flit whose data is 1, although it is routable."""

    @staticmethod
    def route(router, flit, out, drop):
        lose = out[L] & (flit.data == 1)
        return Cat(out[:L], out[L] & ~lose), drop | lose


class SwapsEastWest:
    """Sends east-bound unicast flits west and west-bound ones east."""

    @staticmethod
    def route(router, flit, out, drop):
        swapped = [out[d] for d in range(5)]
        swapped[E], swapped[W] = out[W], out[E]
        return Cat(*swapped), drop


# --- arbitration -------------------------------------------------------------------------


class ForgetsHeld:
    """Never remembers an offered flit, so arbitration may switch while an output stalls."""

    @staticmethod
    def patch(router, m, sig):
        m.d.sync += [sig(f"held_{DIRECTIONS[o]}").eq(0) for o in range(5)]


class FixedPriority:
    """Never moves the round-robin pointer: the first requester always wins, others starve."""

    @staticmethod
    def patch(router, m, sig):
        m.d.sync += [sig(f"prio_{DIRECTIONS[o]}").eq(0) for o in range(5)]


class GreedyGrant:
    """On a transfer, grants every input that requests the output, not just the winner."""

    @staticmethod
    def patch(router, m, sig):
        for o in range(5):
            name = DIRECTIONS[o]
            m.d.comb += sig(f"grant_{name}").eq(Mux(_transfer(router, o), sig(f"req_{name}"), 0))


class GrantsEmpty:
    """Grants a ready output also to an input with nothing for it: ``fifo``, an input whose
    queue is empty when its stale head points there; ``voq``, any empty queue for it."""

    @staticmethod
    def patch(router, m, sig):
        for o in range(5):
            name = DIRECTIONS[o]
            grant = []
            for k in range(5):
                winner = _transfer(router, o) & (sig(f"sel_{name}") == k)
                if o not in router._place.turns(k):
                    grant.append(winner)
                elif isinstance(router, VoqRouter):
                    empty = ~sig(f"voq_{DIRECTIONS[k]}_{name}", "r_rdy")
                    grant.append(winner | (router.o[o].ready & empty))
                else:
                    fifo = f"fifo_{DIRECTIONS[k]}"
                    stale = ~sig(fifo, "r_rdy") & sig(f"route_{DIRECTIONS[k]}")[o]
                    grant.append(winner | (router.o[o].ready & stale))
            m.d.comb += sig(f"grant_{name}").eq(Cat(grant))


# --- multicast ----------------------------------------------------------------------------


class ForgetsServed:
    """``fifo``: never records which outputs took a multicast head, so an output that
    took it asks for it again while another branch is still pending."""

    @staticmethod
    def patch(router, m, sig):
        m.d.sync += [sig(f"served_{DIRECTIONS[k]}").eq(0) for k in range(5)]


class PopsEarly:
    """``fifo``: pops a head as soon as any output takes it, so the other branches of a
    multicast head are lost."""

    @staticmethod
    def patch(router, m, sig):
        for k in range(5):
            took = Cat(sig(f"grant_{DIRECTIONS[o]}")[k] for o in range(5))
            m.d.comb += sig(f"read_{DIRECTIONS[k]}").eq(took.any())


class WritesBranchesTwice:
    """``voq``: writes each branch queue of a multicast flit as soon as it has room, but
    takes the flit only when all have: a branch with room is written again every
    cycle another is full."""

    @staticmethod
    def patch(router, m, sig):
        for k, o in router.queues:
            where = f"voq_{DIRECTIONS[k]}_{DIRECTIONS[o]}"
            m.d.comb += sig(where, "w_en").eq(
                router.i[k].valid & sig(f"route_{DIRECTIONS[k]}")[o] & sig(where, "w_rdy"))


class AcceptsPartial:
    """``voq``: takes a flit once any of its branch queues has room and writes those that
    have: the branches whose queue is full are lost."""

    @staticmethod
    def patch(router, m, sig):
        for k in range(5):
            name = DIRECTIONS[k]
            route, room = sig(f"route_{name}"), []
            for o in router._place.turns(k):
                where = f"voq_{name}_{DIRECTIONS[o]}"
                room.append(route[o] & sig(where, "w_rdy"))
                m.d.comb += sig(where, "w_en").eq(router.i[k].valid & route[o]
                                                  & sig(where, "w_rdy"))
            m.d.comb += router.i[k].ready.eq(sig(f"drop_{name}") | Cat(room).any())


# --- the list -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: RouterKind
    mutation: type
    prop: str           # the property it must fail

    @property
    def label(self) -> str:
        return f"{self.kind.name}:{self.name}"

    @property
    def cls(self) -> type:
        """The router with this mutation alone."""
        return mutant_class(self.kind, [self])


def mutant_class(kind: RouterKind, mutants) -> type:
    """``kind``'s router with ``mutants``' mutations, mutation ``i`` active when
    ``select == i``."""
    name = "".join(mu.mutation.__name__ for mu in mutants) + kind.cls.__name__
    return type(name, (Mutated, kind.cls),
                {"mutations": tuple(mu.mutation for mu in mutants),
                 "__doc__": " ".join(mu.mutation.__doc__ for mu in mutants)})


def _both(name, mutation, prop):
    return tuple(Mutant(name, kind, mutation, prop) for kind in (FIFO, VOQ))


MUTANTS = (
    *_both("loses-flits", LosesFlits, "integrity"),
    Mutant("pops-early", FIFO, PopsEarly, "integrity"),
    Mutant("accepts-partial", VOQ, AcceptsPartial, "integrity"),
    *_both("swaps-east-west", SwapsEastWest, "route"),
    *_both("forgets-held", ForgetsHeld, "stream"),
    *_both("greedy-grant", GreedyGrant, "grant"),
    *_both("grants-empty", GrantsEmpty, "grant"),
    Mutant("forgets-served", FIFO, ForgetsServed, "multicast"),
    Mutant("writes-branches-twice", VOQ, WritesBranchesTwice, "multicast"),
    *_both("fixed-priority", FixedPriority, "wait"),
)


MUTANT_DEPTH = 8        # steps: every mutant fails within them (fixed-priority, the
                        # deepest, at 6: a flit's first cycle at the head, then 5 waits)


def run_mutant(mutant: Mutant) -> Result:
    """BMC of the mutant's property alone (no lemmas): FAIL with a trace is the expected end."""
    harness = Harness(mutant.kind, mutant.prop, router_cls=mutant.cls, lemmas=False)
    return run(harness, mode="bmc", depth=MUTANT_DEPTH,
               label=f"{mutant.kind.name}-{mutant.name}")


def _cover_name(mutant: Mutant) -> str:
    return "mutant_" + mutant.name.replace("-", "_")


def run_group(kind: RouterKind, mutants) -> list[tuple[Mutant, Result]]:
    """One cover run for ``mutants`` (all of router ``kind``): a mutant is caught (status
    FAIL: its property fails) if its cover is reached, with that cover's trace."""
    mutants = list(mutants)
    props = tuple(dict.fromkeys(mu.prop for mu in mutants))
    covers = [(_cover_name(mu), i, mu.prop) for i, mu in enumerate(mutants)]
    harness = Harness(kind, props, router_cls=mutant_class(kind, mutants), lemmas=False,
                      covers=covers)
    res = run(harness, mode="cover", depth=MUTANT_DEPTH, label=f"{kind.name}-mutants")
    out = []
    for mu in mutants:
        step, trace = res.reached.get(_cover_name(mu), (None, None))
        status = "FAIL" if trace is not None else ("ERROR" if res.status == "ERROR"
                                                   else "PASS")
        out.append((mu, replace(res, prop=mu.prop, router=mu.label, status=status,
                                depth=res.depth if step is None else step,
                                trace_file=trace)))
    return out


def run_mutants(mutants=MUTANTS) -> list[tuple[Mutant, Result]]:
    """Every mutant's result, in ``mutants``' order: one cover run per router."""
    results = {}
    for kind in dict.fromkeys(mu.kind for mu in mutants):
        mine = [mu for mu in mutants if mu.kind == kind]
        results.update((mu.label, res) for mu, res in run_group(kind, mine))
    return [(mu, results[mu.label]) for mu in mutants]
