"""The single-flit NoC packet as an Amaranth layout.

Fields, least significant first: ``dst_x, dst_y, src_x, src_y, op, addr, data``,
and with ``multicast`` then ``mcast, dst_x1, dst_y1`` (a packet with ``mcast`` set
is for the rectangle ``dst_x..dst_x1`` x ``dst_y..dst_y1``).
The all-ones coordinate pair addresses the host, so a mesh needs
``cols < 2**coord_bits`` and ``rows < 2**coord_bits``.
"""

from amaranth.hdl import Shape
from amaranth.lib import data, enum

from ..params import check_int

OP_BITS = 3


class Op(enum.Enum, shape=OP_BITS):
    WRITE = 0
    READ = 1
    EXEC = 2
    DONE = 3
    REPLY = 4
    ERROR = 5


def packet_layout(*, coord_bits: int, addr_bits: int, data_bits: int,
                  multicast: bool = False) -> data.StructLayout:
    check_int("coord_bits", coord_bits, 1, 8)
    check_int("addr_bits", addr_bits, 2, 32)
    check_int("data_bits", data_bits, 1, 256)
    fields = {
        "dst_x": coord_bits,
        "dst_y": coord_bits,
        "src_x": coord_bits,
        "src_y": coord_bits,
        "op": Op,
        "addr": addr_bits,
        "data": data_bits,
    }
    if multicast:
        fields.update(mcast=1, dst_x1=coord_bits, dst_y1=coord_bits)
    return data.StructLayout(fields)


def has_multicast(layout: data.StructLayout) -> bool:
    return "mcast" in dict(layout)


def coord_bits_of(layout: data.StructLayout) -> int:
    return Shape.cast(layout["dst_x"].shape).width


def host_coord(layout: data.StructLayout) -> int:
    """The coordinate value (in x and in y) that addresses the host."""
    return (1 << coord_bits_of(layout)) - 1
