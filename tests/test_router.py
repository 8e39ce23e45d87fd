"""Router unit test on amaranth.sim: all five ports loaded at once, random backpressure.

The router at the centre of a 3x3 mesh takes random flits on N, E, S, W and L
(for tiles, the host and destinations outside the mesh) and must put each
routable flit on the output XY routing names, in order per input, exactly once;
unroutable flits are dropped and counted; an offered flit is held until taken.
"""

import random
from collections import defaultdict, deque

import pytest
from amaranth.sim import Simulator

from tilefab.golden.noc import MeshModel
from tilefab.golden.packet import Packet, PacketFormat
from tilefab.hw.noc.packet import packet_layout
from tilefab.hw.noc.router import DIRECTIONS, E, L, N, S, W, Router

FMT = PacketFormat(coord_bits=2, addr_bits=4, data_bits=12)


def expected_port(model, here, dst, host_side):
    if not model.routable(dst):
        return None
    path = model.route(here, dst)
    if len(path) == 1:
        return host_side if dst == FMT.host else L
    nxt = path[1]
    return {(1, 0): E, (-1, 0): W, (0, 1): S, (0, -1): N}[(nxt[0] - here[0], nxt[1] - here[1])]


# (router under test, host attachment): the centre router with the host elsewhere,
# and an edge router whose north port is the host port.
@pytest.mark.parametrize("here,host", [((1, 1), (0, 0, "west")), ((1, 0), (1, 0, "north"))])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_router_all_ports(here, host, depth):
    layout = packet_layout(coord_bits=2, addr_bits=4, data_bits=12)
    dut = Router(layout=layout, x=here[0], y=here[1], cols=3, rows=3, host=host,
                 fifo_depth=depth)
    model = MeshModel(3, 3, host[:2], FMT)
    host_side = {"north": N, "west": W, "east": E, "south": S}[host[2]]
    rng = random.Random(depth)
    dests = model.nodes() + [FMT.host, (3, 0), (0, 3)]
    queues = {d: deque() for d in range(5)}
    expected = defaultdict(deque)
    drops = 0
    for seq in range(600):
        d = rng.randrange(5)
        dst = rng.choice(dests)
        p = Packet(dst[0], dst[1], 0, 0, rng.randrange(6), rng.randrange(16), seq)
        queues[d].append(p)
        port = expected_port(model, here, dst, host_side)
        if port is None:
            drops += 1
        else:
            expected[(d, port)].append(p)
    got = defaultdict(deque)
    errors = []

    async def bench(ctx):
        held = [None] * 5
        offering = [False] * 5
        for _ in range(6000):
            for d in range(5):
                if not offering[d] and queues[d] and rng.random() < 0.7:
                    ctx.set(dut.i[d].payload.as_value(), FMT.pack(queues[d][0]))
                    offering[d] = True
                ctx.set(dut.i[d].valid, offering[d])
                ctx.set(dut.o[d].ready, rng.random() < 0.6)
            await ctx.delay(1e-9)
            for d in range(5):
                if offering[d] and ctx.get(dut.i[d].ready):
                    queues[d].popleft()
                    offering[d] = False
            for o in range(5):
                if ctx.get(dut.o[o].valid):
                    word = ctx.get(dut.o[o].payload.as_value())
                    if held[o] is not None and held[o] != word:
                        errors.append(f"output {DIRECTIONS[o]} changed its offered flit")
                    if ctx.get(dut.o[o].ready):
                        got[o].append(FMT.unpack(word))
                        held[o] = None
                    else:
                        held[o] = word
                elif held[o] is not None:
                    errors.append(f"output {DIRECTIONS[o]} withdrew an offered flit")
            await ctx.tick()
            if not any(queues.values()) and not any(offering):
                break
        for d in range(5):
            ctx.set(dut.i[d].valid, 0)
        for _ in range(3 * depth + 10):
            for o in range(5):
                ctx.set(dut.o[o].ready, 1)
            await ctx.delay(1e-9)
            for o in range(5):
                if ctx.get(dut.o[o].valid):
                    got[o].append(FMT.unpack(ctx.get(dut.o[o].payload.as_value())))
            await ctx.tick()
        assert not any(queues.values()), "inputs never accepted all flits"
        assert ctx.get(dut.dropped) == drops

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not errors, errors[:5]
    for o in range(5):
        # Interleave the expected per-input sequences by matching each delivered flit.
        pending = {d: expected[(d, o)] for d in range(5)}
        for p in got[o]:
            src = [d for d in range(5) if pending[d] and pending[d][0] == p]
            assert src, f"output {DIRECTIONS[o]}: unexpected or out-of-order flit {p}"
            pending[src[0]].popleft()
        left = sum(len(q) for q in pending.values())
        assert left == 0, f"output {DIRECTIONS[o]}: {left} flits never delivered"
