"""The sparse jobs on the CocotbBackend: CSR SpMV on every spmv tile (densities, empty
and full rows, more nonzeros than a tile holds, malformed CSR answered ERROR) and MoE
routing on the GEMM tiles, bit-exact against their golden models under random host
backpressure, on two fabrics. The checks run in ``tilefab.verif.tb_sparse``."""

import json
from pathlib import Path

import pytest
from tilefab.gen.config import load
from tilefab.verif.runner import run_generated

pytestmark = pytest.mark.sim

EXAMPLES = Path(__file__).parent.parent / "examples"

SUITES = {
    # 64-bit packets, two 4-lane spmv tiles (8 banks, window 4), two 8-bit GEMM PEs
    "spmv2x2": {"seed": 5, "in_stall": 0.3, "out_stall": 0.3, "m": 24, "k": 40,
                "densities": [0.5, 0.1], "tokens": 12, "d_in": 16, "d_out": 8,
                "experts": 3, "top_k": 2, "op_bits": 8},
    # 32-bit packets, two in-order 2-lane spmv tiles, one 4-bit GEMM PE
    "spmv3x1": {"seed": 9, "in_stall": 0.25, "out_stall": 0.35, "m": 20, "k": 30,
                "densities": [0.4, 0.05], "tokens": 10, "d_in": 12, "d_out": 4,
                "experts": 2, "top_k": 1, "op_bits": 4},
}
JOBS = ["spmv density", "spmv density", "spmv empty and full rows", "spmv beyond one tile",
        "spmv after ERROR", "moe uniform", "moe skewed"]


@pytest.mark.parametrize("example", SUITES)
def test_sparse_jobs_cocotb(example):
    path = EXAMPLES / f"{example}.yaml"
    run = run_generated(load(path), "fabric", "tilefab.verif.tb_sparse",
                        testcase="sparse_jobs", params={"config": str(path),
                                                        **SUITES[example]})
    result = json.loads((run / "result.json").read_text())
    names = [j["job"] for j in result["jobs"]]
    assert [n.rsplit(" ", 1)[0] if n.startswith("spmv density") else n
            for n in names] == JOBS
    assert all(j["cycles"] > 0 for j in result["jobs"])
    spmv_tiles = sorted([t["x"], t["y"]] for t in load(path)["tile_map"]
                        if t["kind"] == "spmv")
    beyond = next(j for j in result["jobs"] if j["job"] == "spmv beyond one tile")
    assert sorted(beyond["tiles"]) == spmv_tiles and beyond["passes"] >= 1
    assert all(v >= 1 for v in result["errors"].values()) and \
        len(result["errors"]) == len(spmv_tiles)
    skewed = next(j for j in result["jobs"] if j["job"] == "moe skewed")
    assert max(skewed["expert_load"]) >= SUITES[example]["tokens"] // 2
