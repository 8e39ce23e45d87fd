"""``tilefab bench mlp``: the digits classifier on the whole test set, and its accuracy
and energy per inference against the crossbar's ADC bits and device noise.

1. The test images (360; ``--images``) through the fabric's RTL on Verilator, batch
   by batch, each against the golden pipeline: ``RTL = golden`` or the first
   difference; accuracy (float, exact int8, crossbar on the RTL), energy and cycles
   per inference.
2. Accuracy and energy per inference against ``adc_bits`` 2..10 at the configured
   noise, and against ``prog_sigma`` and ``read_sigma`` at the configured ADC, by the
   bit-exact golden pipeline (``tilefab.sweep``'s cached points), as tables and a PNG.
3. The Pareto front of accuracy against energy over ADC bits x read noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import sweep
from ..gen import mlp as gm
from ..gen.config import load
from ..golden import mlp

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "mlp2x2.yaml"
ADC_BITS = (2, 3, 4, 5, 6, 7, 8, 9, 10)
SIGMAS = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0)


def _spec(config: dict, grid: dict, images: int, pareto=None) -> sweep.Spec:
    return sweep.Spec(name="bench_mlp", config=config, metric="mlp",
                      options={"images": images}, grid=grid, pareto=pareto)


def _table(spec: sweep.Spec, ex, field: str) -> list:
    doc = sweep.run(spec, ex, progress=False)
    print(f"{field:>20s} {'float %':>8s} {'int8 %':>8s} {'crossbar %':>10s} "
          f"{'energy pJ':>10s}")
    for r in doc["rows"]:
        m = r["metrics"]
        print(f"{r['point'][field]!s:>20s} {100 * m['accuracy_float']:8.2f} "
              f"{100 * m['accuracy_int8']:8.2f} {100 * m['accuracy_crossbar']:10.2f} "
              f"{m['energy_pj']:10.1f}")
    return doc["rows"]


def rtl_section(config, images: int, batch: int, seed: int) -> dict:
    from ..mlp import run_mlp
    from ..verif.runtime import Fabric

    _, _, xte, yte = gm.digits_split()
    net, q = gm.train(32), gm.quantized(32)
    x, labels = xte[:images], yte[:images]
    fab = Fabric(config, seed=seed)
    logits, energy, cycles, first_bad = [], 0.0, 0, ""
    for n, at in enumerate(range(0, len(x), batch)):
        r = run_mlp(fab, q, x[at:at + batch], seed=seed + n)
        logits.append(r.rtl.logits)
        energy += r.rtl.energy_pj
        cycles += r.mvm_cycles + r.gemm_cycles
        if not first_bad and r.mismatch:
            first_bad = r.mismatch.replace("image ", f"image {at} + ", 1)
    fig = {"images": len(x), "rtl_equals_golden": not first_bad,
           "accuracy_float": mlp.accuracy(mlp.forward_float(net, x), labels),
           "accuracy_int8": mlp.accuracy(mlp.forward_int8(q, x), labels),
           "accuracy_crossbar": mlp.accuracy(np.concatenate(logits), labels),
           "energy_pj": energy / len(x), "cycles": cycles / len(x)}
    print(f"== RTL: {len(x)} test images on {fab.config['name']} (Verilator, batches of "
          f"{batch})")
    print("RTL = golden" if not first_bad else f"RTL != golden: {first_bad}")
    for k in ("float", "int8", "crossbar"):
        print(f"accuracy {k:9s} {100 * fig[f'accuracy_{k}']:6.2f} %")
    print(f"energy per inference {fig['energy_pj']:.1f} pJ; cycles per inference "
          f"{fig['cycles']:.1f}")
    return fig


def bench(args) -> int:
    config = load(args.config or DEFAULT_CONFIG)
    images = 40 if args.quick else args.images
    figures = {}
    if not args.no_rtl:
        figures["rtl"] = rtl_section(config, images, args.batch, args.seed)
        print()
    ex = sweep.LocalExecutor(args.workers)
    print(f"== accuracy against ADC bits (golden pipeline, {images} test images, noise as "
          f"configured)")
    bits = ADC_BITS[::2] if args.quick else ADC_BITS
    figures["adc_bits"] = _table(_spec(config, {"crossbar.adc_bits": list(bits)}, images),
                                 ex, "crossbar.adc_bits")
    sigmas = SIGMAS[::2] if args.quick else SIGMAS
    for field in ("crossbar.prog_sigma", "crossbar.read_sigma"):
        print(f"\n== accuracy against {field.split('.')[1]} (ADC as configured)")
        figures[field] = _table(_spec(config, {field: list(sigmas)}, images), ex, field)
    pareto = {"x": "energy_pj", "x_goal": "min", "y": "accuracy_crossbar", "y_goal": "max"}
    grid = {"crossbar.adc_bits": list(bits), "crossbar.read_sigma": list(sigmas)}
    doc = sweep.run(_spec(config, grid, images, pareto), ex, progress=False)
    front = [doc["rows"][i] for i in doc["pareto"]["front"]]
    print("\n== Pareto front, accuracy against energy per inference (ADC bits x read sigma)")
    for r in sorted(front, key=lambda r: r["metrics"]["energy_pj"]):
        print(f"  adc_bits {r['point']['crossbar.adc_bits']:2d}, read_sigma "
              f"{r['point']['crossbar.read_sigma']:<4g}: {100 * r['metrics']['accuracy_crossbar']:6.2f} % "
              f"at {r['metrics']['energy_pj']:.1f} pJ")
    figures["pareto"] = front
    if args.plot:
        _plot(figures, doc, args.plot)
        print(f"wrote {args.plot}")
    ok = figures.get("rtl", {}).get("rtl_equals_golden", True)
    return 0 if ok else 1


def _plot(figures: dict, doc: dict, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.2))
    rows = figures["adc_bits"]
    bits = [r["point"]["crossbar.adc_bits"] for r in rows]
    a1.plot(bits, [100 * r["metrics"]["accuracy_crossbar"] for r in rows], "o-",
            label="crossbar")
    a1.axhline(100 * rows[0]["metrics"]["accuracy_int8"], color="k", ls="--", lw=1,
               label="exact int8")
    a1.set_xlabel("ADC bits")
    a1.set_ylabel("accuracy %")
    twin = a1.twinx()
    twin.plot(bits, [r["metrics"]["energy_pj"] for r in rows], "s:", color="C3")
    twin.set_ylabel("energy per inference (pJ)", color="C3")
    a1.legend(fontsize=7)
    for field, style in (("crossbar.prog_sigma", "o-"), ("crossbar.read_sigma", "s-")):
        rs = figures[field]
        a2.plot([r["point"][field] for r in rs],
                [100 * r["metrics"]["accuracy_crossbar"] for r in rs], style,
                label=field.split(".")[1])
    a2.set_xlabel("noise sigma (levels)")
    a2.set_ylabel("accuracy %")
    a2.legend(fontsize=7)
    xs = [r["metrics"]["energy_pj"] for r in doc["rows"]]
    ys = [100 * r["metrics"]["accuracy_crossbar"] for r in doc["rows"]]
    a3.scatter(xs, ys, s=12, color="0.6")
    front = sorted(doc["pareto"]["front"], key=lambda i: xs[i])
    a3.plot([xs[i] for i in front], [ys[i] for i in front], "o-", color="C3",
            label="Pareto front")
    a3.set_xlabel("energy per inference (pJ)")
    a3.set_ylabel("accuracy %")
    a3.legend(fontsize=7)
    fig.suptitle("digits MLP: layer 1 on crossbar tiles (golden pipeline)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
