"""``PBitArray``: a graph-coloured array of fixed-point p-bits with one adder tree each.

Contract
--------
Topology (which p-bits are neighbours) is fixed at generation time by ``neighbours``
(sparse neighbour lists of at most ``max_degree`` entries; ``PBitArray.dense`` wires
every pair for small N). Weights J, biases h, colours, clamps, spins and the beta
schedule are programmed at run time through ``ctrl``.

Ports
  ``ctrl``  In stream, payload ``ctrl_layout``: {op, index, slot, data}. Accepted only
            while idle (``ready`` low while running or while records are being sent).
            ``Op.J``      J[index][slot] = data (signed ``w_bits``); slot is the position
                          of the neighbour in ``neighbours[index]``; writes to absent
                          slots are ignored.
            ``Op.H``      h[index] = data (signed ``h_bits``).
            ``Op.COLOUR`` colour[index] = data[:colour_bits]; clamp (never update) =
                          data[colour_bits].
            ``Op.STATE``  m[index] = +1 if data[0] else -1.
            ``Op.SCHED``  schedule entry index: beta_q = data[:beta_bits],
                          sweeps = data[beta_bits:beta_bits+sweep_bits] (0 means
                          2^sweep_bits).
            ``Op.RUN``    run schedule entries 0..index with colours 0..data[16:24]
                          (that field is colours - 1) and a sample every data[:16]
                          sweeps (0: none).
            ``Op.READ``   recompute the energy and send the final records (below).
  ``out``   Out stream, payload ``out_layout``: {kind, index, data}. A sample is
            ``Kind.SAMPLE`` chunks 0..n_chunks-1 (``word_bits`` spins each, bit = +1)
            then ``Kind.ENERGY`` index 0 (its energy). At the end of a run, or on
            READ, the final state is sent as a sample, then ``Kind.BEST`` chunks,
            ``Kind.ENERGY`` index 1 (best energy), ``Kind.COUNT`` index 0 (run
            cycles: energy cycle + update cycles + stalls) and index 1 (update cycles).
  ``running`` high from RUN acceptance until the final records are queued.

Sharing (``share``): p-bits listed in one group share one beta multiplier and one tanh
read, driven by the member whose colour is updating; the program must give a group's
members different colours (the host checks it). Groups from a colouring of the
topology (one member per colour class) divide those units by the number of colours.

Timing and guarantees
  * One colour class updates per cycle and its new spins are registered at the end of
    that cycle, so the next class sees them: exactly n/colours update decisions per
    cycle, a sweep every ``colours`` cycles, unless a sample is due while the previous
    one is still being sent (then the array stalls one cycle at a time).
  * The energy change of an update cycle is summed in the next cycle and compared with
    the best energy in the one after (off the update path); a run costs two cycles of
    energy terms and sum before its first update and two of drain after its last.
  * A p-bit's xorshift32 generator advances only when that p-bit updates.
  * Energy is exact: computed once per run from scratch, then updated by
    2 m_i F_i for every flip (requires J symmetric with a zero diagonal); the best
    energy and its state are kept after every update cycle (first strict minimum).
  * Bit-exact with ``tilefab.golden.pbit.PBitMachine`` (same formats and seeds).
"""

from __future__ import annotations

import enum
import math

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out


# A run's cycles beyond one per colour class: the energy terms and their sum at the
# start, and the two cycles in which the last update's energy and best state settle.
ENERGY_CYCLES = 2
DRAIN_CYCLES = 2


class Op(enum.IntEnum):
    J = 0
    H = 1
    COLOUR = 2
    STATE = 3
    SCHED = 4
    RUN = 5
    READ = 6


class Kind(enum.IntEnum):
    SAMPLE = 0
    BEST = 1
    ENERGY = 2
    COUNT = 3


def _bits(n: int) -> int:
    """Bits to hold 0..n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


def _check_int(name, value, lo, hi=None):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo \
            or (hi is not None and value > hi):
        allowed = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {allowed}, not {value!r}")


def check_formats(*, n_colours, w_bits, w_frac, h_bits, beta_bits, beta_frac, rand_bits,
                  lut_size, lut_step_frac, sched_depth, sweep_bits, word_bits):
    """The number formats and sizes every p-bit array shares, checked one way."""
    _check_int("n_colours", n_colours, 1, 256)
    _check_int("w_bits", w_bits, 2, 16)
    _check_int("w_frac", w_frac, 0, w_bits - 1)
    _check_int("h_bits", h_bits, 2, 24)
    _check_int("beta_bits", beta_bits, 1, 16)
    _check_int("beta_frac", beta_frac, 0, beta_bits)
    _check_int("rand_bits", rand_bits, 2, 32)
    _check_int("lut_step_frac", lut_step_frac, 0, 16)
    _check_int("sched_depth", sched_depth, 1, 1024)
    _check_int("sweep_bits", sweep_bits, 1, 32 - beta_bits if beta_bits < 32 else 1)
    _check_int("word_bits", word_bits, 1, 64)
    if not isinstance(lut_size, int) or lut_size < 2 or lut_size & (lut_size - 1):
        raise ValueError(f"lut_size must be a power of two >= 2, not {lut_size!r}")


def _tree_sum(terms):
    """Balanced adder tree, so the critical path grows with log2 of the fan-in."""
    terms = list(terms)
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        nxt = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


def _or_all(values):
    """OR of equal-width values: a multiplexer when at most one is non-zero."""
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


def tanh_table(*, lut_size: int, lut_step_frac: int, rand_bits: int) -> list[int]:
    """T[k] = round(tanh(k 2^-lut_step_frac) 2^(rand_bits-1)): the comparison offsets."""
    return [int(math.floor(math.tanh(k * 2.0 ** -lut_step_frac) * 2 ** (rand_bits - 1) + 0.5))
            for k in range(lut_size)]


class RecordUnit:
    """Snapshot registers and the ``out`` record sequencer (see the module docstring).

    ``take(spins, energy, final)`` returns the statements that latch a sample (and, when
    ``final``, the best state, best energy and the two counts after it); ``busy`` stays
    high until its last record has been accepted.
    """

    def __init__(self, m, out, *, n, word_bits, energy_bits, best_spin, best_energy,
                 cycles, update_cycles):
        W = word_bits
        nch = -(-n // W)
        self.snap = snap = Signal(nch * W)
        self.snap_energy = snap_energy = Signal(signed(energy_bits))
        self.busy = busy = Signal()
        self.final = final = Signal()
        self.phase = phase = Signal(_bits(2 * nch + 4))
        best_pad = Signal(nch * W)
        m.d.comb += best_pad.eq(best_spin)

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
            m.d.comb += [o.kind.eq(Kind.ENERGY), o.index.eq(1), o.data.eq(best_energy)]
        with m.Elif(phase == 2 * nch + 2):
            m.d.comb += [o.kind.eq(Kind.COUNT), o.index.eq(0), o.data.eq(cycles)]
        with m.Else():
            m.d.comb += [o.kind.eq(Kind.COUNT), o.index.eq(1), o.data.eq(update_cycles)]
        last_phase = Mux(final, 2 * nch + 3, nch)
        with m.If(out.valid & out.ready):
            with m.If(phase == last_phase):
                m.d.sync += [busy.eq(0), phase.eq(0)]
            with m.Else():
                m.d.sync += phase.eq(phase + 1)

    def take(self, spins, energy, final):
        return [self.snap.eq(spins), self.snap_energy.eq(energy), self.busy.eq(1),
                self.final.eq(final), self.phase.eq(0)]


class PBitArray(wiring.Component):
    """N p-bits with neighbour-list J, colour-sequential updates; see module docstring."""

    def __init__(self, *, neighbours, max_degree: int, n_colours: int, seeds,
                 w_bits: int = 8, w_frac: int = 0, h_bits: int = 10,
                 beta_bits: int = 8, beta_frac: int = 4,
                 lut_size: int = 64, lut_step_frac: int = 3, rand_bits: int = 16,
                 sched_depth: int = 8, sweep_bits: int = 16, word_bits: int = 32,
                 share=None):
        _check_int("max_degree", max_degree, 1)
        check_formats(n_colours=n_colours, w_bits=w_bits, w_frac=w_frac, h_bits=h_bits,
                      beta_bits=beta_bits, beta_frac=beta_frac, rand_bits=rand_bits,
                      lut_size=lut_size, lut_step_frac=lut_step_frac,
                      sched_depth=sched_depth, sweep_bits=sweep_bits, word_bits=word_bits)
        try:
            nbrs = tuple(tuple(int(j) for j in row) for row in neighbours)
        except TypeError:
            raise ValueError("neighbours must be a sequence of neighbour-index sequences")
        n = len(nbrs)
        if n < 1:
            raise ValueError("neighbours must describe at least one p-bit")
        for i, row in enumerate(nbrs):
            if len(row) > max_degree:
                raise ValueError(f"neighbours[{i}] has degree {len(row)}, above "
                                 f"max_degree={max_degree}")
            if len(set(row)) != len(row) or any(not 0 <= j < n or j == i for j in row):
                raise ValueError(f"neighbours[{i}] must list distinct p-bits in [0, {n - 1}] "
                                 f"other than {i}")
            for j in row:
                if i not in nbrs[j]:
                    raise ValueError(f"neighbours must be symmetric: {j} is a neighbour of "
                                     f"{i} but not the reverse")
        seeds = tuple(seeds)
        if len(seeds) != n or any(not isinstance(s, int) or not 0 < s < 2**32 for s in seeds):
            raise ValueError(f"seeds must be {n} non-zero 32-bit integers, one per p-bit")
        if len(set(seeds)) != n:
            raise ValueError("seeds must be distinct, so p-bits draw decorrelated streams")
        try:
            groups = tuple(tuple(int(i) for i in grp) for grp in (share or ()))
        except TypeError:
            raise ValueError("share must be a sequence of p-bit index sequences")
        seen = [i for grp in groups for i in grp]
        if any(not 0 <= i < n for i in seen) or len(set(seen)) != len(seen):
            raise ValueError(f"share must list distinct p-bits in [0, {n - 1}], each in at "
                             f"most one group")
        # every p-bit not in a group keeps a datapath of its own
        self._share = groups + tuple((i,) for i in range(n) if i not in set(seen))

        self._n = n
        self._nbrs = nbrs
        self._max_degree = max_degree
        self._n_colours = n_colours
        self._seeds = seeds
        self._w_bits, self._w_frac, self._h_bits = w_bits, w_frac, h_bits
        self._beta_bits, self._beta_frac = beta_bits, beta_frac
        self._lut_size, self._lut_step_frac, self._rand_bits = lut_size, lut_step_frac, rand_bits
        self._sched_depth, self._sweep_bits, self._word_bits = sched_depth, sweep_bits, word_bits

        self.colour_bits = _bits(n_colours)
        self.n_chunks = -(-n // word_bits)
        # Widest reachable field and energy, so nothing ever saturates or wraps.
        f_max = max(len(r) for r in nbrs) * (1 << (w_bits - 1)) + (1 << (h_bits - 1))
        self.field_bits = f_max.bit_length() + 1
        e_max = sum(len(r) for r in nbrs) * (1 << (w_bits - 1)) // 2 + n * (1 << (h_bits - 1))
        self.energy_bits = (2 * e_max).bit_length() + 1
        self.index_bits = _bits(max(n, sched_depth, self.n_chunks))
        self.slot_bits = _bits(max_degree)
        self.data_bits = max(32, w_bits, h_bits, beta_bits + sweep_bits, self.colour_bits + 1)
        self.out_bits = max(32, word_bits, self.energy_bits)
        self.ctrl_layout = data.StructLayout({
            "op": 3, "index": self.index_bits, "slot": self.slot_bits, "data": self.data_bits})
        self.out_layout = data.StructLayout({
            "kind": 2, "index": self.index_bits, "data": self.out_bits})
        self.sched_layout = data.StructLayout({"beta": beta_bits, "sweeps": sweep_bits})
        super().__init__({
            "ctrl": In(stream.Signature(self.ctrl_layout)),
            "out": Out(stream.Signature(self.out_layout)),
            "running": Out(1),
        })

    @classmethod
    def dense(cls, *, n: int, **kwargs):
        """Every p-bit wired to every other: any J pattern, for small n."""
        _check_int("n", n, 1, 64)
        return cls(neighbours=[[j for j in range(n) if j != i] for i in range(n)],
                   max_degree=max(1, n - 1), **kwargs)

    @property
    def n(self) -> int:
        return self._n

    @property
    def neighbours(self):
        return self._nbrs

    def config(self) -> dict:
        """Generation parameters a host needs to drive and model this array."""
        return {
            "n": self._n, "max_degree": self._max_degree, "n_colours": self._n_colours,
            "w_bits": self._w_bits, "w_frac": self._w_frac, "h_bits": self._h_bits,
            "beta_bits": self._beta_bits, "beta_frac": self._beta_frac,
            "lut_size": self._lut_size, "lut_step_frac": self._lut_step_frac,
            "rand_bits": self._rand_bits, "sched_depth": self._sched_depth,
            "sweep_bits": self._sweep_bits, "word_bits": self._word_bits,
            "index_bits": self.index_bits, "slot_bits": self.slot_bits,
            "data_bits": self.data_bits, "out_bits": self.out_bits,
            "colour_bits": self.colour_bits, "n_chunks": self.n_chunks,
            "energy_bits": self.energy_bits,
            "share": [list(g) for g in self._share if len(g) > 1],
        }

    def elaborate(self, platform):
        m = Module()
        n, nbrs = self._n, self._nbrs
        rb = self._rand_bits
        half = 1 << (rb - 1)
        fb = self.field_bits
        eb = self.energy_bits
        W = self._word_bits

        ctrl = self.ctrl.payload
        take = Signal()
        m.d.comb += take.eq(self.ctrl.valid & self.ctrl.ready)

        def wr(op, i=None):
            cond = take & (ctrl.op == op)
            return cond if i is None else cond & (ctrl.index == i)

        # -- per-p-bit state ---------------------------------------------------------
        spin = Signal(n, init=(1 << n) - 1)          # bit i = 1 means m_i = +1
        colour = [Signal(self.colour_bits, name=f"colour{i}") for i in range(n)]
        clamp = Signal(n)
        h = [Signal(signed(self._h_bits), name=f"h{i}") for i in range(n)]
        J = [[Signal(signed(self._w_bits), name=f"j{i}_{k}") for k in range(len(nbrs[i]))]
             for i in range(n)]
        rng = [Signal(32, init=self._seeds[i], name=f"rng{i}") for i in range(n)]

        for i in range(n):
            with m.If(wr(Op.H, i)):
                m.d.sync += h[i].eq(ctrl.data[:self._h_bits])
            with m.If(wr(Op.COLOUR, i)):
                m.d.sync += [colour[i].eq(ctrl.data[:self.colour_bits]),
                             clamp[i].eq(ctrl.data[self.colour_bits])]
            for k in range(len(nbrs[i])):
                with m.If(wr(Op.J, i) & (ctrl.slot == k)):
                    m.d.sync += J[i][k].eq(ctrl.data[:self._w_bits])

        # -- schedule memory ---------------------------------------------------------
        m.submodules.sched = sched = memory.Memory(shape=self.sched_layout,
                                                   depth=self._sched_depth, init=[])
        sw = sched.write_port()
        entry = Signal(_bits(self._sched_depth))
        sr = sched.read_port(domain="comb")
        m.d.comb += [sw.addr.eq(ctrl.index), sw.data.eq(ctrl.data),
                     sw.en.eq(wr(Op.SCHED)), sr.addr.eq(entry)]
        beta = sr.data.beta

        # -- the tanh table (one ROM, a combinational read port per p-bit) -------------
        m.submodules.lut = lut = memory.Memory(
            shape=unsigned(rb), depth=self._lut_size,
            init=tanh_table(lut_size=self._lut_size, lut_step_frac=self._lut_step_frac,
                            rand_bits=rb))

        # -- controller state --------------------------------------------------------
        colour_now = Signal(self.colour_bits)
        colours_used = Signal(self.colour_bits)       # colours - 1
        last_entry = Signal(_bits(self._sched_depth))
        sweep_in_entry = Signal(self._sweep_bits)
        sample_every = Signal(16)
        since_sample = Signal(16)
        cycles = Signal(32)
        update_cycles = Signal(32)
        energy = Signal(signed(eb))
        best_energy = Signal(signed(eb))
        best_spin = Signal(n)

        step = Signal()          # an update cycle happens now
        init_mode = Signal()     # the energy tree sums m_i (F_i + h_i) instead of flips

        # -- per-p-bit datapath ------------------------------------------------------
        spin_next = Signal(n)
        tree_terms = []
        fields, thresholds = [], [None] * n
        for i in range(n):
            terms = [Mux(spin[j], J[i][k], -J[i][k]) for k, j in enumerate(nbrs[i])]
            field = Signal(signed(fb), name=f"field{i}")
            m.d.comb += field.eq(_tree_sum(terms + [h[i]]))
            fields.append(field)

        # One beta multiplier and tanh read per group of p-bits that never update in
        # the same cycle (different colours): the group's selected member drives it.
        s = self._beta_frac + self._w_frac - self._lut_step_frac
        for g, grp in enumerate(self._share):
            if len(grp) == 1:
                gfield = fields[grp[0]]
            else:
                gfield = Signal(signed(fb), name=f"gfield{g}")
                # same bits: the members' colours differ, so at most one is selected
                m.d.comb += gfield.eq(_or_all([
                    Mux((colour[i] == colour_now) & ~clamp[i], fields[i].as_unsigned(), 0)
                    for i in grp]))
            mag = Signal(fb, name=f"mag{g}")
            m.d.comb += mag.eq(Mux(gfield < 0, -gfield, gfield))
            prod = Signal(self._beta_bits + fb, name=f"prod{g}")
            m.d.comb += prod.eq(beta * mag)
            idx = Signal(len(prod) + max(0, -s), name=f"lutidx{g}")
            if s > 0:
                m.d.comb += idx.eq((prod + (1 << (s - 1))) >> s)
            else:
                m.d.comb += idx.eq(prod << (-s))
            rp = lut.read_port(domain="comb")
            m.d.comb += rp.addr.eq(idx)
            t = Signal(rb, name=f"thr{g}")
            sat = idx >= self._lut_size
            m.d.comb += t.eq(Mux(sat, half, rp.data))
            lo = Signal(rb + 1, name=f"lo{g}")
            hi = Signal(rb + 1, name=f"hi{g}")
            m.d.comb += [lo.eq(half - t), hi.eq(half + t)]
            for i in grp:
                thresholds[i] = (lo, hi)

        for i in range(n):
            field, (lo, hi) = fields[i], thresholds[i]
            r = rng[i]
            x1 = Signal(32, name=f"xs{i}a")
            x2 = Signal(32, name=f"xs{i}b")
            x3 = Signal(32, name=f"xs{i}c")
            m.d.comb += [x1.eq(r ^ (r << 13)[:32]), x2.eq(x1 ^ (x1 >> 17)),
                         x3.eq(x2 ^ (x2 << 5)[:32])]
            u = x3[32 - rb:]
            up = Signal(name=f"up{i}")
            m.d.comb += up.eq(Mux(field < 0, u < lo, u < hi))
            upd = Signal(name=f"upd{i}")
            m.d.comb += upd.eq(step & (colour[i] == colour_now) & ~clamp[i])
            m.d.comb += spin_next[i].eq(Mux(upd, up, spin[i]))
            with m.If(upd):
                m.d.sync += r.eq(x3)
            flip_term = Mux(upd & (up != spin[i]), Mux(spin[i], field << 1, -(field << 1)), 0)
            init_term = Mux(spin[i], field + h[i], -(field + h[i]))
            # Registered, so the energy tree and best-state update run in the two
            # cycles after the update instead of lengthening it.
            term = Signal(signed(fb + 2), name=f"eterm{i}")
            m.d.sync += term.eq(Mux(init_mode, init_term, flip_term))
            tree_terms.append(term)

        # e1: the update (or energy-term) cycle has registered its terms this cycle
        # e2: energy_d/spin_d hold the energy and spins after that update
        e1, e2, e1_sample = Signal(), Signal(), Signal()
        total = Signal(signed(eb + 2))
        m.d.comb += total.eq(_tree_sum(tree_terms))
        energy_next = Signal(signed(eb))
        m.d.comb += energy_next.eq(energy + total)
        energy_init = Signal(signed(eb))
        m.d.comb += energy_init.eq(-(total >> 1))     # the sum is even for symmetric J
        energy_d = Signal(signed(eb))
        spin_d = Signal(n)

        # -- snapshot and output records ---------------------------------------------
        rec = RecordUnit(m, self.out, n=n, word_bits=W, energy_bits=eb, best_spin=best_spin,
                         best_energy=best_energy, cycles=cycles, update_cycles=update_cycles)
        snap_busy, take_snapshot = rec.busy, rec.take

        m.d.sync += [e1.eq(0), e2.eq(e1), e1_sample.eq(0)]
        with m.If(e1):
            m.d.sync += [energy.eq(energy_next), energy_d.eq(energy_next), spin_d.eq(spin)]
            with m.If(e1_sample):
                m.d.sync += take_snapshot(spin, energy_next, 0)
        with m.If(e2 & (energy_d < best_energy)):
            m.d.sync += [best_energy.eq(energy_d), best_spin.eq(spin_d)]

        # -- controller --------------------------------------------------------------
        last_colour = colour_now == colours_used
        sample_due = last_colour & (sample_every != 0) & (since_sample + 1 == sample_every)
        in_flight = e1 | e2

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.ctrl.ready.eq(~snap_busy & ~in_flight)
                for i in range(n):
                    with m.If(wr(Op.STATE, i)):
                        m.d.sync += spin[i].eq(ctrl.data[0])
                with m.If(wr(Op.RUN)):
                    m.d.sync += [last_entry.eq(ctrl.index), sample_every.eq(ctrl.data[:16]),
                                 colours_used.eq(ctrl.data[16:16 + self.colour_bits])]
                    m.next = "INIT"
                with m.If(wr(Op.READ)):
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += init_mode.eq(1)
                m.next = "READ_SUM"
            with m.State("READ_SUM"):
                m.d.sync += [energy.eq(energy_init), *take_snapshot(spin, energy_init, 1)]
                m.next = "IDLE"
            with m.State("INIT"):
                m.d.comb += [init_mode.eq(1), self.running.eq(1)]
                m.next = "INIT_SUM"
            with m.State("INIT_SUM"):
                m.d.comb += self.running.eq(1)
                m.d.sync += [energy.eq(energy_init), best_energy.eq(energy_init),
                             best_spin.eq(spin), entry.eq(0), sweep_in_entry.eq(0),
                             colour_now.eq(0), since_sample.eq(0), cycles.eq(ENERGY_CYCLES),
                             update_cycles.eq(0)]
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.running.eq(1)
                m.d.sync += cycles.eq(cycles + 1)
                # a due sample waits until the record unit will be free when it is taken
                with m.If(~(sample_due & (snap_busy | e1_sample))):
                    m.d.comb += step.eq(1)
                    m.d.sync += [update_cycles.eq(update_cycles + 1), spin.eq(spin_next),
                                 e1.eq(1)]
                    with m.If(last_colour):
                        m.d.sync += colour_now.eq(0)
                        with m.If(sample_due):
                            m.d.sync += [since_sample.eq(0), e1_sample.eq(1)]
                        with m.Else():
                            m.d.sync += since_sample.eq(since_sample + 1)
                        with m.If((sweep_in_entry + 1)[:self._sweep_bits] == sr.data.sweeps):
                            m.d.sync += sweep_in_entry.eq(0)
                            with m.If(entry == last_entry):
                                m.next = "FINISH"
                            with m.Else():
                                m.d.sync += entry.eq(entry + 1)
                        with m.Else():
                            m.d.sync += sweep_in_entry.eq(sweep_in_entry + 1)
                    with m.Else():
                        m.d.sync += colour_now.eq(colour_now + 1)
            with m.State("FINISH"):
                m.d.comb += self.running.eq(1)
                with m.If(in_flight):
                    m.d.sync += cycles.eq(cycles + 1)       # the energy pipeline drains
                with m.If(~snap_busy & ~in_flight):
                    m.d.sync += take_snapshot(spin, energy, 1)
                    m.next = "IDLE"
        return m
