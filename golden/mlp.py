"""A two-layer perceptron, ``logits = W2 relu(W1 x + b1) + b2``, in float and in int8.

Float: ``forward_float(net, x)`` with ``net`` a ``FloatMLP`` (weights ``w1`` (H, D),
``b1`` (H,), ``w2`` (C, H), ``b2`` (C,)).

Int8 (``QuantMLP``, made by ``quantize``), symmetric per-tensor scales:

- the input ``x`` is integer (for the digits, pixel values 0..16, scale ``s_x = 1``);
- ``W1q = rint(W1 / s1)`` with ``s1 = max|W1| / 127``, ``b1q = rint(b1 / (s1 s_x))``;
  ``acc1 = W1q x + b1q`` is exact in int32 units of ``s1 s_x``;
- requantization to the hidden activations: ``h = clip(round(relu(acc1) * M), 0,
  127)`` with ``M = s1 s_x / s_h`` as a fixed-point multiplier ``mult / 2**shift``
  (``shift = 24``) and rounding half up: ``(a * mult + 2**(shift-1)) >> shift``; ``s_h``
  is calibrated as the largest float hidden activation over the calibration images,
  over 127;
- ``W2q = rint(W2 / s2)``, ``s2 = max|W2| / 127``, ``b2q = rint(b2 / (s2 s_h))``;
  ``logits = W2q h + b2q`` in int32; the class is the first index of the largest
  logit.

``requantize(acc, net)`` is the step between the layers, shared by every path
(exact, crossbar, RTL): a layer-1 result that is not an integer (a crossbar's
estimate) is first rounded half up to an integer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHIFT = 24
QMAX = 127


@dataclass(frozen=True)
class FloatMLP:
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def __post_init__(self):
        h, _d = np.shape(self.w1)
        c, h2 = np.shape(self.w2)
        if h2 != h or np.shape(self.b1) != (h,) or np.shape(self.b2) != (c,):
            raise ValueError(f"w1 {np.shape(self.w1)}, b1 {np.shape(self.b1)}, w2 "
                             f"{np.shape(self.w2)}, b2 {np.shape(self.b2)}: w1 must be "
                             f"(H, D), b1 (H,), w2 (C, H) and b2 (C,)")


@dataclass(frozen=True)
class QuantMLP:
    w1: np.ndarray        # (H, D) int8
    b1: np.ndarray        # (H,) int32, units of s1 * s_x
    w2: np.ndarray        # (C, H) int8
    b2: np.ndarray        # (C,) int32, units of s2 * s_h
    mult: int             # requantization multiplier, M = mult / 2**SHIFT
    s1: float
    s2: float
    s_x: float
    s_h: float

    @property
    def shape(self) -> tuple:
        """(D inputs, H hidden, C classes)."""
        return self.w1.shape[1], self.w1.shape[0], self.w2.shape[0]


def forward_float(net: FloatMLP, x) -> np.ndarray:
    """Float logits (batch, C) of inputs (batch, D)."""
    x = np.asarray(x, dtype=np.float64)
    h = np.maximum(x @ np.asarray(net.w1, dtype=np.float64).T + net.b1, 0.0)
    return h @ np.asarray(net.w2, dtype=np.float64).T + net.b2


def _scale(a) -> float:
    top = float(np.abs(a).max())
    return top / QMAX if top > 0 else 1.0


def quantize(net: FloatMLP, calibration, s_x: float = 1.0) -> QuantMLP:
    """The int8 network of ``net``; ``calibration`` (batch, D) sets the hidden scale."""
    s1, s2 = _scale(net.w1), _scale(net.w2)
    cal = np.asarray(calibration, dtype=np.float64) * s_x
    h = np.maximum(cal @ np.asarray(net.w1, dtype=np.float64).T + net.b1, 0.0)
    s_h = _scale(h)
    mult = round(s1 * s_x / s_h * (1 << SHIFT))
    w1 = np.clip(np.rint(net.w1 / s1), -QMAX, QMAX).astype(np.int64)
    w2 = np.clip(np.rint(net.w2 / s2), -QMAX, QMAX).astype(np.int64)
    b1 = np.rint(np.asarray(net.b1) / (s1 * s_x)).astype(np.int64)
    b2 = np.rint(np.asarray(net.b2) / (s2 * s_h)).astype(np.int64)
    return QuantMLP(w1=w1, b1=b1, w2=w2, b2=b2, mult=mult, s1=s1, s2=s2, s_x=s_x, s_h=s_h)


def requantize(acc, q: QuantMLP) -> np.ndarray:
    """Hidden activations (int, 0..127) from layer-1 accumulators ``W1q x`` (bias not
    yet added; integers, or floats that are rounded half up first)."""
    acc = np.asarray(acc)
    if acc.dtype.kind == "f":
        acc = np.floor(acc + 0.5)
    a = np.maximum(acc.astype(np.int64) + q.b1, 0)
    return np.minimum((a * q.mult + (1 << (SHIFT - 1))) >> SHIFT, QMAX)


def layer1(q: QuantMLP, x) -> np.ndarray:
    """Exact ``W1q x`` (batch, H) of integer inputs (batch, D)."""
    return np.asarray(x, dtype=np.int64) @ q.w1.T


def layer2(q: QuantMLP, h) -> np.ndarray:
    """Exact int32 logits (batch, C) of hidden activations (batch, H)."""
    return np.asarray(h, dtype=np.int64) @ q.w2.T + q.b2


def forward_int8(q: QuantMLP, x) -> np.ndarray:
    """Int logits (batch, C) of the int8 network."""
    return layer2(q, requantize(layer1(q, x), q))


def predict(logits) -> np.ndarray:
    return np.argmax(np.asarray(logits), axis=1)


def accuracy(logits, labels) -> float:
    labels = np.asarray(labels)
    return float(np.mean(predict(logits) == labels)) if len(labels) else 0.0


__all__ = [
    "QMAX",
    "SHIFT",
    "FloatMLP",
    "QuantMLP",
    "accuracy",
    "forward_float",
    "forward_int8",
    "layer1",
    "layer2",
    "predict",
    "quantize",
    "requantize",
]
