"""pyverilator backend: fabric tops driven through ``HostPort`` from plain Python.

Per fabric (the 2x2 example, a 128-bit-data variant whose packets are wider
than 64 bits, and a 2x1 mesh with 8-bit status counters, which wrap), random writes, reads, status-register reads and malformed
requests go from the host to every memory tile with random gaps and random
``host_out`` backpressure; every reply must match the golden ``MemoryTileModel``
of its tile, in order per tile, with nothing lost or extra. A second process
must load the cached model without compiling.
"""

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tilefab.gen.config import load, resolve
from tilefab.gen.generate import generate, packet_format
from tilefab.golden.noc import DeliveryChecker, MemoryTileModel, MeshModel
from tilefab.golden.packet import Op, Packet
from tilefab.verif.pyverilator_sim import HostPort, VerilatedTop

pytestmark = pytest.mark.sim

EXAMPLES = Path(__file__).parent.parent / "examples"
FABRICS = {
    "fabric2x2": lambda: load(EXAMPLES / "fabric2x2.yaml"),
    "wide128": lambda: resolve({"name": "wide128", "mesh": {"cols": 2, "rows": 2},
                                "packet": {"data_bits": 128, "addr_bits": 10},
                                "host": {"x": 1, "y": 1, "side": "south"},
                                "tiles": {"default": {"kind": "memory", "depth": 32}}}),
    # 8-bit status counters: 10^4 requests wrap them many times
    "counters8": lambda: resolve({"name": "counters8", "mesh": {"cols": 2, "rows": 1},
                                  "counter_bits": 8,
                                  "tiles": {"default": {"kind": "memory", "depth": 16}}}),
}


def _fabric(name):
    cfg = FABRICS[name]()
    g = generate(cfg)
    return cfg, g, VerilatedTop(g.verilog, g.module)


def _request(rng, fmt, mesh, model):
    """One request for tile ``model``: mostly valid, sometimes one it must reject."""
    host = fmt.host
    data = rng.randrange(1 << fmt.data_bits)
    pick = rng.random()
    if pick < 0.35:
        return Packet(model.x, model.y, *host, int(Op.WRITE), rng.randrange(model.depth), data)
    if pick < 0.70:
        return Packet(model.x, model.y, *host, int(Op.READ), rng.randrange(model.depth), data)
    if pick < 0.85:
        addr = model.status_base + rng.randrange(len(MemoryTileModel.STATUS))
        return Packet(model.x, model.y, *host, int(Op.READ), addr, 0)
    if pick < 0.90:
        addr = rng.randrange(model.depth, model.status_base)
        return Packet(model.x, model.y, *host, int(rng.choice([Op.READ, Op.WRITE])), addr, data)
    if pick < 0.95:
        op = rng.choice([int(Op.EXEC), int(Op.REPLY), 6, 7])
        return Packet(model.x, model.y, *host, op, 0, data)
    # Outside the mesh: dropped by the host's router, seen in its tile's drop count.
    return Packet(mesh.cols, 0, *host, int(Op.READ), 0, data)


@pytest.mark.parametrize("name", FABRICS)
def test_memory_traffic(name):
    cfg, g, top = _fabric(name)
    fmt = packet_format(cfg)
    mesh = MeshModel(cfg["mesh"]["cols"], cfg["mesh"]["rows"],
                     (cfg["host"]["x"], cfg["host"]["y"]), fmt)
    depth = {(t["x"], t["y"]): t["depth"] for t in cfg["tile_map"]}
    models = {t: MemoryTileModel(*t, depth[t], fmt, cfg["counter_bits"]) for t in mesh.nodes()}
    checker = DeliveryChecker(mesh)
    rng = random.Random(name)
    top.reset()
    port = HostPort(top)

    sent = 0
    replies = Counter()
    pending = None
    requests = 10000
    while sent < requests or checker.outstanding:
        if pending is None and sent < requests and rng.random() < 0.7:
            pending = _request(rng, fmt, mesh, models[rng.choice(mesh.nodes())])
        taken, word = port.cycle(None if pending is None else fmt.pack(pending),
                                 rng.random() < 0.6)
        if taken:
            if not mesh.routable(pending.dst):
                models[mesh.host_router].dropped += 1
            else:
                reply = models[pending.dst].handle(pending)
                if reply is not None:
                    checker.sent(pending.dst, reply)
                    replies[Op(reply.op).name, reply.addr >= models[pending.dst].status_base] += 1
            pending, sent = None, sent + 1
        if word is not None:
            checker.received(fmt.host, fmt.unpack(word))
        assert not checker.errors, checker.errors[:5]
        assert top.cycles < 20 * requests, f"replies missing: {checker.missing()}"
    for _ in range(50):      # nothing more may come out
        _, word = port.cycle(None, True)
        assert word is None, f"unexpected reply {fmt.unpack(word)}"
    # Every kind of reply was exercised: data, status registers, errors, drops.
    assert min(replies[k] for k in [("REPLY", False), ("REPLY", True), ("ERROR", False)]) > 50
    assert models[mesh.host_router].dropped > 50
    assert checker.delivered == sum(replies.values())


def test_wide_ports():
    _, g, top = _fabric("wide128")
    width = top.widths["host_in__payload"]
    assert width > 128
    for value in ((1 << width) - 1, 0x1234_5678_9ABC_DEF0 << (width - 64), 1):
        top.poke("host_in__payload", value)
        assert top.peek("host_in__payload") == value
    with pytest.raises(ValueError, match="does not fit"):
        top.poke("host_in__payload", 1 << width)
    with pytest.raises(ValueError, match="not an input"):
        top.poke("host_out__payload", 0)
    top.reset(3)
    assert top.cycles == 3


def test_build_is_reused():
    _, g, first = _fabric("fabric2x2")
    library = first.build_dir / f"V{g.module}"
    mtime = library.stat().st_mtime_ns
    second = VerilatedTop(g.verilog.read_text(), g.module)
    assert not second.compiled and second.build_dir == first.build_dir
    code = ("import sys; from tilefab.verif.pyverilator_sim import VerilatedTop; "
            "t = VerilatedTop(sys.argv[1], sys.argv[2]); print(t.compiled, t.build_dir)")
    out = subprocess.run([sys.executable, "-c", code, str(g.verilog), g.module],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", str(first.build_dir)]
    assert library.stat().st_mtime_ns == mtime
