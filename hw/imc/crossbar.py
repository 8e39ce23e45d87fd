"""Digital emulator of an analog memristor crossbar (in-memory MVM).

Contract (the numbers are defined in ``tilefab.golden.imc``; this block
reproduces them bit for bit):

``rows x cols`` cells per slice, ``slices`` arrays for weight bit slicing. A
cell stores ``gd = g+ - g-``, the programmed conductances of a differential
pair in units of ``2**-frac_bits`` level, with programming noise drawn once
when the cell is written. Each input bit-plane is one analog read: every
column sums the cells of the rows whose input bit is set, read noise is added
to the column sum, and an ADC (clip to ``[adc_lo, adc_hi]``, step
``(adc_hi - adc_lo) / (2**adc_bits - 1)``, round half up) digitizes it; the
codes of the slices and planes are shift-added into signed integers.

Ports (``amaranth.lib.stream``):
  ``seed`` (in, 32 bit): restarts every noise generator; accepted only while no
  input vector is being applied. Reset is equivalent to seed 0.
  ``prog`` (in, signed weight): programs one cell per transfer, ``rows * cols``
  transfers in row-major order; the array is a shift chain, so the last
  ``rows * cols`` words written define it (with ``adc_share > 1`` each group's
  cells also turn as a ring during a vector, back in place at its end).
  Accepted only while no input vector is being applied, and (with proportional
  programming noise) not in the cycle after a seed; a vector accepted in the
  same cycle as a word sees the array after that word. Weights beyond ``+-(levels**slices - 1)`` are undefined.
  ``x`` (in, fields ``r0 .. r{rows-1}``, signed ``in_bits``): one input vector;
  row ``i`` occupies payload bits ``[i * in_bits, (i + 1) * in_bits)``.
  ``y`` (out, fields ``c0 .. c{cols-1}``, signed, equal widths): one result
  per input vector, in order, column ``j`` at the ``j``-th field.

ADC sharing: ``adc_share = A`` (a divisor of ``cols``) gives each group of
``A`` adjacent columns (``j = g * A + k``, ``k < A``) one column adder, one
read-noise datapath and one ADC per slice, time-multiplexed: phase ``k``
sums, digitizes and shift-adds column ``k`` of every group over all
bit-planes, then phase ``k + 1`` replays the planes for the next column. Each
column keeps its own read-noise generator, drawn once per plane in plane
order, so the results are the same for every ``A``.

Timing: one bit-plane per cycle, most significant first, ``A`` passes over the
planes, so a vector takes ``in_bits * A`` cycles and back-to-back vectors keep
the array busy every cycle: ``rows * cols / (in_bits * A)`` MACs per cycle, the
limit of bit-serial inputs and ``cols / A`` columns summed per cycle. The
latency from the input transfer to ``y.valid`` is ``in_bits * A + 3`` cycles.
A stall on ``y`` freezes the whole pipeline, noise generators included, so
results do not depend on backpressure.
"""

from __future__ import annotations

import math

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arith import tree_sum
from ..params import Param, check_int
from .noise import GaussianNoise, sample_bounds

NOISE_MODES = ("independent", "proportional")


def magic_divider(divisor: int, n_max: int) -> tuple[int, int]:
    """(m, shift) with ``(n * m) >> shift == n // divisor`` for 0 <= n <= n_max.

    With ``m = ceil(2**shift / divisor)`` and ``e = m * divisor - 2**shift``,
    ``n * m / 2**shift = n / divisor + n * e / (divisor * 2**shift)``; the floor is
    unchanged when ``n_max * e < 2**shift`` (the remainder is at most
    ``divisor - 1``).
    """
    check_int("divisor", divisor, 1)
    check_int("n_max", n_max, 0)
    shift = max(divisor.bit_length() - 1, 0)
    while True:
        m = -(-(1 << shift) // divisor)
        if n_max * (m * divisor - (1 << shift)) < (1 << shift):
            return m, shift
        shift += 1


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _bits_for_signed(lo: int, hi: int):
    return signed(max(lo.bit_length(), hi.bit_length()) + 1)


class Crossbar(wiring.Component):
    def __init__(self, *, rows: int, cols: int, levels: int, slices: int = 1,
                 in_bits: int = 8, adc_bits: int = 8, adc_lo: int, adc_hi: int,
                 frac_bits: int = 4, prog_gain: int = 0, prog_noise: str = "independent",
                 read_gain: int = 0, adc_share: int = 1):
        check_int("rows", rows, 1, 1024)
        check_int("cols", cols, 1, 1024)
        check_int("adc_share", adc_share, 1, cols)
        if cols % adc_share:
            raise ValueError(f"adc_share: {adc_share!r} is not allowed, must divide cols "
                             f"({cols}): one of {', '.join(map(str, divisors(cols)))}")
        check_int("levels", levels, 2, 1 << 16)
        check_int("slices", slices, 1, 8)
        check_int("in_bits", in_bits, 2, 32)
        check_int("adc_bits", adc_bits, 0, 24)
        check_int("frac_bits", frac_bits, 0, 16)
        check_int("prog_gain", prog_gain, 0)
        check_int("read_gain", read_gain, 0)
        check_int("adc_lo", adc_lo, -(1 << 40))
        check_int("adc_hi", adc_hi, -(1 << 40))
        if slices > 1 and levels & (levels - 1):
            raise ValueError(f"levels: {levels!r} is not allowed, must be a power of two "
                             f"when slices > 1")
        if adc_bits and adc_hi <= adc_lo:
            raise ValueError(f"adc_hi: {adc_hi!r} is not allowed, must be greater than "
                             f"adc_lo ({adc_lo})")
        Param("prog_noise", None, "string", choices=NOISE_MODES).check(prog_noise)
        self._rows, self._cols, self._levels, self._slices = rows, cols, levels, slices
        self._in_bits, self._adc_bits, self._frac_bits = in_bits, adc_bits, frac_bits
        self._adc_lo, self._adc_hi = adc_lo, adc_hi
        self._prog_gain, self._prog_noise, self._read_gain = prog_gain, prog_noise, read_gain
        self._share = adc_share

        self._w_max = levels ** slices - 1
        self._slice_shift = (levels - 1).bit_length() if slices > 1 else 0
        self._gbits = (levels - 1).bit_length() + frac_bits + 1
        self._gmax = (1 << self._gbits) - 1
        self._cell_shape = signed(self._gbits + 1)
        lo, hi = sample_bounds(read_gain)
        self._col_lo = -rows * self._gmax + lo
        self._col_hi = rows * self._gmax + hi
        if adc_bits:
            self._code_max = (1 << adc_bits) - 1
            self._code_min = 0
        else:
            self._code_min, self._code_max = self._col_lo, self._col_hi
        slice_sum = sum(levels ** s for s in range(slices))
        bound = max(abs(self._code_min), self._code_max) * slice_sum * ((1 << in_bits) - 1)
        self._out_shape = signed(bound.bit_length() + 1)
        self.w_max = self._w_max                  # the largest weight magnitude
        self.out_bits = self._out_shape.width     # every result fits, sign included
        super().__init__({
            "seed": In(stream.Signature(32)),
            "prog": In(stream.Signature(signed(self._w_max.bit_length() + 1))),
            # Struct fields rather than an ArrayLayout: yosys's ABC9 pass names bit
            # wires "name[i]" and collides with the array-element names Amaranth emits.
            "x": In(stream.Signature(data.StructLayout(
                {f"r{i}": signed(in_bits) for i in range(rows)}))),
            "y": Out(stream.Signature(data.StructLayout(
                {f"c{j}": self._out_shape for j in range(cols)}))),
        })

    @property
    def cycles_per_vector(self) -> int:
        return self._in_bits * self._share

    @property
    def macs_per_cycle_limit(self) -> float:
        return self._rows * self._cols / self.cycles_per_vector

    @property
    def latency(self) -> int:
        return self.cycles_per_vector + 3

    @property
    def adcs(self) -> int:
        return self._slices * self._cols // self._share

    def elaborate(self, platform):
        m = Module()
        R, C, S, B = self._rows, self._cols, self._slices, self._in_bits
        F = self._frac_bits

        # Pipeline advances when the output register is free or being emptied.
        adv = Signal()
        m.d.comb += adv.eq(~self.y.valid | self.y.ready)

        xbuf_valid = Signal()
        plane = Signal(range(B))
        busy_ready = ~xbuf_valid
        gens_ready = Signal(init=1)     # low the cycle after a seed, with proportional noise
        m.d.comb += [
            self.seed.ready.eq(busy_ready),
            self.prog.ready.eq(busy_ready & gens_ready),
        ]
        seed_load = self.seed.valid & self.seed.ready
        prog_write = self.prog.valid & self.prog.ready

        # --- programming: digits, noise, clip, shift chain -----------------
        written = []            # per slice, the cell value entering the chain
        cells = [[Signal(self._cell_shape, name=f"gd_s{s}_r{k // C}_c{k % C}")
                  for k in range(R * C)] for s in range(S)]
        w = self.prog.payload
        mag = Signal(range(self._w_max + 1))
        m.d.comb += mag.eq(Mux(w < 0, -w, w))
        level_bits = (self._levels - 1).bit_length()
        proportional = self._prog_noise == "proportional"
        for s in range(S):
            if S > 1:
                digit = mag[s * self._slice_shift:(s + 1) * self._slice_shift]
            else:
                digit = mag
            g = []
            for pol, active in ((0, w > 0), (1, w < 0)):
                level = Signal(level_bits, name=f"level_s{s}_{'pm'[pol]}")
                m.d.comb += level.eq(Mux(active, digit, 0))
                if self._prog_gain:
                    gen = GaussianNoise(index=2 * s + pol, gain=self._prog_gain,
                                        level_bits=level_bits if proportional else 0)
                    m.submodules[f"prog_noise_s{s}_{'pm'[pol]}"] = gen
                    m.d.comb += [gen.seed.eq(self.seed.payload), gen.load.eq(seed_load),
                                 gen.next.eq(prog_write)]
                    if proportional:
                        m.d.comb += gen.level.eq(level)
                        if s == 0 and pol == 0:     # every generator loads together
                            m.d.comb += gens_ready.eq(gen.ready)
                    noisy = (level << F) + gen.sample
                else:
                    noisy = level << F
                clipped = Signal(self._gbits, name=f"g_s{s}_{'pm'[pol]}")
                if self._prog_gain:
                    m.d.comb += clipped.eq(Mux(noisy < 0, 0,
                                               Mux(noisy > self._gmax, self._gmax, noisy)))
                else:       # a noiseless level always fits: gbits has a level of headroom
                    m.d.comb += clipped.eq(noisy)
                g.append(clipped)
            written.append(g[0] - g[1])

        # --- stage 0: one bit-plane of the buffered vector, for one column phase ----
        # The input register rotates, so after the B planes of a phase it holds the
        # vector again for the next phase.
        A = self._share
        xs = [Signal(B, name=f"x_{i}") for i in range(R)]
        # With one column per ADC there is no phase: no zero-width counters.
        phase = Signal(range(A)) if A > 1 else Const(0, 1)
        issue = Signal()
        last_plane = plane == 0
        last_phase = phase == A - 1
        m.d.comb += [
            issue.eq(xbuf_valid & adv),
            self.x.ready.eq(~xbuf_valid | (adv & last_plane & last_phase)),
        ]
        with m.If(issue):
            m.d.sync += [x.eq(x.rotate_left(1)) for x in xs]
            with m.If(last_plane):
                m.d.sync += plane.eq(B - 1)
                if A > 1:
                    m.d.sync += phase.eq(Mux(last_phase, 0, phase + 1))
                with m.If(last_phase):
                    m.d.sync += xbuf_valid.eq(0)
            with m.Else():
                m.d.sync += plane.eq(plane - 1)
        with m.If(self.x.valid & self.x.ready):
            m.d.sync += [xs[i].eq(self.x.payload[f"r{i}"]) for i in range(R)]
            m.d.sync += [plane.eq(B - 1), xbuf_valid.eq(1)]
            if A > 1:
                m.d.sync += phase.eq(0)
        bits = [x[B - 1] for x in xs]

        # The cells of a group (chain positions i * C + g * A .. + A - 1) form a ring
        # that turns once per phase, so its head, position i * C + g * A, always holds
        # the cell of the column being digitized, and A turns restore it. Programming
        # and turning shift the same way: only the ring's last cell chooses between
        # the chain's next word and the head, and no per-cell read multiplexer exists.
        turn = Signal()
        m.d.comb += turn.eq(issue & last_plane)
        N = R * C
        for s in range(S):
            chain = cells[s] + [written[s]]
            with m.If(prog_write):
                m.d.sync += [cells[s][p].eq(chain[p + 1]) for p in range(N)]
            if A > 1:
                with m.If(turn):
                    m.d.sync += [cells[s][p].eq(cells[s][p + 1] if p % A < A - 1
                                                else cells[s][p - (A - 1)])
                                 for p in range(N)]

        # --- stage 1: the column of each group that this phase digitizes ----------
        G = C // A
        col_shape = _bits_for_signed(self._col_lo, self._col_hi)
        s1_valid, s1_first, s1_last, s1_end = Signal(), Signal(), Signal(), Signal()
        s1_phase = Signal(range(A)) if A > 1 else Const(0, 1)
        s1_col = [[Signal(col_shape, name=f"col_s{s}_g{g}") for g in range(G)]
                  for s in range(S)]
        with m.If(adv):
            m.d.sync += [s1_valid.eq(issue), s1_first.eq(plane == B - 1),
                         s1_last.eq(last_plane), s1_end.eq(last_plane & last_phase)]
            if A > 1:
                m.d.sync += s1_phase.eq(phase)
        for s in range(S):
            for g in range(G):
                terms = (Mux(bits[i], cells[s][i * C + g * A], 0) for i in range(R))
                total = tree_sum(terms, m)
                if self._read_gain:
                    gen = GaussianNoise(index=2 * S + s * C + g * A, gain=self._read_gain,
                                        ring=A)
                    m.submodules[f"read_noise_s{s}_g{g}"] = gen
                    m.d.comb += [gen.seed.eq(self.seed.payload), gen.load.eq(seed_load),
                                 gen.next.eq(issue)]
                    if A > 1:
                        m.d.comb += gen.rotate.eq(last_plane)     # with next: a turn
                    total = total + gen.sample
                with m.If(adv):
                    m.d.sync += s1_col[s][g].eq(total)

        # --- stage 2: ADC ----------------------------------------------------
        code_shape = _bits_for_signed(self._code_min, self._code_max)
        s2_valid, s2_first, s2_last, s2_end = Signal(), Signal(), Signal(), Signal()
        s2_phase = Signal(range(A)) if A > 1 else Const(0, 1)
        s2_code = [[Signal(code_shape, name=f"code_s{s}_g{g}") for g in range(G)]
                   for s in range(S)]
        with m.If(adv):
            m.d.sync += [s2_valid.eq(s1_valid), s2_first.eq(s1_first), s2_last.eq(s1_last),
                         s2_end.eq(s1_end)]
            if A > 1:
                m.d.sync += s2_phase.eq(s1_phase)
        if self._adc_bits:
            lo, hi = self._adc_lo, self._adc_hi
            d = hi - lo
            top = (1 << self._adc_bits) - 1
            # code = floor((2 u top + d) / 2d) for u = clip(a) - lo in [0, d]. The common
            # factor of 2 top and d divides out: a nice range ([-96, 96] levels, 8 bits)
            # then needs a 7-bit constant and a shift instead of a 28-bit multiplier.
            common = math.gcd(2 * top, d)
            num_a, num_b, den = 2 * top // common, d // common, 2 * d // common
            mult, shift = magic_divider(den, num_a * d + num_b)
        for s in range(S):
            for g in range(G):
                a = s1_col[s][g]
                if self._adc_bits:
                    u = Signal(range(d + 1), name=f"adc_u_s{s}_g{g}")
                    m.d.comb += u.eq(Mux(a < lo, 0, Mux(a > hi, d, a - lo)))
                    code = (u * (num_a * mult) + num_b * mult) >> shift
                else:
                    code = a
                with m.If(adv):
                    m.d.sync += s2_code[s][g].eq(code)

        # --- stage 3: shift-add over slices and planes, one column per group ------
        acc = [Signal(self._out_shape, name=f"acc_g{g}") for g in range(G)]
        with m.If(self.y.valid & self.y.ready):
            m.d.sync += self.y.valid.eq(0)
        for g in range(G):
            v = tree_sum(s2_code[s][g] << (s * self._slice_shift) for s in range(S))
            nxt = Signal(self._out_shape, name=f"acc_next_g{g}")
            m.d.comb += nxt.eq(Mux(s2_first, -v, (acc[g] << 1) + v))
            with m.If(adv & s2_valid):
                m.d.sync += acc[g].eq(nxt)
                for k in range(A):
                    with m.If(s2_last & (s2_phase == k)):
                        m.d.sync += self.y.payload[f"c{g * A + k}"].eq(nxt)
        with m.If(adv & s2_valid & s2_end):
            m.d.sync += self.y.valid.eq(1)
        return m


__all__ = ["Crossbar", "divisors", "magic_divider"]
