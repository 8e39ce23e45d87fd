"""Bit-exact and ideal models of the in-memory-compute crossbar emulator.

Contract (the RTL in ``tilefab.hw.imc`` must reproduce every integer here):

Mapping. A signed integer weight ``w`` with ``|w| <= levels**slices - 1`` is
written in base ``levels``: ``|w| = sum_s d_s * levels**s``. Slice ``s`` holds a
differential pair with conductance levels ``G+ = d_s if w > 0 else 0`` and
``G- = d_s if w < 0 else 0`` (the "sign-split" mapping: the idle device of the
pair sits at Gmin = level 0).

Fixed point. Conductances are integers in units of ``2**-frac_bits`` level.
A programmed device is ``g = clip(G * 2**F + n, 0, gmax)`` with
``gmax = 2**gbits - 1``, ``gbits = bitlen(levels - 1) + F + 1`` (one level range
of headroom above the top level; CrossSim clips at 0 only, the top clip is the
storage width). Each cell stores ``gd = g+ - g-``.

Noise. Every generator is an xorshift32 (shifts 13, 17, 5). A draw first steps
the state, then uses the new state ``u``: ``z = b0 + b1 + b2 + b3 - 510`` with
``b_k`` the four bytes of ``u`` (an Irwin-Hall sum of four uniforms: mean 0,
variance 4 * (256**2 - 1) / 12, excess kurtosis -0.3). A noise sample is
``n = floor((z * gain * G + 2**15) / 2**16)`` (round half up), ``G = 1`` for
independent and read noise and the device level for proportional programming
noise. ``noise_gain(sigma, F)`` turns a sigma in level units into ``gain``.
Generator ``g`` starts at ``seed ^ salt(g)`` (``salt(g)`` itself if that is 0),
``salt(g) = (g + 1) * 0x9E3779B9 mod 2**32``. Generators ``2s`` and ``2s + 1``
program slice ``s``'s G+ and G- devices, one draw each per cell, cells in
row-major order. Generator ``2 * slices + s * cols + j`` draws the read noise
of column ``j`` of slice ``s``, once per input bit-plane.

Read noise is added to each column sum, not to each cell: the sum of
independent per-cell fluctuations over a column is itself Gaussian, and one
generator per column (as aihwkit's output noise) costs cols instead of
rows * cols generators in hardware. Its sigma is per column read, in level units.

MVM. ``y_j = sum_i W_ij x_i`` with ``x_i`` signed ``in_bits``-bit two's
complement. Bit-planes are applied most significant first; plane ``p`` carries
weight ``-2**(B-1)`` for ``p = B - 1`` and ``2**p`` otherwise. For each plane
and slice the column value is ``a = sum_i bit_p(x_i) * gd_ij + n_read``. The
ADC (``adc_bits = b > 0``) clips ``a`` to ``[lo, hi]`` (fixed-point units) and
returns the code ``k = floor((2 (a - lo)(2**b - 1) + D) / (2 D))``,
``D = hi - lo``: CrossSim's ``rint((a - lo) / step)`` with step
``D / (2**b - 1)``, ties rounded up. ``adc_bits = 0`` is an ideal ADC
(``k = a``). The output is the integer ``Y_j = sum_p w_p sum_s levels**s k``;
``estimate()`` turns it back into units of ``W * x``.

ADC sharing. With ``adc_share = A`` (a divisor of ``cols``) one ADC serves
each group of ``A`` adjacent columns ``j = g * A + k``: the MVM runs ``A``
phases, phase ``k`` applying every bit-plane (most significant first) to
column ``k`` of every group. Column ``j``'s read-noise generator still draws
once per plane, in plane order, so the outputs do not depend on ``A``; only
the time does: ``in_bits * A`` cycles per MVM (``cycles_per_mvm``), with
``slices * cols / A`` ADCs (``adcs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

NOISE_SHIFT = 16
IRWIN_HALL_OFFSET = 510
IRWIN_HALL_VAR = 4 * (256 ** 2 - 1) / 12
GOLDEN_RATIO_32 = 0x9E3779B9
NOISE_MODES = ("independent", "proportional")


def noise_gain(sigma: float, frac_bits: int) -> int:
    """Integer gain that makes a noise sample's sigma ``sigma`` levels."""
    return int(round(sigma * 2 ** (frac_bits + NOISE_SHIFT) / math.sqrt(IRWIN_HALL_VAR)))


def irwin_hall_pmf() -> tuple[np.ndarray, np.ndarray]:
    """Exact distribution of ``z``: values and probabilities."""
    pmf = np.ones(1)
    for _ in range(4):
        pmf = np.convolve(pmf, np.ones(256) / 256)
    return np.arange(pmf.size) - IRWIN_HALL_OFFSET, pmf


def noise_std(gain: int, level: int = 1) -> float:
    """Exact standard deviation, in fixed-point units, of one noise sample."""
    z, p = irwin_hall_pmf()
    n = (z * gain * level + (1 << (NOISE_SHIFT - 1))) >> NOISE_SHIFT
    mean = float(np.sum(p * n))
    return math.sqrt(float(np.sum(p * (n - mean) ** 2)))


def salt(g):
    return (np.asarray(g, dtype=np.uint64) + 1) * GOLDEN_RATIO_32 % (1 << 32)


def seed_states(seed: int, first: int, count: int) -> np.ndarray:
    s = salt(np.arange(first, first + count)).astype(np.uint32)
    st = np.uint32(seed & 0xFFFFFFFF) ^ s
    return np.where(st == 0, s, st).astype(np.uint32)


def xorshift32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint32)
    x ^= x << np.uint32(13)
    x ^= x >> np.uint32(17)
    x ^= x << np.uint32(5)
    return x


def irwin_hall(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.int64)
    return ((u & 0xFF) + ((u >> 8) & 0xFF) + ((u >> 16) & 0xFF) + ((u >> 24) & 0xFF)
            - IRWIN_HALL_OFFSET)


def scale_noise(z: np.ndarray, gain: int, level=1) -> np.ndarray:
    return (np.asarray(z, dtype=np.int64) * gain * level
            + (1 << (NOISE_SHIFT - 1))) >> NOISE_SHIFT


@dataclass(frozen=True)
class CrossbarParams:
    """Integer parameters shared by the bit-exact model and the RTL.

    ``adc_lo``/``adc_hi`` are in fixed-point units (2**-frac_bits level);
    ``prog_gain``/``read_gain`` come from ``noise_gain``.
    """
    rows: int
    cols: int
    levels: int
    slices: int
    in_bits: int
    adc_bits: int
    adc_lo: int
    adc_hi: int
    frac_bits: int
    prog_gain: int = 0
    prog_noise: str = "independent"
    read_gain: int = 0
    adc_share: int = 1

    def __post_init__(self):
        for name, low in (("rows", 1), ("cols", 1), ("levels", 2), ("slices", 1),
                          ("in_bits", 2), ("adc_bits", 0), ("frac_bits", 0),
                          ("prog_gain", 0), ("read_gain", 0), ("adc_share", 1)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, not {v!r}")
        if self.slices > 1 and self.levels & (self.levels - 1):
            raise ValueError(f"levels must be a power of two when slices > 1, "
                             f"not {self.levels}")
        if self.adc_bits and self.adc_hi <= self.adc_lo:
            raise ValueError(f"adc range must have adc_lo < adc_hi, not "
                             f"[{self.adc_lo}, {self.adc_hi}]")
        if self.cols % self.adc_share:
            raise ValueError(f"adc_share must divide cols ({self.cols}), not "
                             f"{self.adc_share}")
        if self.prog_noise not in NOISE_MODES:
            raise ValueError(f"prog_noise must be one of {', '.join(NOISE_MODES)}, "
                             f"not {self.prog_noise!r}")

    @property
    def w_max(self) -> int:
        return self.levels ** self.slices - 1

    @property
    def x_range(self) -> tuple[int, int]:
        return -(1 << (self.in_bits - 1)), (1 << (self.in_bits - 1)) - 1

    @property
    def gbits(self) -> int:
        return (self.levels - 1).bit_length() + self.frac_bits + 1

    @property
    def gmax(self) -> int:
        return (1 << self.gbits) - 1

    @property
    def n_prog_generators(self) -> int:
        return 2 * self.slices

    @property
    def n_read_generators(self) -> int:
        return self.slices * self.cols

    @property
    def adc_step(self) -> float:
        """ADC step in fixed-point units (1 for the ideal ADC)."""
        return (self.adc_hi - self.adc_lo) / ((1 << self.adc_bits) - 1) if self.adc_bits else 1.0

    @property
    def macs_per_mvm(self) -> int:
        return self.rows * self.cols

    @property
    def adcs(self) -> int:
        """ADCs (and column adders, read-noise datapaths) of the array: one per slice
        and group of ``adc_share`` columns."""
        return self.slices * self.cols // self.adc_share

    @property
    def cycles_per_mvm(self) -> int:
        """Cycles one MVM occupies the array: one bit-plane per cycle, per phase."""
        return self.in_bits * self.adc_share

    @property
    def latency(self) -> int:
        """Cycles from an input vector's transfer to its result: the planes of every
        phase, then the column-sum, ADC and shift-add registers."""
        return self.cycles_per_mvm + 3

    @property
    def macs_per_cycle(self) -> float:
        """Back-to-back MVMs: the bit-serial, shared-ADC limit."""
        return self.macs_per_mvm / self.cycles_per_mvm

    def phase_columns(self, k: int) -> np.ndarray:
        """The columns digitized in phase ``k``: column ``k`` of every group."""
        return np.arange(k, self.cols, self.adc_share)

    def hw_kwargs(self) -> dict:
        return dict(rows=self.rows, cols=self.cols, levels=self.levels, slices=self.slices,
                    in_bits=self.in_bits, adc_bits=self.adc_bits, adc_lo=self.adc_lo,
                    adc_hi=self.adc_hi, frac_bits=self.frac_bits, prog_gain=self.prog_gain,
                    prog_noise=self.prog_noise, read_gain=self.read_gain,
                    adc_share=self.adc_share)

    def with_(self, **kw) -> "CrossbarParams":
        return replace(self, **kw)


def adc_code(a: np.ndarray, p: CrossbarParams) -> np.ndarray:
    """CrossSim's quantizer on fixed-point column values, returning integer codes."""
    a = np.asarray(a, dtype=np.int64)
    if p.adc_bits == 0:
        return a
    d = p.adc_hi - p.adc_lo
    u = np.clip(a, p.adc_lo, p.adc_hi) - p.adc_lo
    return (2 * u * ((1 << p.adc_bits) - 1) + d) // (2 * d)


class CrossbarModel:
    """Bit-exact crossbar: ``reseed``, ``program`` then any number of ``mvm``."""

    def __init__(self, params: CrossbarParams, seed: int = 0):
        self.p = params
        self.gd = np.zeros((params.slices, params.rows, params.cols), dtype=np.int64)
        # g+ and g- as programmed, kept for noise statistics.
        self.g = np.zeros((params.slices, 2, params.rows, params.cols), dtype=np.int64)
        self.reseed(seed)

    def reseed(self, seed: int):
        p = self.p
        self.prog_state = seed_states(seed, 0, p.n_prog_generators)
        # read_state[s, j]: generator 2 * slices + s * cols + j.
        self.read_state = seed_states(seed, p.n_prog_generators,
                                      p.n_read_generators).reshape(p.slices, p.cols)

    def check_weights(self, w) -> np.ndarray:
        w = np.asarray(w)
        p = self.p
        if w.shape != (p.rows, p.cols):
            raise ValueError(f"weights must have shape ({p.rows}, {p.cols}), not {w.shape}")
        if not np.issubdtype(w.dtype, np.integer):
            raise ValueError("weights must be integers (see map_weights)")
        if np.abs(w).max(initial=0) > p.w_max:
            raise ValueError(f"weights must lie in [-{p.w_max}, {p.w_max}] "
                             f"(levels**slices - 1), found {int(np.abs(w).max())}")
        return w.astype(np.int64)

    def check_inputs(self, x) -> np.ndarray:
        x = np.asarray(x)
        lo, hi = self.p.x_range
        if x.shape != (self.p.rows,):
            raise ValueError(f"input must have shape ({self.p.rows},), not {x.shape}")
        if not np.issubdtype(x.dtype, np.integer) or x.min() < lo or x.max() > hi:
            raise ValueError(f"inputs must be integers in [{lo}, {hi}] (in_bits "
                             f"{self.p.in_bits})")
        return x.astype(np.int64)

    def program(self, w):
        p = self.p
        w = self.check_weights(w).reshape(-1)
        n_cells = w.size
        z = np.empty((n_cells, p.n_prog_generators), dtype=np.int64)
        st = self.prog_state
        for k in range(n_cells):
            st = xorshift32(st)
            z[k] = irwin_hall(st)
        self.prog_state = st
        mag = np.abs(w)
        for s in range(p.slices):
            d = (mag // p.levels ** s) % p.levels
            for pol, mask in ((0, w > 0), (1, w < 0)):
                level = np.where(mask, d, 0)
                gain_level = level if p.prog_noise == "proportional" else 1
                n = scale_noise(z[:, 2 * s + pol], p.prog_gain, gain_level)
                g = np.clip(level * (1 << p.frac_bits) + n, 0, p.gmax)
                self.g[s, pol] = g.reshape(p.rows, p.cols)
            self.gd[s] = self.g[s, 0] - self.g[s, 1]

    def planes(self):
        """(plane index, weight) in the order they are applied."""
        b = self.p.in_bits
        return [(q, -(1 << q) if q == b - 1 else 1 << q) for q in range(b - 1, -1, -1)]

    def column_values(self, x, plane: int, cols=None) -> np.ndarray:
        """Analog column values (slices, len(cols)) of the columns ``cols`` (default
        all) for one bit-plane, drawing one read-noise sample of each of them."""
        p = self.p
        cols = np.arange(p.cols) if cols is None else np.asarray(cols)
        bits = (x >> plane) & 1
        self.read_state[:, cols] = xorshift32(self.read_state[:, cols])
        n = scale_noise(irwin_hall(self.read_state[:, cols]), p.read_gain)
        return np.einsum("i,sij->sj", bits, self.gd[:, :, cols]) + n

    def mvm(self, x) -> np.ndarray:
        p = self.p
        x = self.check_inputs(x)
        scale = np.array([p.levels ** s for s in range(p.slices)], dtype=np.int64)
        y = np.zeros(p.cols, dtype=np.int64)
        for k in range(p.adc_share):
            cols = p.phase_columns(k)
            acc = np.zeros(cols.size, dtype=np.int64)
            for t, (q, _) in enumerate(self.planes()):
                v = scale @ adc_code(self.column_values(x, q, cols), p)
                acc = -v if t == 0 else 2 * acc + v
            y[cols] = acc
        return y

    def mvm_batch(self, xs) -> np.ndarray:
        return np.stack([self.mvm(x) for x in xs]) if len(xs) else np.zeros((0, self.p.cols))

    def estimate(self, y) -> np.ndarray:
        """Outputs in units of W * x (float)."""
        return estimate(self.p, y)


def estimate(p: CrossbarParams, y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if p.adc_bits == 0:
        return y / (1 << p.frac_bits)
    slice_sum = sum(p.levels ** s for s in range(p.slices))
    # sum over planes of the plane weights is -1 for two's complement.
    return (p.adc_step * y - p.adc_lo * slice_sum) / (1 << p.frac_bits)


def output_bound(p: CrossbarParams) -> int:
    """Largest |Y| the integer output can take."""
    if p.adc_bits:
        kmax = (1 << p.adc_bits) - 1
    else:
        z, _ = irwin_hall_pmf()
        kmax = p.rows * p.gmax + int(scale_noise(np.array([z.max()]), p.read_gain)[0]) + 1
    return kmax * sum(p.levels ** s for s in range(p.slices)) * ((1 << p.in_bits) - 1)


def ideal_mvm(w, x) -> np.ndarray:
    """The mathematics: float ``y = x @ W``."""
    return np.asarray(x, dtype=np.float64) @ np.asarray(w, dtype=np.float64)


def error_vs_ideal(y, y_ideal) -> dict:
    """Error of crossbar outputs against the ideal MVM (any matching shapes)."""
    y = np.asarray(y, dtype=np.float64)
    y_ideal = np.asarray(y_ideal, dtype=np.float64)
    diff = y - y_ideal
    rms = float(np.sqrt(np.mean(diff ** 2)))
    ref = float(np.sqrt(np.mean(y_ideal ** 2)))
    return {"rms": rms, "rel_rms": rms / ref if ref else math.inf if rms else 0.0,
            "max_abs": float(np.abs(diff).max(initial=0.0)), "mean": float(diff.mean())}


def map_weights(w, p: CrossbarParams, w_scale: float | None = None):
    """Float weights to integers in [-w_max, w_max]; returns (ints, units per int)."""
    w = np.asarray(w, dtype=np.float64)
    w_scale = float(np.abs(w).max()) if w_scale is None else w_scale
    w_scale = w_scale or 1.0
    return np.rint(w / w_scale * p.w_max).astype(np.int64), w_scale / p.w_max


def map_inputs(x, p: CrossbarParams, x_scale: float | None = None):
    """Float inputs to in_bits two's complement integers (symmetric range)."""
    x = np.asarray(x, dtype=np.float64)
    x_scale = float(np.abs(x).max()) if x_scale is None else x_scale
    x_scale = x_scale or 1.0
    top = (1 << (p.in_bits - 1)) - 1
    return np.rint(x / x_scale * top).astype(np.int64), x_scale / top
