"""The digits classifier: training, int8 quantization, and its mapping onto the fabric.

``digits_split()`` is scikit-learn's bundled digits set (1,797 8x8 images, pixels
0..16, no download), split once into training and test images (stratified, 20 %
test, ``random_state = 0``). ``train(hidden, seed)`` fits a ``hidden``-unit ReLU MLP
(scikit-learn's ``MLPClassifier``, Adam, on pixels / 16) and returns it as a
``golden.mlp.FloatMLP`` over raw pixels; ``golden.mlp.quantize`` makes the int8
network, calibrated on the training images.

Layer 1 on crossbar tiles (``CrossbarLayer``): the int8 weights ``W1q`` become the
tiles' integer weights ``Wc = rint(W1q * w_max / 127)`` (``w_max = levels**slices -
1``; with ``w_max >= 127`` they are ``W1q`` itself) and the pixels the tiles' inputs
``xc = rint(x * top / 16)`` (``top = 2**(input_bits - 1) - 1``; pixels as they are
when ``top >= 16``). The tiles return integer outputs; their estimate of ``Wc xc``
(``plan.assemble``) times ``(127 / w_max) (16 / top)`` is the estimate of ``W1q x``
that ``golden.mlp.requantize`` turns into the hidden activations. Layer 2 runs on
GEMM tiles exactly: ``h (batch, H) @ W2q^T (H, C)``, plus ``b2q``. Noise seeds of the
crossbar blocks come from the batch's seed (``gen.imc.tile.plan_mvm``).

``golden_pipeline(layer, q, x, seed)`` is the whole inference by the bit-exact tile
models (``CrossbarModel`` per block, exact integer GEMM), which the RTL must equal.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..golden import mlp
from ..hw.tiles.crossbar import CrossbarTileParams
from .errors import ConfigError
from .imc import tile as imc_tile

PIXEL_MAX = 16
TEST_FRACTION = 0.2
# Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm): an 8-bit multiply
# 0.2 pJ and a 32-bit add 0.1 pJ: one int8 MAC into a 32-bit accumulator.
GEMM_MAC_PJ = 0.2 + 0.1


@lru_cache(maxsize=1)
def digits_split():
    """(x_train, y_train, x_test, y_test): int pixels (n, 64) and labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=TEST_FRACTION,
                                          random_state=0, stratify=d.target)
    return xtr, ytr, xte, yte


@lru_cache(maxsize=8)
def train(hidden: int = 32, seed: int = 0) -> mlp.FloatMLP:
    """A ``hidden``-unit ReLU MLP fitted to the training images (deterministic)."""
    if not isinstance(hidden, int) or not 1 <= hidden <= 1024:
        raise ConfigError("hidden", f"{hidden!r} is not allowed, must be 1..1024")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    xtr, ytr, _, _ = digits_split()
    clf = MLPClassifier(hidden_layer_sizes=(hidden,), activation="relu", solver="adam",
                        alpha=1e-4, max_iter=400, random_state=seed)
    with warnings.catch_warnings():
        # a fixed number of epochs is the recipe; stopping short of convergence is fine
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr / PIXEL_MAX, ytr)
    return mlp.FloatMLP(w1=clf.coefs_[0].T / PIXEL_MAX, b1=clf.intercepts_[0].copy(),
                        w2=clf.coefs_[1].T.copy(), b2=clf.intercepts_[1].copy())


def quantized(hidden: int = 32, seed: int = 0) -> mlp.QuantMLP:
    xtr, _, _, _ = digits_split()
    return mlp.quantize(train(hidden, seed), xtr)


@dataclass(frozen=True)
class CrossbarLayer:
    """Layer 1 of ``q`` mapped onto crossbar tiles ``tiles`` [((x, y), params)]."""
    tiles: tuple
    weights: np.ndarray         # Wc (H, D), the tiles' integers
    w_ratio: float              # units of W1q per unit of Wc
    x_top: int                  # the tiles' input for a pixel of 16

    @classmethod
    def of(cls, q: mlp.QuantMLP, tiles) -> CrossbarLayer:
        tiles = tuple((tuple(xy), p) for xy, p in tiles)
        if not tiles:
            raise ConfigError("tiles", "layer 1 needs at least one crossbar tile")
        p = tiles[0][1]
        if not isinstance(p, CrossbarTileParams):
            raise ConfigError("tiles[0]", f"must hold CrossbarTileParams, not "
                                          f"{type(p).__name__}")
        cb = imc_tile.golden_params(p)
        w_max, top = cb.w_max, cb.x_range[1]
        if w_max >= mlp.QMAX:
            wc, ratio = q.w1.copy(), 1.0
        else:
            wc, ratio = np.rint(q.w1 * w_max / mlp.QMAX).astype(np.int64), mlp.QMAX / w_max
        return cls(tiles=tiles, weights=wc, w_ratio=ratio, x_top=min(top, PIXEL_MAX))

    def inputs(self, x) -> np.ndarray:
        """The tiles' inputs for pixels ``x`` (batch, D)."""
        x = np.asarray(x, dtype=np.int64)
        if self.x_top >= PIXEL_MAX:
            return x
        return np.rint(x * self.x_top / PIXEL_MAX).astype(np.int64)

    def plan(self, x, seed: int):
        return imc_tile.plan_mvm(list(self.tiles), self.weights, self.inputs(x), seed=seed)

    def acc(self, estimate) -> np.ndarray:
        """The estimate of ``W1q x`` from the tiles' estimate of ``Wc xc``."""
        return np.asarray(estimate, dtype=np.float64) * self.w_ratio * PIXEL_MAX / self.x_top


@dataclass
class Inference:
    """One batch through the network: every stage, for comparison."""
    y1: np.ndarray              # crossbar integer outputs (batch, H)
    hidden: np.ndarray          # requantized activations (batch, H)
    logits: np.ndarray          # (batch, C)
    energy_pj: float            # of the whole batch
    batch: int

    @property
    def classes(self) -> np.ndarray:
        return mlp.predict(self.logits)


def layer2_energy_pj(q: mlp.QuantMLP, batch: int) -> float:
    _, h, c = q.shape
    return GEMM_MAC_PJ * h * c * batch


def golden_pipeline(layer: CrossbarLayer, q: mlp.QuantMLP, x, seed: int) -> Inference:
    """The inference of pixels ``x`` (batch, D) by the bit-exact tile models."""
    plan = layer.plan(x, seed)
    replies = imc_tile.golden_replies(plan)
    out = plan.assemble(replies)
    y1 = np.atleast_2d(out.y)
    hidden = mlp.requantize(layer.acc(np.atleast_2d(out.estimate)), q)
    logits = mlp.layer2(q, hidden)
    energy = imc_tile.energy_pj(plan) + layer2_energy_pj(q, len(hidden))
    return Inference(y1=y1, hidden=hidden, logits=logits, energy_pj=energy, batch=len(hidden))


__all__ = [
    "GEMM_MAC_PJ",
    "CrossbarLayer",
    "Inference",
    "digits_split",
    "golden_pipeline",
    "layer2_energy_pj",
    "quantized",
    "train",
]
