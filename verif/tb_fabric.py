"""cocotb test of a generated ``fabric`` top of memory tiles, driven from the host port.

``memory``: the host sends a random mix of requests to random tiles, with random
backpressure on both host streams: writes and reads in range, status-register
reads, and malformed requests (addresses out of range, ops a memory tile cannot
serve, destinations outside the mesh, stray replies). Every reply is checked
against the golden ``MemoryTileModel`` of its tile, in order; unroutable packets
must show up in the drop counter of the host's router. Parameters: ``manifest``,
``seed``, ``requests``, ``src_stall``, ``sink_stall``, ``bad`` (fraction of
malformed requests). Writes ``result.json`` with the figures.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import cocotb

from ..golden.noc import MemoryTileModel
from ..golden.packet import Op, Packet
from . import tb
from .noc import MeshHarness
from .params import params


def _request(rng, h, tiles, models, bad: float):
    fmt = h.fmt
    dst = rng.choice(tiles)
    model = models[dst]
    data = rng.randrange(1 << fmt.data_bits)
    status = model.status_base + rng.randrange(len(MemoryTileModel.STATUS))
    if rng.random() >= bad:
        kind = rng.choice(["write", "write", "read", "read", "status"])
        op = {"write": Op.WRITE, "read": Op.READ, "status": Op.READ}[kind]
        # Most traffic hits a few addresses so that reads see earlier writes.
        addr = status if kind == "status" else rng.randrange(min(model.depth, 16))
        return kind, Packet(dst[0], dst[1], *h.host, int(op), addr, data)
    kind = rng.choice(["addr", "op", "unroutable", "stray"])
    if kind == "addr":
        addr = rng.randrange(model.depth, model.status_base)
        op = rng.choice([Op.READ, Op.WRITE])
        return kind, Packet(dst[0], dst[1], *h.host, int(op), addr, data)
    if kind == "op":
        op = rng.choice([int(Op.EXEC), 6, 7])
        return kind, Packet(dst[0], dst[1], *h.host, op, rng.randrange(model.depth), data)
    if kind == "stray":
        op = rng.choice([Op.REPLY, Op.DONE, Op.ERROR])
        return kind, Packet(dst[0], dst[1], *h.host, int(op), 0, data)
    limit = (1 << fmt.coord_bits) - 1
    while True:
        far = (rng.randrange(limit + 1), rng.randrange(limit + 1))
        if not h.model.routable(far):
            return kind, Packet(far[0], far[1], *h.host, int(Op.READ), 0, data)


@cocotb.test()
async def memory(dut):
    p = params()
    manifest = json.loads(Path(p["manifest"]).read_text())
    rng = random.Random(p.get("seed", 1))
    h = MeshHarness(dut, manifest, rng, src_stall=p.get("src_stall", 0.3),
                    sink_stall=p.get("sink_stall", 0.3))
    fmt, host = h.fmt, h.host
    tiles = h.model.nodes()
    depth = {(t["x"], t["y"]): t["depth"] for t in manifest["config"]["tile_map"]}
    models = {t: MemoryTileModel(t[0], t[1], depth[t], fmt) for t in tiles}
    host_router = h.model.host_router
    await tb.start(dut)
    h.start()

    kinds = Counter()
    replies = Counter()
    for _ in range(p["requests"]):
        kind, req = _request(rng, h, tiles, models, p.get("bad", 0.0))
        kinds[kind] += 1
        h.sources[host].send(h.bfm.pack(req))
        if kind == "unroutable":
            # Dropped by the router the host is attached to; its tile reports the count.
            models[host_router].dropped += 1
            continue
        reply = models[req.dst].handle(req)
        if reply is not None:
            replies[Op(reply.op).name] += 1
            h.checker.sent(req.dst, reply)   # expected at the host, in order per tile
    await h.drain(timeout=50 * p["requests"] + 1000)
    h.check()
    cycles = h.clock.cycle
    summary = {
        "tiles": len(tiles), "requests": p["requests"], "cycles": cycles,
        "requests_by_kind": dict(kinds), "replies_checked": h.checker.delivered,
        "replies_by_op": dict(replies),
        "dropped_at_host_router": models[host_router].dropped,
    }
    Path("result.json").write_text(json.dumps(summary, indent=2))
    dut._log.info("memory fabric: %d requests, %d replies checked against the golden model "
                  "in %d cycles", p["requests"], h.checker.delivered, cycles)
