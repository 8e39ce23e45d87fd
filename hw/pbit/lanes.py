"""``PBitLanes``: a p-bit array for high-degree graphs, J in block RAM, fields
accumulated one edge per cycle per lane through a pipelined update engine.

Contract
--------
``lanes`` (a power of two) update engines share the work: p-bit i belongs to lane
i mod lanes, at slot i div lanes. Each lane owns three memories:
  * an edge memory (``edge_depth`` entries {nbr, J, last}): the neighbour lists of its
    p-bits, one after another, in the lane's node order; ``last`` ends a p-bit's list.
    A p-bit with no coupling has one entry with J = 0;
  * a node table ({slot, h, colour, clamp}, one entry per p-bit of the lane), sorted by
    colour with clamped p-bits last;
  * the xorshift32 states of its p-bits (initialised from ``seeds``, kept across runs).
The topology is programmed at run time: any graph whose lane edge lists fit
``edge_depth`` and whose degree is at most ``max_degree`` (which sizes the field).

Ports are those of ``PBitArray`` (same ``out`` records, same ``ctrl`` layout) with
these ``ctrl`` ops (``LaneOp``); ``slot`` carries the lane for EDGE/NODE/COUNT:
  ``EDGE``   edge memory[index] of lane ``slot`` = data: nbr | J << nbr_bits |
             last << (nbr_bits + w_bits).
  ``NODE``   node table[index] of lane ``slot`` = data: slot | h << slot_bits |
             colour << (slot_bits + h_bits) | clamp << (slot_bits + h_bits + colour_bits).
  ``COUNT``  number of node-table entries of lane ``slot`` = data.
  ``STATE``, ``SCHED``, ``RUN``, ``READ`` as in ``PBitArray``.

Timing (the limit is ``lanes`` edges per cycle):
  * A pass over colour c costs W_c + 6 cycles, W_c = the largest number of edge entries
    any lane holds for its unclamped colour-c p-bits: one cycle per edge entry, one to
    see that every lane is done, four to drain the pipeline (gather, accumulate,
    beta multiply, tanh table, decide), one to add the energy change and keep the best.
    A sweep is the passes over colours 0..colours-1; a run starts with an energy pass
    over every entry (the largest lane total + 6 cycles).
  * Update decisions per cycle are therefore at most lanes * n / (edge entries); the
    COUNT records give the cycles exactly (index 1: the update passes only).
  * Within a colour no two p-bits are coupled, so the order in which lanes visit them
    does not matter: spins, energies, samples and the best state are those of
    ``tilefab.golden.pbit.PBitMachine``, and the counts those of its ``lanes`` timing.

Fields (``fields``): ``recompute`` (the default, above) sums every field from its edge
list every sweep; ``incremental`` keeps every field in a field memory and walks only the
edge rows of the p-bits that flipped (``hw.pbit.fields``: its word layouts, timing,
hazard rule and flips-per-cycle limit). Same ops, same records, same decisions.

Structure: ``PBitLanes`` is the controller (the pass state machine; the energy, best
state, ``control.Schedule`` and ``control.Recorder`` of ``array.ControlState``); it
broadcasts the ``lane_bus`` (the accepted ctrl word, pass mode, colour, beta, all
spins) to every lane.
A lane is a ``LaneFetch`` (edge memory, node table, pointers: the issue stage) whose
``edges`` stream feeds a ``LaneUpdate`` (stages 1-5, the generator states and the spins
of the lane's p-bits); the stream is always ready, so one entry moves per cycle.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arith import bits_for, ceil_div, tree_sum
from ..params import check_int
from ..prng import xorshift32
from . import fields as fields_
from .array import ControlState, PBitPorts, check_formats, tanh_index, tanh_table
from .control import (
    LaneOp,
    edge_layout,
    field_edge_layout,
    field_node_layout,
    node_layout,
)

DRAIN = 4            # pipeline stages after the issue stage that still hold a p-bit
FIELDS = ("recompute", "incremental")
EDGE_BLOCK = 1024    # entries of one ECP5 DP16KD block RAM at 18 bits wide


def edge_depth_for(entries: int) -> int:
    """An edge memory depth for ``entries`` entries: the next power of two up to
    ``EDGE_BLOCK``, then the next multiple of ``EDGE_BLOCK``, so that no block RAM is
    spent on rows a build cannot use."""
    entries = max(1, int(entries))
    if entries <= EDGE_BLOCK:
        return 1 << (entries - 1).bit_length()
    return ceil_div(entries, EDGE_BLOCK) * EDGE_BLOCK


def lane_bus(*, ctrl_layout, colour_bits: int, beta_bits: int, spin_bits: int):
    """What the controller drives into every lane."""
    return wiring.Signature({
        "ctrl": Out(ctrl_layout), "write": Out(1),    # the ctrl word accepted this cycle
        "energy_mode": Out(1),     # passes sum m_i (F_i + h_i); no spin or PRNG changes
        "issuing": Out(1),         # lanes may issue edges this cycle
        "rewind": Out(1),          # pointers back to the first entry
        "clear": Out(1),           # the energy accumulators restart from 0
        "colour": Out(colour_bits), "beta": Out(beta_bits),
        "spins": Out(spin_bits),   # p-bit i at bit i (lane i mod lanes, slot i div lanes)
    })


def issue_layout(*, nbr_bits: int, w_bits: int, node_slot_bits: int, h_bits: int):
    """An issued edge entry: the entry, whether it is its p-bit's first, and the p-bit."""
    return data.StructLayout({"nbr": nbr_bits, "j": signed(w_bits), "last": 1, "first": 1,
                              "slot": node_slot_bits, "h": signed(h_bits)})


class LaneFetch(wiring.Component):
    """The issue stage of lane ``lane``: its edge memory and node table, walked in order.

    Loads the EDGE, NODE and COUNT words for this lane (``slot`` = ``lane``). While
    ``issuing`` it sends one edge entry per cycle on ``edges`` for the p-bits with work
    (all of them in an energy pass, else the unclamped ones of ``colour``); ``work`` is
    high while such p-bits remain. The read ports are addressed with the pointers' next
    values, so their data is the entry at the current pointer every cycle.
    """

    def __init__(self, *, bus, issue, lane: int, lanes: int, edge_layout, node_layout,
                 edge_depth: int, slots: int):
        self._lane, self._lanes = lane, lanes
        self._edge_layout, self._node_layout = edge_layout, node_layout
        self._edge_depth, self._slots = edge_depth, slots
        super().__init__({
            "bus": In(bus),
            "edges": Out(stream.Signature(issue, always_ready=True)),
            "work": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus, S = self.bus, self._slots
        ctrl = bus.ctrl
        m.submodules.edges = emem = memory.Memory(shape=self._edge_layout,
                                                  depth=max(2, self._edge_depth), init=[])
        m.submodules.nodes = nmem = memory.Memory(shape=self._node_layout, depth=max(2, S),
                                                  init=[])   # 2: no 0-bit address
        mine = bus.write & ((ctrl.slot == self._lane) if self._lanes > 1 else Const(1))
        ew, nw = emem.write_port(), nmem.write_port()
        m.d.comb += [ew.addr.eq(ctrl.index), ew.data.eq(ctrl.data),
                     ew.en.eq(mine & (ctrl.op == LaneOp.EDGE)),
                     nw.addr.eq(ctrl.index), nw.data.eq(ctrl.data),
                     nw.en.eq(mine & (ctrl.op == LaneOp.NODE))]
        count = Signal(range(S + 1))
        with m.If(mine & (ctrl.op == LaneOp.COUNT)):
            m.d.sync += count.eq(ctrl.data)

        eptr = Signal(range(self._edge_depth + 1))
        nptr = Signal(range(S + 1))
        eptr_nx = Signal.like(eptr)
        nptr_nx = Signal.like(nptr)
        first = Signal(init=1)
        er = emem.read_port(domain="sync")
        nr = nmem.read_port(domain="sync")
        m.d.comb += [er.addr.eq(eptr_nx), nr.addr.eq(nptr_nx)]
        e, nd = er.data, nr.data
        m.d.comb += self.work.eq((nptr < count) & (bus.energy_mode | (
            (nd.colour == bus.colour) & ~nd.clamp)))
        issue = self.edges.valid
        m.d.comb += issue.eq(bus.issuing & self.work)
        out = self.edges.payload
        m.d.comb += [out.nbr.eq(e.nbr), out.j.eq(e.j), out.last.eq(e.last),
                     out.first.eq(first), out.slot.eq(nd.slot), out.h.eq(nd.h)]
        m.d.comb += [eptr_nx.eq(eptr), nptr_nx.eq(nptr)]
        with m.If(bus.rewind):
            m.d.comb += [eptr_nx.eq(0), nptr_nx.eq(0)]
            m.d.sync += first.eq(1)
        with m.Elif(issue):
            m.d.comb += eptr_nx.eq(eptr + 1)
            m.d.sync += first.eq(e.last)
            with m.If(e.last):
                m.d.comb += nptr_nx.eq(nptr + 1)
        m.d.sync += [eptr.eq(eptr_nx), nptr.eq(nptr_nx)]
        return m


class LaneUpdate(wiring.Component):
    """Stages 1-5 of lane ``lane``: gather, accumulate, beta |F|, tanh table, decide.

    Takes one edge entry per cycle from ``edges``. After a p-bit's last entry it decides:
    in an update pass it writes the p-bit's spin, steps its generator and adds 2 m_i F_i
    to ``de`` if it flipped; in an energy pass it adds m_i (F_i + h_i) to ``ee``.
    ``own`` holds the spins of the lane's p-bits by slot (STATE words for them load
    here); ``clear`` zeroes ``de`` and ``ee``.
    """

    def __init__(self, *, bus, issue, lane: int, lanes: int, slots: int, field_bits: int,
                 energy_bits: int, rand_bits: int, tanh: list, shift: int, seeds: list):
        self._lane, self._lanes, self._slots = lane, lanes, slots
        self._issue, self._field_bits, self._rand_bits = issue, field_bits, rand_bits
        self._tanh, self._shift, self._seeds = tanh, shift, seeds
        super().__init__({
            "bus": In(bus),
            "edges": In(stream.Signature(issue, always_ready=True)),
            "own": Out(slots, init=(1 << slots) - 1),
            "de": Out(signed(energy_bits)), "ee": Out(signed(energy_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        bus, own, fb, rb = self.bus, self.own, self._field_bits, self._rand_bits
        half = 1 << (rb - 1)
        m.submodules.rng = rmem = memory.Memory(shape=unsigned(32), depth=max(2, self._slots),
                                                init=self._seeds)
        m.submodules.lut = lut = memory.Memory(shape=unsigned(rb), depth=len(self._tanh),
                                               init=self._tanh)

        # stage 1: gather the neighbour's spin
        s1 = Signal(self._issue)
        v1 = Signal()
        m.d.sync += [v1.eq(self.edges.valid), s1.eq(self.edges.payload)]
        v2, last2, first2 = Signal(), Signal(), Signal()
        term2 = Signal(signed(len(s1.j) + 1))
        slot2 = Signal.like(s1.slot)
        h2 = Signal(signed(len(s1.h) + 1))
        m.d.sync += [v2.eq(v1), last2.eq(s1.last), first2.eq(s1.first), slot2.eq(s1.slot),
                     term2.eq(Mux(bus.spins.bit_select(s1.nbr, 1), s1.j, -s1.j)),
                     h2.eq(Mux(bus.energy_mode, s1.h << 1, s1.h))]

        # stage 2: accumulate the field; read the p-bit's PRNG state
        acc = Signal(signed(fb))
        acc_nx = Signal(signed(fb))
        m.d.comb += acc_nx.eq(Mux(first2, h2, acc) + term2)
        with m.If(v2):
            m.d.sync += acc.eq(acc_nx)
        v3, old3 = Signal(), Signal()
        f3 = Signal(signed(fb))
        slot3 = Signal.like(slot2)
        m.d.sync += [v3.eq(v2 & last2), f3.eq(acc_nx), slot3.eq(slot2),
                     old3.eq(own.bit_select(slot2, 1))]
        rr = rmem.read_port(domain="sync")
        m.d.comb += rr.addr.eq(slot2)

        # stage 3: beta |F| and the next random word
        mag = Signal(fb)
        m.d.comb += mag.eq(Mux(f3 < 0, -f3, f3))
        v4, neg4, old4 = Signal(), Signal(), Signal()
        prod4 = Signal(len(bus.beta) + fb)
        f4 = Signal(signed(fb))
        slot4 = Signal.like(slot2)
        rng4 = Signal(32)
        m.d.sync += [v4.eq(v3), neg4.eq(f3 < 0), old4.eq(old3), prod4.eq(bus.beta * mag),
                     f4.eq(f3), slot4.eq(slot3), rng4.eq(xorshift32(rr.data))]

        # stage 4: tanh table address
        idx = tanh_index(m, prod4, self._shift, "lutidx")
        lr = lut.read_port(domain="sync")
        m.d.comb += lr.addr.eq(idx[:bits_for(len(self._tanh))])
        v5, neg5, old5, sat5 = Signal(), Signal(), Signal(), Signal()
        f5 = Signal(signed(fb))
        slot5 = Signal.like(slot2)
        rng5 = Signal(32)
        m.d.sync += [v5.eq(v4), neg5.eq(neg4), old5.eq(old4),
                     sat5.eq(idx >= len(self._tanh)), f5.eq(f4), slot5.eq(slot4),
                     rng5.eq(rng4)]

        # stage 5: decide, write back
        t = Signal(rb)
        m.d.comb += t.eq(Mux(sat5, half, lr.data))
        u = rng5[32 - rb:]
        up = Signal()
        m.d.comb += up.eq(Mux(neg5, u < half - t, u < half + t))
        rw = rmem.write_port()
        m.d.comb += [rw.addr.eq(slot5), rw.data.eq(rng5), rw.en.eq(v5 & ~bus.energy_mode)]
        with m.If(v5):
            with m.If(bus.energy_mode):
                m.d.sync += self.ee.eq(self.ee + Mux(old5, f5, -f5))
            with m.Else():
                m.d.sync += own.bit_select(slot5, 1).eq(up)
                with m.If(up != old5):
                    m.d.sync += self.de.eq(self.de + Mux(old5, f5 << 1, -(f5 << 1)))
        with m.If(bus.clear):
            m.d.sync += [self.de.eq(0), self.ee.eq(0)]

        # STATE words for this lane's p-bits: index = slot * lanes + lane
        ctrl, lb = bus.ctrl, bits_for(self._lanes) if self._lanes > 1 else 0
        mine = (ctrl.index[:lb] == self._lane) if lb else Const(1)
        with m.If(bus.write & (ctrl.op == LaneOp.STATE) & mine):
            m.d.sync += own.bit_select(ctrl.index[lb:], 1).eq(ctrl.data[0])
        return m


class PBitLanes(PBitPorts):
    """N p-bits served by ``lanes`` pipelined update engines; see the module docstring."""

    def __init__(self, *, n: int, lanes: int, edge_depth: int, max_degree: int,
                 n_colours: int, seeds, w_bits: int = 8, w_frac: int = 0, h_bits: int = 10,
                 beta_bits: int = 8, beta_frac: int = 4, lut_size: int = 64,
                 lut_step_frac: int = 3, rand_bits: int = 16, sched_depth: int = 8,
                 sweep_bits: int = 16, word_bits: int = 32, fields: str = "recompute",
                 z_bits: int = 0):
        if z_bits:
            raise ValueError(f"z_bits: {z_bits} is not allowed for the lane array, must be 0 "
                             f"(the lanes use the tanh table; the quantile rule is the "
                             f"parallel array's)")
        if fields not in FIELDS:
            raise ValueError(f"fields: {fields!r} is not allowed, must be one of "
                             f"{', '.join(FIELDS)}")
        check_int("n", n, 1, 1 << 16)
        check_int("lanes", lanes, 1, 64, power_of_two=True)
        check_int("edge_depth", edge_depth, 1, 1 << 20)
        check_int("max_degree", max_degree, 1, n)
        formats = check_formats(
            n_colours=n_colours, w_bits=w_bits, w_frac=w_frac, h_bits=h_bits,
            beta_bits=beta_bits, beta_frac=beta_frac, rand_bits=rand_bits, lut_size=lut_size,
            lut_step_frac=lut_step_frac, sched_depth=sched_depth, sweep_bits=sweep_bits,
            word_bits=word_bits)
        self._lanes, self._edge_depth, self._max_degree = lanes, edge_depth, max_degree
        self._fields = fields

        self.slots = ceil_div(n, lanes)                     # node-table depth per lane
        self.lane_bits = bits_for(lanes) if lanes > 1 else 0
        self.nbr_bits = bits_for(n)
        self.node_slot_bits = bits_for(self.slots)
        self.colour_bits = bits_for(n_colours)
        self.n_chunks = ceil_div(n, word_bits)
        # Energy passes accumulate sum J m + 2h; nothing may saturate or wrap.
        f_max = max_degree * (1 << (w_bits - 1)) + (1 << h_bits)
        self.field_bits = f_max.bit_length() + 1
        ends = min(lanes * edge_depth, n * max_degree)
        e_max = ends * (1 << (w_bits - 1)) // 2 + n * (1 << (h_bits - 1))
        self.edge_layout = edge_layout(self.nbr_bits, w_bits)
        self.node_layout = node_layout(self.node_slot_bits, h_bits, self.colour_bits)
        if fields == "incremental":
            # A stored field is h + sum J m over at most max_degree neighbours; the energy
            # pass adds h once more in a wider sum (fields.FieldLane).
            f_max = max_degree * (1 << (w_bits - 1)) + (1 << (h_bits - 1))
            self.field_bits = f_max.bit_length() + 1
            self.row_bits = bits_for(edge_depth)
            self.rows_bits = max_degree.bit_length()          # rows 0..max_degree
            self.edge_layout = field_edge_layout(self.node_slot_bits, w_bits, self.nbr_bits)
            self.node_layout = field_node_layout(self.node_slot_bits, h_bits,
                                                 self.colour_bits, self.row_bits,
                                                 self.rows_bits)
            self.queue_layout = fields_.queue_layout(row_bits=self.row_bits,
                                                     rows_bits=self.rows_bits)
        super().__init__(
            n=n, seeds=seeds, formats=formats, energy_bits=(2 * e_max).bit_length() + 2,
            index_bits=bits_for(max(n, sched_depth, self.n_chunks, edge_depth, self.slots + 1)),
            slot_bits=max(1, self.lane_bits),
            data_bits=max(32, self.edge_layout.size, self.node_layout.size,
                          beta_bits + sweep_bits))

    @property
    def neighbours(self):
        """None: the topology is programmed at run time, not wired."""
        return None

    def config(self) -> dict:
        """Generation parameters a host needs to drive and model this array."""
        tail = {"nbr_bits": self.nbr_bits, "node_slot_bits": self.node_slot_bits,
                "slots": self.slots}
        if self._fields == "incremental":
            tail.update(field_bits=self.field_bits, base_bits=self.row_bits,
                        rows_bits=self.rows_bits)
        return self._config(
            {"arch": "lanes", "n": self._n, "lanes": self._lanes,
             "edge_depth": self._edge_depth, "max_degree": self._max_degree,
             "fields": self._fields}, tail)

    def _lane(self, lane: int, bus):
        """The issue stage and the update engine of ``lane`` (p-bits lane, lane + lanes, ...)."""
        n, P, S = self._n, self._lanes, self.slots
        issue = issue_layout(nbr_bits=self.nbr_bits, w_bits=self._w_bits,
                             node_slot_bits=self.node_slot_bits, h_bits=self._h_bits)
        tanh = tanh_table(lut_size=self._lut_size, lut_step_frac=self._lut_step_frac,
                          rand_bits=self._rand_bits)
        seeds = [self._seeds[s * P + lane] if s * P + lane < n else 1 for s in range(S)]
        return (LaneFetch(bus=bus, issue=issue, lane=lane, lanes=P, edge_layout=self.edge_layout,
                          node_layout=self.node_layout, edge_depth=self._edge_depth, slots=S),
                LaneUpdate(bus=bus, issue=issue, lane=lane, lanes=P, slots=S,
                           field_bits=self.field_bits, energy_bits=self.energy_bits,
                           rand_bits=self._rand_bits, tanh=tanh, seeds=seeds,
                           shift=self._beta_frac + self._w_frac - self._lut_step_frac))

    def elaborate(self, platform):
        if self._fields == "incremental":
            return fields_.elaborate(self)
        m = Module()
        n, P, S, eb = self._n, self._lanes, self.slots, self.energy_bits
        bus_sig = lane_bus(ctrl_layout=self.ctrl_layout, colour_bits=self.colour_bits,
                           beta_bits=self._beta_bits, spin_bits=S * P)
        bus = bus_sig.create(path=("bus",))

        # -- the lanes: p-bit i is lane i mod P, slot i div P --------------------------
        fetch, update = [], []
        for l in range(P):
            f, u = self._lane(l, bus_sig)
            m.submodules[f"fetch{l}"], m.submodules[f"update{l}"] = f, u
            wiring.connect(m, f.edges, u.edges)
            fetch.append(f)
            update.append(u)
        wiring.connect(m, bus, *(x.bus for x in fetch + update))
        spins = Signal(S * P)
        m.d.comb += [spins.eq(Cat(update[l].own[s] for s in range(S) for l in range(P))),
                     bus.spins.eq(spins)]
        any_work = Signal()
        de_sum = Signal(signed(eb))
        ee_sum = Signal(signed(eb + P.bit_length()))
        m.d.comb += [any_work.eq(Cat(f.work for f in fetch).any()),
                     de_sum.eq(tree_sum(u.de for u in update)),
                     ee_sum.eq(tree_sum(u.ee for u in update))]

        # -- the controller ----------------------------------------------------------------
        c = ControlState(m, self, spins=spins[:n], delta=de_sum, terms=ee_sum)
        sched, rec, wr = c.sched, c.rec, c.wr
        m.d.comb += [bus.ctrl.eq(c.ctrl), bus.write.eq(c.take), bus.colour.eq(sched.colour)]
        m.d.sync += bus.beta.eq(sched.beta)      # the entry changes only at a pass boundary
        energy, best_energy, best_spin = c.energy, c.best_energy, c.best_spin
        cycles, update_cycles = c.cycles, c.update_cycles
        energy_next, energy_init = c.energy_next, c.energy_init
        drain = Signal(range(DRAIN + 1))
        reading = Signal()            # the energy pass serves READ, not a run

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.ctrl.ready.eq(~rec.busy), bus.rewind.eq(1)]
                with m.If(wr(LaneOp.RUN) | wr(LaneOp.READ)):
                    m.d.comb += bus.clear.eq(1)
                    m.d.sync += [bus.energy_mode.eq(1), reading.eq(wr(LaneOp.READ))]
                    m.next = "EPASS"
                with m.If(wr(LaneOp.RUN)):
                    m.d.sync += [cycles.eq(0), update_cycles.eq(0)]
            with m.State("EPASS"):
                m.d.comb += [bus.issuing.eq(1), self.running.eq(~reading)]
                m.d.sync += cycles.eq(cycles + ~reading)
                with m.If(~any_work):
                    m.d.sync += drain.eq(DRAIN - 1)
                    m.next = "EDRAIN"
            with m.State("EDRAIN"):
                m.d.comb += self.running.eq(~reading)
                m.d.sync += [cycles.eq(cycles + ~reading), drain.eq(drain - 1)]
                with m.If(drain == 0):
                    m.next = "EDONE"
            with m.State("EDONE"):
                m.d.comb += [self.running.eq(~reading), bus.rewind.eq(1), bus.clear.eq(1)]
                m.d.sync += [energy.eq(energy_init), bus.energy_mode.eq(0)]
                with m.If(reading):
                    m.d.comb += [rec.take.eq(1), rec.energy.eq(energy_init), rec.final.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [cycles.eq(cycles + 1), best_energy.eq(energy_init),
                                 best_spin.eq(spins[:n])]
                    m.next = "COLOUR"
            with m.State("COLOUR"):
                m.d.comb += [bus.issuing.eq(1), self.running.eq(1)]
                m.d.sync += [cycles.eq(cycles + 1), update_cycles.eq(update_cycles + 1)]
                with m.If(~any_work):
                    m.d.sync += drain.eq(DRAIN - 1)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += self.running.eq(1)
                m.d.sync += [cycles.eq(cycles + 1), update_cycles.eq(update_cycles + 1),
                             drain.eq(drain - 1)]
                with m.If(drain == 0):
                    m.next = "BOUNDARY"
            with m.State("BOUNDARY"):
                m.d.comb += self.running.eq(1)
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(~(sched.sample_due & rec.busy)):
                    m.d.comb += [sched.advance.eq(1), bus.clear.eq(1),
                                 bus.rewind.eq(sched.last_colour)]
                    m.d.sync += [update_cycles.eq(update_cycles + 1), energy.eq(energy_next)]
                    with m.If(energy_next < best_energy):
                        m.d.sync += [best_energy.eq(energy_next), best_spin.eq(spins[:n])]
                    with m.If(sched.sample_due):
                        m.d.comb += [rec.take.eq(1), rec.energy.eq(energy_next)]
                    m.next = "COLOUR"
                    with m.If(sched.finished):
                        m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [self.running.eq(1), bus.rewind.eq(1)]
                with m.If(~rec.busy):
                    m.d.comb += [rec.take.eq(1), rec.energy.eq(energy), rec.final.eq(1)]
                    m.next = "IDLE"
        return m
