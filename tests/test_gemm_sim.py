"""GEMM on generated fabrics: cocotb on Verilator (and Icarus), pyverilator, the CLI.

Every run compares the fabric's product with the exact numpy product and the
PEs' counters with what the compiled plan implies. Shapes cover ragged sizes
(M, K, N not multiples of anything), 1x1x1, K = max_k, more output rows than
fit one PE's share at once, and runs back to back without a reset.
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
