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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from amaranth.hdl import Shape
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

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


@dataclass(frozen=True)
class Param:
    """One parameter of a tile kind: its type, default and allowed values.

    ``type`` is ``"integer"``, ``"number"``, ``"string"`` or ``"boolean"``;
    integers and numbers take ``lo``/``hi`` (inclusive), strings ``choices``.
    """
    name: str
    default: object
    type: str = "integer"
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    doc: str = ""

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.type == "boolean":
            return "true or false"
        if self.lo is not None and self.hi is not None:
            return f"{self.lo:g}..{self.hi:g}" if self.type == "number" else \
                f"{self.lo}..{self.hi}"
        if self.lo is not None:
            return f">= {self.lo}"
        if self.hi is not None:
            return f"<= {self.hi}"
        return f"a {self.type}"

    def check(self, value):
        """The value if allowed, else ``ValueError`` naming the field and what is allowed."""
        ok = True
        if self.type == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type == "number":
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
        elif self.type == "string":
            ok = isinstance(value, str)
        elif self.type == "boolean":
            ok = isinstance(value, bool)
        if ok and self.choices is not None:
            ok = value in self.choices
        if ok and self.lo is not None:
            ok = value >= self.lo
        if ok and self.hi is not None:
            ok = value <= self.hi
        if not ok:
            raise ValueError(f"{self.name}: {value!r} is not allowed, must be "
                             f"{self.allowed()}")
        return value

    def schema(self) -> dict:
        """This parameter as a JSON-schema property."""
        out = {"type": self.type, "default": self.default}
        if self.lo is not None:
            out["minimum"] = self.lo
        if self.hi is not None:
            out["maximum"] = self.hi
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.doc:
            out["description"] = self.doc
        return out


def check_params(params: tuple, values: dict, owner: str = "tile") -> dict:
    """All of ``params`` with defaults filled and every value checked; unknown names refused."""
    names = {p.name for p in params}
    extra = sorted(set(values) - names, key=str)
    if extra:
        raise ValueError(f"{extra[0]}: unknown {owner} parameter, allowed: "
                         f"{', '.join(p.name for p in params)}")
    return {p.name: p.check(values.get(p.name, p.default)) for p in params}


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """An integer in ``lo..hi`` (no upper bound if ``hi`` is None), else ``ValueError``."""
    return Param(name, None, "integer", lo, hi).check(value)
