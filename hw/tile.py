"""The tile contract: what every tile kind on the mesh implements.

A tile is a ``wiring.Component`` whose signature is a ``TileSignature``:

- ``i``: ``In(stream.Signature(layout))``, packets from its router;
- ``o``: ``Out(stream.Signature(layout))``, packets to its router;
- ``dropped``: ``In(counter_bits)``, its router's count of unroutable packets,
  which the tile exposes as a status register.

Every kind speaks the packet ops of ``noc.packet.Op``: ``WRITE`` programs and
configures, ``READ`` replies ``REPLY`` (memory words, status registers),
``EXEC`` starts the tile's engine and is answered by ``REPLY`` flits and one
``DONE``, and anything the tile cannot serve is answered by ``ERROR``, counted,
and never blocks the next request. Replies go to the request's source.

A kind declares its parameters once, as a tuple of ``Param`` on its parameter
class (``Tile.Params``); the config schema, the defaults and the range checks
all derive from that tuple. ``Params(data_bits=..., addr_bits=..., **values)``
checks everything, including the rules that span the packet widths, and raises
``ValueError("field: value is not allowed, must be ...")`` naming the field.
``Param``, ``check_params`` and ``check_int`` live in ``params`` (shared with every
other block) and are re-exported here as part of the contract.

The parts every tile builds the same way live here too: ``NocTile`` (the shared
constructor: parameters from the packet widths, checked coordinates, the signature),
``StatusRegisters`` (the
status window and its READ decode), ``reply_to`` (an answer to a request's source),
and ``TileOutput`` (the output register that sends answers and a job's flits in turn,
with the tile's coordinates as source).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .noc.packet import Op
from .params import Param, check_int, check_params  # noqa: F401  (the tile contract's)

COUNTER_BITS = 32
STATUS_WINDOW = 16         # status registers sit at 2**addr_bits - STATUS_WINDOW + k


class TileSignature(wiring.Signature):
    """The NoC-facing ports of a tile: ``i``, ``o`` and ``dropped``."""

    def __init__(self, layout, counter_bits: int = COUNTER_BITS):
        self._layout = layout
        self._counter_bits = counter_bits
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
            "dropped": In(counter_bits),
        })

    @property
    def layout(self):
        return self._layout

    def __eq__(self, other):
        return (isinstance(other, TileSignature) and self._layout == other._layout
                and self._counter_bits == other._counter_bits)

    def __hash__(self):
        return hash((TileSignature, self._counter_bits))

    def __repr__(self):
        return f"TileSignature({self._layout!r}, counter_bits={self._counter_bits})"


def field_width(layout, name: str) -> int:
    return Shape.cast(layout[name].shape).width


def layout_positions(layout) -> dict:
    """``{field: {"lsb": offset, "width": width}}`` of a ``data.StructLayout``."""
    return {name: {"lsb": f.offset, "width": Shape.cast(f.shape).width} for name, f in layout}


def status_base(addr_bits: int, window: int = STATUS_WINDOW) -> int:
    return (1 << addr_bits) - window


def check_place(layout, x: int, y: int, counter_bits: int) -> tuple[int, int, int]:
    """A tile's ``(x, y, counter_bits)``, checked: coordinates the packet can carry,
    counters of 1..64 bits."""
    top = (1 << field_width(layout, "dst_x")) - 1
    return (check_int("x", x, 0, top), check_int("y", y, 0, top),
            check_int("counter_bits", counter_bits, 1, 64))


class NocTile(wiring.Component):
    """The constructor every tile kind shares: ``Params`` (the kind's parameter class)
    built from the packet layout's ``data`` and ``addr`` widths and ``params``, the
    coordinates and counter width checked (``check_place``), and a ``TileSignature``.
    Sets ``params``, ``_layout``, ``_x``, ``_y`` and ``_counter_bits``."""

    Params = None

    def __init__(self, *, layout, x: int, y: int, counter_bits: int = COUNTER_BITS,
                 **params):
        self.params = self.Params(data_bits=field_width(layout, "data"),
                                  addr_bits=field_width(layout, "addr"), **params)
        self._layout = layout
        self._x, self._y, self._counter_bits = check_place(layout, x, y, counter_bits)
        super().__init__(TileSignature(layout, counter_bits))


# -- what every tile builds the same way ----------------------------------------------

MESSAGE_FIELDS = ("dst_x", "dst_y", "op", "addr", "data")


def message_layout(layout) -> data.StructLayout:
    """A packet without its source fields: what a tile hands to ``TileOutput``."""
    return data.StructLayout({name: layout[name].shape for name in MESSAGE_FIELDS})


def reply_to(message, req, *, error, data) -> list:
    """Statements loading ``message`` with the answer to request ``req``: to its source,
    ``addr`` echoed, ``ERROR`` when ``error`` is high, else ``REPLY``, with ``data``."""
    return [message.dst_x.eq(req.src_x), message.dst_y.eq(req.src_y),
            message.addr.eq(req.addr), message.op.eq(Mux(error, Op.ERROR, Op.REPLY)),
            message.data.eq(data)]


class StatusRegisters:
    """A tile's read-only status registers: ``names[k]`` at address ``base + k``.

    ``addresses`` maps every name to its address (the manifest's ``status_registers``).
    ``read(m, addr, values)``, with ``values`` mapping every name to its signal, decodes
    a READ of ``addr`` combinationally and returns ``(hit, value)``: ``hit`` is high when
    ``addr`` is a status register, ``value`` is that register (0 for any other address).
    """

    def __init__(self, names, base: int):
        self.names = tuple(names)
        self.base = base
        self.addresses = {name: base + k for k, name in enumerate(self.names)}

    def read(self, m, addr, values: dict):
        if set(values) != set(self.names):
            raise ValueError(f"status values for {sorted(values)}, not the registers "
                             f"{', '.join(self.names)}")
        hit = Signal(name="status_hit")
        value = Signal(max(len(Value.cast(v)) for v in values.values()), name="status_value")
        with m.Switch(addr):          # the addresses themselves: no subtraction
            for k, name in enumerate(self.names):
                with m.Case(self.base + k):
                    m.d.comb += [hit.eq(1), value.eq(values[name])]
        return hit, value


class TileOutput(wiring.Component):
    """The output register of a tile: its answers and its job's flits, in turn, to ``o``.

    ``answer`` and ``flits`` are streams of ``message_layout(layout)``; ``o`` sends them
    with the tile's ``(x, y)`` as source. The register takes a message in any cycle it is
    empty or being emptied, so a flit leaves one cycle after it is offered at the
    earliest; when both streams offer, the one not taken last goes first, so neither
    starves the other (status READs are answered while a job's results leave).
    """

    def __init__(self, layout, *, x: int, y: int):
        self._x, self._y = x, y
        message = message_layout(layout)
        super().__init__({
            "answer": In(stream.Signature(message)),
            "flits": In(stream.Signature(message)),
            "o": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        out = Signal.like(self.answer.payload)
        last_answer = Signal()
        m.d.comb += [getattr(self.o.payload, name).eq(getattr(out, name))
                     for name in MESSAGE_FIELDS]
        m.d.comb += [self.o.payload.src_x.eq(self._x), self.o.payload.src_y.eq(self._y)]
        load = ~self.o.valid | self.o.ready
        m.d.comb += [self.answer.ready.eq(load & ~(self.flits.valid & last_answer)),
                     self.flits.ready.eq(load & ~(self.answer.valid & ~last_answer))]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.answer.valid & self.answer.ready):
            m.d.sync += [out.eq(self.answer.payload), self.o.valid.eq(1), last_answer.eq(1)]
        with m.Elif(self.flits.valid & self.flits.ready):
            m.d.sync += [out.eq(self.flits.payload), self.o.valid.eq(1), last_answer.eq(0)]
        return m
