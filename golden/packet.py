"""The NoC packet as DESIGN.md specifies it, independent of the RTL.

A packet is a single self-describing flit. Fields, least significant first:
``dst_x, dst_y, src_x, src_y, op, addr, data``. Coordinates are ``coord_bits``
wide; the all-ones coordinate pair is the host's address, so a mesh of ``cols``
columns needs ``cols < 2**coord_bits`` (likewise rows).

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


@dataclass(frozen=True)
class Packet:
    dst_x: int
    dst_y: int
    src_x: int
    src_y: int
    op: int
    addr: int = 0
    data: int = 0

    @property
    def dst(self):
        return (self.dst_x, self.dst_y)

    @property
    def src(self):
        return (self.src_x, self.src_y)


def coord_bits_for(cols: int, rows: int) -> int:
    """Smallest coordinate width that leaves the all-ones value free for the host."""
    return max(cols.bit_length(), rows.bit_length(), 1)


@dataclass(frozen=True)
class PacketFormat:
    coord_bits: int
    addr_bits: int
    data_bits: int

    @property
    def widths(self) -> dict:
        c = self.coord_bits
        return {"dst_x": c, "dst_y": c, "src_x": c, "src_y": c, "op": OP_BITS,
                "addr": self.addr_bits, "data": self.data_bits}

    @property
    def offsets(self) -> dict:
        out, pos = {}, 0
        for name in FIELD_ORDER:
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
        word = 0
        for name in FIELD_ORDER:
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
                for name in FIELD_ORDER}
        return Packet(**vals)


def packet_fields(p: Packet) -> dict:
    return {f.name: getattr(p, f.name) for f in fields(p)}
