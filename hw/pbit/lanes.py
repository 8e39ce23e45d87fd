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
"""

from __future__ import annotations

import enum

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .array import RecordUnit, _bits, _check_int, check_formats, tanh_table

DRAIN = 4            # pipeline stages after the issue stage that still hold a p-bit


class LaneOp(enum.IntEnum):
    EDGE = 0
    NODE = 1
    COUNT = 2
    STATE = 3
    SCHED = 4
    RUN = 5
    READ = 6


def _xorshift32(m, r, name):
    x1, x2, x3 = (Signal(32, name=f"{name}{k}") for k in "abc")
    m.d.comb += [x1.eq(r ^ (r << 13)[:32]), x2.eq(x1 ^ (x1 >> 17)),
                 x3.eq(x2 ^ (x2 << 5)[:32])]
    return x3


class PBitLanes(wiring.Component):
    """N p-bits served by ``lanes`` pipelined update engines; see the module docstring."""

    def __init__(self, *, n: int, lanes: int, edge_depth: int, max_degree: int,
                 n_colours: int, seeds, w_bits: int = 8, w_frac: int = 0, h_bits: int = 10,
                 beta_bits: int = 8, beta_frac: int = 4, lut_size: int = 64,
                 lut_step_frac: int = 3, rand_bits: int = 16, sched_depth: int = 8,
                 sweep_bits: int = 16, word_bits: int = 32):
        _check_int("n", n, 1, 1 << 16)
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1 \
                or lanes > 64 or lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two in [1, 64], not {lanes!r}")
        _check_int("edge_depth", edge_depth, 1, 1 << 20)
        _check_int("max_degree", max_degree, 1, n)
        check_formats(n_colours=n_colours, w_bits=w_bits, w_frac=w_frac, h_bits=h_bits,
                      beta_bits=beta_bits, beta_frac=beta_frac, rand_bits=rand_bits,
                      lut_size=lut_size, lut_step_frac=lut_step_frac,
                      sched_depth=sched_depth, sweep_bits=sweep_bits, word_bits=word_bits)
        seeds = tuple(seeds)
        if len(seeds) != n or any(not isinstance(s, int) or not 0 < s < 2**32 for s in seeds):
            raise ValueError(f"seeds must be {n} non-zero 32-bit integers, one per p-bit")
        if len(set(seeds)) != n:
            raise ValueError("seeds must be distinct, so p-bits draw decorrelated streams")

        self._n, self._lanes, self._edge_depth = n, lanes, edge_depth
        self._max_degree, self._n_colours, self._seeds = max_degree, n_colours, seeds
        self._w_bits, self._w_frac, self._h_bits = w_bits, w_frac, h_bits
        self._beta_bits, self._beta_frac = beta_bits, beta_frac
        self._lut_size, self._lut_step_frac, self._rand_bits = lut_size, lut_step_frac, rand_bits
        self._sched_depth, self._sweep_bits, self._word_bits = sched_depth, sweep_bits, word_bits

        self.slots = -(-n // lanes)                     # node-table depth per lane
        self.lane_bits = _bits(lanes) if lanes > 1 else 0
        self.nbr_bits = _bits(n)
        self.node_slot_bits = _bits(self.slots)
        self.colour_bits = _bits(n_colours)
        self.n_chunks = -(-n // word_bits)
        # Energy passes accumulate sum J m + 2h; nothing may saturate or wrap.
        f_max = max_degree * (1 << (w_bits - 1)) + (1 << h_bits)
        self.field_bits = f_max.bit_length() + 1
        ends = min(lanes * edge_depth, n * max_degree)
        e_max = ends * (1 << (w_bits - 1)) // 2 + n * (1 << (h_bits - 1))
        self.energy_bits = (2 * e_max).bit_length() + 2
        self.index_bits = _bits(max(n, sched_depth, self.n_chunks, edge_depth, self.slots + 1))
        self.slot_bits = max(1, self.lane_bits)
        self.edge_layout = data.StructLayout({
            "nbr": self.nbr_bits, "j": signed(w_bits), "last": 1})
        self.node_layout = data.StructLayout({
            "slot": self.node_slot_bits, "h": signed(h_bits), "colour": self.colour_bits,
            "clamp": 1})
        self.data_bits = max(32, self.edge_layout.size, self.node_layout.size,
                             beta_bits + sweep_bits)
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

    @property
    def n(self) -> int:
        return self._n

    @property
    def neighbours(self):
        """None: the topology is programmed at run time, not wired."""
        return None

    def config(self) -> dict:
        """Generation parameters a host needs to drive and model this array."""
        return {
            "arch": "lanes", "n": self._n, "lanes": self._lanes,
            "edge_depth": self._edge_depth, "max_degree": self._max_degree,
            "n_colours": self._n_colours,
            "w_bits": self._w_bits, "w_frac": self._w_frac, "h_bits": self._h_bits,
            "beta_bits": self._beta_bits, "beta_frac": self._beta_frac,
            "lut_size": self._lut_size, "lut_step_frac": self._lut_step_frac,
            "rand_bits": self._rand_bits, "sched_depth": self._sched_depth,
            "sweep_bits": self._sweep_bits, "word_bits": self._word_bits,
            "index_bits": self.index_bits, "slot_bits": self.slot_bits,
            "data_bits": self.data_bits, "out_bits": self.out_bits,
            "colour_bits": self.colour_bits, "n_chunks": self.n_chunks,
            "energy_bits": self.energy_bits, "nbr_bits": self.nbr_bits,
            "node_slot_bits": self.node_slot_bits, "slots": self.slots,
        }

    def elaborate(self, platform):
        m = Module()
        n, P, S = self._n, self._lanes, self.slots
        rb = self._rand_bits
        half = 1 << (rb - 1)
        fb, eb = self.field_bits, self.energy_bits
        lut_bits = _bits(self._lut_size)

        ctrl = self.ctrl.payload
        take = Signal()
        m.d.comb += take.eq(self.ctrl.valid & self.ctrl.ready)

        def wr(op):
            return take & (ctrl.op == op)

        # -- spins: p-bit i is bit i; lane l writes only bits l, l+P, l+2P, ... --------
        lb = self.lane_bits
        flat = Signal(S * P, init=(1 << (S * P)) - 1)     # bit i = m_i is +1

        def own_bit(lane, slot):
            """Spin of the p-bit at ``slot`` of ``lane`` (index slot * lanes + lane)."""
            return flat.bit_select(Cat(Const(lane, lb), slot) if lb else slot, 1)
        best_spin = Signal(n)

        # -- schedule ----------------------------------------------------------------
        m.submodules.sched = sched = memory.Memory(shape=self.sched_layout,
                                                   depth=self._sched_depth, init=[])
        sw = sched.write_port()
        entry = Signal(_bits(self._sched_depth))
        sr = sched.read_port(domain="comb")
        m.d.comb += [sw.addr.eq(ctrl.index), sw.data.eq(ctrl.data),
                     sw.en.eq(wr(LaneOp.SCHED)), sr.addr.eq(entry)]
        beta = Signal(self._beta_bits)
        m.d.sync += beta.eq(sr.data.beta)      # entry changes only at a pass boundary

        # -- controller state --------------------------------------------------------
        colour_now = Signal(self.colour_bits)
        colours_used = Signal(self.colour_bits)
        last_entry = Signal(_bits(self._sched_depth))
        sweep_in_entry = Signal(self._sweep_bits)
        sample_every = Signal(16)
        since_sample = Signal(16)
        cycles = Signal(32)
        update_cycles = Signal(32)
        energy = Signal(signed(eb))
        best_energy = Signal(signed(eb))
        energy_mode = Signal()        # pass sums m_i (F_i + h_i); no spin or PRNG changes
        issuing = Signal()            # lanes may issue edges this cycle
        rewind = Signal()             # pointers back to the first entry
        any_work = Signal()

        lut_init = tanh_table(lut_size=self._lut_size, lut_step_frac=self._lut_step_frac,
                              rand_bits=rb)
        shift = self._beta_frac + self._w_frac - self._lut_step_frac
        lane_de, lane_ee, works = [], [], []
        for l in range(P):
            # memories ------------------------------------------------------------
            emem = memory.Memory(shape=self.edge_layout, depth=self._edge_depth, init=[])
            nmem = memory.Memory(shape=self.node_layout, depth=S, init=[])
            seeds = [self._seeds[s * P + l] if s * P + l < n else 1 for s in range(S)]
            rmem = memory.Memory(shape=unsigned(32), depth=S, init=seeds)
            lut = memory.Memory(shape=unsigned(rb), depth=self._lut_size, init=lut_init)
            m.submodules[f"edges{l}"] = emem
            m.submodules[f"nodes{l}"] = nmem
            m.submodules[f"rng{l}"] = rmem
            m.submodules[f"lut{l}"] = lut
            mine = (ctrl.slot == l) if P > 1 else Const(1)
            ew, nw = emem.write_port(), nmem.write_port()
            m.d.comb += [ew.addr.eq(ctrl.index), ew.data.eq(ctrl.data),
                         ew.en.eq(wr(LaneOp.EDGE) & mine),
                         nw.addr.eq(ctrl.index), nw.data.eq(ctrl.data),
                         nw.en.eq(wr(LaneOp.NODE) & mine)]
            count = Signal(range(S + 1), name=f"count{l}")
            with m.If(wr(LaneOp.COUNT) & mine):
                m.d.sync += count.eq(ctrl.data)

            # issue: the read ports are addressed with the pointers' next values, so
            # their data is the entry at the current pointer every cycle.
            eptr = Signal(range(self._edge_depth + 1), name=f"eptr{l}")
            nptr = Signal(range(S + 1), name=f"nptr{l}")
            eptr_nx = Signal.like(eptr, name=f"eptr_nx{l}")
            nptr_nx = Signal.like(nptr, name=f"nptr_nx{l}")
            first = Signal(init=1, name=f"first{l}")
            er = emem.read_port(domain="sync")
            nr = nmem.read_port(domain="sync")
            m.d.comb += [er.addr.eq(eptr_nx), nr.addr.eq(nptr_nx)]
            e, nd = er.data, nr.data
            work = Signal(name=f"work{l}")
            m.d.comb += work.eq((nptr < count) & (energy_mode | (
                (nd.colour == colour_now) & ~nd.clamp)))
            works.append(work)
            issue = Signal(name=f"issue{l}")
            m.d.comb += issue.eq(issuing & work)
            m.d.comb += [eptr_nx.eq(eptr), nptr_nx.eq(nptr)]
            with m.If(rewind):
                m.d.comb += [eptr_nx.eq(0), nptr_nx.eq(0)]
                m.d.sync += first.eq(1)
            with m.Elif(issue):
                m.d.comb += eptr_nx.eq(eptr + 1)
                m.d.sync += first.eq(e.last)
                with m.If(e.last):
                    m.d.comb += nptr_nx.eq(nptr + 1)
            m.d.sync += [eptr.eq(eptr_nx), nptr.eq(nptr_nx)]

            # stage 1: gather the neighbour's spin --------------------------------
            v1, last1, first1 = (Signal(name=f"{x}1_l{l}") for x in ("v", "last", "first"))
            nbr1 = Signal(self.nbr_bits, name=f"nbr1_l{l}")
            j1 = Signal(signed(self._w_bits), name=f"j1_l{l}")
            slot1 = Signal(self.node_slot_bits, name=f"slot1_l{l}")
            h1 = Signal(signed(self._h_bits), name=f"h1_l{l}")
            m.d.sync += [v1.eq(issue), last1.eq(e.last), first1.eq(first), nbr1.eq(e.nbr),
                         j1.eq(e.j), slot1.eq(nd.slot), h1.eq(nd.h)]
            v2, last2, first2 = (Signal(name=f"{x}2_l{l}") for x in ("v", "last", "first"))
            term2 = Signal(signed(self._w_bits + 1), name=f"term2_l{l}")
            slot2 = Signal(self.node_slot_bits, name=f"slot2_l{l}")
            h2 = Signal(signed(self._h_bits + 1), name=f"h2_l{l}")
            m.d.sync += [v2.eq(v1), last2.eq(last1), first2.eq(first1), slot2.eq(slot1),
                         term2.eq(Mux(flat.bit_select(nbr1, 1), j1, -j1)),
                         h2.eq(Mux(energy_mode, h1 << 1, h1))]

            # stage 2: accumulate the field; read the p-bit's PRNG state ------------
            acc = Signal(signed(fb), name=f"acc_l{l}")
            acc_nx = Signal(signed(fb), name=f"acc_nx_l{l}")
            m.d.comb += acc_nx.eq(Mux(first2, h2, acc) + term2)
            with m.If(v2):
                m.d.sync += acc.eq(acc_nx)
            v3 = Signal(name=f"v3_l{l}")
            f3 = Signal(signed(fb), name=f"f3_l{l}")
            slot3 = Signal(self.node_slot_bits, name=f"slot3_l{l}")
            old3 = Signal(name=f"old3_l{l}")
            m.d.sync += [v3.eq(v2 & last2), f3.eq(acc_nx), slot3.eq(slot2),
                         old3.eq(own_bit(l, slot2))]
            rr = rmem.read_port(domain="sync")
            m.d.comb += rr.addr.eq(slot2)

            # stage 3: beta |F| and the next random word -------------------------
            mag = Signal(fb, name=f"mag_l{l}")
            m.d.comb += mag.eq(Mux(f3 < 0, -f3, f3))
            v4, neg4, old4 = (Signal(name=f"{x}4_l{l}") for x in ("v", "neg", "old"))
            prod4 = Signal(self._beta_bits + fb, name=f"prod4_l{l}")
            f4 = Signal(signed(fb), name=f"f4_l{l}")
            slot4 = Signal(self.node_slot_bits, name=f"slot4_l{l}")
            rng4 = Signal(32, name=f"rng4_l{l}")
            m.d.sync += [v4.eq(v3), neg4.eq(f3 < 0), old4.eq(old3), prod4.eq(beta * mag),
                         f4.eq(f3), slot4.eq(slot3),
                         rng4.eq(_xorshift32(m, rr.data, f"xs_l{l}"))]

            # stage 4: tanh table address -----------------------------------------
            idx = Signal(len(prod4) + max(0, -shift), name=f"lutidx_l{l}")
            if shift > 0:
                m.d.comb += idx.eq((prod4 + (1 << (shift - 1))) >> shift)
            else:
                m.d.comb += idx.eq(prod4 << (-shift))
            lr = lut.read_port(domain="sync")
            m.d.comb += lr.addr.eq(idx[:lut_bits])
            v5, neg5, old5, sat5 = (Signal(name=f"{x}5_l{l}")
                                    for x in ("v", "neg", "old", "sat"))
            f5 = Signal(signed(fb), name=f"f5_l{l}")
            slot5 = Signal(self.node_slot_bits, name=f"slot5_l{l}")
            rng5 = Signal(32, name=f"rng5_l{l}")
            m.d.sync += [v5.eq(v4), neg5.eq(neg4), old5.eq(old4),
                         sat5.eq(idx >= self._lut_size), f5.eq(f4), slot5.eq(slot4),
                         rng5.eq(rng4)]

            # stage 5: decide, write back -----------------------------------------
            t = Signal(rb, name=f"thr_l{l}")
            m.d.comb += t.eq(Mux(sat5, half, lr.data))
            u = rng5[32 - rb:]
            up = Signal(name=f"up_l{l}")
            m.d.comb += up.eq(Mux(neg5, u < half - t, u < half + t))
            de = Signal(signed(eb), name=f"de_l{l}")
            ee = Signal(signed(eb), name=f"ee_l{l}")
            lane_de.append(de)
            lane_ee.append(ee)
            rw = rmem.write_port()
            m.d.comb += [rw.addr.eq(slot5), rw.data.eq(rng5),
                         rw.en.eq(v5 & ~energy_mode)]
            with m.If(v5):
                with m.If(energy_mode):
                    m.d.sync += ee.eq(ee + Mux(old5, f5, -f5))
                with m.Else():
                    m.d.sync += own_bit(l, slot5).eq(up)
                    with m.If(up != old5):
                        m.d.sync += de.eq(de + Mux(old5, f5 << 1, -(f5 << 1)))

        m.d.comb += any_work.eq(Cat(works).any())
        de_sum = Signal(signed(eb))
        ee_sum = Signal(signed(eb + P.bit_length()))
        m.d.comb += [de_sum.eq(sum(lane_de)), ee_sum.eq(sum(lane_ee))]
        energy_next = Signal(signed(eb))
        m.d.comb += energy_next.eq(energy + de_sum)
        energy_init = Signal(signed(eb))
        m.d.comb += energy_init.eq(-(ee_sum >> 1))     # the sum is even for symmetric J

        def clear_lanes():
            return [x.eq(0) for x in lane_de + lane_ee]

        # -- records -------------------------------------------------------------------
        rec = RecordUnit(m, self.out, n=n, word_bits=self._word_bits, energy_bits=eb,
                         best_spin=best_spin, best_energy=best_energy, cycles=cycles,
                         update_cycles=update_cycles)

        last_colour = colour_now == colours_used
        sample_due = last_colour & (sample_every != 0) & (since_sample + 1 == sample_every)
        drain = Signal(range(DRAIN + 1))
        reading = Signal()            # the energy pass serves READ, not a run

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.ctrl.ready.eq(~rec.busy), rewind.eq(1)]
                with m.If(wr(LaneOp.STATE)):
                    m.d.sync += flat.bit_select(ctrl.index, 1).eq(ctrl.data[0])
                with m.If(wr(LaneOp.RUN)):
                    m.d.sync += [last_entry.eq(ctrl.index), sample_every.eq(ctrl.data[:16]),
                                 colours_used.eq(ctrl.data[16:16 + self.colour_bits]),
                                 energy_mode.eq(1), reading.eq(0), cycles.eq(0),
                                 update_cycles.eq(0), entry.eq(0), *clear_lanes()]
                    m.next = "EPASS"
                with m.If(wr(LaneOp.READ)):
                    m.d.sync += [energy_mode.eq(1), reading.eq(1), *clear_lanes()]
                    m.next = "EPASS"
            with m.State("EPASS"):
                m.d.comb += [issuing.eq(1), self.running.eq(~reading)]
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
                m.d.comb += [self.running.eq(~reading), rewind.eq(1)]
                m.d.sync += [energy.eq(energy_init), energy_mode.eq(0), *clear_lanes()]
                with m.If(reading):
                    m.d.sync += rec.take(flat[:n], energy_init, 1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [cycles.eq(cycles + 1), best_energy.eq(energy_init),
                                 best_spin.eq(flat[:n]), sweep_in_entry.eq(0), colour_now.eq(0),
                                 since_sample.eq(0)]
                    m.next = "COLOUR"
            with m.State("COLOUR"):
                m.d.comb += [issuing.eq(1), self.running.eq(1)]
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
                with m.If(~(sample_due & rec.busy)):
                    m.d.sync += [update_cycles.eq(update_cycles + 1), energy.eq(energy_next),
                                 *clear_lanes()]
                    with m.If(energy_next < best_energy):
                        m.d.sync += [best_energy.eq(energy_next), best_spin.eq(flat[:n])]
                    m.next = "COLOUR"
                    with m.If(last_colour):
                        m.d.comb += rewind.eq(1)
                        m.d.sync += colour_now.eq(0)
                        with m.If(sample_due):
                            m.d.sync += [since_sample.eq(0),
                                         *rec.take(flat[:n], energy_next, 0)]
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
                m.d.comb += [self.running.eq(1), rewind.eq(1)]
                with m.If(~rec.busy):
                    m.d.sync += rec.take(flat[:n], energy, 1)
                    m.next = "IDLE"
        return m
