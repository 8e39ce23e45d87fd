"""The NoC packet as DESIGN.md specifies it, independent of the RTL.

A packet is a single self-describing flit. Fields, least significant first:
``dst_x, dst_y, src_x, src_y, op, addr, data``. Coordinates are ``coord_bits``
wide; the all-ones coordinate pair is the host's address, so a mesh of ``cols``
columns needs ``cols < 2**coord_bits`` (likewise rows).

Multicast (a format with ``multicast``, config ``packet.multicast: true``) adds
``mcast, dst_x1, dst_y1`` above ``data``, Tenstorrent's encoding of a rectangle:
with ``mcast`` set the packet is for every tile ``(x, y)`` with
``dst_x <= x <= dst_x1`` and ``dst_y <= y <= dst_y1``, each of which receives it
once. A rectangle that is empty or leaves the mesh is unroutable (dropped and
counted by the first router, like a unicast packet for a tile outside the mesh).

Ops are shared by every tile kind. ``ERROR`` is the answer a tile gives to a
request it cannot serve (unknown op, address out of range), so a requester
never waits forever on a malformed request.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum

OP_BITS = 3


class Op(IntEnum):
    WRITE = 0   # data -> mem[addr]; posted, no reply
    READ = 1    # reply REPLY(mem[addr]) to src
    EXEC = 2    # start the tile's engine on the descriptor at addr
    DONE = 3    # engine finished (to the requester)
    REPLY = 4   # answer to READ
    ERROR = 5   # answer to a request the tile cannot serve; addr echoes the request's


FIELD_ORDER = ("dst_x", "dst_y", "src_x", "src_y", "op", "addr", "data")
MULTICAST_FIELDS = ("mcast", "dst_x1", "dst_y1")


@dataclass(frozen=True)
class Packet:
    dst_x: int
    dst_y: int
    src_x: int
    src_y: int
    op: int
    addr: int = 0
    data: int = 0
    mcast: int = 0
    dst_x1: int = 0
    dst_y1: int = 0

    @property
    def dst(self):
        return (self.dst_x, self.dst_y)

    @property
    def rect(self):
        """``(x0, y0, x1, y1)`` of a multicast packet, ``None`` for a unicast one."""
        return (self.dst_x, self.dst_y, self.dst_x1, self.dst_y1) if self.mcast else None

    def targets(self, cols: int, rows: int) -> list:
        """The tiles this packet is for on a ``cols`` x ``rows`` mesh, row-major (a
        unicast packet: its ``dst``, even outside the mesh or the host); ``[]`` for a
        multicast rectangle that is empty or leaves the mesh."""
        if not self.mcast:
            return [self.dst]
        x0, y0, x1, y1 = self.rect
        if not (x0 <= x1 < cols and y0 <= y1 < rows):
            return []
        return [(x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]

    @property
    def src(self):
        return (self.src_x, self.src_y)


def coord_bits_for(cols: int, rows: int) -> int:
    """Smallest coordinate width that leaves the all-ones value free for the host."""
    return max(cols.bit_length(), rows.bit_length(), 1)


def multicast_packet(rect, src, op: int, addr: int = 0, data: int = 0) -> Packet:
    """A packet for every tile of ``rect`` = ``(x0, y0, x1, y1)`` (inclusive)."""
    x0, y0, x1, y1 = rect
    return Packet(dst_x=x0, dst_y=y0, src_x=src[0], src_y=src[1], op=op, addr=addr,
                  data=data, mcast=1, dst_x1=x1, dst_y1=y1)


@dataclass(frozen=True)
class PacketFormat:
    coord_bits: int
    addr_bits: int
    data_bits: int
    multicast: bool = False

    @property
    def fields(self) -> tuple:
        """Field names, least significant first."""
        return FIELD_ORDER + (MULTICAST_FIELDS if self.multicast else ())

    @property
    def widths(self) -> dict:
        c = self.coord_bits
        out = {"dst_x": c, "dst_y": c, "src_x": c, "src_y": c, "op": OP_BITS,
               "addr": self.addr_bits, "data": self.data_bits}
        if self.multicast:
            out.update(mcast=1, dst_x1=c, dst_y1=c)
        return out

    @property
    def offsets(self) -> dict:
        out, pos = {}, 0
        for name in self.fields:
            out[name] = pos
            pos += self.widths[name]
        return out

    @property
    def width(self) -> int:
        return sum(self.widths.values())

    @property
    def host(self) -> tuple:
        ones = (1 << self.coord_bits) - 1
        return (ones, ones)

    def pack(self, p: Packet) -> int:
        if not self.multicast and p.mcast:
            raise ValueError("packet field mcast: this packet format has no multicast "
                             "(set packet.multicast: true in the config)")
        word = 0
        for name in self.fields:
            v = getattr(p, name)
            w = self.widths[name]
            if not 0 <= v < (1 << w):
                raise ValueError(f"packet field {name}: {v} does not fit in {w} bits "
                                 f"(allowed 0..{(1 << w) - 1})")
            word |= v << self.offsets[name]
        return word

    def unpack(self, word: int) -> Packet:
        if not 0 <= word < (1 << self.width):
            raise ValueError(f"packet word {word:#x} is wider than {self.width} bits")
        vals = {name: (word >> self.offsets[name]) & ((1 << self.widths[name]) - 1)
                for name in self.fields}
        return Packet(**vals)


def packet_fields(p: Packet) -> dict:
    return {f.name: getattr(p, f.name) for f in fields(p)}
