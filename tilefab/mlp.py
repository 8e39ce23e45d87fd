"""The digits classifier end to end on a fabric: layer 1 on its crossbar tiles, layer 2
on its GEMM tiles, the requantization between them on the host (``gen.mlp``).

``run_mlp(fab, q, x, seed=...)`` runs one batch of images on ``fab`` (the RTL, on
Verilator) and, beside it, the golden pipeline of the same batch and seed; the
``MlpRun`` says whether they are equal (``rtl_equals_golden``, else ``mismatch``
names the first image and output that differ) and gives cycles and energy per
inference. ``report(config, ...)`` prints the accuracy lines: float, exact int8, and
on the crossbar tiles at their configured noise and ADC (the golden pipeline over the
test images), with energy and cycles per inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gen import mlp as gm
from .gen.errors import ConfigError
from .golden import mlp
from .verif.runtime import Fabric


@dataclass
class MlpRun:
    rtl: gm.Inference
    golden: gm.Inference
    mvm_cycles: int
    gemm_cycles: int

    @property
    def batch(self) -> int:
        return self.rtl.batch

    @property
    def cycles_per_inference(self) -> float:
        return (self.mvm_cycles + self.gemm_cycles) / self.batch

    @property
    def energy_per_inference_pj(self) -> float:
        return self.rtl.energy_pj / self.batch

    @property
    def mismatch(self) -> str:
        """The first image and output where the RTL differs from the golden pipeline."""
        for name in ("y1", "hidden", "logits"):
            got, want = getattr(self.rtl, name), getattr(self.golden, name)
            bad = np.argwhere(got != want)
            if len(bad):
                i, j = (int(v) for v in bad[0])
                stage = {"y1": "crossbar output", "hidden": "hidden activation",
                         "logits": "logit"}[name]
                return f"image {i}, {stage} {j}: RTL {got[i, j]} != golden {want[i, j]}"
        return ""

    @property
    def rtl_equals_golden(self) -> bool:
        return not self.mismatch


def layer_of(fab: Fabric, q: mlp.QuantMLP) -> gm.CrossbarLayer:
    return gm.CrossbarLayer.of(q, [(t.xy, t.params) for t in fab.tiles_of("crossbar")])


def run_mlp(fab: Fabric, q: mlp.QuantMLP, x, *, seed: int = 1, **run) -> MlpRun:
    """One batch of pixel images ``x`` (batch, 64) through the fabric, and its golden
    pipeline."""
    x = np.atleast_2d(np.asarray(x))
    if x.ndim != 2 or x.shape[1] != q.shape[0] or len(x) < 1:
        raise ConfigError("images", f"must be (batch >= 1, {q.shape[0]}) pixels, not "
                                    f"shape {x.shape}")
    layer = layer_of(fab, q)
    fab.tiles_of("gemm")
    mv = fab.mvm(layer.weights, layer.inputs(x), seed=seed, **run)
    hidden = mlp.requantize(layer.acc(np.atleast_2d(mv.estimate)), q)
    g = fab.gemm(hidden, q.w2.T, seed=seed, **run)
    logits = g.c + q.b2
    energy = mv.energy_pj + gm.layer2_energy_pj(q, len(x))
    rtl = gm.Inference(y1=np.atleast_2d(mv.y), hidden=hidden, logits=logits,
                       energy_pj=energy, batch=len(x))
    golden = gm.golden_pipeline(layer, q, x, seed)
    return MlpRun(rtl=rtl, golden=golden, mvm_cycles=mv.cycles, gemm_cycles=g.cycles)


def accuracies(config, q: mlp.QuantMLP, net: mlp.FloatMLP, x, labels, *, seed: int = 1,
               batch: int = 40) -> dict:
    """Accuracy (fractions) on ``x``: float, exact int8, and on the config's crossbar
    tiles (golden pipeline, batches of ``batch`` images, each with its own seed), with
    the energy per inference of the crossbar path."""
    fab = config if isinstance(config, Fabric) else Fabric(config, backend="golden")
    layer = layer_of(fab, q)
    logits, energy = [], 0.0
    for n, at in enumerate(range(0, len(x), batch)):
        inf = gm.golden_pipeline(layer, q, x[at:at + batch], seed + n)
        logits.append(inf.logits)
        energy += inf.energy_pj
    return {"float": mlp.accuracy(mlp.forward_float(net, x), labels),
            "int8": mlp.accuracy(mlp.forward_int8(q, x), labels),
            "crossbar": mlp.accuracy(np.concatenate(logits), labels),
            "energy_pj": energy / len(x), "images": len(x)}


__all__ = ["MlpRun", "accuracies", "layer_of", "run_mlp"]
