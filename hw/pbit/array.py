"""``PBitArray``: a graph-coloured array of fixed-point p-bits, each field one add of tables.

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

Structure: ``PBitArray`` is the controller (the run state machine, the energy and best
state) around an ``UpdateEngine`` (the programmed J, h, colours and clamps, the spins,
the generators, the field tables and the update decisions), a ``control.Schedule`` (the
beta schedule and its walk) and a ``control.Recorder`` (the ``out`` records).
``PBitPorts`` (ports, layouts, formats) and ``ControlState`` (the controller's shared
registers, schedule and recorder) are what ``PBitLanes`` shares with it.

Sharing (``share``): p-bits listed in one group share one beta multiplier and one tanh
read, driven by the member whose colour is updating; the program must give a group's
members different colours (the host checks it). Groups from a colouring of the
topology (one member per colour class) divide those units by the number of colours.

Timing and guarantees
  * One colour class updates per cycle and its new spins are registered at the end of
    that cycle, so the next class sees them: exactly n/colours update decisions per
    cycle, a sweep every ``colours`` cycles, unless a sample is due while the previous
    one is still being sent (then the array stalls one cycle at a time).
  * The energy terms of an update cycle are registered, summed by a tree registered
    every two adder levels (L = ``golden.pbit.energy_stages(n)`` stages) and compared
    with the best energy in the cycle after their sum (off the update path, so a large
    array's energy costs latency, not clock); a run costs 2 + L cycles of energy terms
    and sum before its first update and 2 + L of drain after its last.
  * Decisions (``z_bits``): 0 reads the tanh table after the field (one product, a
    table read and two comparisons in the update cycle); k > 0 is the quantile rule
    (``golden.pbit``): a p-bit compares its field with a threshold made for it while its
    previous update was made (block-RAM table and product per group, off the update
    path), so the update cycle is the sign of the field's table reads and -T - 1 (one
    carry-save level and one carry chain). A run of C classes then starts
    max(0, C - 2 - L) cycles later, and a one-class run waits a cycle between sweeps.
  * A p-bit's xorshift32 generator advances only when that p-bit updates.
  * Energy is exact: computed once per run from scratch, then updated by
    2 m_i F_i for every flip (requires J symmetric with a zero diagonal); the best
    energy and its state are kept after every update cycle (first strict minimum).
  * Bit-exact with ``tilefab.golden.pbit.PBitMachine`` (same formats and seeds).
"""

from __future__ import annotations

import enum
import math

from amaranth import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arith import bits_for, ceil_div, pipeline_stages, pipelined_sum, tree_sum
from ..params import check_int
from ..prng import xorshift32, xorshift32_int
from .control import (Kind, Recorder, Schedule, colour_layout, ctrl_layout,  # noqa: F401
                      out_layout, sched_layout, value_layout)  # (Kind: the records' kinds)

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


FORMATS = ("n_colours", "w_bits", "w_frac", "h_bits", "beta_bits", "beta_frac", "lut_size",
           "lut_step_frac", "rand_bits", "z_bits", "sched_depth", "sweep_bits", "word_bits")
Z_BITS_MAX = 12
QUANTILE_FRAC = 10      # the quantile rule's table: fraction bits of Q
RECIP_BITS = 16         # and of the reciprocal R(beta) = 2^RECIP_BITS / beta
Z_BETA_BITS_MAX = 10    # R(beta) is a table over every beta code


def check_formats(*, n_colours, w_bits, w_frac, h_bits, beta_bits, beta_frac, rand_bits,
                  lut_size, lut_step_frac, sched_depth, sweep_bits, word_bits,
                  z_bits=0) -> dict:
    """The number formats and sizes every p-bit array shares, checked one way (``FORMATS``)."""
    check_int("n_colours", n_colours, 1, 256)
    check_int("w_bits", w_bits, 2, 16)
    check_int("w_frac", w_frac, 0, w_bits - 1)
    check_int("h_bits", h_bits, 2, 24)
    check_int("beta_bits", beta_bits, 1, 16)
    check_int("beta_frac", beta_frac, 0, beta_bits)
    check_int("rand_bits", rand_bits, 2, 32)
    check_int("lut_step_frac", lut_step_frac, 0, 16)
    check_int("sched_depth", sched_depth, 1, 1024)
    check_int("sweep_bits", sweep_bits, 1, 32 - beta_bits if beta_bits < 32 else 1)
    check_int("word_bits", word_bits, 1, 64)
    check_int("lut_size", lut_size, 2, power_of_two=True)
    check_int("z_bits", z_bits, 0, min(rand_bits, Z_BITS_MAX))
    return {"n_colours": n_colours, "w_bits": w_bits, "w_frac": w_frac, "h_bits": h_bits,
            "beta_bits": beta_bits, "beta_frac": beta_frac, "lut_size": lut_size,
            "lut_step_frac": lut_step_frac, "rand_bits": rand_bits, "z_bits": z_bits,
            "sched_depth": sched_depth,
            "sweep_bits": sweep_bits, "word_bits": word_bits}


def tanh_table(*, lut_size: int, lut_step_frac: int, rand_bits: int) -> list[int]:
    """T[k] = round(tanh(k 2^-lut_step_frac) 2^(rand_bits-1)): the comparison offsets."""
    return [math.floor(math.tanh(k * 2.0 ** -lut_step_frac) * 2 ** (rand_bits - 1) + 0.5)
            for k in range(lut_size)]


def tanh_index(m, prod, shift: int, name: str):
    """The tanh table index of ``prod`` = beta |F|, ``shift`` fraction bits above the
    table step: rounded half up (``shift > 0``) or scaled up (``shift <= 0``)."""
    idx = Signal(len(prod) + max(0, -shift), name=name)
    if shift > 0:
        m.d.comb += idx.eq((prod + (1 << (shift - 1))) >> shift)
    else:
        m.d.comb += idx.eq(prod << (-shift))
    return idx


def _or_all(values):
    """OR of equal-width values: a multiplexer when at most one is non-zero."""
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


def _pairs(degree: int) -> list[tuple]:
    """The neighbour slots of a p-bit taken two at a time (one pair of none if isolated)."""
    return [tuple(range(k, min(k + 2, degree))) for k in range(0, degree, 2)] or [()]


def _pattern_sum(weights, slots, pattern: int):
    """sum_b J[slots[b]] m_b with m_b = +1 where bit b of ``pattern`` is set, else -1."""
    total = C(0, 1)
    for b, k in enumerate(slots):
        total = total + (weights[k] if pattern >> b & 1 else -weights[k])
    return total


def _pick(regs, sel):
    """regs[sel]: a multiplexer of registers (the only one when there is one)."""
    return regs[0] if len(regs) == 1 else Array(regs)[sel]


def sign_of_sum(m, ops, name: str):
    """1 where sum(ops) >= 0: carry-save adders (one logic level each) reduce ``ops`` to
    two, then one carry chain; every value is taken modulo 2^W, W wide enough for the
    exact sum, so its top bit is the sign."""
    W = max(len(op) for op in ops) + max(1, (len(ops) - 1).bit_length())
    vals = []
    for k, op in enumerate(ops):
        v = Signal(W, name=f"{name}_op{k}")
        m.d.comb += v.eq(op.as_signed() if op.shape().signed else op)
        vals.append(v)
    while len(vals) > 2:
        a, b, c = vals[:3]
        s, cy = Signal(W, name=f"{name}_s{len(vals)}"), Signal(W, name=f"{name}_c{len(vals)}")
        m.d.comb += [s.eq(a ^ b ^ c), cy.eq(((a & b) | (a & c) | (b & c)) << 1)]
        vals = vals[3:] + [s, cy]
    total = Signal(W, name=f"{name}_sum")
    m.d.comb += total.eq(vals[0] + vals[1] if len(vals) == 2 else vals[0])
    return ~total[W - 1]


class UpdateEngine(wiring.Component):
    """The p-bits of a ``PBitArray``: programmed registers, spins, generators and updates.

    ``ctrl``/``write``: a ctrl word accepted this cycle; J, H, COLOUR and STATE words are
    loaded here. ``step``: the p-bits of colour ``colour`` (not clamped) decide at
    ``beta`` and their spins (``spin``, bit i = +1) change at the end of the cycle; their
    generators step. A generator register holds the state whose top bits are the p-bit's
    next draw (the seed's successor at first), so the draw is a register.

    ``quantile`` (the quantile rule, ``golden.pbit``): every p-bit holds the threshold T
    of its next update and an update is F > T, the sign of F + ~T (``sign_of_sum``; no
    comparison after it). T is made in three stages per group (p-bits of different
    colours share them): A reads Q[v] from block RAM for the draw after the one being
    used by the member updating now, at ``beta_next`` (the beta of the next sweep), or
    with ``ahead`` for the next draw of the member of colour ``ahead_colour`` at
    ``beta`` (a run's first updates), and registers R of both betas (tables in logic);
    B multiplies Q by the R it needs into a register; C writes that member's T, and a
    decision in stage C takes T from the product register instead. A member's T is
    thus ready two cycles after its stage A, so a class may update again two cycles
    after it last did.
    ``total``: the sum of the energy terms registered ``energy_stages`` + 1 cycles
    before (their tree is registered every two levels, ``pipelined_sum``): 2 m_i F_i of
    every flip of a ``step`` cycle, or with ``init_mode`` 2 m_i (F_i + h_i) of every
    p-bit (four times the energy, negated).

    Fields: the neighbours of a p-bit are taken two at a time and each pair's
    sum J_a m_a + J_b m_b over its four spin patterns is a register (the first pair's
    with h_i added, and with 2 h_i for ``init_mode``), remade every cycle from J and h;
    F_i is the sum of one read per pair (for degree 4, one add), and an energy term is
    one add too (a negated pair table is the same table at the inverted pattern).
    """

    def __init__(self, *, neighbours, share, seeds, ctrl_layout, colour_bits: int,
                 w_bits: int, h_bits: int, beta_bits: int, field_bits: int,
                 energy_bits: int, rand_bits: int, tanh: list, shift: int,
                 quantile: dict | None = None):
        self._nbrs, self._share, self._seeds = neighbours, share, seeds
        self._n = n = len(neighbours)
        self._colour_bits, self._w_bits, self._h_bits = colour_bits, w_bits, h_bits
        self._field_bits, self._rand_bits = field_bits, rand_bits
        self._tanh, self._shift, self._quantile = tanh, shift, quantile
        self.energy_stages = pipeline_stages(n)     # ``total`` lags its terms this much
        super().__init__({
            "ctrl": In(ctrl_layout), "write": In(1),
            "colour": In(colour_bits), "colour_next": In(colour_bits), "beta": In(beta_bits),
            "ahead": In(1), "ahead_colour": In(colour_bits), "beta_next": In(beta_bits),
            "step": In(1), "init_mode": In(1),
            "spin": Out(n, init=(1 << n) - 1),
            "total": Out(signed(energy_bits + 2)),
        })

    def elaborate(self, platform):
        m = Module()
        n, nbrs, fb = self._n, self._nbrs, self._field_bits
        ctrl, spin = self.ctrl, self.spin

        def wr(op, i):
            return self.write & (ctrl.op == op) & (ctrl.index == i)

        colour = [Signal(self._colour_bits, name=f"colour{i}") for i in range(n)]
        clamp = Signal(n)
        h = [Signal(signed(self._h_bits), name=f"h{i}") for i in range(n)]
        J = [[Signal(signed(self._w_bits), name=f"j{i}_{k}") for k in range(len(nbrs[i]))]
             for i in range(n)]
        rng = [Signal(32, init=xorshift32_int(self._seeds[i]), name=f"rng{i}")
               for i in range(n)]
        def view(layout):
            return data.View(layout, ctrl.data[:layout.size])
        h_data = view(value_layout("h", signed(self._h_bits)))
        j_data = view(value_layout("j", signed(self._w_bits)))
        c_data = view(colour_layout(self._colour_bits))
        for i in range(n):
            with m.If(wr(Op.H, i)):
                m.d.sync += h[i].eq(h_data.h)
            with m.If(wr(Op.COLOUR, i)):
                m.d.sync += [colour[i].eq(c_data.colour), clamp[i].eq(c_data.clamp)]
            for k in range(len(nbrs[i])):
                with m.If(wr(Op.J, i) & (ctrl.slot == k)):
                    m.d.sync += J[i][k].eq(j_data.j)

        # The field from pair tables (``_pairs``): for every pair of neighbours, the sum
        # of their J m over the pair's four spin patterns is a register, the first pair's
        # with h added (``ftab``; ``itab``: 2h, for the energy from scratch), so a field
        # is one add of table reads. The tables follow J and h a cycle after a write (a
        # run or READ is at least two cycles after its last write).
        ftabs, itabs, ptabs, sels = [], [], [], []
        tw = max(self._h_bits + 1, self._w_bits + 2) + 1
        for i in range(n):
            pairs = _pairs(len(nbrs[i]))
            sels.append([Cat(*[spin[nbrs[i][k]] for k in slots]) for slots in pairs])
            ptab = []
            for p, slots in enumerate(pairs):
                regs = []
                for c in range(1 << len(slots)):
                    psum = _pattern_sum(J[i], slots, c)
                    if p == 0:
                        f = Signal(signed(tw), name=f"ftab{i}_{c}")
                        g = Signal(signed(tw), name=f"itab{i}_{c}")
                        m.d.sync += [f.eq(h[i] + psum), g.eq((h[i] << 1) + psum)]
                        regs.append((f, g))
                    else:
                        r = Signal(signed(self._w_bits + 2), name=f"ptab{i}_{p}_{c}")
                        m.d.sync += r.eq(psum)
                        regs.append(r)
                if p == 0:
                    ftabs.append([f for f, _ in regs])
                    itabs.append([g for _, g in regs])
                else:
                    ptab.append(regs)
            ptabs.append(ptab)

        # field_ops[i]: the table reads whose sum is F_i
        field_ops = [[_pick(ftabs[i], sels[i][0])] +
                     [_pick(ptabs[i][p], sels[i][p + 1]) for p in range(len(ptabs[i]))]
                     for i in range(n)]

        # cur[i]: p-bit i is of the current colour class, a register made from the next
        # cycle's class (so an update enable is one gate after ``step``); a COLOUR write
        # reaches it a cycle later, and runs start later than that
        cur = [Signal(name=f"cur{i}") for i in range(n)]
        upd = [Signal(name=f"upd{i}") for i in range(n)]
        for i in range(n):
            m.d.sync += cur[i].eq(colour[i] == self.colour_next)
            m.d.comb += upd[i].eq(self.step & cur[i] & ~clamp[i])

        if self._quantile is not None:
            ups = self._quantile_updates(m, rng, colour, cur, field_ops)
        else:
            fields = []
            for i in range(n):
                field = Signal(signed(fb), name=f"field{i}")
                m.d.comb += field.eq(tree_sum(field_ops[i], m))
                fields.append(field)

            def group_field(g, grp):
                if len(grp) == 1:
                    return fields[grp[0]]
                gfield = Signal(signed(fb), name=f"gfield{g}")
                # same bits: the members' colours differ, so at most one is selected
                m.d.comb += gfield.eq(_or_all([
                    Mux(cur[i] & ~clamp[i], fields[i].as_unsigned(), 0)
                    for i in grp]))
                return gfield

            ups = self._table_updates(m, rng, group_field)

        spin_next = Signal(n)
        terms = []
        for i in range(n):
            up = ups[i]
            m.d.comb += spin_next[i].eq(Mux(upd[i], up, spin[i]))
            with m.If(upd[i]):
                m.d.sync += rng[i].eq(xorshift32(rng[i]))
            # 2 m_i (A + sum_p P_p) with m_i the spin before the update, A = h_i + P_0
            # (a flip: 2 m_i F_i) or 2 h_i + P_0 (init_mode: 2 m_i (F_i + h_i)), as one add:
            # -A = ~A + 1, and a pair table negated is the table at the inverted pattern.
            neg = ~spin[i]
            a_i = _pick(ftabs[i] + itabs[i], Cat(sels[i][0], self.init_mode))
            ops = [Cat(neg, Mux(spin[i], a_i, ~a_i)).as_signed()]
            for p, tab in enumerate(ptabs[i]):
                sel = sels[i][p + 1]
                ops.append(Cat(neg if p == 0 else C(0, 1),
                               _pick(tab, sel ^ neg.replicate(len(sel)))).as_signed())
            if not ptabs[i]:
                ops.append(neg)
            active = self.init_mode | (upd[i] & (up != spin[i]))
            # Registered, so the energy tree and best-state update run in the two
            # cycles after the update instead of lengthening it.
            term = Signal(signed(fb + 2), name=f"eterm{i}")
            m.d.sync += term.eq(Mux(active, tree_sum(ops, m), 0))
            terms.append(term)
        m.d.comb += self.total.eq(pipelined_sum(m, terms, name="esum"))

        with m.If(self.step):
            m.d.sync += spin.eq(spin_next)
        for i in range(n):
            with m.If(wr(Op.STATE, i)):
                m.d.sync += spin[i].eq(ctrl.data[0])
        return m

    def _quantile_updates(self, m, rng, colour, cur, field_ops):
        """up_i = F_i > T_i, i.e. F_i + ~T_i >= 0: the sign of the field's table reads and
        the register ~T_i (``sign_of_sum``: a carry-save level and one carry chain), and
        the two stages that write T_i (see the class docstring)."""
        q = self._quantile
        table, recips, sh, zb = q["table"], q["recips"], q["shift"], q["z_bits"]
        qshape = signed(max(-min(table), max(table) + 1).bit_length() + 1)
        rshape = unsigned(max(recips).bit_length())
        tmax = max(abs(x) for x in table) * max(recips)
        tmax = tmax >> sh if sh >= 0 else tmax << -sh
        tshape = signed(tmax.bit_length() + 1)
        n, cb = self._n, self._colour_bits
        thr = [Signal(tshape, name=f"thr{i}") for i in range(n)]      # T_i
        t_use = [None] * n

        # stage A: the member and its bin, and R(beta) for the whole array: R of this
        # sweep's and of the next sweep's beta from a table in logic into registers
        # (block RAM's clock-to-output would precede the product), the next sweep's
        # when stepping (``step_b``)
        recip_c, recip_n = Signal(rshape), Signal(rshape)
        for name, beta, reg in (("recip", self.beta, recip_c),
                                ("recip_next", self.beta_next, recip_n)):
            m.submodules[name] = rmem = memory.Memory(
                shape=rshape, depth=len(recips), init=recips, attrs={"rom_style": "logic"})
            rrp = rmem.read_port(domain="comb")
            m.d.comb += rrp.addr.eq(beta)
            m.d.sync += reg.eq(rrp.data)
        valid_b, step_b = Signal(), Signal()
        colour_b = Signal(cb)
        recip_b = Signal(rshape)
        m.d.sync += [valid_b.eq(self.step | self.ahead), step_b.eq(self.step),
                     colour_b.eq(Mux(self.step, self.colour, self.ahead_colour))]
        m.d.comb += recip_b.eq(Mux(step_b, recip_n, recip_c))
        mem = None
        for g, grp in enumerate(self._share):
            if g % 2 == 0:          # two groups read one table (a true dual-port RAM)
                m.submodules[f"qtab{g}"] = mem = memory.Memory(shape=qshape, depth=len(table),
                                                              init=table)
            rp = mem.read_port()
            bins = []
            for i in grp:
                after = xorshift32(rng[i])[32 - zb:]        # the draw after this update's
                nxt = rng[i][32 - zb:]
                bins.append(Mux(self.step, Mux(cur[i], after, 0),
                                Mux(colour[i] == self.ahead_colour, nxt, 0)))
            m.d.comb += rp.addr.eq(_or_all(bins))
            # stage B: the product Q R for the member of colour colour_b, registered
            prod = Signal(signed(qshape.width + rshape.width + 1), name=f"qprod{g}")
            m.d.sync += prod.eq(rp.data * recip_b)
            t_new = Signal(tshape, name=f"tnew{g}")
            m.d.comb += t_new.eq(prod >> sh if sh >= 0 else prod << -sh)
            # stage C: T_i = Q R >> sh is written, and is read from the product the cycle
            # before (``tfwd``), so T is ready two cycles after stage A as before
            for i in grp:
                fwd = Signal(name=f"tfwd{i}")
                m.d.sync += fwd.eq(valid_b & (colour[i] == colour_b))
                with m.If(fwd):
                    m.d.sync += thr[i].eq(t_new)
                t_now = Signal(tshape, name=f"tnow{i}")
                m.d.comb += t_now.eq(Mux(fwd, t_new, thr[i]))
                t_use[i] = t_now
        return [sign_of_sum(m, field_ops[i] + [~t_use[i]], f"fdec{i}") for i in range(n)]

    def _table_updates(self, m, rng, group_field):
        """up_i from the tanh table: u < 1/2 -+ T[round(beta |F| / 2^s)], one product and
        table read per group."""
        n, rb, fb = self._n, self._rand_bits, self._field_bits
        half = 1 << (rb - 1)
        # One beta multiplier and tanh read per group of p-bits that never update in
        # the same cycle (different colours): the group's selected member drives it.
        m.submodules.lut = lut = memory.Memory(shape=unsigned(rb), depth=len(self._tanh),
                                               init=self._tanh)
        ups = [None] * n
        for g, grp in enumerate(self._share):
            gfield = group_field(g, grp)
            mag = Signal(fb, name=f"mag{g}")
            m.d.comb += mag.eq(Mux(gfield < 0, -gfield, gfield))
            prod = Signal(len(self.beta) + fb, name=f"prod{g}")
            m.d.comb += prod.eq(self.beta * mag)
            idx = tanh_index(m, prod, self._shift, f"lutidx{g}")
            rp = lut.read_port(domain="comb")
            m.d.comb += rp.addr.eq(idx)
            t = Signal(rb, name=f"thr{g}")
            m.d.comb += t.eq(Mux(idx >= len(self._tanh), half, rp.data))
            lo = Signal(rb + 1, name=f"lo{g}")
            hi = Signal(rb + 1, name=f"hi{g}")
            m.d.comb += [lo.eq(half - t), hi.eq(half + t)]
            for i in grp:
                u = rng[i][32 - rb:]
                ups[i] = Signal(name=f"up{i}")
                m.d.comb += ups[i].eq(Mux(gfield < 0, u < lo, u < hi))
        return ups


class PBitPorts(wiring.Component):
    """The ports, record layouts and number formats both p-bit arrays share.

    A subclass checks ``formats`` (``check_formats``) and its topology, sizes its fields,
    then calls ``super().__init__``: the seeds are checked, every format is stored as
    ``self._<name>``, and ``ctrl_layout``, ``out_layout``, ``sched_layout`` and the
    ``ctrl``, ``out`` and ``running`` ports are built from the widths.
    """

    def __init__(self, *, n: int, seeds, formats: dict, energy_bits: int, index_bits: int,
                 slot_bits: int, data_bits: int):
        seeds = tuple(seeds)
        if len(seeds) != n or any(not isinstance(s, int) or not 0 < s < 2**32 for s in seeds):
            raise ValueError(f"seeds must be {n} non-zero 32-bit integers, one per p-bit")
        if len(set(seeds)) != n:
            raise ValueError("seeds must be distinct, so p-bits draw decorrelated streams")
        self._n, self._seeds = n, seeds
        for name in FORMATS:
            setattr(self, f"_{name}", formats[name])
        self.energy_bits, self.index_bits = energy_bits, index_bits
        self.slot_bits, self.data_bits = slot_bits, data_bits
        self.out_bits = max(32, formats["word_bits"], energy_bits)
        self.ctrl_layout = ctrl_layout(index_bits, slot_bits, data_bits)
        self.out_layout = out_layout(index_bits, self.out_bits)
        self.sched_layout = sched_layout(formats["beta_bits"], formats["sweep_bits"])
        super().__init__({
            "ctrl": In(stream.Signature(self.ctrl_layout)),
            "out": Out(stream.Signature(self.out_layout)),
            "running": Out(1),
        })

    @property
    def n(self) -> int:
        return self._n

    def _config(self, head: dict, tail: dict) -> dict:
        """``head``, the formats and the shared widths, then ``tail``."""
        return {**head, **{name: getattr(self, f"_{name}") for name in FORMATS},
                "index_bits": self.index_bits, "slot_bits": self.slot_bits,
                "data_bits": self.data_bits, "out_bits": self.out_bits,
                "colour_bits": self.colour_bits, "n_chunks": self.n_chunks,
                "energy_bits": self.energy_bits, **tail}


class ControlState:
    """The controller parts both p-bit arrays share, built into ``m`` for ``array``.

    ``take`` is high when a ctrl word is accepted, ``wr(op)`` when it has op ``op``;
    ``sched`` is a ``Schedule`` fed by the SCHED and RUN words; ``rec`` is a ``Recorder``
    driving ``array.out``, taking snapshots of ``spins`` and reporting the registers
    ``best_spin``, ``best_energy``, ``cycles`` and ``update_cycles``. ``energy`` is the
    current energy; the controller loads it with ``energy_next`` (``energy + delta``,
    after an update) or ``energy_init`` (``-terms / 2``, from scratch). With
    ``lookahead``, the schedule and record unit also give next-cycle values
    (``sample_due_next``, ``busy_next``) for a controller that registers its step.
    """

    def __init__(self, m, array, *, spins, delta, terms, lookahead: bool = False):
        eb = array.energy_bits
        self.ctrl = ctrl = array.ctrl.payload
        self.take = Signal()
        m.d.comb += self.take.eq(array.ctrl.valid & array.ctrl.ready)
        m.submodules.schedule = self.sched = Schedule(
            ctrl_layout=array.ctrl_layout, layout=array.sched_layout,
            depth=array.config()["sched_depth"], colour_bits=array.colour_bits,
            lookahead=lookahead)
        m.submodules.records = self.rec = Recorder(
            n=array.n, word_bits=array.config()["word_bits"], energy_bits=eb,
            out_layout=array.out_layout, lookahead=lookahead)
        wiring.connect(m, self.rec.out, wiring.flipped(array.out))
        m.d.comb += [self.sched.ctrl.eq(ctrl), self.sched.write.eq(self.wr(Op.SCHED)),
                     self.sched.start.eq(self.wr(Op.RUN))]

        self.cycles = Signal(32)
        self.update_cycles = Signal(32)
        self.energy = Signal(signed(eb))
        self.best_energy = Signal(signed(eb))
        self.best_spin = Signal(array.n)
        m.d.comb += [self.rec.spins.eq(spins), self.rec.best_spin.eq(self.best_spin),
                     self.rec.best_energy.eq(self.best_energy), self.rec.cycles.eq(self.cycles),
                     self.rec.update_cycles.eq(self.update_cycles)]
        self.energy_next = Signal(signed(eb))
        self.energy_init = Signal(signed(eb))
        m.d.comb += [self.energy_next.eq(self.energy + delta),
                     self.energy_init.eq(-(terms >> 1))]     # the sum is even for symmetric J

    def wr(self, op):
        return self.take & (self.ctrl.op == op)


class PBitArray(PBitPorts):
    """N p-bits with neighbour-list J, colour-sequential updates; see module docstring."""

    def __init__(self, *, neighbours, max_degree: int, n_colours: int, seeds,
                 w_bits: int = 8, w_frac: int = 0, h_bits: int = 10,
                 beta_bits: int = 8, beta_frac: int = 4,
                 lut_size: int = 64, lut_step_frac: int = 3, rand_bits: int = 16,
                 sched_depth: int = 8, sweep_bits: int = 16, word_bits: int = 32,
                 share=None, z_bits: int = 0):
        check_int("max_degree", max_degree, 1)
        formats = check_formats(
            n_colours=n_colours, w_bits=w_bits, w_frac=w_frac, h_bits=h_bits,
            beta_bits=beta_bits, beta_frac=beta_frac, rand_bits=rand_bits, lut_size=lut_size,
            lut_step_frac=lut_step_frac, sched_depth=sched_depth, sweep_bits=sweep_bits,
            word_bits=word_bits, z_bits=z_bits)
        if z_bits and beta_bits > Z_BETA_BITS_MAX:
            raise ValueError(f"beta_bits: {beta_bits} is not allowed with z_bits > 0, must be "
                             f"1..{Z_BETA_BITS_MAX} (the reciprocal table covers every code)")
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

        self._nbrs = nbrs
        self._max_degree = max_degree

        self.colour_bits = bits_for(n_colours)
        self.n_chunks = ceil_div(n, word_bits)
        # Widest reachable field and energy, so nothing ever saturates or wraps.
        f_max = max(len(r) for r in nbrs) * (1 << (w_bits - 1)) + (1 << (h_bits - 1))
        self.field_bits = f_max.bit_length() + 1
        e_max = sum(len(r) for r in nbrs) * (1 << (w_bits - 1)) // 2 + n * (1 << (h_bits - 1))
        super().__init__(
            n=n, seeds=seeds, formats=formats, energy_bits=(2 * e_max).bit_length() + 1,
            index_bits=bits_for(max(n, sched_depth, self.n_chunks)),
            slot_bits=bits_for(max_degree),
            data_bits=max(32, w_bits, h_bits, beta_bits + sweep_bits, self.colour_bits + 1))

    @classmethod
    def dense(cls, *, n: int, **kwargs):
        """Every p-bit wired to every other: any J pattern, for small n."""
        check_int("n", n, 1, 64)
        return cls(neighbours=[[j for j in range(n) if j != i] for i in range(n)],
                   max_degree=max(1, n - 1), **kwargs)

    @property
    def neighbours(self):
        return self._nbrs

    def quantile_params(self) -> dict:
        """The quantile rule's tables: Q[v] = round(atanh((2v + 1) 2^-z - 1) 2^QUANTILE_FRAC),
        R(b) = round(2^RECIP_BITS / b) (R(0) = 2^(RECIP_BITS + 1)), and the shift of Q R."""
        z = self._z_bits
        table = [math.floor(math.atanh((2 * v + 1) * 2.0 ** -z - 1) * 2 ** QUANTILE_FRAC + 0.5)
                 for v in range(1 << z)]
        recips = [1 << (RECIP_BITS + 1)] + [((1 << (RECIP_BITS + 1)) + b) // (2 * b)
                                            for b in range(1, 1 << self._beta_bits)]
        return {"z_bits": z, "table": table, "recips": recips,
                "shift": RECIP_BITS + QUANTILE_FRAC - self._beta_frac - self._w_frac}

    def config(self) -> dict:
        """Generation parameters a host needs to drive and model this array."""
        return self._config({"n": self._n, "max_degree": self._max_degree},
                            {"share": [list(g) for g in self._share if len(g) > 1]})

    def elaborate(self, platform):
        m = Module()
        n, eb = self._n, self.energy_bits
        m.submodules.engine = engine = UpdateEngine(
            neighbours=self._nbrs, share=self._share, seeds=self._seeds,
            ctrl_layout=self.ctrl_layout, colour_bits=self.colour_bits, w_bits=self._w_bits,
            h_bits=self._h_bits, beta_bits=self._beta_bits, field_bits=self.field_bits,
            energy_bits=eb, rand_bits=self._rand_bits,
            tanh=tanh_table(lut_size=self._lut_size, lut_step_frac=self._lut_step_frac,
                            rand_bits=self._rand_bits),
            shift=self._beta_frac + self._w_frac - self._lut_step_frac,
            quantile=self.quantile_params() if self._z_bits else None)
        spin = engine.spin
        L = engine.energy_stages
        # the spins of an update cycle, L cycles later, when that cycle's energy arrives
        spin_at = spin
        for k in range(L):
            nxt = Signal(n, name=f"spin_pipe{k}")
            m.d.sync += nxt.eq(spin_at)
            spin_at = nxt
        # (init_mode terms are 2 m_i (F_i + h_i): their sum is four times -E)
        c = ControlState(m, self, spins=spin_at, delta=engine.total,
                         terms=engine.total >> 1, lookahead=True)
        sched, rec, wr = c.sched, c.rec, c.wr
        m.d.comb += [engine.ctrl.eq(c.ctrl), engine.write.eq(c.take),
                     engine.colour.eq(sched.colour), engine.colour_next.eq(sched.colour_next),
                     engine.beta.eq(sched.beta),
                     engine.beta_next.eq(sched.beta_next)]
        energy, best_energy, best_spin = c.energy, c.best_energy, c.best_spin
        cycles, update_cycles = c.cycles, c.update_cycles
        energy_next, energy_init = c.energy_next, c.energy_init

        # e1: an update cycle has registered its terms this cycle (e1_sample: a sample is
        # due after it); e_at, L cycles later: their sum is ``total``; e2: energy_d and
        # spin_d hold the energy and spins after that update
        e1, e2, e1_sample = Signal(), Signal(), Signal()
        m.d.sync += [e1.eq(0), e1_sample.eq(0)]
        flags, samples = [e1], [e1_sample]
        for k in range(L):
            f, smp = Signal(name=f"epipe{k}"), Signal(name=f"spipe{k}")
            m.d.sync += [f.eq(flags[-1]), smp.eq(samples[-1])]
            flags.append(f)
            samples.append(smp)
        e_at, sample_at = flags[-1], samples[-1]
        m.d.sync += e2.eq(e_at)
        energy_d = Signal(signed(eb))
        spin_d = Signal(n)
        with m.If(e_at):
            m.d.sync += [energy.eq(energy_next), energy_d.eq(energy_next), spin_d.eq(spin_at)]
            with m.If(sample_at):
                m.d.comb += [rec.take.eq(1), rec.energy.eq(energy_next)]
        with m.If(e2 & (energy_d < best_energy)):
            m.d.sync += [best_energy.eq(energy_d), best_spin.eq(spin_d)]

        in_flight = _or_all(flags + [e2])
        # go: an update cycle, a register made from the next cycle's state (so ``step``,
        # which every p-bit's update, generator and threshold read follow, is not behind
        # the run FSM's decoding). In RUN, a due sample waits until the record unit will
        # be free when it is taken, and a one-class run under the quantile rule waits a
        # cycle between updates (its next thresholds are two cycles away).
        go, run_next = Signal(), Signal()
        quantile = bool(self._z_bits)
        sample_in_flight_next = _or_all([go & sched.sample_due] + samples[:-1])
        bubble_next = (go & (sched.colours == 0)) if quantile else C(0, 1)
        m.d.sync += go.eq(run_next & ~(sched.sample_due_next
                                       & (rec.busy_next | sample_in_flight_next))
                          & ~bubble_next)
        m.d.comb += [engine.step.eq(go), sched.advance.eq(go)]
        wait = Signal(range(L + 1))
        # With the quantile rule the thresholds of the run's first updates are made one
        # colour class per cycle from INIT on, in PREP for the classes left after INIT_SUM.
        prep_colour = Signal(self.colour_bits + 1)
        prep_more = Signal()
        m.d.comb += prep_more.eq(quantile & (prep_colour <= sched.colours))
        # init_mode is high in READ and INIT, from a register set as the FSM enters them
        # (it selects every p-bit's energy term, so no state decoding sits in front of it)
        init_mode = Signal()
        m.d.sync += init_mode.eq(0)
        m.d.comb += engine.init_mode.eq(init_mode)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.ctrl.ready.eq(~rec.busy & ~in_flight)
                m.d.sync += wait.eq(0)
                with m.If(wr(Op.RUN) | wr(Op.READ)):
                    m.d.sync += init_mode.eq(1)
                with m.If(wr(Op.RUN)):
                    m.next = "INIT"
                with m.If(wr(Op.READ)):
                    m.next = "READ"
            with m.State("READ"):
                m.next = "READ_SUM" if L == 0 else "READ_WAIT"
            with m.State("READ_WAIT"):                      # the energy tree's stages
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == L - 1):
                    m.next = "READ_SUM"
            with m.State("READ_SUM"):
                m.d.sync += energy.eq(energy_init)
                m.d.comb += [rec.take.eq(1), rec.energy.eq(energy_init), rec.final.eq(1)]
                m.next = "IDLE"
            with m.State("INIT"):
                m.d.comb += [self.running.eq(1),
                             engine.ahead.eq(quantile), engine.ahead_colour.eq(0)]
                m.d.sync += prep_colour.eq(1)
                m.next = "INIT_SUM" if L == 0 else "INIT_WAIT"
            with m.State("INIT_WAIT"):
                m.d.comb += [self.running.eq(1), engine.ahead.eq(prep_more),
                             engine.ahead_colour.eq(prep_colour)]
                m.d.sync += [wait.eq(wait + 1), prep_colour.eq(prep_colour + 1)]
                with m.If(wait == L - 1):
                    m.next = "INIT_SUM"
            with m.State("INIT_SUM"):
                m.d.comb += [self.running.eq(1), engine.ahead.eq(prep_more),
                             engine.ahead_colour.eq(prep_colour)]
                m.d.sync += [energy.eq(energy_init), best_energy.eq(energy_init),
                             best_spin.eq(spin), cycles.eq(ENERGY_CYCLES + L),
                             update_cycles.eq(0), prep_colour.eq(prep_colour + 1)]
                with m.If(prep_more & (prep_colour != sched.colours)):
                    m.next = "PREP"
                with m.Else():
                    m.d.comb += run_next.eq(1)
                    m.next = "RUN"
            with m.State("PREP"):
                m.d.comb += [self.running.eq(1), engine.ahead.eq(1),
                             engine.ahead_colour.eq(prep_colour)]
                m.d.sync += [cycles.eq(cycles + 1), prep_colour.eq(prep_colour + 1)]
                with m.If(prep_colour == sched.colours):
                    m.d.comb += run_next.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.running.eq(1), run_next.eq(~(go & sched.finished))]
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(go):
                    m.d.sync += [update_cycles.eq(update_cycles + 1), e1.eq(1),
                                 e1_sample.eq(sched.sample_due)]
                    with m.If(sched.finished):
                        m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += self.running.eq(1)
                with m.If(in_flight):
                    m.d.sync += cycles.eq(cycles + 1)       # the energy pipeline drains
                with m.If(~rec.busy & ~in_flight):
                    m.d.comb += [rec.take.eq(1), rec.energy.eq(energy), rec.final.eq(1)]
                    m.next = "IDLE"
        return m
