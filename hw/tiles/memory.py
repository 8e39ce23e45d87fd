"""Memory tile: a word-addressed scratchpad that answers ``WRITE`` and ``READ``.

Ports: ``i`` (flits from the NoC), ``o`` (flits to the NoC), ``dropped`` (the
count of its router, exposed as a status register).

Contract, per request from ``(src_x, src_y)``:
- ``WRITE addr < depth``: ``mem[addr] = data``; posted, no reply;
- ``READ addr < depth``: reply ``REPLY`` with ``data = mem[addr]``;
- ``READ`` of a status register ``2**addr_bits - 4 + k`` replies its value as
  it stood before this request: ``k = 0`` flits dropped by this tile's router,
  ``1`` errors (requests answered with ``ERROR`` plus unexpected replies),
  ``2`` flits received, ``3`` replies issued;
- anything else the tile cannot serve (``WRITE`` or ``READ`` out of range,
  ``EXEC``, an unknown op) is answered with ``ERROR`` echoing ``op`` in ``data``
  and ``addr`` unchanged, so the requester never waits forever;
- ``REPLY``, ``DONE`` and ``ERROR`` arriving here are counted as errors and not
  answered (answering them could bounce between two tiles forever).

Replies go to the request's source and carry this tile's coordinates as their
source. One flit is taken per cycle while the output is free; a reply that
cannot leave holds the input (backpressure), nothing is dropped.
"""

from amaranth import *
from amaranth.lib import memory

from ..arith import below
from ..noc.packet import Op
from ..tile import (
    NocTile,
    Param,
    StatusRegisters,
    check_params,
    reply_to,
    status_base,
)

STATUS_REGISTERS = ("dropped", "errors", "received", "sent")


class MemoryParams:
    """A memory tile's parameters, checked against the packet's address width."""

    PARAMS = (
        Param("depth", 256, lo=1, hi=65532,
              doc="words of scratchpad"),
    )

    def __init__(self, *, data_bits: int, addr_bits: int, **values):
        v = check_params(self.PARAMS, values, "memory tile")
        self.depth = v["depth"]
        self.data_bits, self.addr_bits = data_bits, addr_bits
        limit = status_base(addr_bits, len(STATUS_REGISTERS))
        self.status_registers = StatusRegisters(STATUS_REGISTERS, limit)
        if self.depth > limit:
            raise ValueError(f"depth: {self.depth} is not allowed, must be 1..{limit} with "
                             f"packet.addr_bits {addr_bits} ({len(STATUS_REGISTERS)} addresses "
                             f"hold the status registers)")

    def manifest(self) -> dict:
        return {"depth": self.depth, "status_registers": dict(self.status_registers.addresses)}


class MemoryTile(NocTile):
    Params = MemoryParams

    def __init__(self, **kw):
        super().__init__(**kw)
        self._depth = self.params.depth

    def elaborate(self, platform):
        m = Module()
        layout = self._layout
        data_bits = Shape.cast(layout["data"].shape).width
        m.submodules.mem = mem = memory.Memory(shape=data_bits, depth=max(2, self._depth),
                                               init=[])  # 2: no 0-bit address at depth 1
        wr = mem.write_port()
        rd = mem.read_port(domain="sync")

        errors = Signal(self._counter_bits)
        received = Signal(self._counter_bits)
        sent = Signal(self._counter_bits)

        req = self.i.payload
        in_range = below(req.addr, self._depth)
        is_status, status_value = self.params.status_registers.read(
            m, req.addr, {"dropped": self.dropped, "errors": errors, "received": received,
                          "sent": sent})

        # The reply being offered; its data comes from the RAM when `from_ram`.
        pending = Signal()
        from_ram = Signal()
        reply = Signal(layout)
        m.d.comb += self.o.valid.eq(pending)
        m.d.comb += self.o.payload.eq(reply)
        with m.If(from_ram):
            m.d.comb += self.o.payload.data.eq(rd.data)

        take = Signal()
        m.d.comb += [
            self.i.ready.eq(~pending | self.o.ready),
            take.eq(self.i.valid & self.i.ready),
            rd.addr.eq(req.addr),
            rd.en.eq(take),
            wr.addr.eq(req.addr),
            wr.data.eq(req.data),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += pending.eq(0)

        answer = Signal()
        is_error = Signal()
        answer_data = Signal(data_bits)
        with m.If(take):
            m.d.sync += received.eq(received + 1)
            with m.Switch(req.op):
                with m.Case(Op.WRITE):
                    with m.If(in_range):
                        m.d.comb += wr.en.eq(1)
                    with m.Else():
                        m.d.comb += [answer.eq(1), is_error.eq(1)]
                with m.Case(Op.READ):
                    with m.If(in_range):
                        m.d.comb += answer.eq(1)
                    with m.Elif(is_status):
                        m.d.comb += [answer.eq(1), answer_data.eq(status_value)]
                    with m.Else():
                        m.d.comb += [answer.eq(1), is_error.eq(1)]
                with m.Case(Op.REPLY, Op.DONE, Op.ERROR):
                    m.d.sync += errors.eq(errors + 1)
                with m.Default():
                    m.d.comb += [answer.eq(1), is_error.eq(1)]
            with m.If(answer):
                m.d.sync += [
                    pending.eq(1),
                    sent.eq(sent + 1),
                    reply.src_x.eq(self._x),
                    reply.src_y.eq(self._y),
                    *reply_to(reply, req, error=is_error,
                              data=Mux(is_error, req.op.as_value(), answer_data)),
                ]
                m.d.sync += from_ram.eq((req.op == Op.READ) & in_range)
                with m.If(is_error):
                    m.d.sync += errors.eq(errors + 1)
        return m
