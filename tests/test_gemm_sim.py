"""GEMM on generated fabrics: cocotb on Verilator (and Icarus), pyverilator, the CLI.

Every run compares the fabric's product with the exact numpy product and the
PEs' counters with what the compiled plan implies. Shapes cover ragged sizes
(M, K, N not multiples of anything), 1x1x1, K = max_k, more output rows than
fit one PE's share at once, and runs back to back without a reset. A 2:4 sparse
fabric (``gemm2x2_sparse24``) and a 4:8 one (``gemm3x2_sparse48``) run the same way
with B pruned to the pattern, and the 2:4 one
answers malformed metadata and descriptors sent raw over the NoC with ERRORs.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tilefab.gen.config import load
from tilefab.verif.runner import run_generated

pytestmark = pytest.mark.sim

EXAMPLES = Path(__file__).parent.parent / "examples"

# Per fabric: shapes run back to back on one simulation, with host backpressure.
SUITES = {
    "gemm2x2": [(37, 53, 29), (1, 1, 1), (3, 256, 5), (9, 7, 33), (40, 24, 16)],
    "gemm3x2": [(37, 53, 29), (1, 1, 1), (7, 256, 9), (26, 5, 50), (13, 64, 48)],
    # K not a multiple of 4 (a padded last group), K = 1, K = max_k.
    "gemm2x2_sparse24": [(37, 53, 29), (1, 1, 1), (3, 256, 5), (9, 7, 33), (40, 24, 16)],
    # 4:8 with 16-bit operands: K not a multiple of 8, K = 1, K = max_k.
    "gemm3x2_sparse48": [(29, 45, 37), (1, 1, 1), (5, 256, 9), (17, 13, 50)],
}


@pytest.mark.parametrize("example", SUITES)
def test_gemm_cocotb(example):
    path = EXAMPLES / f"{example}.yaml"
    run_generated(load(path), "fabric", "tilefab.verif.tb_gemm", testcase="gemm",
                  params={"config": str(path), "shapes": SUITES[example], "seed": 11,
                          "in_stall": 0.3, "out_stall": 0.4})


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus not installed")
def test_gemm_cocotb_icarus():
    path = EXAMPLES / "gemm2x2.yaml"
    run_generated(load(path), "fabric", "tilefab.verif.tb_gemm", testcase="gemm", sim="icarus",
                  params={"config": str(path), "shapes": [(11, 13, 9)], "seed": 3,
                          "in_stall": 0.2, "out_stall": 0.3})


def test_gemm_pyverilator_backpressure():
    from tilefab.golden.gemm import gemm_exact
    from tilefab import Fabric
    from tilefab.verif.stimulus import random_operands

    fabric = Fabric(EXAMPLES / "gemm2x2.yaml", seed=5, in_stall=0.25, out_stall=0.5)
    rng = np.random.default_rng(5)
    for m, k, n in [(21, 30, 11), (4, 200, 6)]:
        a, b = random_operands(rng, m, k, n, 8)
        run = fabric.gemm(a, b)
        assert np.array_equal(run.c, gemm_exact(a, b, 8)), (m, k, n)
        assert 0 < run.utilization < 1
        assert sum(c["busy"] for c in run.counters.values()) * run.lanes >= run.macs


def test_gemm_sparse_pyverilator():
    from tilefab import Fabric
    from tilefab.gen.errors import OperandError
    from tilefab.golden import nm
    from tilefab.golden.packet import Op
    from tilefab.verif.stimulus import random_operands

    fabric = Fabric(EXAMPLES / "gemm2x2_sparse24.yaml", seed=7, in_stall=0.25, out_stall=0.4)
    rng = np.random.default_rng(7)
    a, b = random_operands(rng, 21, 30, 11, 8)
    b = nm.prune(b, 2, 4)
    run = fabric.gemm(a, b)
    assert run.golden_ok and np.array_equal(run.c, a @ b)
    # Issue steps: ceil(30 / 4) * 2 = 16 per (row, block); utilization on both peaks.
    assert sum(c["busy"] for c in run.counters.values()) == 21 * 3 * 16
    assert run.nm == (2, 4) and run.utilization == pytest.approx(2 * run.sparse_utilization)
    assert 0 < run.sparse_utilization < 1
    bad = b.copy()
    bad[8:12, 3] = [1, 1, 1, 0]
    with pytest.raises(OperandError, match=r"b\[:, 3\] group 2 \(k 8\.\.11\): 3 nonzeros, "
                                           r"at most 2 allowed for 2:4"):
        fabric.gemm(a, bad)
    # Raw malformed requests to one tile: ERRORs, counted, and the tile keeps serving.
    tile = fabric.tile(1, 0)
    geo = tile.geometry
    desc = geo["descriptor"]
    exec_data = sum(v << desc[f]["lsb"] for f, v in dict(k=8, rows=1, blocks=1, a_addr=0,
                                                         b_addr=1, wait=0).items())
    got = fabric.transact(1, 0, [(Op.WRITE, geo["meta_base"], 0),          # repeated positions
                                 (Op.EXEC, 5, exec_data)], replies=2)     # b_addr not aligned
    assert [(op, data) for op, _, data in got] == [(Op.ERROR, Op.WRITE | 3 << 8),
                                                   (Op.ERROR, Op.EXEC | 1 << 8)]
    assert fabric.status(1, 0)["errors"] >= 2
    a, b = random_operands(rng, 5, 64, 9, 8)
    b = nm.prune(b, 2, 4)
    assert np.array_equal(fabric.gemm(a, b).c, a @ b)


def test_nm_speedup_table_meets_the_target():
    """2:4 against dense on the same 2x2 mesh: >= 1.8x fewer cycles at 64x64x64; a thin
    16x64x16 gains less (the host port feeds the faster PEs), but still gains."""
    from tilefab.bench.sparse_nm import nm_speedup_table, with_sparsity
    from tilefab.gen.config import config_hash

    # The bench's 2:4 fabric is the example's, so its build is shared.
    assert config_hash(with_sparsity(EXAMPLES / "gemm2x2.yaml", "2:4")) == \
        config_hash(load(EXAMPLES / "gemm2x2_sparse24.yaml"))
    lines = []
    rows = nm_speedup_table(EXAMPLES / "gemm2x2.yaml", [(16, 64, 16), (64, 64, 64)],
                            sparsities=("2:4",), out=lines.append)
    assert all(r["exact"] for r in rows)
    got = {(tuple(r["shape"]), r["sparsity"]): r for r in rows}
    big = got[((64, 64, 64), "2:4")]
    assert big["speedup"] >= 1.8 and big["limit"] == 2.0
    assert big["utilization"] == pytest.approx(2 * big["sparse_utilization"])
    assert 1.5 < got[((16, 64, 16), "2:4")]["speedup"] < 2.0
    assert any(line.startswith("target: 2:4 at K >= 64") for line in lines)


def test_sim_gemm_cli():
    out = subprocess.run([sys.executable, "-m", "tilefab.cli", "sim",
                          str(EXAMPLES / "gemm2x2.yaml"), "gemm", "--m", "37", "--k", "53",
                          "--n", "29", "--seed", "2"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "max |C - numpy| = 0: PASS, exact" in out.stdout
    cycles = int(re.search(r"cycles: (\d+)", out.stdout).group(1))
    util = float(re.search(r"utilization: ([\d.]+)%", out.stdout).group(1))
    # 37*53*29 MACs on 16 MAC lanes: the figure must be consistent with the cycle count.
    assert abs(util - 100 * 37 * 53 * 29 / (16 * cycles)) < 0.06


def test_sim_gemm_cli_rejects_k_above_max_k():
    out = subprocess.run([sys.executable, "-m", "tilefab.cli", "sim",
                          str(EXAMPLES / "gemm2x2.yaml"), "gemm", "--m", "2", "--k", "257",
                          "--n", "2"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "--k: 257 is not allowed, must be 1..256" in out.stderr


# A 3x2 mesh with multicast, the host on the south side of (2, 1), small scratchpads
# (A rows and B blocks stream in double-buffered panels) and a 2-deep job queue.
MULTICAST_3X2 = {
    "name": "gemm3x2_mc_small", "mesh": {"cols": 3, "rows": 2, "fifo_depth": 2},
    "packet": {"data_bits": 64, "addr_bits": 12, "multicast": True},
    "host": {"x": 2, "y": 1, "side": "south"},
    "tiles": {"default": {"kind": "gemm", "lanes": 4, "op_bits": 8, "max_k": 64,
                          "a_words": 64, "b_words": 64, "jobs": 2}},
}


def test_gemm_multicast_pyverilator_backpressure():
    """Multicast GEMMs on Verilator under random backpressure equal numpy: a 3 x 2
    grid (A rows to mesh columns, B blocks to mesh rows), a 2 x 2 one on 4 of the 6
    PEs, B broadcast to all 6, one PE; each shared word is one flit, and each PE's
    counters are those of its program."""
    from tilefab import Fabric
    from tilefab.gen.gemm.compiler import compile_gemm
    from tilefab.golden.gemm import GemmGeometry, gemm_exact
    from tilefab.verif.stimulus import random_operands

    fabric = Fabric(MULTICAST_3X2, seed=9, in_stall=0.3, out_stall=0.4)
    pes = [t.xy for t in fabric.tiles_of("gemm")]
    params = {f: v for f, v in MULTICAST_3X2["tiles"]["default"].items() if f != "kind"}
    geom = GemmGeometry(data_bits=64, addr_bits=12, **params)
    rng = np.random.default_rng(9)
    grids, words = [], dict.fromkeys(pes, 0)      # each PE's word counter so far
    for m, k, n in [(37, 53, 29), (9, 7, 33), (24, 16, 40), (1, 1, 1)]:
        a, b = random_operands(rng, m, k, n, 8)
        run = fabric.gemm(a, b)
        assert np.array_equal(run.c, gemm_exact(a, b, 8)), (m, k, n)
        # EXEC waits count from the PEs' word counters: where they differ, the EXECs
        # a rectangle shares on fresh PEs go to each PE alone.
        plan = compile_gemm(a, b, geom, pes, multicast=True, words_before=words)
        grids.append(plan.grid.shape)
        assert run.flits_in == plan.flits_in
        for p in plan.programs:
            c = run.counters[(p.x, p.y)]
            assert (c["busy"], c["words"], c["errors"]) == (
                sum(j.groups for j in p.jobs) * k, sum(it.kind == "write" for it in p.items), 0)
            words[(p.x, p.y)] += c["words"]
    assert grids == [(3, 2), (2, 2), (6, 1), (1, 1)]
