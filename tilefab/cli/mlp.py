"""``tilefab run mlp CONFIG``: the digits classifier on a fabric's crossbar and GEMM
tiles (Verilator), checked against the golden pipeline; ``tilefab bench mlp``
(``tilefab.bench.mlp``): the whole test set, and accuracy and energy against ADC bits
and device noise."""

from __future__ import annotations

from ..gen import mlp as gm
from ..golden import mlp
from .args import fraction, integer
from .args import seed as _seed_arg

MAX_IMAGES = 360            # the test set


def _run(args) -> int:
    from ..mlp import run_mlp
    from ..verif.runtime import Fabric

    _, _, xte, yte = gm.digits_split()
    net, q = gm.train(args.hidden), gm.quantized(args.hidden)
    x, labels = xte[:args.images], yte[:args.images]
    fab = Fabric(args.config, seed=args.seed)
    d, h, c = q.shape
    print(f"{fab.config['name']}: digits MLP {d}-{h}-{c}, int8; layer 1 on "
          f"{len(fab.tiles_of('crossbar'))} crossbar tile(s), layer 2 on "
          f"{len(fab.tiles_of('gemm'))} GEMM tile(s); {len(x)} test images (Verilator)")
    logits, rtl_energy, cycles, first_bad = [], 0.0, 0, ""
    for n, at in enumerate(range(0, len(x), args.batch)):
        r = run_mlp(fab, q, x[at:at + args.batch], seed=args.seed + n,
                    in_stall=args.stall_in, out_stall=args.stall_out)
        logits.append(r.rtl.logits)
        rtl_energy += r.rtl.energy_pj
        cycles += r.mvm_cycles + r.gemm_cycles
        if not first_bad and r.mismatch:
            first_bad = r.mismatch.replace("image ", f"image {at} + ", 1)
    print("RTL = golden" if not first_bad else f"RTL != golden: {first_bad}")
    import numpy as np

    crossbar = mlp.accuracy(np.concatenate(logits), labels)
    print(f"accuracy float    {100 * mlp.accuracy(mlp.forward_float(net, x), labels):6.2f} %")
    print(f"accuracy int8     {100 * mlp.accuracy(mlp.forward_int8(q, x), labels):6.2f} % "
          f"(exact integer path)")
    print(f"accuracy crossbar {100 * crossbar:6.2f} % (the tiles' noise and ADC, on the RTL)")
    print(f"energy per inference {rtl_energy / len(x):.1f} pJ (crossbar energy model + "
          f"{gm.GEMM_MAC_PJ:g} pJ per int8 MAC of layer 2)")
    print(f"cycles per inference {cycles / len(x):.1f} (batches of {args.batch}, first flit "
          f"in to last flit out, both layers)")
    return 0 if not first_bad else 1


def register(commands, bench):
    run = commands.add_parser("run", help="run a network end to end on a fabric")
    sub = run.add_subparsers(dest="network", required=True, metavar="NETWORK")
    p = sub.add_parser("mlp", help="the digits classifier: layer 1 on crossbar tiles, "
                                   "layer 2 on GEMM tiles, checked against the golden "
                                   "pipeline")
    p.add_argument("config", help="fabric YAML with crossbar and GEMM tiles")
    p.add_argument("--images", type=integer("--images", 1, MAX_IMAGES, "the test set"),
                   default=20, help="test images to run (default 20)")
    p.add_argument("--batch", type=integer("--batch", 1, MAX_IMAGES), default=20,
                   help="images per batch (default 20)")
    p.add_argument("--hidden", type=integer("--hidden", 1, 256), default=32,
                   help="hidden units (default 32)")
    p.add_argument("--seed", type=_seed_arg, default=1, help="seeds the device noise")
    p.add_argument("--stall-in", type=fraction("--stall-in"), default=0.0,
                   help="probability of a host-port input stall each cycle")
    p.add_argument("--stall-out", type=fraction("--stall-out"), default=0.0,
                   help="probability of a host-port output stall each cycle")
    p.set_defaults(func=_run)

    b = bench.add_parser("mlp", help="the digits classifier: the whole test set on the "
                                     "RTL, accuracy and energy against ADC bits and noise")
    b.add_argument("--config", default=None,
                   help="fabric YAML with crossbar and GEMM tiles (default "
                        "examples/mlp2x2.yaml)")
    b.add_argument("--images", type=integer("--images", 1, MAX_IMAGES, "the test set"),
                   default=MAX_IMAGES, help="test images (default: all 360)")
    b.add_argument("--batch", type=integer("--batch", 1, MAX_IMAGES), default=40,
                   help="images per RTL batch (default 40)")
    b.add_argument("--seed", type=_seed_arg, default=1, help="seeds the device noise")
    b.add_argument("--workers", type=integer("--workers", 1, 64), default=2,
                   help="processes for the golden sweeps (default 2)")
    b.add_argument("--quick", action="store_true",
                   help="40 images and fewer ADC and noise points")
    b.add_argument("--no-rtl", action="store_true", help="golden sweeps only")
    b.add_argument("--plot", default="build/mlp_bench.png", help="where to write the PNG")
    b.set_defaults(func=_bench)


def _bench(args) -> int:
    from ..bench.mlp import bench as run_bench

    return run_bench(args)
