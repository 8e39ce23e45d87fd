"""Quantize real J and h to the array's fixed point, and report the error.

J_q = round(J * scale * 2^w_frac), h_q likewise with the same fraction bits (the
hardware adds them without alignment). ``scale`` multiplies the problem so it uses
the available range; the hardware then samples at beta_hw = beta / scale, which
``Quantized.beta_code`` applies. Values out of range are an error unless ``clip``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...golden.pbit import PBitFormat
from ..errors import ConfigError


@dataclass
class Quantized:
    J: np.ndarray
    h: np.ndarray
    scale: float
    fmt: PBitFormat
    max_abs_error: float      # in problem units, over J and h
    rel_rms_error: float      # ||J_q/s - J|| / ||J|| (J and h together)
    clipped: int

    def beta_code(self, beta: float) -> int:
        """Beta for the problem's units, as the array's beta code."""
        return self.fmt.beta_code(beta / self.scale)

    def report(self) -> str:
        return (f"quantization: scale {self.scale:g}, {self.fmt.w_bits}-bit J / "
                f"{self.fmt.h_bits}-bit h with {self.fmt.w_frac} fraction bits; "
                f"max |error| {self.max_abs_error:.3g}, relative RMS {self.rel_rms_error:.3g}, "
                f"{self.clipped} clipped")


def quantize(J, h, fmt: PBitFormat, scale: float | None = None, clip: bool = False
             ) -> Quantized:
    J = np.asarray(J, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    one = 2 ** fmt.w_frac
    (wlo, whi), (hlo, hi) = fmt.w_range(), fmt.h_range()
    if scale is None:
        # Largest power of two that keeps every value representable.
        jm, hm = np.abs(J).max(initial=0), np.abs(h).max(initial=0)
        lim = min(whi / (jm * one) if jm else np.inf, hi / (hm * one) if hm else np.inf)
        if not np.isfinite(lim):
            scale = 1.0
        elif lim < 1:
            scale = 2.0 ** np.floor(np.log2(lim))
        else:
            scale = 1.0
    if not scale > 0:
        raise ConfigError("scale", f"must be positive, got {scale}")
    Jr, hr = np.rint(J * scale * one), np.rint(h * scale * one)
    clipped = int(((Jr < wlo) | (Jr > whi)).sum() + ((hr < hlo) | (hr > hi)).sum())
    if clipped and not clip:
        if ((Jr < wlo) | (Jr > whi)).any():
            v = Jr[(Jr < wlo) | (Jr > whi)][0]
            raise ConfigError("J", f"value {v / one / scale:g} quantizes to {int(v)}, outside "
                                   f"[{wlo}, {whi}] (w_bits={fmt.w_bits}, "
                                   f"w_frac={fmt.w_frac}); lower scale or widen w_bits")
        v = hr[(hr < hlo) | (hr > hi)][0]
        raise ConfigError("h", f"value {v / one / scale:g} quantizes to {int(v)}, outside "
                               f"[{hlo}, {hi}] (h_bits={fmt.h_bits}); lower scale or widen h_bits")
    Jq = np.clip(Jr, wlo, whi).astype(np.int64)
    hq = np.clip(hr, hlo, hi).astype(np.int64)
    err = np.concatenate([(Jq / one / scale - J).ravel(), hq / one / scale - h])
    ref = np.sqrt((J ** 2).sum() + (h ** 2).sum())
    return Quantized(Jq, hq, float(scale), fmt, float(np.abs(err).max(initial=0)),
                     float(np.sqrt((err ** 2).sum()) / ref) if ref else 0.0, clipped)
