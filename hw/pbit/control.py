"""The control both p-bit arrays share: the beta schedule walk and the record unit.

``Schedule`` holds the beta schedule (``SCHED`` writes) and walks it during a run, one
colour class at a time: ``start`` (a RUN accepted) latches the run's fields and restarts
at entry 0, sweep 0, colour 0; every ``advance`` (a colour class updated) moves to the
next class, and after the last class of a sweep to the next sweep or entry. Its outputs
are combinational from its registers: ``colour``, ``beta`` (the entry's beta),
``last_colour``, ``sample_due`` (the class ends a sweep after which a sample is due) and
``finished`` (an ``advance`` now ends the run).

``Recorder`` latches a snapshot on ``take`` (spins, their energy, and whether it is the
final one) and sends it on ``out``: ``Kind.SAMPLE`` chunks and ``Kind.ENERGY`` index 0,
then, when final, ``Kind.BEST`` chunks, ``Kind.ENERGY`` index 1 and ``Kind.COUNT``
index 0 and 1 (read from ``best_spin``, ``best_energy``, ``cycles``, ``update_cycles``
as the records leave). ``busy`` is high from ``take`` until the last record is accepted;
a ``take`` while busy is not allowed (the arrays never issue one).
"""

from __future__ import annotations

import enum

from amaranth import Module, Mux, Shape, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arith import bits_for, ceil_div

SAMPLE_EVERY_BITS = 16     # RUN data[:16]


class Kind(enum.IntEnum):
    SAMPLE = 0
    BEST = 1
    ENERGY = 2
    COUNT = 3


class Schedule(wiring.Component):
    """The beta schedule of ``depth`` entries ``layout`` {beta, sweeps} and its walk.

    ``ctrl`` is the array's ctrl word (fields ``index`` and ``data``): with ``write``
    (a SCHED word accepted), entry ``index`` = ``data`` (0 sweeps means
    ``2**sweep_bits``); with ``start`` (a RUN word accepted), the run covers entries
    ``0..index``, colours ``0..data[16:]`` and samples every ``data[:16]`` sweeps.
    """

    def __init__(self, *, ctrl_layout, layout, depth: int, colour_bits: int):
        self._layout, self._depth, self._colour_bits = layout, depth, colour_bits
        self._sweep_bits = Shape.cast(layout["sweeps"].shape).width
        super().__init__({
            "ctrl": In(ctrl_layout), "write": In(1), "start": In(1), "advance": In(1),
            "colour": Out(colour_bits), "beta": Out(Shape.cast(layout["beta"].shape)),
            "last_colour": Out(1), "sample_due": Out(1), "finished": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self._layout, depth=self._depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port(domain="comb")
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
        m.d.comb += [
            self.last_colour.eq(colour == colours_used),
            self.sample_due.eq(self.last_colour & (sample_every != 0) &
                               (since_sample + 1 == sample_every)),
            self.finished.eq(self.last_colour & last_sweep & (entry == last_entry)),
        ]
        with m.If(self.start):
            m.d.sync += [last_entry.eq(ctrl.index),
                         sample_every.eq(ctrl.data[:SAMPLE_EVERY_BITS]),
                         colours_used.eq(ctrl.data[16:16 + self._colour_bits]),
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

    def __init__(self, *, n: int, word_bits: int, energy_bits: int, out_layout):
        self._n, self._word_bits = n, word_bits
        super().__init__({
            "out": Out(stream.Signature(out_layout)),
            "take": In(1), "spins": In(n), "energy": In(signed(energy_bits)), "final": In(1),
            "best_spin": In(n), "best_energy": In(signed(energy_bits)),
            "cycles": In(32), "update_cycles": In(32),
            "busy": Out(1),
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
        with m.If(out.valid & out.ready):
            with m.If(phase == last_phase):
                m.d.sync += [busy.eq(0), phase.eq(0)]
            with m.Else():
                m.d.sync += phase.eq(phase + 1)
        with m.If(self.take):
            m.d.sync += [snap.eq(self.spins), snap_energy.eq(self.energy), busy.eq(1),
                         final.eq(self.final), phase.eq(0)]
        return m
