"""cocotb NoC tests on Verilator: mesh tops with traffic at every port.

Per mesh shape and router kind (``fifo``, ``voq``), 10^4 packets: every source to
every destination, uniform random (2 % of them to destinations outside the mesh)
and hotspot traffic, with random backpressure on every source and sink; the
golden DeliveryChecker asserts no loss, no duplication, per-pair order and the
drop counts. Zero-load latency must equal the golden figure on every pair.
"""

import copy
import shutil
import zlib
from pathlib import Path

import pytest
from tilefab.gen.config import resolve
from tilefab.verif.runner import run_generated

pytestmark = pytest.mark.sim

SHAPES = {
    "2x2": {"mesh": {"cols": 2, "rows": 2}},
    "4x4": {"mesh": {"cols": 4, "rows": 4, "fifo_depth": 3},
            "host": {"x": 3, "y": 2, "side": "east"}},
    "3x2": {"mesh": {"cols": 3, "rows": 2, "fifo_depth": 1},
            "packet": {"data_bits": 16, "addr_bits": 10},
            "host": {"x": 1, "y": 1, "side": "south"}},
}

# The VOQ router's queue depth per shape: the smallest, and two in between.
VOQ_DEPTH = {"2x2": 4, "4x4": 2, "3x2": 1}
ROUTERS = ("fifo", "voq")

# (pattern, packets, fraction to unroutable destinations): 10^4 packets per shape.
TRAFFIC = [("all_pairs", 2000, 0.0), ("uniform", 6000, 0.02), ("hotspot", 2000, 0.0)]


def mesh_config(shape: str, router: str) -> dict:
    spec = copy.deepcopy(SHAPES[shape])
    if router == "voq":
        spec["mesh"].update(router="voq", voq_depth=VOQ_DEPTH[shape])
        return resolve({"name": f"noc_{shape}_voq", **spec})
    return resolve({"name": f"noc_{shape}", **spec})


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pattern,packets,bad", TRAFFIC, ids=[t[0] for t in TRAFFIC])
def test_mesh_traffic(shape, router, pattern, packets, bad):
    cfg = mesh_config(shape, router)
    assert cfg["mesh"]["router"] == router
    run_generated(cfg, "mesh", "tilefab.verif.tb_noc", testcase="traffic_test",
                  seed=zlib.crc32(f"{shape}-{pattern}".encode()) & 0xFFFF,
                  params={"pattern": pattern, "packets": packets, "bad": bad,
                          "src_stall": 0.3, "sink_stall": 0.4, "seed": len(pattern)})


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("shape", SHAPES)
def test_mesh_zero_load_latency(shape, router):
    run_generated(mesh_config(shape, router), "mesh", "tilefab.verif.tb_noc",
                  testcase="zero_load")


EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("example,router", [("fabric2x2.yaml", "fifo"), ("fabric3x2.yaml", "fifo"),
                                            ("fabric3x2.yaml", "voq")])
def test_memory_fabric(example, router):
    from tilefab.gen.config import load

    cfg = load(EXAMPLES / example)
    if router != cfg["mesh"]["router"]:
        cfg["mesh"]["router"] = router
        cfg["name"] += f"_{router}"
    run_generated(cfg, "fabric", "tilefab.verif.tb_fabric",
                  testcase="memory",
                  params={"requests": 3000, "bad": 0.1, "seed": 7,
                          "src_stall": 0.3, "sink_stall": 0.5})


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus not installed")
def test_mesh_traffic_icarus():
    cfg = resolve({"name": "noc_2x2", **SHAPES["2x2"]})
    run_generated(cfg, "mesh", "tilefab.verif.tb_noc", testcase="traffic_test", sim="icarus",
                  params={"pattern": "uniform", "packets": 1000, "bad": 0.02,
                          "src_stall": 0.3, "sink_stall": 0.4, "seed": 5})
