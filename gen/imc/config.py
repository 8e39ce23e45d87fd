"""Crossbar configuration: YAML in level units, validated into ``CrossbarParams``.

A config file::

    crossbar:
      rows: 16                 # inputs (word lines)
      cols: 16                 # outputs (bit lines)
      levels: 4                # conductance levels per device, >= 2
      slices: 2                # arrays for weight bit slicing (levels a power of two if > 1)
      frac_bits: 4             # conductance fixed point: 2**-frac_bits level
      input_bits: 8            # bit-serial input planes (two's complement)
      adc: {bits: 8, min: -24, max: 24}            # range in level units
      noise:
        programming: {sigma: 0.1, mode: independent}   # or proportional
        read: {sigma: 0.2}                             # per column read
    weights: [[...], ...]      # optional integer matrix rows x cols
    energy: {v_read: 0.2}      # optional overrides of tilefab.gen.imc.energy.FIGURES

Every error names the field (``crossbar.adc.min``) and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import yaml

from ...golden.imc import NOISE_MODES, CrossbarParams, noise_gain
from ..errors import ConfigError, TilefabError
from .energy import FIGURES

LIMITS = {
    "rows": (1, 1024), "cols": (1, 1024), "levels": (2, 65536), "slices": (1, 8),
    "frac_bits": (0, 12), "input_bits": (2, 16),
}
ADC_BITS = (0, 16)
SIGMA_MAX = 64.0


@dataclass
class CrossbarConfig:
    params: CrossbarParams
    prog_sigma: float
    read_sigma: float
    adc_min: float
    adc_max: float
    weights: np.ndarray | None = None
    energy: dict = field(default_factory=dict)
    name: str = "crossbar"

    def describe(self) -> str:
        p = self.params
        adc = (f"ADC {p.adc_bits} bit [{self.adc_min:g}, {self.adc_max:g}]" if p.adc_bits
               else "ideal ADC")
        return (f"{p.rows}x{p.cols}, {p.levels} levels x {p.slices} slice(s) "
                f"(|w| <= {p.w_max}), {p.in_bits}-bit inputs, {adc}, "
                f"programming noise {self.prog_sigma:g} ({p.prog_noise}), "
                f"read noise {self.read_sigma:g} level")


def _int(node: dict, key: str, path: str, lo: int, hi: int, default=None) -> int:
    v = node.get(key, default)
    where = f"{path}.{key}" if path else key
    if v is None:
        raise ConfigError(where, f"is required: an integer in [{lo}, {hi}]")
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(where, f"must be an integer in [{lo}, {hi}], not {v!r}")
    return v


def _number(node: dict, key: str, path: str, default=None, lo=None, hi=None) -> float:
    v = node.get(key, default)
    where = f"{path}.{key}"
    if v is None:
        raise ConfigError(where, "is required: a number")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(where, f"must be a number, not {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(where, f"must be in [{lo}, {hi}], not {v!r}")
    return float(v)


def _mapping(node, key, path, required=False) -> dict:
    v = node.get(key)
    where = f"{path}.{key}" if path else key
    if v is None:
        if required:
            raise ConfigError(where, "is required (a mapping)")
        return {}
    if not isinstance(v, dict):
        raise ConfigError(where, f"must be a mapping, not {type(v).__name__}")
    return v


def _unknown(node: dict, allowed, path: str):
    extra = sorted(set(node) - set(allowed))
    if extra:
        raise ConfigError(f"{path}.{extra[0]}" if path else extra[0],
                          f"unknown key; allowed keys are {', '.join(sorted(allowed))}")


def parse(doc, name: str = "crossbar") -> CrossbarConfig:
    """Validate a config mapping (as read from YAML)."""
    if not isinstance(doc, dict):
        raise ConfigError("", "a crossbar config must be a YAML mapping with a 'crossbar' key")
    _unknown(doc, ("crossbar", "weights", "energy"), "")
    xb = _mapping(doc, "crossbar", "", required=True)
    _unknown(xb, (*LIMITS, "adc", "noise"), "crossbar")
    ints = {k: _int(xb, k, "crossbar", lo, hi, default={"slices": 1, "frac_bits": 4}.get(k))
            for k, (lo, hi) in LIMITS.items()}
    levels, slices, frac = ints["levels"], ints["slices"], ints["frac_bits"]
    if slices > 1 and levels & (levels - 1):
        raise ConfigError("crossbar.levels", f"must be a power of two (2, 4, 8, ...) when "
                          f"crossbar.slices > 1, so slices combine by shifts; got {levels}")

    adc = _mapping(xb, "adc", "crossbar", required=True)
    _unknown(adc, ("bits", "min", "max"), "crossbar.adc")
    adc_bits = _int(adc, "bits", "crossbar.adc", *ADC_BITS)
    lsb = Fraction(1, 1 << frac)
    col_max = ints["rows"] * (levels - 1)
    bounds = {}
    for key in ("min", "max"):
        if adc_bits == 0 and key not in adc:
            bounds[key] = Fraction(0)
            continue
        v = _number(adc, key, "crossbar.adc", lo=-4 * col_max - 1, hi=4 * col_max + 1)
        fv = Fraction(v).limit_denominator(1 << 20)
        if fv % lsb:
            raise ConfigError(f"crossbar.adc.{key}", f"must be a multiple of {lsb} level "
                              f"(the conductance LSB at crossbar.frac_bits {frac}), not {v!r}")
        bounds[key] = fv
    if adc_bits and bounds["min"] >= bounds["max"]:
        raise ConfigError("crossbar.adc", f"range is inverted or empty: min "
                          f"({float(bounds['min']):g}) must be less than max "
                          f"({float(bounds['max']):g})")

    noise = _mapping(xb, "noise", "crossbar")
    _unknown(noise, ("programming", "read"), "crossbar.noise")
    prog = _mapping(noise, "programming", "crossbar.noise")
    _unknown(prog, ("sigma", "mode"), "crossbar.noise.programming")
    read = _mapping(noise, "read", "crossbar.noise")
    _unknown(read, ("sigma",), "crossbar.noise.read")
    prog_sigma = _number(prog, "sigma", "crossbar.noise.programming", 0.0, 0.0, SIGMA_MAX)
    read_sigma = _number(read, "sigma", "crossbar.noise.read", 0.0, 0.0, SIGMA_MAX)
    mode = prog.get("mode", "independent")
    if mode not in NOISE_MODES:
        raise ConfigError("crossbar.noise.programming.mode",
                          f"must be one of {', '.join(NOISE_MODES)}, not {mode!r}")

    params = CrossbarParams(
        rows=ints["rows"], cols=ints["cols"], levels=levels, slices=slices,
        in_bits=ints["input_bits"], adc_bits=adc_bits,
        adc_lo=int(bounds["min"] / lsb), adc_hi=int(bounds["max"] / lsb), frac_bits=frac,
        prog_gain=noise_gain(prog_sigma, frac), prog_noise=mode,
        read_gain=noise_gain(read_sigma, frac))

    weights = None
    if doc.get("weights") is not None:
        weights = parse_weights(doc["weights"], params)

    energy = _mapping(doc, "energy", "")
    if energy:
        _unknown(energy, FIGURES, "energy")
        for k in energy:
            _number(energy, k, "energy", lo=0.0)
    return CrossbarConfig(params=params, prog_sigma=prog_sigma, read_sigma=read_sigma,
                          adc_min=float(bounds["min"]), adc_max=float(bounds["max"]),
                          weights=weights, energy=dict(energy), name=name)


def parse_weights(w, p: CrossbarParams, path: str = "weights") -> np.ndarray:
    """An integer matrix rows x cols within the mapped range +-(levels**slices - 1)."""
    if not isinstance(w, list) or len(w) != p.rows:
        raise ConfigError(path, f"must be a list of {p.rows} rows (crossbar.rows)")
    for i, row in enumerate(w):
        if not isinstance(row, list) or len(row) != p.cols:
            raise ConfigError(f"{path}[{i}]", f"must be a list of {p.cols} integers "
                              f"(crossbar.cols)")
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int) or abs(v) > p.w_max:
                raise ConfigError(f"{path}[{i}][{j}]", f"{v!r} is beyond the mapped range: "
                                  f"weights must be integers in [-{p.w_max}, {p.w_max}] "
                                  f"(levels**slices - 1 with levels {p.levels}, "
                                  f"slices {p.slices})")
    return np.array(w, dtype=np.int64)


def load(path) -> CrossbarConfig:

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TilefabError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TilefabError(f"{path}: not valid YAML ({exc})") from None
    try:
        return parse(doc, name=path.stem)
    except ConfigError as exc:
        message = str(exc)[len(exc.path) + 2:] if exc.path else str(exc)
        raise ConfigError(f"{path}: {exc.path}" if exc.path else str(path), message) from None
