"""cocotb tests of a generated ``mesh`` top (run through ``tilefab.verif.runner``).

Parameters (``TILEFAB_PARAMS``): ``manifest`` (path), ``seed`` and per test:
- ``traffic``: ``pattern`` (all_pairs | uniform | hotspot), ``packets``,
  ``src_stall``, ``sink_stall``, ``bad`` (fraction of packets sent to a
  destination outside the mesh), ``multicast`` (fraction sent to a random
  rectangle instead, on a mesh whose packets have multicast);
- ``soak``: ``packets`` random packets from every port (uniform unicast, a
  ``multicast`` fraction to random rectangles, a ``bad`` fraction unroutable)
  in batches of ``batch``, random backpressure (``src_stall``, ``sink_stall``) on
  every port; writes ``result.json`` with the counts delivered, lost,
  duplicated, reordered and misdelivered, then (unless ``check`` is false)
  asserts they are clean;
- ``zero_load``: none; one packet at a time over every pair, no backpressure;
- ``sweep``: ``pattern``, ``rates``, ``warmup``, ``measure``: open-loop Bernoulli
  injection at each rate, writes ``result.json`` in the run directory.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import cocotb
import numpy as np

from . import tb
from .noc import SOAK_FAULTS, MeshHarness, traffic
from .params import params


def _setup(dut, src_stall=0.0, sink_stall=0.0):
    p = params()
    manifest = json.loads(Path(p["manifest"]).read_text())
    rng = random.Random(p.get("seed", 1))
    h = MeshHarness(dut, manifest, rng, src_stall=src_stall, sink_stall=sink_stall)
    return p, rng, h


def _outside(h, rng):
    """A destination no router can reach (and not the host address)."""
    cols, rows = h.model.cols, h.model.rows
    limit = (1 << h.fmt.coord_bits) - 1
    while True:
        d = (rng.randrange(limit + 1), rng.randrange(limit + 1))
        if not h.model.routable(d):
            return d


@cocotb.test()
async def traffic_test(dut):
    p = params()
    p_, rng, h = _setup(dut, p.get("src_stall", 0.3), p.get("sink_stall", 0.3))
    await tb.start(dut)
    h.start()
    nodes = h.nodes
    pairs = traffic(p["pattern"], nodes, nodes, p["packets"], rng)
    bad = 0
    for seq, (src, dst) in enumerate(pairs):
        bad += _send_random(h, rng, seq, src, dst, p.get("bad", 0.0), p.get("multicast", 0.0))
    await h.drain(timeout=200 * len(pairs) // max(1, len(nodes)) + 2000)
    h.check()
    _check_drops(dut, h)
    dut._log.info("%s: %d packets (%d unroutable) delivered and checked in %d cycles",
                  p["pattern"], len(pairs), bad, h.clock.cycle)


def _send_random(h, rng, seq, src, dst, bad: float, multicast: float) -> int:
    """Send one packet from ``src``: to ``dst``, to a random rectangle (``multicast``
    of the time) or (``bad`` of the time) somewhere no router delivers; 1 if unroutable."""
    # The sequence number makes every packet unique, so a duplicate is visible.
    data = seq & ((1 << h.fmt.data_bits) - 1)
    addr = (seq >> h.fmt.data_bits) & ((1 << h.fmt.addr_bits) - 1)
    op = rng.randrange(8)
    broken = rng.random() < bad
    if multicast and rng.random() < multicast:
        h.send(src, h.multicast(src, h.rect(rng, bad=broken), op=op, addr=addr, data=data))
    else:
        h.send(src, h.packet(src, _outside(h, rng) if broken else dst, op=op, addr=addr,
                             data=data))
    return int(broken)


def _check_drops(dut, h):
    """Drops are counted by the router where the packet entered."""
    for i, node in enumerate(h.model.nodes()):
        expected = h.checker.expected_drops.get(node, 0)
        got = int(getattr(dut, f"dropped__{i}").value)
        assert got == expected, f"router {node} dropped {got}, expected {expected}"


@cocotb.test()
async def soak(dut):
    p = params()
    _, rng, h = _setup(dut, p.get("src_stall", 0.3), p.get("sink_stall", 0.3))
    await tb.start(dut)
    h.start()
    nodes, total, batch = h.nodes, p["packets"], p.get("batch", 20000)
    sent = unroutable = 0
    while sent < total:
        n = min(batch, total - sent)
        for src, dst in traffic("uniform", nodes, nodes, n, rng):
            unroutable += _send_random(h, rng, sent, src, dst, p.get("bad", 0.0),
                                       p.get("multicast", 0.0))
            sent += 1
        # Keep the next batch coming before the sources run dry.
        await h.clock.wait_until(
            lambda: sum(len(s.queue) for s in h.sources.values()) < batch // 4,
            10 ** 9, "the sources to take the batch")
    try:
        await h.drain(timeout=100000)
    except AssertionError:
        pass                                    # counted below as lost
    counts = {"packets": sent, "multicast": h.multicasts, "unroutable": unroutable,
              "cycles": h.clock.cycle,
              **h.counts()}
    drops = {str(node): (int(getattr(dut, f"dropped__{i}").value),
                         h.checker.expected_drops.get(node, 0))
             for i, node in enumerate(h.model.nodes())}
    counts["drop_mismatches"] = sum(1 for got, want in drops.values() if got != want)
    Path("result.json").write_text(json.dumps(counts, indent=2))
    dut._log.info("soak: %s", counts)
    if p.get("check", True):
        assert not any(counts[k] for k in SOAK_FAULTS), counts


@cocotb.test()
async def zero_load(dut):
    _, rng, h = _setup(dut)
    await tb.start(dut)
    h.start()
    seq = 0
    for src in h.nodes:
        for dst in h.nodes:
            start = h.clock.cycle + 2
            h.send(src, h.packet(src, dst, data=seq), at=start)
            seq += 1
            await h.drain(timeout=200)
    h.check()
    for src, dst, lat, _ in h.latencies:
        expected = h.model.zero_load_latency(src, dst)
        assert lat == expected, f"{src}->{dst}: latency {lat}, golden zero-load {expected}"
    dut._log.info("zero-load latency matches the golden model on %d pairs", len(h.latencies))


@cocotb.test()
async def sweep(dut):
    p, rng, h = _setup(dut)
    await tb.start(dut)
    h.start()
    tiles = [n for n in h.nodes if n != h.host]
    warmup, measure = p["warmup"], p["measure"]
    results = []
    seq = 0
    gen = np.random.default_rng(rng.randrange(1 << 30))
    for rate in p["rates"]:
        base = h.clock.cycle + 1
        h.latencies.clear()
        end = base + warmup + measure
        # Open-loop Bernoulli injection: each tile makes a packet with probability `rate`
        # every cycle; latency counts from the cycle the packet was made.
        births = []
        for src in tiles:
            t = base + int(gen.geometric(rate)) - 1
            while t < end:
                births.append((t, src))
                t += int(gen.geometric(rate))
        births.sort()
        dests = traffic(p["pattern"], tiles, tiles, len(births), rng)
        for (t, src), (_, dst) in zip(births, dests):
            h.send(src, h.packet(src, dst, data=seq & 0xFFFFFFFF), at=t)
            seq += 1
        window = (base + warmup, end)
        try:
            await h.drain(timeout=warmup + measure + 20 * measure)
            drained = True
        except AssertionError:
            drained = False
        if drained:
            h.check()
        else:
            errors = h.checker.errors + h.clock.protocol_errors
            assert not errors, "\n".join(errors[:20])
        lat = np.array([l for _, _, l, born in h.latencies if window[0] <= born < window[1]])
        accepted = sum(1 for _, _, l, born in h.latencies if window[0] <= born + l < window[1])
        thr = accepted / (len(tiles) * measure)
        offered = sum(1 for t, _ in births if window[0] <= t < window[1]) / (len(tiles) * measure)
        results.append({
            "rate": rate, "offered": offered, "accepted": thr,
            "mean_latency": float(lat.mean()) if lat.size else None,
            "p99_latency": float(np.percentile(lat, 99)) if lat.size else None,
            "drained": drained,
        })
        dut._log.info("rate %.3f: accepted %.3f flits/node/cycle, mean latency %s",
                      rate, thr, results[-1]["mean_latency"])
        if not drained:
            break   # saturated: the source queues no longer empty; later rates add nothing
    Path("result.json").write_text(json.dumps({"points": results}, indent=2))
