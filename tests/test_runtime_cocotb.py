"""The runtime on the CocotbBackend: every tile kind's job on two heterogeneous fabrics,
bit-exact against its golden model, with random host backpressure; malformed
requests to every kind answered ERROR and counted, each followed by a correct job.

The checks run inside ``tilefab.verif.tb_runtime``; here the result it writes is
checked for the jobs each fabric must have run.
"""

import json
from pathlib import Path

import pytest
from tilefab.gen.config import load
from tilefab.verif.runner import run_generated

pytestmark = pytest.mark.sim

EXAMPLES = Path(__file__).parent.parent / "examples"

# Per fabric: job sizes (quick ones) and the host's backpressure.
SUITES = {
    # 64-bit data, 4 GEMM PEs, two 8x8 crossbars, a 64-p-bit lanes tile, two memories
    "hetero3x3": {"seed": 21, "in_stall": 0.3, "out_stall": 0.3,
                  "gemm": [9, 21, 11], "gemm_after": [3, 5, 4],
                  "mvm": [11, 19, 3], "mvm_after": [10, 6, 2],
                  "anneal_n": 16, "sweeps": 50, "maxcut_nodes": 10,
                  "factor": 35, "factor_sweeps": 100},
    # 32-bit data, 1 GEMM PE (K <= 16), two 6x5 crossbars, a 28-p-bit parallel tile
    "hetero3x2": {"seed": 8, "in_stall": 0.35, "out_stall": 0.25,
                  "gemm": [7, 16, 9], "gemm_after": [2, 3, 10],
                  "mvm": [7, 11, 3], "mvm_after": [4, 9, 2],
                  "anneal_n": 16, "sweeps": 50, "maxcut_nodes": 9,
                  # the 3x4 multiplier that holds every factorization of 35 needs
                  # 35 p-bits; the 3x3 one (27) fits the 28-p-bit tile
                  "factor": 35, "factor_bits": [3, 3], "factor_sweeps": 100},
}

JOBS = ["memory", "gemm", "mvm", "anneal", "factor", "malformed memory",
        "memory after ERROR", "malformed gemm", "gemm after ERROR", "malformed crossbar",
        "mvm after ERROR", "malformed pbit", "maxcut after ERROR"]


@pytest.mark.parametrize("example", SUITES)
def test_runtime_every_kind_cocotb(example):
    path = EXAMPLES / f"{example}.yaml"
    cfg = load(path)
    run = run_generated(cfg, "fabric", "tilefab.verif.tb_runtime", testcase="every_kind",
                        params={"config": str(path), **SUITES[example]})
    result = json.loads((run / "result.json").read_text())
    assert result["skipped"] == {}
    jobs = result["jobs"]
    assert all(j["golden_ok"] and j["cycles"] > 0 for j in jobs), jobs
    # one entry per memory tile / per tile sent malformed requests
    kinds = {}
    for t in cfg["tile_map"]:
        kinds.setdefault(t["kind"], []).append([t["x"], t["y"]])
    per_tile = {"memory": "memory", "memory after ERROR": "memory",
                "malformed memory": "memory", "malformed gemm": "gemm",
                "malformed crossbar": "crossbar", "malformed pbit": "pbit"}
    names = []
    for j in jobs:
        if not names or names[-1] != j["job"]:
            names.append(j["job"])
    assert names == JOBS
    for job, kind in per_tile.items():
        assert sorted(j["tiles"][0] for j in jobs if j["job"] == job) == sorted(kinds[kind])
    for mvm in (j for j in jobs if j["job"].startswith("mvm")):
        assert sorted(mvm["tiles"]) == sorted(kinds["crossbar"])      # tiled over both
    # every refused request was counted on its tile, and nothing else was
    errors = {tuple(int(v) for v in xy.split(",")): n for xy, n in result["errors"].items()}
    for j in jobs:
        if j["job"].startswith("malformed"):
            assert j["errors"] > 0 and j["errors_counted"] == j["errors"]
            assert errors[tuple(j["tiles"][0])] == j["errors"]
    assert sum(errors.values()) == sum(j["errors"] for j in jobs
                                       if j["job"].startswith("malformed"))
