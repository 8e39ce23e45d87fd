"""Seeded Gaussian-approximation noise source: xorshift32 and an Irwin-Hall sum.

``GaussianNoise`` holds one xorshift32 state (``prng.xorshift32``: shifts 13,
17, 5). ``sample`` is ``floor((z * gain * level + 2**15) / 2**16)`` with ``z``
the sum of the four bytes of the state minus 510: an Irwin-Hall sum of four
uniforms, variance 21845, excess kurtosis -0.3. The register always holds an
already-stepped state, so a draw ("step, then use the new state") reads
``sample`` in the cycle ``next`` is high and steps the state for the next draw.

Ports:
  ``seed`` (in, 32), ``load`` (in): on ``load``, restart from ``seed ^ salt``
  (``salt`` when that is zero); ``load`` wins over ``next``.
  ``next`` (in): a draw happens this cycle; ``sample`` is valid every cycle.
  ``level`` (in, only when ``level_bits > 0``): multiplies the sample, for noise
  proportional to a conductance level.
  ``sample`` (out, signed): combinational from the state register.
"""

from __future__ import annotations

import math

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

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
    def __init__(self, *, index: int, gain: int, level_bits: int = 0):
        check_int("index", index, 0)
        check_int("gain", gain, 0)
        check_int("level_bits", level_bits, 0)
        self._salt = salt(index)
        self._gain = gain
        self._level_bits = level_bits
        ports = {
            "seed": In(32),
            "load": In(1),
            "next": In(1),
            "sample": Out(sample_shape(gain, (1 << level_bits) - 1 if level_bits else 1)),
        }
        if level_bits:
            ports["level"] = In(unsigned(level_bits))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        state = Signal(32, init=xorshift32_int(self._salt))
        seeded = Signal(32)
        m.d.comb += seeded.eq(self.seed ^ self._salt)
        start = Mux(seeded == 0, self._salt, seeded)
        with m.If(self.load):
            m.d.sync += state.eq(xorshift32(start))
        with m.Elif(self.next):
            m.d.sync += state.eq(xorshift32(state))

        z = Signal(signed(11))
        m.d.comb += z.eq(state[0:8] + state[8:16] + state[16:24] + state[24:32]
                         - IRWIN_HALL_OFFSET)
        scaled = z * self._gain
        if self._level_bits:
            scaled = scaled * self.level
        rounded = (scaled + (1 << (NOISE_SHIFT - 1))) >> NOISE_SHIFT
        m.d.comb += self.sample.eq(rounded)
        return m


__all__ = ["GaussianNoise", "salt", "sample_bounds", "sample_shape", "xorshift32_int"]
