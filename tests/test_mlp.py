"""The digits classifier: the int8 network against plain integer arithmetic and the
float one, the crossbar path exact when the crossbar is, and the RTL equal to the
golden pipeline on two fabrics under host backpressure."""

import copy
from pathlib import Path

import numpy as np
import pytest
from tilefab.gen import mlp as gm
from tilefab.gen.config import as_config, load
from tilefab.golden import mlp
from tilefab.verif.runtime import Fabric

from tilefab.cli import main
from tilefab.mlp import accuracies, run_mlp

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def model():
    return gm.train(32), gm.quantized(32), gm.digits_split()


def test_int8_path_is_integer_arithmetic_and_close_to_float(model):
    net, q, (_xtr, _ytr, xte, yte) = model
    got = mlp.forward_int8(q, xte[:40])
    for i, x in enumerate(xte[:40]):             # one image at a time, Python integers
        h = []
        for j in range(q.w1.shape[0]):
            a = sum(int(w) * int(v) for w, v in zip(q.w1[j], x)) + int(q.b1[j])
            h.append(min(127, (max(a, 0) * q.mult + (1 << 23)) >> 24))
        for c in range(q.w2.shape[0]):
            want = sum(int(w) * v for w, v in zip(q.w2[c], h)) + int(q.b2[c])
            assert got[i, c] == want
    assert q.w1.min() >= -127 and q.w1.max() <= 127
    # dequantized, the int8 logits follow the float network's
    ref = mlp.forward_float(net, xte)
    deq = mlp.forward_int8(q, xte) * q.s2 * q.s_h
    assert np.corrcoef(ref.ravel(), deq.ravel())[0, 1] > 0.99
    acc_f, acc_q = mlp.accuracy(ref, yte), mlp.accuracy(mlp.forward_int8(q, xte), yte)
    assert acc_f > 0.93 and abs(acc_f - acc_q) < 0.02


def test_an_exact_crossbar_gives_the_int8_logits(model):
    _, q, (_, _, xte, yte) = model
    raw = copy.deepcopy(load(EXAMPLES / "mlp2x2.yaml"))
    raw.pop("tile_map")
    for t in raw["tiles"]["at"]:
        t.update(adc_bits=0, prog_sigma=0.0, read_sigma=0.0)
    fab = Fabric(as_config(raw), backend="golden")
    layer = gm.CrossbarLayer.of(q, [(t.xy, t.params) for t in fab.tiles_of("crossbar")])
    assert layer.w_ratio == 1.0 and layer.x_top == 16          # int8 weights, pixels held
    inf = gm.golden_pipeline(layer, q, xte[:50], seed=4)
    np.testing.assert_array_equal(inf.logits, mlp.forward_int8(q, xte[:50]))
    # a noisy, 8-bit-ADC crossbar differs, and costs the same energy per image
    noisy = gm.golden_pipeline(gm.CrossbarLayer.of(q, [(t.xy, t.params) for t in Fabric(
        EXAMPLES / "mlp2x2.yaml", backend="golden").tiles_of("crossbar")]), q, xte[:50], 4)
    assert not np.array_equal(noisy.y1, inf.y1)
    a = accuracies(EXAMPLES / "mlp2x2.yaml", q, gm.train(32), xte, yte)
    assert a["images"] == len(xte) and a["crossbar"] > 0.9 and a["energy_pj"] > 0


@pytest.mark.sim
@pytest.mark.parametrize("example, stall", [("hetero3x3", 0.3), ("mlp2x2", 0.2)])
def test_rtl_equals_the_golden_pipeline(model, example, stall):
    _, q, (_, _, xte, yte) = model
    fab = Fabric(EXAMPLES / f"{example}.yaml", seed=2)
    r = run_mlp(fab, q, xte[:20], seed=9, in_stall=stall, out_stall=stall)
    assert r.rtl_equals_golden, r.mismatch
    assert r.batch == 20 and r.cycles_per_inference > 0 and r.energy_per_inference_pj > 0
    assert (r.rtl.classes == yte[:20]).mean() >= 0.8
    # the comparison can fail: a changed hidden activation is found and named
    r.rtl.hidden[3, 5] += 1
    assert r.mismatch == (f"image 3, hidden activation 5: RTL {r.rtl.hidden[3, 5]} != "
                          f"golden {r.golden.hidden[3, 5]}")


@pytest.mark.sim
def test_cli_run_mlp(capsys):
    assert main(["run", "mlp", str(EXAMPLES / "hetero3x3.yaml"), "--images", "6",
                 "--batch", "3"]) == 0
    out = capsys.readouterr().out
    assert "RTL = golden" in out
    for line in ("accuracy float", "accuracy int8", "accuracy crossbar",
                 "energy per inference", "cycles per inference"):
        assert line in out
    assert main(["run", "mlp", str(EXAMPLES / "gemm2x2.yaml"), "--images", "2"]) == 2
    assert "no crossbar tiles" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "mlp", str(EXAMPLES / "hetero3x3.yaml"), "--images", "0"])
