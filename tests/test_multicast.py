# amaranth: UnusedElaboratable=no
"""Rectangle multicast: the golden tree, both routers on amaranth.sim, the host session.

Golden: the tree of every (source, rectangle) on a few meshes reaches every tile
of the rectangle exactly once, only those, by the path a unicast packet takes.
Routers: each input gets multicast flits of trees that really pass it (from the
golden tree), rectangles no tree brings to that input and broken rectangles
(dropped and counted), and unicast flits; every branch must leave by the outputs
the tree names, once, in order per input, and an offered flit is held until
taken, under random backpressure.
"""

import itertools
import random
from collections import defaultdict, deque

import pytest
from router_bench import check_outputs, run_router
from tilefab.golden.noc import DeliveryChecker, MeshModel
from tilefab.golden.packet import Packet, PacketFormat, multicast_packet
from tilefab.hw.noc.packet import packet_layout
from tilefab.hw.noc.router import DIRECTIONS, Router
from tilefab.hw.noc.router_voq import VoqRouter
from tilefab.verif.session import HostSession, Multicast

FMT = PacketFormat(coord_bits=3, addr_bits=4, data_bits=12, multicast=True)
LAYOUT = packet_layout(coord_bits=3, addr_bits=4, data_bits=12, multicast=True)
PORT = {name: d for d, name in enumerate(DIRECTIONS)}
STEP = {"N": (0, -1), "E": (1, 0), "S": (0, 1), "W": (-1, 0)}


def rects(cols, rows):
    return [(x0, y0, x1, y1) for x0, x1 in itertools.combinations_with_replacement(range(cols), 2)
            for y0, y1 in itertools.combinations_with_replacement(range(rows), 2)]


def test_packet_format_multicast():
    p = multicast_packet((1, 0, 2, 3), (0, 0), 0, addr=5, data=77)
    assert FMT.unpack(FMT.pack(p)) == p
    assert FMT.width == PacketFormat(3, 4, 12).width + 7
    assert p.targets(4, 4) == [(x, y) for y in range(4) for x in (1, 2)]
    assert p.targets(2, 4) == [] and multicast_packet((2, 0, 1, 0), (0, 0), 0).targets(4, 4) == []
    with pytest.raises(ValueError, match=r"^packet field mcast: this packet format has no "):
        PacketFormat(3, 4, 12).pack(p)


@pytest.mark.parametrize("shape,host", [((4, 4), (0, 0, "west")), ((5, 3), (4, 1, "east")),
                                        ((1, 4), (0, 3, "south"))])
def test_golden_tree_reaches_each_tile_once(shape, host):
    cols, rows = shape
    model = MeshModel(cols, rows, host[:2], FMT, host_side=host[2])
    for src in model.nodes() + [FMT.host]:
        for rect in rects(cols, rows):
            tree = model.multicast_traversals(src, rect)
            routers = [r for r, _, _ in tree]
            assert len(routers) == len(set(routers)), (src, rect)    # no router twice
            at = {r: outs for r, _, outs in tree}
            for r, came, outs in tree:
                for o in outs - {"L"}:
                    nxt = (r[0] + STEP[o][0], r[1] + STEP[o][1])
                    assert nxt in at, (src, rect, r, o)
            got = sorted(r for r, _, outs in tree if "L" in outs)
            want = sorted(Packet(rect[0], rect[1], 0, 0, 0, mcast=1, dst_x1=rect[2],
                                 dst_y1=rect[3]).targets(cols, rows))
            assert got == want, (src, rect)
            # Each branch follows the unicast XY path to its tile.
            for tile in want:
                path = model.route(src, tile)
                assert all(r in at for r in path), (src, rect, tile)


def _options(model, here):
    """(input name) -> [(src, rect, outputs)] of every tree through ``here``."""
    out = defaultdict(list)
    for src in model.nodes() + [FMT.host]:
        for rect in rects(model.cols, model.rows):
            for r, came, outs in model.multicast_traversals(src, rect):
                if r == here:
                    out[came].append((src, rect, frozenset(PORT[o] for o in outs)))
    return out


PLACES = {
    "3x3-centre": ((3, 3), (1, 1), (0, 0, "west")),
    "3x3-host-north": ((3, 3), (1, 0), (1, 0, "north")),
    "4x3-interior": ((4, 3), (2, 1), (3, 1, "east")),
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("kind,depth", [("fifo", 1), ("fifo", 2), ("voq", 1), ("voq", 3)])
def test_router_multicast(kind, depth, place):
    (cols, rows), here, host = PLACES[place]
    cls = Router if kind == "fifo" else VoqRouter
    dut = cls(layout=LAYOUT, x=here[0], y=here[1], cols=cols, rows=rows, host=host,
              **({"fifo_depth": depth} if kind == "fifo" else {"depth": depth}))
    model = MeshModel(cols, rows, host[:2], FMT, host_side=host[2])
    options = _options(model, here)
    turns = model.turns()
    unicast = {d: {dst: PORT[o] for o, dsts in turns.get((here, name), {}).items()
                   for dst in dsts} for d, name in enumerate(DIRECTIONS)}
    everything = rects(cols, rows)
    rng = random.Random(hash((kind, depth, place)) & 0xFFFF)
    queues = {d: deque() for d in range(5)}
    expected = defaultdict(deque)
    drops = forks = 0
    for seq in range(700):
        d = rng.randrange(5)
        name = DIRECTIONS[d]
        roll = rng.random()
        if options[name] and roll < 0.6:
            src, rect, outs = rng.choice(options[name])
            p = multicast_packet(rect, (0, 0), rng.randrange(6), rng.randrange(16), seq)
            forks += len(outs) > 1
        elif roll < 0.7:
            # A rectangle no tree brings to this input, or one that leaves the mesh.
            reach = {rect for _, rect, _ in options[name]}
            bad = [r for r in everything if r not in reach] + [(0, 0, cols, 0), (1, 0, 0, 0)]
            p = multicast_packet(rng.choice(bad), (0, 0), 0, 0, seq)
            outs = frozenset()
        else:
            if unicast[d] and rng.random() < 0.9:
                dst = rng.choice(sorted(unicast[d]))
                outs = frozenset([unicast[d][dst]])
            else:
                dst, outs = (cols, 0), frozenset()
            p = Packet(dst[0], dst[1], 0, 0, rng.randrange(6), rng.randrange(16), seq)
        queues[d].append(p)
        for o in outs:
            expected[(d, o)].append(p)
        drops += not outs
    assert forks > 100 and drops > 30
    got, errors, dropped, _ = run_router(dut, FMT, queues, rng, cycles=10000, ready=0.5,
                                         drain=6 * depth + 10)
    assert not any(queues.values()), "inputs never accepted all flits"
    assert dropped == drops
    assert not errors, errors[:5]
    check_outputs(got, expected, "branches")


def test_delivery_checker_multicast():
    model = MeshModel(3, 3, (0, 0), FMT)
    c = DeliveryChecker(model)
    p = multicast_packet((1, 1, 2, 2), FMT.host, 0, 0, 1)
    c.sent(FMT.host, p)
    assert c.outstanding == 4
    for tile in [(1, 1), (2, 1), (1, 2)]:
        c.received(tile, p)
    c.received((0, 0), p)                           # not in the rectangle
    c.received((1, 1), p)                           # twice
    assert c.outstanding == 1 and len(c.errors) == 2
    c.sent(FMT.host, multicast_packet((0, 0, 3, 0), FMT.host, 0))   # leaves the mesh
    assert c.expected_drops[(0, 0)] == 1


def _session(requests):
    return HostSession.build(FMT, requests, {})


def test_session_sends_a_multicast_once_in_every_tiles_order():
    row = Multicast((0, 1, 2, 1), 0, addr=3, data=9)
    late = Multicast((1, 0, 1, 1), 0, addr=4, data=1, after=(((1, 1), 2),))
    reqs = {(0, 1): [(0, 0, 5, 0), row], (1, 1): [row, late], (2, 1): [row],
            (1, 0): [(0, 1, 1, 0), late]}
    s = _session(reqs)
    sent = []
    for cycle in range(20):
        word = s.next_word()
        if word is None:
            break
        sent.append(FMT.unpack(word))
        s.taken(cycle)
    # `late` waits for two DONEs from (1, 1); everything else goes, the row flit once,
    # and only after (0, 1)'s first item.
    assert [p.mcast for p in sent] == [0, 0, 1] or [p.mcast for p in sent] == [0, 1, 0]
    assert sum(p.mcast for p in sent) == 1 and sent.index(
        next(p for p in sent if p.mcast)) > sent.index(next(p for p in sent if p.data == 5))
    assert not s.finished
    hx, hy = FMT.host
    for tag in range(2):
        s.receive(30, FMT.pack(Packet(hx, hy, 1, 1, 3, tag)))
    p = FMT.unpack(s.next_word())
    assert p.rect == (1, 0, 1, 1) and p.data == 1
    s.taken(31)
    assert s.finished


def test_session_refuses_inconsistent_multicasts():
    a, b = Multicast((0, 0, 1, 0), 0), Multicast((0, 0, 1, 0), 0, addr=1)
    with pytest.raises(ValueError, match=r"^requests: multicast items stand in different "):
        _session({(0, 0): [a, b], (1, 0): [b, a]})
    with pytest.raises(ValueError, match=r"^requests: the multicast for rect \(0, 0, 1, 0\) "
                                         r"must stand once"):
        _session({(0, 0): [a]})
    with pytest.raises(ValueError, match=r"^requests: tile \(2, 0\) lists a multicast"):
        _session({(0, 0): [a], (1, 0): [a], (2, 0): [a]})
