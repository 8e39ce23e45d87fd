"""Queues with ``amaranth.lib.fifo.SyncFIFO``'s ports, at every depth.

``SyncFIFO(depth=1)`` has a zero-width address, which Verilator refuses
(``wire [-1:0]``); ``sync_fifo`` gives a ``OneEntryFIFO`` there instead.
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Signal
from amaranth.lib import fifo


class OneEntryFIFO(Elaboratable):
    """A one-entry queue with ``SyncFIFO``'s ports. Full: ``r_rdy``; empty: ``w_rdy``."""

    def __init__(self, width: int):
        self.width, self.depth = width, 1
        self.w_data, self.w_en, self.w_rdy = Signal(width), Signal(), Signal()
        self.r_data, self.r_en, self.r_rdy = Signal(width), Signal(), Signal()

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        m.d.comb += [self.w_rdy.eq(~full), self.r_rdy.eq(full)]
        with m.If(self.w_en & ~full):
            m.d.sync += [self.r_data.eq(self.w_data), full.eq(1)]
        with m.Elif(self.r_en & full):
            m.d.sync += full.eq(0)
        return m


def sync_fifo(width: int, depth: int):
    """A synchronous queue of ``depth`` entries of ``width`` bits (``SyncFIFO``'s ports)."""
    return OneEntryFIFO(width) if depth == 1 else fifo.SyncFIFO(width=width, depth=depth)
