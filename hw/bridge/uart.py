"""An 8N1 UART: ``UartRx`` and ``UartTx``, one bit every ``divisor`` clock cycles.

``divisor`` is clock Hz / baud. The default, 1 Mbaud, is 12 on the iCEBreaker
(12 MHz) and 25 on the ULX3S (25 MHz), both exact (``divisor_for``).

``UartTx``: ``i`` is a byte stream; each byte taken goes out as a start bit (0),
eight data bits LSB first and a stop bit (1), ``divisor`` cycles each, on ``tx``
(high when idle). A byte is taken on the cycle the previous stop bit ends, so
bytes can leave back to back. ``divisor >= 1``.

``UartRx``: ``rx`` passes a two-flop synchroniser; a falling edge on an idle
line starts a byte, each bit is sampled mid-bit (``divisor // 2`` cycles after
the edge, then every ``divisor``), a start bit that is high again mid-bit is a
glitch and ignored. ``o`` offers the byte until taken; the line cannot wait, so
``o`` has no backpressure beyond one byte: a byte completed while the previous
one is still offered is lost and ``overrun`` pulses for one cycle. A low stop
bit loses the byte and pulses ``framing_error``; the receiver then waits for the
line to go high before it looks for the next start bit. ``divisor >= 5``.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..params import check_int

DEFAULT_BAUD = 1_000_000
RX_MIN_DIVISOR = 5


def divisor_for(clk_hz: int, baud: int = DEFAULT_BAUD) -> int:
    """The divisor of ``baud`` at ``clk_hz``; ``ValueError`` unless it divides exactly."""
    check_int("clk_hz", clk_hz, 1)
    check_int("baud", baud, 1)
    if clk_hz % baud:
        raise ValueError(f"baud: {baud} does not divide clk_hz {clk_hz} exactly, must be a "
                         f"divisor of it (e.g. {DEFAULT_BAUD} for 12 MHz or 25 MHz)")
    return clk_hz // baud


class UartTx(wiring.Component):
    def __init__(self, *, divisor: int):
        self._divisor = check_int("divisor", divisor, 1)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        busy = Signal()
        timer = Signal(range(div))
        left = Signal(range(10))
        shreg = Signal(9)
        m.d.comb += self.i.ready.eq(~busy)
        with m.If(self.i.valid & ~busy):
            m.d.sync += [self.tx.eq(0), shreg.eq(Cat(self.i.payload, C(1, 1))),
                         left.eq(9), timer.eq(div - 1), busy.eq(1)]
        with m.Elif(busy & (timer != 0)):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(busy & (left == 0)):
            m.d.sync += busy.eq(0)          # the stop bit has lasted its full period
        with m.Elif(busy):
            m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(shreg >> 1), left.eq(left - 1),
                         timer.eq(div - 1)]
        return m


class UartRx(wiring.Component):
    def __init__(self, *, divisor: int):
        self._divisor = check_int("divisor", divisor, RX_MIN_DIVISOR)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(div))
        bit = Signal(range(8))
        shreg = Signal(8)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("IDLE"), m.If(~line):
                m.d.sync += timer.eq(div // 2 - 1)
                m.next = "START"
            with m.State("START"), m.If(timer == 0):
                with m.If(line):
                    m.next = "IDLE"          # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"), m.If(timer == 0):
                m.d.sync += [shreg.eq(Cat(shreg[1:], line)), bit.eq(bit + 1),
                             timer.eq(div - 1)]
                with m.If(bit == 7):
                    m.next = "STOP"
            with m.State("STOP"), m.If(timer == 0):
                with m.If(~line):
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
                with m.Elif(self.o.valid & ~self.o.ready):
                    m.d.sync += self.overrun.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "IDLE"
            with m.State("BREAK"), m.If(line):
                m.next = "IDLE"
        return m
