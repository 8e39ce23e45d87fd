"""Incremental local fields for ``PBitLanes`` (``fields="incremental"``).

Contract
--------
Every p-bit keeps its field F_i = h_i + sum_j J_ij m_j in a field memory of its lane
(``field_bits`` signed: |F| <= max_degree 2^(w_bits-1) + 2^(h_bits-1) fits, so no
field ever saturates or wraps). A colour class decides from the stored fields (the
same beta multiply, tanh table, xorshift32 draw and comparison as the recomputing
lanes, so the decisions are those of the golden model given the same field); every
flip of p-bit i then adds 2 J_ij m_i(new) to each neighbour's field.

Storage (programmed by ``gen.pbit.driver``; ``LaneOp`` words, ``slot`` = lane):
  * edge memory (EDGE words, ``field_edge_layout`` {dst, J, src}): the rows of every
    p-bit i, ``base_i .. base_i + rows_i - 1``, at the same addresses in every lane;
    lane d's row k of i is i's k-th neighbour among lane d's p-bits (``dst`` = its
    slot), or J = 0 padding. rows_i = max_d (i's neighbours in lane d)
    (``golden.pbit.lane_rows``). A lane keeps {dst, J} (``field_row_layout``); ``src``
    (= i, the same in every lane) is kept once, by the controller, from lane 0's words;
  * node table (``field_node_layout`` {slot, h, colour, clamp, base, rows}), sorted by
    colour with clamped p-bits last, as in the recomputing lanes;
  * ``COUNT`` index 0: node-table entries of lane ``slot``; index 1: R = sum_i rows_i
    (the rows of every lane, walked at the start of a run).

Timing (N = ceil(n / lanes) node entries per lane, W_c = the most unclamped colour-c
p-bits in a lane):
  * a run (and a READ) starts with h into every field (N + 1 cycles), a walk of all R
    rows adding J m_src (R + 3), and an energy pass summing m (F + h) (N + 3), then
    one cycle to load the energy: 2 N + R + 8 (``FIELD_INIT_OVERHEAD``);
  * colour c: decide (W_c + 1 cycles, 2 of drain), then the flips' rows, lanes in
    order, one row of one flip per cycle in every lane (sum of rows_i over the flips
    with rows, + 2), then the boundary cycle: W_c + sum rows_i + 6
    (``FIELD_PASS_OVERHEAD``).
  * The row path (``ROW_STAGES``): the controller registers the row it selects (t+1);
    each lane reads its edge memory (t+2) and registers the entry (t+3), reads the
    field at ``dst`` with m_src from the controller (t+3: the flip's new spin, carried
    in its queue entry, or in the walk the spin of the controller's ``src`` copy), and
    writes it (t+4). No memory output drives another memory's address or a long
    broadcast in the cycle it appears.
  * Hazard rule: colour c+1 reads no field before colour c's last field write. The
    row walk of colour c ends (its last write is in the first decision cycle of
    colour c+1, whose read is transparent to it) before the first decision read of
    colour c+1; fields of one colour are never written while that colour decides,
    since a flip only touches neighbours, and the colouring gives neighbours other
    colours. The field memory's read port is transparent to its write port, so
    back-to-back rows that update the same field read the value just written.
  * Limit: a flip costs rows_i >= ceil(deg_i / lanes) cycles and flips are applied one
    at a time, so at most one flip per cycle (1/mean rows_i); with flip rate rho per
    decision, decisions per cycle are at most n / (N + rho sum_i rows_i).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..arith import bits_for, onehot_select, tree_sum
from ..prng import xorshift32
from .array import ControlState, tanh_index, tanh_table
from .control import LaneOp, field_row_layout

DECIDE_DRAIN = 2      # cycles after the end of a decision walk until its last flip lands
ROW_STAGES = 4        # a row selected at t writes its field at t + ROW_STAGES


def field_bus(*, ctrl_layout, colour_bits: int, beta_bits: int, row_bits: int, lanes: int):
    """What the controller drives into every field lane."""
    return wiring.Signature({
        "ctrl": Out(ctrl_layout), "write": Out(1),    # the ctrl word accepted this cycle
        "init_h": Out(1),          # the node walk writes h into the fields
        "energy_mode": Out(1),     # the node walk sums m_i (F_i + h_i); no spin changes
        "issuing": Out(1),         # the node walk may issue this cycle
        "rewind": Out(1),          # node pointer back to the first entry
        "clear": Out(1),           # energy accumulators and flip queues restart
        "colour": Out(colour_bits), "beta": Out(beta_bits),
        "row_valid": Out(1), "row": Out(row_bits),    # the row every lane applies (t+1)
        "double": Out(1),          # rows add 2 J m_src (a flip), not J m_src (the init)
        "m_src": Out(1),           # the row's source spin, two cycles after its row (t+3)
        "pop": Out(lanes),         # lane l's queue head is done
    })


def queue_layout(*, row_bits: int, rows_bits: int):
    """A queued flip: the flipped p-bit's rows and its new spin."""
    return data.StructLayout({"base": row_bits, "rows": rows_bits, "m": 1})


class FieldLane(wiring.Component):
    """Lane ``lane``: node table, field, edge, generator and flip-queue memories.

    Node walk (``issuing``; all entries with ``init_h`` or ``energy_mode``, else the
    unclamped ones of ``colour``): issue (read F and the generator), beta |F| and the
    next draw, tanh table, decide (spin, generator, ``de`` += 2 m F on a flip, the flip
    queued when it has rows; or ``ee`` += m (F + h)). Row walk (``row_valid``): read the
    row, read the field at ``dst``, write F + (J or 2 J) m_src.
    """

    def __init__(self, *, bus, lane: int, lanes: int, edge_layout, row_layout, node_layout,
                 queue, edge_depth: int, slots: int, field_bits: int, energy_bits: int,
                 rand_bits: int, tanh: list, shift: int, seeds: list):
        self._lane, self._lanes, self._slots = lane, lanes, slots
        self._edge_layout, self._row_layout = edge_layout, row_layout
        self._node_layout = node_layout
        self._queue, self._edge_depth = queue, edge_depth
        self._field_bits, self._rand_bits = field_bits, rand_bits
        self._tanh, self._shift, self._seeds = tanh, shift, seeds
        super().__init__({
            "bus": In(bus),
            "own": Out(slots, init=(1 << slots) - 1),
            "work": Out(1), "queued": Out(1), "head": Out(queue),
            "de": Out(signed(energy_bits)), "ee": Out(signed(energy_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        bus, own, fb, rb, S = self.bus, self.own, self._field_bits, self._rand_bits, self._slots
        half = 1 << (rb - 1)
        ctrl = bus.ctrl
        depth = max(2, S)                     # 2: no 0-bit address
        m.submodules.edges = emem = memory.Memory(shape=self._row_layout,
                                                  depth=max(2, self._edge_depth), init=[])
        m.submodules.nodes = nmem = memory.Memory(shape=self._node_layout, depth=depth,
                                                  init=[])
        m.submodules.fields = fmem = memory.Memory(shape=signed(fb), depth=depth, init=[])
        m.submodules.queue = qmem = memory.Memory(shape=self._queue, depth=depth, init=[])
        m.submodules.rng = rmem = memory.Memory(shape=unsigned(32), depth=depth,
                                                init=self._seeds)
        m.submodules.lut = lut = memory.Memory(shape=unsigned(rb), depth=len(self._tanh),
                                               init=self._tanh)

        # -- programming ----------------------------------------------------------------
        mine = bus.write & ((ctrl.slot == self._lane) if self._lanes > 1 else Const(1))
        ew, nw = emem.write_port(), nmem.write_port()
        word = data.View(self._edge_layout, ctrl.data[:self._edge_layout.size])
        m.d.comb += [ew.addr.eq(ctrl.index), ew.data.dst.eq(word.dst), ew.data.j.eq(word.j),
                     ew.en.eq(mine & (ctrl.op == LaneOp.EDGE)),
                     nw.addr.eq(ctrl.index), nw.data.eq(ctrl.data),
                     nw.en.eq(mine & (ctrl.op == LaneOp.NODE))]
        count = Signal(range(S + 1))
        with m.If(mine & (ctrl.op == LaneOp.COUNT) & (ctrl.index == 0)):
            m.d.sync += count.eq(ctrl.data)
        lb = bits_for(self._lanes) if self._lanes > 1 else 0
        with m.If(bus.write & (ctrl.op == LaneOp.STATE) &
                  ((ctrl.index[:lb] == self._lane) if lb else Const(1))):
            m.d.sync += own.bit_select(ctrl.index[lb:], 1).eq(ctrl.data[0])

        # -- node walk: the entry at the pointer every cycle (read with its next value) --
        nptr, nptr_nx = Signal(range(S + 1)), Signal(range(S + 1))
        nr = nmem.read_port(domain="sync")
        m.d.comb += nr.addr.eq(nptr_nx)
        nd = nr.data
        m.d.comb += self.work.eq((nptr < count) & (bus.init_h | bus.energy_mode | (
            (nd.colour == bus.colour) & ~nd.clamp)))
        issue = Signal()
        m.d.comb += [issue.eq(bus.issuing & self.work), nptr_nx.eq(nptr)]
        with m.If(bus.rewind):
            m.d.comb += nptr_nx.eq(0)
        with m.Elif(issue):
            m.d.comb += nptr_nx.eq(nptr + 1)
        m.d.sync += nptr.eq(nptr_nx)

        fw = fmem.write_port()
        fr = fmem.read_port(domain="sync", transparent_for=(fw,))

        # -- row walk (bus.row at t+1): the entry (t+2), registered (r1, t+3) reads the
        # field at dst; r2 (t+4) writes F + delta -----------------------------------
        er = emem.read_port(domain="sync")
        m.d.comb += er.addr.eq(bus.row)
        e = Signal(self._row_layout)
        r0, d0, r1, d1, r2 = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.sync += [r0.eq(bus.row_valid), d0.eq(bus.double), e.eq(er.data),
                     r1.eq(r0), d1.eq(d0), r2.eq(r1)]
        term = Signal(signed(len(e.j) + 2))
        m.d.comb += term.eq(Mux(bus.m_src, e.j, -e.j))
        dst2 = Signal.like(e.dst)
        delta2 = Signal.like(term)
        m.d.sync += [dst2.eq(e.dst), delta2.eq(Mux(d1, term << 1, term))]
        m.d.comb += [fr.addr.eq(Mux(r1, e.dst, nd.slot)),
                     fw.addr.eq(Mux(r2, dst2, nd.slot)),
                     fw.data.eq(Mux(r2, fr.data + delta2, nd.h)),
                     fw.en.eq(r2 | (issue & bus.init_h))]

        # -- decisions: stage 1 beta |F| and the next draw --------------------------------
        rr = rmem.read_port(domain="sync")
        m.d.comb += rr.addr.eq(nd.slot)
        v1 = Signal()
        slot1, h1 = Signal.like(nd.slot), Signal.like(nd.h)
        base1, rows1 = Signal.like(nd.base), Signal.like(nd.rows)
        m.d.sync += [v1.eq(issue & ~bus.init_h), slot1.eq(nd.slot), h1.eq(nd.h),
                     base1.eq(nd.base), rows1.eq(nd.rows)]
        # the product is signed (beta F, its magnitude taken in stage 2), so the field
        # memory's output goes straight into the multiplier
        f1 = fr.data
        v2, neg2, old2 = Signal(), Signal(), Signal()
        prod2 = Signal(signed(len(bus.beta) + fb + 1))
        f2 = Signal(signed(fb))
        slot2, h2 = Signal.like(slot1), Signal.like(h1)
        base2, rows2 = Signal.like(base1), Signal.like(rows1)
        rng2 = Signal(32)
        m.d.sync += [v2.eq(v1), neg2.eq(f1 < 0), old2.eq(own.bit_select(slot1, 1)),
                     prod2.eq(bus.beta * f1), f2.eq(f1), slot2.eq(slot1), h2.eq(h1),
                     base2.eq(base1), rows2.eq(rows1), rng2.eq(xorshift32(rr.data))]

        # stage 2: tanh table address; u - 1/2 and 1/2 - u for stage 3's comparison
        pmag = Signal(len(bus.beta) + fb)
        m.d.comb += pmag.eq(Mux(prod2 < 0, -prod2, prod2))
        idx = tanh_index(m, pmag, self._shift, "lutidx")
        lr = lut.read_port(domain="sync")
        m.d.comb += lr.addr.eq(idx[:bits_for(len(self._tanh))])
        v3, neg3, old3, sat3 = Signal(), Signal(), Signal(), Signal()
        u2 = rng2[32 - rb:]
        above3, below3 = Signal(signed(rb + 2)), Signal(signed(rb + 2))
        m.d.sync += [above3.eq(u2 - half), below3.eq(half - u2)]
        f3 = Signal(signed(fb))
        slot3, h3 = Signal.like(slot1), Signal.like(h1)
        base3, rows3 = Signal.like(base1), Signal.like(rows1)
        rng3 = Signal(32)
        m.d.sync += [v3.eq(v2), neg3.eq(neg2), old3.eq(old2), sat3.eq(idx >= len(self._tanh)),
                     f3.eq(f2), slot3.eq(slot2), h3.eq(h2), base3.eq(base2),
                     rows3.eq(rows2), rng3.eq(rng2)]

        # stage 3: decide, write back, queue the flip. With T the table read, m = +1 iff
        # u < 1/2 + T (F >= 0), i.e. u - 1/2 < T, or u < 1/2 - T (F < 0), i.e.
        # T < 1/2 - u; a saturated index (T = 1/2) gives m = sign(F).
        t = lr.data
        up = Signal()
        m.d.comb += up.eq(Mux(sat3, ~neg3, Mux(neg3, t < below3, above3 < t)))
        rw = rmem.write_port()
        m.d.comb += [rw.addr.eq(slot3), rw.data.eq(rng3), rw.en.eq(v3 & ~bus.energy_mode)]
        fh = Signal(signed(fb + 1))
        m.d.comb += fh.eq(f3 + h3)
        push = Signal()
        with m.If(v3):
            with m.If(bus.energy_mode):
                m.d.sync += self.ee.eq(self.ee + Mux(old3, fh, -fh))
            with m.Else():
                m.d.sync += own.bit_select(slot3, 1).eq(up)
                with m.If(up != old3):
                    m.d.sync += self.de.eq(self.de + Mux(old3, f3 << 1, -(f3 << 1)))
                    m.d.comb += push.eq(rows3 != 0)
        with m.If(bus.clear):
            m.d.sync += [self.de.eq(0), self.ee.eq(0)]

        # -- flip queue: written by stage 3, read by the controller's row sequencer ------
        qw = qmem.write_port()
        qr = qmem.read_port(domain="sync", transparent_for=(qw,))
        wptr, qptr, qptr_nx = Signal(range(S + 1)), Signal(range(S + 1)), Signal(range(S + 1))
        m.d.comb += [qw.addr.eq(wptr), qw.data.base.eq(base3), qw.data.rows.eq(rows3),
                     qw.data.m.eq(up), qw.en.eq(push),
                     qptr_nx.eq(Mux(bus.clear, 0, qptr + bus.pop[self._lane])),
                     qr.addr.eq(qptr_nx),
                     self.queued.eq(qptr != wptr), self.head.eq(qr.data)]
        m.d.sync += [qptr.eq(qptr_nx), wptr.eq(Mux(bus.clear, 0, wptr + push))]
        return m


def lane(array, lane: int, bus):
    """The field lane ``lane`` of ``array`` (p-bits lane, lane + lanes, ...)."""
    n, P, S = array.n, array._lanes, array.slots
    seeds = [array._seeds[s * P + lane] if s * P + lane < n else 1 for s in range(S)]
    return FieldLane(
        bus=bus, lane=lane, lanes=P, edge_layout=array.edge_layout,
        row_layout=field_row_layout(array.node_slot_bits, array._w_bits),
        node_layout=array.node_layout, queue=array.queue_layout,
        edge_depth=array._edge_depth, slots=S, field_bits=array.field_bits,
        energy_bits=array.energy_bits, rand_bits=array._rand_bits,
        tanh=tanh_table(lut_size=array._lut_size, lut_step_frac=array._lut_step_frac,
                        rand_bits=array._rand_bits),
        shift=array._beta_frac + array._w_frac - array._lut_step_frac, seeds=seeds)


def elaborate(array) -> Module:
    """``PBitLanes.elaborate`` with incremental fields: the lanes and their controller."""
    m = Module()
    n, P, S, eb = array.n, array._lanes, array.slots, array.energy_bits
    bus_sig = field_bus(ctrl_layout=array.ctrl_layout, colour_bits=array.colour_bits,
                        beta_bits=array._beta_bits, row_bits=array.row_bits, lanes=P)
    bus = bus_sig.create(path=("bus",))
    lanes = []
    for l in range(P):
        m.submodules[f"lane{l}"] = u = lane(array, l, bus_sig)
        lanes.append(u)
    wiring.connect(m, bus, *(u.bus for u in lanes))
    spins = Signal(S * P)
    m.d.comb += spins.eq(Cat(lanes[l].own[s] for s in range(S) for l in range(P)))
    any_work, any_queued = Signal(), Signal()
    de_sum = Signal(signed(eb))
    ee_sum = Signal(signed(eb + P.bit_length()))
    m.d.comb += [any_work.eq(Cat(u.work for u in lanes).any()),
                 any_queued.eq(Cat(u.queued for u in lanes).any()),
                 de_sum.eq(tree_sum(u.de for u in lanes)),
                 ee_sum.eq(tree_sum(u.ee for u in lanes))]

    # The lanes' energy changes are final from the end of a class's decisions on, so the
    # boundary takes their sum and the best-energy comparison from registers.
    de_q, better = Signal(signed(eb)), Signal()
    c = ControlState(m, array, spins=spins[:n], delta=de_q, terms=ee_sum)
    sched, rec, wr = c.sched, c.rec, c.wr
    m.d.comb += [bus.ctrl.eq(c.ctrl), bus.write.eq(c.take), bus.colour.eq(sched.colour)]
    m.d.sync += bus.beta.eq(sched.beta)      # the entry changes only at a pass boundary
    energy, best_energy, best_spin = c.energy, c.best_energy, c.best_spin
    cycles, update_cycles = c.cycles, c.update_cycles
    energy_next, energy_init = c.energy_next, c.energy_init
    m.d.sync += [de_q.eq(de_sum), better.eq(energy + de_sum < best_energy)]

    # R: the rows of every lane (COUNT index 1), walked at the start of a run
    total_rows = Signal(range(array._edge_depth + 1))
    with m.If(wr(LaneOp.COUNT) & (c.ctrl.index == 1)):
        m.d.sync += total_rows.eq(c.ctrl.data)
    walk = Signal(range(array._edge_depth + ROW_STAGES))

    # The row every lane applies, chosen at t (sel_*) and registered onto the bus (t+1).
    # m_src reaches the bus at t+3: a flip's new spin from its queue entry, or in the walk
    # spins[src] with src from the controller's copy (lane 0's EDGE words).
    sel_row, sel_valid = Signal.like(bus.row), Signal()
    sel_double, sel_m, sel_walk = Signal(), Signal(), Signal()
    m.d.sync += [bus.row.eq(sel_row), bus.row_valid.eq(sel_valid), bus.double.eq(sel_double)]
    m.submodules.src = smem = memory.Memory(shape=unsigned(array.nbr_bits),
                                            depth=max(2, array._edge_depth), init=[])
    edge_word = data.View(array.edge_layout, c.ctrl.data[:array.edge_layout.size])
    sw, sr = smem.write_port(), smem.read_port(domain="sync")
    slot0 = (c.ctrl.slot == 0) if P > 1 else Const(1)
    m.d.comb += [sw.addr.eq(c.ctrl.index), sw.data.eq(edge_word.src),
                 sw.en.eq(wr(LaneOp.EDGE) & slot0), sr.addr.eq(sel_row)]
    m1, w1, m2, w2 = Signal(), Signal(), Signal(), Signal()
    src_q = Signal(array.nbr_bits)
    m.d.sync += [m1.eq(sel_m), w1.eq(sel_walk), m2.eq(m1), w2.eq(w1), src_q.eq(sr.data),
                 bus.m_src.eq(Mux(w2, spins.bit_select(src_q, 1), m2))]

    # The row sequencer: the lowest lane with a queued flip sends that flip's rows. A
    # flip's first row comes from its queue head, which is popped then; its other rows
    # from ``cur``, a register of the flip, k its next row. So the queue memories'
    # outputs only feed registers (through one AND-OR level of ``first``), and a pop
    # and the queue read addresses follow from registers alone.
    head = Signal(array.queue_layout)
    first = Signal(P)
    for l in range(P):
        m.d.comb += first[l].eq(lanes[l].queued & ~Cat(u.queued for u in lanes[:l]).any()
                                if l else lanes[l].queued)
    m.d.comb += head.eq(onehot_select(first, [u.head.as_value() for u in lanes]))
    cur = Signal(array.queue_layout)
    cur_valid = Signal()          # cur has rows left: row k is sent this cycle
    k = Signal.like(head.rows)

    drain = Signal(range(DECIDE_DRAIN + 1))
    reading = Signal()            # the energy pass serves READ, not a run
    with m.FSM():
        with m.State("IDLE"):
            m.d.comb += [array.ctrl.ready.eq(~rec.busy), bus.rewind.eq(1)]
            with m.If(wr(LaneOp.RUN) | wr(LaneOp.READ)):
                m.d.comb += bus.clear.eq(1)
                m.d.sync += [bus.init_h.eq(1), reading.eq(wr(LaneOp.READ))]
                m.next = "HINIT"
            with m.If(wr(LaneOp.RUN)):
                m.d.sync += [cycles.eq(0), update_cycles.eq(0)]
        with m.State("HINIT"):
            m.d.comb += [bus.issuing.eq(1), array.running.eq(~reading)]
            m.d.sync += cycles.eq(cycles + ~reading)
            with m.If(~any_work):
                m.d.sync += [bus.init_h.eq(0), walk.eq(0)]
                m.next = "WALK"
        with m.State("WALK"):
            # rows 0 .. R-1, then ROW_STAGES - 2 cycles until the last field write lands
            m.d.comb += [array.running.eq(~reading), bus.rewind.eq(1),
                         sel_row.eq(walk), sel_valid.eq(walk < total_rows), sel_walk.eq(1)]
            m.d.sync += [cycles.eq(cycles + ~reading), walk.eq(walk + 1)]
            with m.If(walk == total_rows + (ROW_STAGES - 2)):
                m.d.sync += bus.energy_mode.eq(1)
                m.next = "EPASS"
        with m.State("EPASS"):
            m.d.comb += [bus.issuing.eq(1), array.running.eq(~reading)]
            m.d.sync += cycles.eq(cycles + ~reading)
            with m.If(~any_work):
                m.d.sync += drain.eq(DECIDE_DRAIN - 1)
                m.next = "EDRAIN"
        with m.State("EDRAIN"):
            m.d.comb += array.running.eq(~reading)
            m.d.sync += [cycles.eq(cycles + ~reading), drain.eq(drain - 1)]
            with m.If(drain == 0):
                m.next = "EDONE"
        with m.State("EDONE"):
            m.d.comb += [array.running.eq(~reading), bus.rewind.eq(1), bus.clear.eq(1)]
            m.d.sync += [energy.eq(energy_init), bus.energy_mode.eq(0)]
            with m.If(reading):
                m.d.comb += [rec.take.eq(1), rec.energy.eq(energy_init), rec.final.eq(1)]
                m.next = "IDLE"
            with m.Else():
                m.d.sync += [cycles.eq(cycles + 1), best_energy.eq(energy_init),
                             best_spin.eq(spins[:n])]
                m.next = "COLOUR"
        with m.State("COLOUR"):
            m.d.comb += [bus.issuing.eq(1), array.running.eq(1)]
            m.d.sync += [cycles.eq(cycles + 1), update_cycles.eq(update_cycles + 1)]
            with m.If(~any_work):
                m.d.sync += drain.eq(DECIDE_DRAIN - 1)
                m.next = "DRAIN"
        with m.State("DRAIN"):
            m.d.comb += array.running.eq(1)
            m.d.sync += [cycles.eq(cycles + 1), update_cycles.eq(update_cycles + 1),
                         drain.eq(drain - 1)]
            with m.If(drain == 0):
                m.next = "ROWS"
        with m.State("ROWS"):
            # every lane applies one row of the flip being sent: row k of cur, or the
            # first row of the selected queue head, which is popped
            m.d.comb += array.running.eq(1)
            m.d.sync += [cycles.eq(cycles + 1), update_cycles.eq(update_cycles + 1)]
            with m.If(cur_valid):
                m.d.comb += [sel_valid.eq(1), sel_row.eq(cur.base + k), sel_double.eq(1),
                             sel_m.eq(cur.m)]
                m.d.sync += [k.eq(k + 1), cur_valid.eq(k + 1 != cur.rows)]
            with m.Elif(any_queued):
                m.d.comb += [sel_valid.eq(1), sel_row.eq(head.base), sel_double.eq(1),
                             sel_m.eq(head.m), bus.pop.eq(first)]
                m.d.sync += [cur.eq(head), k.eq(1), cur_valid.eq(head.rows != 1)]
            with m.Else():
                m.next = "RDRAIN"
        with m.State("RDRAIN"):
            # one more cycle (ROW_STAGES - 3) for the row path: the last write lands as
            # colour c+1 reads
            m.d.comb += array.running.eq(1)
            m.d.sync += [cycles.eq(cycles + 1), update_cycles.eq(update_cycles + 1)]
            m.next = "BOUNDARY"
        with m.State("BOUNDARY"):
            # colour c+1 reads from the next cycle, when the last row's field write lands
            m.d.comb += array.running.eq(1)
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(~(sched.sample_due & rec.busy)):
                m.d.comb += [sched.advance.eq(1), bus.clear.eq(1),
                             bus.rewind.eq(sched.last_colour)]
                m.d.sync += [update_cycles.eq(update_cycles + 1), energy.eq(energy_next)]
                with m.If(better):
                    m.d.sync += [best_energy.eq(energy_next), best_spin.eq(spins[:n])]
                with m.If(sched.sample_due):
                    m.d.comb += [rec.take.eq(1), rec.energy.eq(energy_next)]
                m.next = "COLOUR"
                with m.If(sched.finished):
                    m.next = "FINISH"
        with m.State("FINISH"):
            m.d.comb += [array.running.eq(1), bus.rewind.eq(1)]
            with m.If(~rec.busy):
                m.d.comb += [rec.take.eq(1), rec.energy.eq(energy), rec.final.eq(1)]
                m.next = "IDLE"
    return m
