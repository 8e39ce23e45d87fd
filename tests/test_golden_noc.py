"""The golden NoC model and packet spec against hand-worked figures."""

import random

import pytest

from tilefab.golden.noc import (DeliveryChecker, MemoryTileModel, MeshModel,
                                bisection_bound_1d, mean_hops_uniform, saturation_bound)
from tilefab.golden.packet import Op, Packet, PacketFormat, coord_bits_for

FMT = PacketFormat(coord_bits=3, addr_bits=8, data_bits=16)


def test_pack_roundtrip_and_layout():
    rng = random.Random(0)
    assert FMT.width == 4 * 3 + 3 + 8 + 16
    assert FMT.offsets["op"] == 12 and FMT.offsets["data"] == 23
    for _ in range(200):
        p = Packet(*(rng.randrange(1 << FMT.widths[f]) for f in
                     ("dst_x", "dst_y", "src_x", "src_y", "op", "addr", "data")))
        assert FMT.unpack(FMT.pack(p)) == p


def test_pack_rejects_overflow():
    with pytest.raises(ValueError, match="packet field addr: 256 does not fit in 8 bits"):
        FMT.pack(Packet(0, 0, 0, 0, 0, 256, 0))


def test_coord_bits_leave_host_free():
    assert coord_bits_for(4, 4) == 3 and coord_bits_for(3, 2) == 2 and coord_bits_for(1, 1) == 1
    assert FMT.host == (7, 7)


def test_bounds():
    assert bisection_bound_1d(4) == 1.0 and bisection_bound_1d(8) == 0.5
    assert bisection_bound_1d(3) == pytest.approx(1.5)
    assert saturation_bound(4, 4) == 1.0 and saturation_bound(8, 8) == 0.5
    assert saturation_bound(2, 2) == 1.0
    # Mean hops of a k x k mesh: 2(k^2-1)/(3k).
    assert mean_hops_uniform(8, 8) == pytest.approx(2 * 63 / 24)


def test_mean_hops_matches_enumeration():
    m = MeshModel(5, 3, (0, 0), FMT)
    nodes = m.nodes()
    mean = sum(m.hops(s, d) for s in nodes for d in nodes) / len(nodes) ** 2
    assert mean == pytest.approx(mean_hops_uniform(5, 3))


def test_xy_route_and_host():
    m = MeshModel(4, 3, (2, 0), FMT)
    assert m.route((0, 2), (3, 0)) == [(0, 2), (1, 2), (2, 2), (3, 2), (3, 1), (3, 0)]
    assert m.route((0, 2), FMT.host)[-1] == (2, 0)
    assert m.zero_load_latency((0, 0), (0, 0)) == 1
    assert m.zero_load_latency(FMT.host, (3, 2)) == 3 + 1   # (2,0)->(3,0)->(3,1)->(3,2)
    assert not m.routable((4, 0)) and not m.routable((0, 7)) and m.routable(FMT.host)


def test_checker_detects_loss_reorder_duplicate_misdelivery():
    m = MeshModel(2, 2, (0, 0), FMT)
    c = DeliveryChecker(m)
    a, b = Packet(1, 1, 0, 0, 0, 0, 1), Packet(1, 1, 0, 0, 0, 0, 2)
    c.sent((0, 0), a)
    c.sent((0, 0), b)
    c.received((1, 1), b)
    assert "out of order" in c.errors[0]
    c.received((1, 1), a)
    assert c.outstanding == 0
    c.received((1, 1), a)
    assert "never sent or is a duplicate" in c.errors[-1]
    c.sent((0, 0), a)
    c.received((0, 1), a)
    assert "not at its destination" in c.errors[-1]
    c.sent((0, 0), Packet(3, 2, 0, 0, 0, 0, 0))
    assert c.expected_drops[(0, 0)] == 1


def test_memory_tile_model():
    t = MemoryTileModel(1, 0, depth=4, fmt=FMT)
    host = FMT.host
    assert t.handle(Packet(1, 0, *host, Op.WRITE, 2, 99)) is None
    r = t.handle(Packet(1, 0, *host, Op.READ, 2, 0))
    assert (r.op, r.data, r.dst, r.src) == (Op.REPLY, 99, host, (1, 0))
    e = t.handle(Packet(1, 0, *host, Op.READ, 4, 0))
    assert (e.op, e.addr, e.data) == (Op.ERROR, 4, Op.READ)
    assert t.handle(Packet(1, 0, *host, Op.REPLY, 0, 0)) is None
    e = t.handle(Packet(1, 0, *host, 7, 0, 0))
    assert (e.op, e.data) == (Op.ERROR, 7)
    # Status: errors so far 3 (two ERROR answers, one stray reply); received 5; sent 3.
    base = (1 << FMT.addr_bits) - 4
    assert t.handle(Packet(1, 0, *host, Op.READ, base + 1, 0)).data == 3
    assert t.handle(Packet(1, 0, *host, Op.READ, base + 2, 0)).data == 6
    assert t.handle(Packet(1, 0, *host, Op.READ, base + 3, 0)).data == 5
