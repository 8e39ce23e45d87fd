"""cocotb NoC tests on Verilator: mesh tops with traffic at every port.

Per mesh shape and router kind (``fifo``, ``voq``), 10^4 packets: every source to
every destination, uniform random (2 % of them to destinations outside the mesh)
and hotspot traffic, with random backpressure on every source and sink; the
golden DeliveryChecker asserts no loss, no duplication, per-pair order and the
drop counts. Zero-load latency must equal the golden figure on every pair.
With multicast packets, a third of the traffic goes to random rectangles (some
broken, to be dropped): every tile of each rectangle must get its copy once, in
order with the unicast packets of the same source; a short soak runs the bench's
soak test (``tilefab bench noc --soak``) and its counts must all be clean.
"""

import copy
import json
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


def mesh_config(shape: str, router: str, multicast: bool = False) -> dict:
    spec = copy.deepcopy(SHAPES[shape])
    name = f"noc_{shape}"
    if multicast:
        spec.setdefault("packet", {})["multicast"] = True
        name += "_mc"
    if router == "voq":
        spec["mesh"].update(router="voq", voq_depth=VOQ_DEPTH[shape])
        return resolve({"name": f"{name}_voq", **spec})
    return resolve({"name": name, **spec})


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
@pytest.mark.parametrize("shape", ["4x4", "3x2"])
def test_mesh_multicast_traffic(shape, router):
    cfg = mesh_config(shape, router, multicast=True)
    run_generated(cfg, "mesh", "tilefab.verif.tb_noc", testcase="traffic_test",
                  seed=zlib.crc32(f"{shape}-mc".encode()) & 0xFFFF,
                  params={"pattern": "uniform", "packets": 3000, "bad": 0.03,
                          "multicast": 0.33, "src_stall": 0.3, "sink_stall": 0.4, "seed": 5})


def test_mesh_soak_short():
    run = run_generated(mesh_config("3x2", "voq", multicast=True), "mesh",
                        "tilefab.verif.tb_noc", testcase="soak",
                        params={"packets": 4000, "batch": 1000, "multicast": 0.25,
                                "bad": 0.02, "src_stall": 0.2, "sink_stall": 0.3, "seed": 9})
    counts = json.loads((run / "result.json").read_text())
    assert counts["packets"] == 4000 and 800 < counts["multicast"] < 1200
    assert counts["lost"] == counts["duplicated"] == counts["reordered"] == 0
    assert counts["delivered"] > 4000        # multicast copies count once per tile


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
