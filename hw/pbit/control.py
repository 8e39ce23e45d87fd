"""The control both p-bit arrays share: the beta schedule walk and the record unit.

``Schedule`` holds the beta schedule (``SCHED`` writes) and walks it during a run, one
colour class at a time: ``start`` (a RUN accepted) latches the run's fields and restarts
at entry 0, sweep 0, colour 0; every ``advance`` (a colour class updated) moves to the
next class, and after the last class of a sweep to the next sweep or entry. Its outputs
are combinational from its registers: ``colour``, ``beta`` (the entry's beta),
``last_colour``, ``sample_due`` (the class ends a sweep after which a sample is due) and
``finished`` (an ``advance`` now ends the run); with ``lookahead``, also
``sample_due_next``, the value ``sample_due`` will have in the next cycle.

``Recorder`` latches a snapshot on ``take`` (spins, their energy, and whether it is the
final one) and sends it on ``out``: ``Kind.SAMPLE`` chunks and ``Kind.ENERGY`` index 0,
then, when final, ``Kind.BEST`` chunks, ``Kind.ENERGY`` index 1 and ``Kind.COUNT``
index 0 and 1 (read from ``best_spin``, ``best_energy``, ``cycles``, ``update_cycles``
as the records leave). ``busy`` is high from ``take`` until the last record is accepted;
a ``take`` while busy is not allowed (the arrays never issue one). With ``lookahead``,
``busy_next`` is the value ``busy`` will have in the next cycle.
"""

from __future__ import annotations

import enum

from amaranth import Module, Mux, Shape, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arith import bits_for, ceil_div

SAMPLE_EVERY_BITS = 16     # RUN data[:16]


# -- the word layouts of both arrays: the hardware decodes with them, the host
# (``gen.pbit.driver``) encodes and decodes with them (``word_layouts``).

def ctrl_layout(index_bits: int, slot_bits: int, data_bits: int) -> data.StructLayout:
    """A ``ctrl`` word: op (``Op``/``LaneOp``), index, slot and the op's data."""
    return data.StructLayout({"op": 3, "index": index_bits, "slot": slot_bits,
                              "data": data_bits})


def out_layout(index_bits: int, out_bits: int) -> data.StructLayout:
    """An ``out`` record: kind (``Kind``), index and data."""
    return data.StructLayout({"kind": 2, "index": index_bits, "data": out_bits})


def sched_layout(beta_bits: int, sweep_bits: int) -> data.StructLayout:
    """SCHED data and a schedule entry: beta code and sweeps (0 means 2**sweep_bits)."""
    return data.StructLayout({"beta": beta_bits, "sweeps": sweep_bits})


def run_layout(colour_bits: int) -> data.FlexibleLayout:
    """RUN data: sample every ``sample_every`` sweeps (0: never) over colours
    ``0..colours``."""
    return data.FlexibleLayout(SAMPLE_EVERY_BITS + colour_bits, {
        "sample_every": data.Field(SAMPLE_EVERY_BITS, 0),
        "colours": data.Field(colour_bits, 16)})


def colour_layout(colour_bits: int) -> data.StructLayout:
    """COLOUR data of the parallel array: the colour class and the clamp bit."""
    return data.StructLayout({"colour": colour_bits, "clamp": 1})


def value_layout(name: str, shape) -> data.StructLayout:
    """The data of a one-value op (J, H, STATE, COUNT)."""
    return data.StructLayout({name: shape})


def edge_layout(nbr_bits: int, w_bits: int) -> data.StructLayout:
    """EDGE data of the lanes array: neighbour, coupling, last entry of its p-bit."""
    return data.StructLayout({"nbr": nbr_bits, "j": signed(w_bits), "last": 1})


def node_layout(node_slot_bits: int, h_bits: int, colour_bits: int) -> data.StructLayout:
    """NODE data of the lanes array: the p-bit's slot in its lane, h, colour, clamp."""
    return data.StructLayout({"slot": node_slot_bits, "h": signed(h_bits),
                              "colour": colour_bits, "clamp": 1})


def field_edge_layout(node_slot_bits: int, w_bits: int, nbr_bits: int) -> data.StructLayout:
    """EDGE data of the lanes array with incremental fields: a row entry of the source
    p-bit ``src``: add J m_src (twice that on a flip) to the field at slot ``dst`` of
    this lane. A row with J = 0 pads a lane that holds fewer of the source's neighbours."""
    return data.StructLayout({"dst": node_slot_bits, "j": signed(w_bits), "src": nbr_bits})


def field_row_layout(node_slot_bits: int, w_bits: int) -> data.StructLayout:
    """What a lane's edge memory keeps of an incremental-fields EDGE word: ``dst`` and
    ``J`` (a row's ``src`` is the same in every lane; the array keeps one copy)."""
    return data.StructLayout({"dst": node_slot_bits, "j": signed(w_bits)})


def field_node_layout(node_slot_bits: int, h_bits: int, colour_bits: int, base_bits: int,
                      rows_bits: int) -> data.StructLayout:
    """NODE data of the lanes array with incremental fields: ``node_layout`` and the p-bit's
    rows in every lane's edge memory (``base`` .. ``base + rows - 1``)."""
    return data.StructLayout({"slot": node_slot_bits, "h": signed(h_bits),
                              "colour": colour_bits, "clamp": 1, "base": base_bits,
                              "rows": rows_bits})


def word_layouts(cfg: dict) -> dict:
    """Every word layout of the array whose ``config()`` is ``cfg``, by name."""
    out = {"ctrl": ctrl_layout(cfg["index_bits"], cfg["slot_bits"], cfg["data_bits"]),
           "out": out_layout(cfg["index_bits"], cfg["out_bits"]),
           "SCHED": sched_layout(cfg["beta_bits"], cfg["sweep_bits"]),
           "RUN": run_layout(cfg["colour_bits"]),
           "STATE": value_layout("spin", 1),
           "J": value_layout("j", signed(cfg["w_bits"])),
           "H": value_layout("h", signed(cfg["h_bits"]))}
    if cfg.get("arch") == "lanes" and cfg.get("fields") == "incremental":
        out["EDGE"] = field_edge_layout(cfg["node_slot_bits"], cfg["w_bits"], cfg["nbr_bits"])
        out["NODE"] = field_node_layout(cfg["node_slot_bits"], cfg["h_bits"],
                                        cfg["colour_bits"], cfg["base_bits"], cfg["rows_bits"])
        out["COUNT"] = value_layout("count", cfg["data_bits"])
    elif cfg.get("arch") == "lanes":
        out["EDGE"] = edge_layout(cfg["nbr_bits"], cfg["w_bits"])
        out["NODE"] = node_layout(cfg["node_slot_bits"], cfg["h_bits"], cfg["colour_bits"])
        out["COUNT"] = value_layout("count", cfg["data_bits"])
    else:
        out["COLOUR"] = colour_layout(cfg["colour_bits"])
    return out


class LaneOp(enum.IntEnum):
    """The ``ctrl`` ops of ``PBitLanes`` (both field modes)."""
    EDGE = 0
    NODE = 1
    COUNT = 2
    STATE = 3
    SCHED = 4
    RUN = 5
    READ = 6


class Kind(enum.IntEnum):
    SAMPLE = 0
    BEST = 1
    ENERGY = 2
    COUNT = 3


class Schedule(wiring.Component):
    """The beta schedule of ``depth`` entries ``layout`` {beta, sweeps} and its walk.

    ``beta_next`` is the beta of the sweep after the current one, ``colour_next`` the
    colour class of the next cycle and ``colours`` the run's classes - 1.
    ``ctrl`` is the array's ctrl word (fields ``index`` and ``data``): with ``write``
    (a SCHED word accepted), entry ``index`` = ``data`` (0 sweeps means
    ``2**sweep_bits``); with ``start`` (a RUN word accepted), the run covers entries
    ``0..index``, colours ``0..data[16:]`` and samples every ``data[:16]`` sweeps.
    """

    def __init__(self, *, ctrl_layout, layout, depth: int, colour_bits: int,
                 lookahead: bool = False):
        self._layout, self._depth, self._colour_bits = layout, depth, colour_bits
        self._sweep_bits = Shape.cast(layout["sweeps"].shape).width
        self._lookahead = lookahead
        super().__init__({
            "ctrl": In(ctrl_layout), "write": In(1), "start": In(1), "advance": In(1),
            "colour": Out(colour_bits), "colour_next": Out(colour_bits),
            "beta": Out(Shape.cast(layout["beta"].shape)),
            "beta_next": Out(Shape.cast(layout["beta"].shape)), "colours": Out(colour_bits),
            "last_colour": Out(1), "sample_due": Out(1), "finished": Out(1),
            **({"sample_due_next": Out(1)} if lookahead else {}),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self._layout, depth=max(2, self._depth),
                                               init=[])  # 2: no 0-bit address at depth 1
        wp = mem.write_port()
        rp = mem.read_port(domain="comb")
        rp_next = mem.read_port(domain="comb")
        entry = Signal(bits_for(self._depth))
        sweep = Signal(self._sweep_bits)
        since_sample = Signal(SAMPLE_EVERY_BITS)
        last_entry = Signal.like(entry)
        sample_every = Signal(SAMPLE_EVERY_BITS)
        colours_used = Signal(self._colour_bits)       # colours - 1
        ctrl = self.ctrl
        m.d.comb += [wp.addr.eq(ctrl.index), wp.data.eq(ctrl.data), wp.en.eq(self.write),
                     rp.addr.eq(entry), self.beta.eq(rp.data.beta)]

        colour = self.colour
        last_sweep = (sweep + 1)[:self._sweep_bits] == rp.data.sweeps
        # the beta of the next sweep (the next entry's after the last sweep of one)
        m.d.comb += [rp_next.addr.eq(Mux(last_sweep & (entry != last_entry), entry + 1, entry)),
                     self.beta_next.eq(rp_next.data.beta), self.colours.eq(colours_used)]
        # due: a sample follows the current sweep, a register made from the next
        # since_sample and sample_every (so ``sample_due``, which gates every step, is
        # not behind an add and a comparison)
        due = Signal()
        run_fields = run_layout(self._colour_bits)
        run = data.View(run_fields, ctrl.data[:run_fields.size])
        since_next = Signal.like(since_sample)
        every_next = Signal.like(sample_every)
        m.d.comb += [
            self.last_colour.eq(colour == colours_used),
            self.sample_due.eq(self.last_colour & due),
            self.finished.eq(self.last_colour & last_sweep & (entry == last_entry)),
            since_next.eq(Mux(self.start, 0,
                              Mux(self.advance & self.last_colour,
                                  Mux(self.sample_due, 0, since_sample + 1), since_sample))),
            every_next.eq(Mux(self.start, run.sample_every, sample_every)),
            # the colour register's value in the next cycle
            self.colour_next.eq(Mux(self.start | (self.advance & self.last_colour), 0,
                                    Mux(self.advance, colour + 1, colour))),
        ]
        due_next = (every_next != 0) & (since_next + 1 == every_next)
        m.d.sync += due.eq(due_next)
        if self._lookahead:
            m.d.comb += self.sample_due_next.eq(
                (self.colour_next == Mux(self.start, run.colours, colours_used)) & due_next)
        with m.If(self.start):
            m.d.sync += [last_entry.eq(ctrl.index),
                         sample_every.eq(run.sample_every),
                         colours_used.eq(run.colours),
                         entry.eq(0), sweep.eq(0), colour.eq(0), since_sample.eq(0)]
        with m.Elif(self.advance):
            with m.If(self.last_colour):
                m.d.sync += colour.eq(0)
                with m.If(self.sample_due):
                    m.d.sync += since_sample.eq(0)
                with m.Else():
                    m.d.sync += since_sample.eq(since_sample + 1)
                with m.If(last_sweep):
                    m.d.sync += sweep.eq(0)
                    with m.If(~self.finished):
                        m.d.sync += entry.eq(entry + 1)
                with m.Else():
                    m.d.sync += sweep.eq(sweep + 1)
            with m.Else():
                m.d.sync += colour.eq(colour + 1)
        return m


class Recorder(wiring.Component):
    """Snapshot registers and the ``out`` record sequencer of ``n`` p-bits (see above)."""

    def __init__(self, *, n: int, word_bits: int, energy_bits: int, out_layout,
                 lookahead: bool = False):
        self._n, self._word_bits, self._lookahead = n, word_bits, lookahead
        super().__init__({
            "out": Out(stream.Signature(out_layout)),
            "take": In(1), "spins": In(n), "energy": In(signed(energy_bits)), "final": In(1),
            "best_spin": In(n), "best_energy": In(signed(energy_bits)),
            "cycles": In(32), "update_cycles": In(32),
            "busy": Out(1), **({"busy_next": Out(1)} if lookahead else {}),
        })

    def elaborate(self, platform):
        m = Module()
        W = self._word_bits
        nch = ceil_div(self._n, W)
        snap = Signal(nch * W)
        snap_energy = Signal.like(self.energy)
        final = Signal()
        phase = Signal(bits_for(2 * nch + 4))
        best_pad = Signal(nch * W)
        m.d.comb += best_pad.eq(self.best_spin)

        busy, out = self.busy, self.out
        o = out.payload
        m.d.comb += out.valid.eq(busy)
        with m.If(phase < nch):
            m.d.comb += [o.kind.eq(Kind.SAMPLE), o.index.eq(phase),
                         o.data.eq(snap.word_select(phase, W))]
        with m.Elif(phase == nch):
            m.d.comb += [o.kind.eq(Kind.ENERGY), o.index.eq(0), o.data.eq(snap_energy)]
        with m.Elif(phase < 2 * nch + 1):
            best_chunk = Signal.like(phase)
            m.d.comb += best_chunk.eq(phase - (nch + 1))
            m.d.comb += [o.kind.eq(Kind.BEST), o.index.eq(best_chunk),
                         o.data.eq(best_pad.word_select(best_chunk, W))]
        with m.Elif(phase == 2 * nch + 1):
            m.d.comb += [o.kind.eq(Kind.ENERGY), o.index.eq(1), o.data.eq(self.best_energy)]
        with m.Elif(phase == 2 * nch + 2):
            m.d.comb += [o.kind.eq(Kind.COUNT), o.index.eq(0), o.data.eq(self.cycles)]
        with m.Else():
            m.d.comb += [o.kind.eq(Kind.COUNT), o.index.eq(1), o.data.eq(self.update_cycles)]
        last_phase = Mux(final, 2 * nch + 3, nch)
        if self._lookahead:
            m.d.comb += self.busy_next.eq(
                self.take | (busy & ~(out.ready & (phase == last_phase))))
        with m.If(out.valid & out.ready):
            with m.If(phase == last_phase):
                m.d.sync += [busy.eq(0), phase.eq(0)]
            with m.Else():
                m.d.sync += phase.eq(phase + 1)
        with m.If(self.take):
            m.d.sync += [snap.eq(self.spins), snap_energy.eq(self.energy), busy.eq(1),
                         final.eq(self.final), phase.eq(0)]
        return m
