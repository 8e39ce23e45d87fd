"""PBitArray construction: parameter validation, Verilator lint, yosys synthesis."""

import re
import subprocess

import numpy as np
import pytest

from tilefab.gen import toolchain
from tilefab.gen.emit import to_verilog
from tilefab.gen.synth import synthesize
from tilefab.golden.pbit import pbit_seeds
from tilefab.hw.pbit.array import PBitArray

RING = [[(i - 1) % 6, (i + 1) % 6] for i in range(6)]


def ring(**kw):
    args = dict(neighbours=RING, max_degree=2, n_colours=2, seeds=pbit_seeds(1, 6))
    args.update(kw)
    return PBitArray(**args)


@pytest.mark.parametrize("kw,msg", [
    (dict(max_degree=1), r"neighbours\[0\] has degree 2, above max_degree=1"),
    (dict(neighbours=[[1], [], [0]], seeds=pbit_seeds(1, 3)), "neighbours must be symmetric"),
    (dict(neighbours=[[0]], seeds=[1]), r"neighbours\[0\] must list distinct p-bits"),
    (dict(n_colours=0), r"^n_colours: 0 is not allowed, must be 1\.\.256$"),
    (dict(lut_size=48), r"^lut_size: 48 is not allowed, must be a power of two >= 2$"),
    (dict(w_frac=8), r"^w_frac: 8 is not allowed, must be 0\.\.7$"),
    (dict(rand_bits=40), r"^rand_bits: 40 is not allowed, must be 2\.\.32$"),
    (dict(seeds=[1] * 6), "seeds must be distinct"),
    (dict(seeds=[0, 1, 2, 3, 4, 5]), "seeds must be 6 non-zero 32-bit integers"),
])
def test_parameters_validated(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ring(**kw)


def test_dense_wires_every_pair():
    a = PBitArray.dense(n=4, n_colours=4, seeds=pbit_seeds(1, 4))
    assert a.neighbours == ((1, 2, 3), (0, 2, 3), (0, 1, 3), (0, 1, 2))
    with pytest.raises(ValueError, match=r"^n: 100 is not allowed, must be 1\.\.64$"):
        PBitArray.dense(n=100, n_colours=4, seeds=pbit_seeds(1, 100))


@pytest.mark.parametrize("kw", [dict(), dict(w_bits=6, w_frac=2, beta_frac=2, lut_size=16,
                                             lut_step_frac=4, rand_bits=12, word_bits=4)])
def test_verilator_lint_clean(tmp_path, kw):
    v = to_verilog(ring(**kw), "pbit_ring")
    assert to_verilog(ring(**kw), "pbit_ring") == v          # stable output
    f = tmp_path / "pbit_ring.v"
    f.write_text(v)
    toolchain.apply()
    r = subprocess.run([toolchain.verilator_bin(), "--lint-only", "-Wno-fatal", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # Amaranth's implicit width changes are the only warnings allowed.
    kinds = set(re.findall(r"%Warning-(\w+)", r.stderr))
    assert kinds <= {"WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE"}, r.stderr
    assert "%Error" not in r.stderr


@pytest.mark.synth
def test_synthesizes_for_ecp5():
    res = synthesize(to_verilog(ring(), "pbit_ring"), "pbit_ring", "ecp5")
    assert res.lut > 6 * 20 and res.ff >= 6 * 33      # per p-bit: spin + xorshift32 at least


def test_share_groups_validated_and_checked_by_the_host():
    from tilefab.gen.errors import ConfigError
    from tilefab.gen.pbit import driver, graph

    with pytest.raises(ValueError, match=r"share must list distinct p-bits in \[0, 5\]"):
        ring(share=[[0, 0]])
    with pytest.raises(ValueError, match="each in at most one group"):
        ring(share=[[0, 3], [3, 4]])
    groups = graph.colour_groups(graph.dsatur(RING))
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert all(len({i % 2 for i in g}) == len(g) for g in groups)
    a = ring(share=[[0, 2], [1, 4]], n_colours=3)
    cfg = a.config()
    assert cfg["share"] == [[0, 2], [1, 4]]
    J = np.zeros((6, 6), dtype=np.int64)
    for i in range(6):
        J[i, (i + 1) % 6] = J[(i + 1) % 6, i] = -1
    ok = np.array([0, 1, 2, 1, 0, 2])             # 0/2 and 1/4 differ
    driver.encode(cfg, a.neighbours, [driver.Program(J, np.zeros(6), ok)])
    with pytest.raises(ConfigError, match=r"p-bits 0 and 2 share an update datapath "
                                          r"\(share group \[0, 2\]\) but both have colour 0"):
        driver.encode(cfg, a.neighbours, [driver.Program(J, np.zeros(6), np.arange(6) % 2)])
