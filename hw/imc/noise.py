"""Seeded Gaussian-approximation noise source: xorshift32 and an Irwin-Hall sum.

``GaussianNoise`` holds ``ring`` xorshift32 states (``prng.xorshift32``: shifts
13, 17, 5), generators ``index .. index + ring - 1``, and one sample datapath.
``sample`` is ``floor((z * gain * level + 2**15) / 2**16)`` with ``z`` the sum
of the four bytes of the head state minus 510: an Irwin-Hall sum of four
uniforms, variance 21845, excess kurtosis -0.3. Every register always holds an
already-stepped state, so a draw ("step, then use the new state") reads
``sample`` in the cycle ``next`` is high and steps the head for the next draw.
A ring serves the columns that share one ADC: the head is the generator of the
column being digitized, and each generator's own sequence of draws is the same
as if it had a datapath of its own.

Ports:
  ``seed`` (in, 32), ``load`` (in): on ``load``, generator ``g`` restarts from
  ``seed ^ salt(g)`` (``salt(g)`` when that is zero) and generator ``index`` is
  the head; ``load`` wins over ``next``.
  ``next`` (in): a draw from the head happens this cycle; ``sample`` is valid
  every cycle.
  ``rotate`` (in, only when ``ring > 1``; with ``next``): after this draw the
  ring turns: the head becomes the next generator (``index + 1``, ..., wrapping
  to ``index``), so ``ring`` turns bring every generator back to its place.
  ``level`` (in, only when ``level_bits > 0``; then ``ring`` is 1): multiplies the
  sample, for noise proportional to a conductance level. The sample is then one
  product from registers (``z * gain`` of the head is kept in a register), and
  ``ready`` (out) is low for the cycle after a ``load``, when no ``next`` may come.
  ``sample`` (out, signed): combinational from the state register (with ``level``,
  from a register holding ``z * gain`` of the head and the level).
"""

from __future__ import annotations

import math

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arith import tree_sum
from ..params import check_int
from ..prng import MASK32, xorshift32, xorshift32_int

NOISE_SHIFT = 16
IRWIN_HALL_OFFSET = 510
IRWIN_HALL_VAR = 4 * (256 ** 2 - 1) / 12      # variance of a sum of four uniform bytes


def noise_gain(sigma: float, frac_bits: int) -> int:
    """The integer gain whose samples have standard deviation ``sigma`` levels, in units
    of ``2**-frac_bits`` level: a sample is ``(z * gain) >> NOISE_SHIFT`` for the
    centred sum ``z`` of four uniform bytes."""
    return int(round(sigma * 2 ** (frac_bits + NOISE_SHIFT) / math.sqrt(IRWIN_HALL_VAR)))


def salt(index: int) -> int:
    """Per-generator constant (a Weyl sequence) that decorrelates generators."""
    return ((index + 1) * 0x9E37_79B9) & MASK32


def sample_bounds(gain: int, level_max: int = 1) -> tuple[int, int]:
    half = 1 << (NOISE_SHIFT - 1)
    lo = (-IRWIN_HALL_OFFSET * gain * level_max + half) >> NOISE_SHIFT
    hi = (IRWIN_HALL_OFFSET * gain * level_max + half) >> NOISE_SHIFT
    return lo, hi


def sample_shape(gain: int, level_max: int = 1):
    lo, hi = sample_bounds(gain, level_max)
    return signed(max(lo.bit_length(), hi.bit_length(), 1) + 1)


class GaussianNoise(wiring.Component):
    def __init__(self, *, index: int, gain: int, level_bits: int = 0, ring: int = 1):
        check_int("index", index, 0)
        check_int("gain", gain, 0)
        check_int("level_bits", level_bits, 0)
        check_int("ring", ring, 1)
        self._salts = [salt(index + k) for k in range(ring)]
        self._gain = gain
        self._level_bits = level_bits
        ports = {
            "seed": In(32),
            "load": In(1),
            "next": In(1),
            "sample": Out(sample_shape(gain, (1 << level_bits) - 1 if level_bits else 1)),
        }
        if ring > 1:
            ports["rotate"] = In(1)
        if level_bits:
            if ring > 1:
                raise ValueError("ring: must be 1 with level_bits > 0")
            ports["level"] = In(unsigned(level_bits))
            ports["ready"] = Out(1, init=1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n = len(self._salts)
        states = [Signal(32, init=xorshift32_int(s), name=f"state{k}")
                  for k, s in enumerate(self._salts)]
        # xorshift32 is linear over GF(2): the first state of a generator,
        # xorshift32(seed ^ salt), is xorshift32(seed) ^ xorshift32(salt), so the ring
        # shares one step of the seed and adds a constant per generator.
        stepped_seed = Signal(32)
        m.d.comb += stepped_seed.eq(xorshift32(self.seed))
        head = states[0]

        def centred(x):
            return (x[0:8] + x[8:16] + x[16:24] + x[24:32] - IRWIN_HALL_OFFSET).as_signed()

        def load_value(s):
            first = xorshift32_int(s)
            return Mux(self.seed == s, first, stepped_seed ^ first)

        if self._level_bits:
            self._elaborate_registered(m, head, load_value, centred)
            return m
        stepped = xorshift32(head)
        with m.If(self.load):
            for st, s in zip(states, self._salts):
                m.d.sync += st.eq(load_value(s))
        with m.Elif(self.next):
            if n > 1:
                with m.If(self.rotate):
                    m.d.sync += [states[k].eq(states[k + 1]) for k in range(n - 1)]
                    m.d.sync += states[n - 1].eq(stepped)
                with m.Else():
                    m.d.sync += head.eq(stepped)
            else:
                m.d.sync += head.eq(stepped)
        z = Signal(signed(11))
        m.d.comb += z.eq(centred(head))
        m.d.comb += self.sample.eq((z * self._gain + (1 << (NOISE_SHIFT - 1))) >> NOISE_SHIFT)
        return m

    def _elaborate_registered(self, m, head, load_value, centred):
        """With ``level``: ``z * gain`` of the head is a register and so is the head's
        successor, so a draw's sample is one product (by the level) from registers and
        the next ``z * gain`` is made from a register too (the control signals only
        enable registers). After ``load`` the product is made in the next cycle, during
        which ``ready`` is low and no draw may happen."""
        salt0 = self._salts[0]
        init = xorshift32_int(salt0)
        succ = Signal(32, init=xorshift32_int(init), name="successor")
        z_init = sum((init >> (8 * b)) & 0xFF for b in range(4)) - IRWIN_HALL_OFFSET
        z_gain = Signal(signed(11 + max(1, self._gain.bit_length()) + 1),
                        init=z_init * self._gain, name="z_gain")
        stale = Signal()            # z_gain is not yet the head's (the cycle after a load)
        m.d.comb += self.ready.eq(~stale)
        with m.If(self.load):
            value = Signal(32, name="load_value")
            m.d.comb += value.eq(load_value(salt0))
            m.d.sync += [head.eq(value), succ.eq(xorshift32(value)), stale.eq(1)]
        with m.Else():
            with m.If(self.next):
                m.d.sync += [head.eq(succ), succ.eq(xorshift32(succ))]
            with m.If(self.next | stale):
                # a register picks the operand: the head after a load, else its successor
                m.d.sync += [z_gain.eq(centred(Mux(stale, head, succ)) * self._gain),
                             stale.eq(0)]
        # the product by the (few-bit) level as a sum of shifted copies: carry chains
        # beside the register rather than a trip to a DSP
        scaled = tree_sum([Mux(self.level[b], z_gain << b, 0)
                           for b in range(self._level_bits)], m)
        m.d.comb += self.sample.eq((scaled + (1 << (NOISE_SHIFT - 1))) >> NOISE_SHIFT)


__all__ = ["GaussianNoise", "salt", "sample_bounds", "sample_shape", "xorshift32_int"]
