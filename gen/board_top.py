"""The board top: the fabric behind the UART host bridge, with reset and status LEDs.

``BoardTop(cfg, clk_hz=..., baud=...)`` is the part of a board design that is the
same on every board and in simulation. Ports: ``clk`` (the fabric clock: the board
oscillator or a PLL output), ``rst`` (active high, asynchronous: a button or a PLL
that has not locked), ``rx``/``tx`` (the UART pins, 8N1, idle high) and ``led``
(``leds`` bits, active high: 0 heartbeat, 1 reset held, 2 host traffic in, 3 host
traffic out; a board with fewer LEDs gets the first ones).

Reset: the ``sync`` domain (every block) is held in reset for ``por_cycles`` clock
cycles after configuration (a power-on reset; iCE40 block RAM reads are not valid for
the first microseconds) and again for ``por_cycles`` after ``rst`` falls, so a
bouncing button or a PLL losing lock gives one clean reset. The counter lives in a
reset-less domain on the same clock, initialised by the bitstream.

The UART divisor is ``clk_hz / baud``, rounded; ``baud_error`` is the relative error
of the baud rate it gives (0 when the clock divides exactly). ``divisor`` may be
given instead, to build a fast simulation model (the receiver needs >= 5).
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..hw.bridge import DEFAULT_BAUD, UartBridge
from ..hw.bridge.uart import RX_MIN_DIVISOR
from .errors import TilefabError
from .generate import build_top, layout_for

LED_NAMES = ("heartbeat", "reset", "host_in", "host_out")
MAX_BAUD_ERROR = 0.02         # 8N1 with mid-bit sampling tolerates a few percent in all
HEARTBEAT_HZ = 1.5


def uart_divisor(clk_hz: float, baud: int) -> tuple[int, float]:
    """The divisor for ``baud`` at ``clk_hz`` and the baud error it gives."""
    divisor = max(1, round(clk_hz / baud))
    error = (clk_hz / divisor - baud) / baud
    if divisor < RX_MIN_DIVISOR:
        raise TilefabError(f"--baud: {baud} at {clk_hz / 1e6:g} MHz is a divisor of "
                           f"{divisor}, the UART receiver needs >= {RX_MIN_DIVISOR}: lower "
                           f"the baud or raise --freq")
    if abs(error) > MAX_BAUD_ERROR:
        raise TilefabError(f"--baud: {baud} at {clk_hz / 1e6:g} MHz is off by "
                           f"{100 * error:+.2f} % (divisor {divisor}), more than "
                           f"{100 * MAX_BAUD_ERROR:g} % is not allowed: pick a clock that "
                           f"divides it")
    return divisor, error


class BoardTop(wiring.Component):
    def __init__(self, cfg: dict, *, clk_hz: float, baud: int = DEFAULT_BAUD,
                 divisor: int | None = None, por_cycles: int | None = None,
                 leds: int = len(LED_NAMES), max_flits: int | None = None):
        if not isinstance(leds, int) or not 0 <= leds <= len(LED_NAMES):
            raise TilefabError(f"leds: {leds!r} is not allowed, must be 0..{len(LED_NAMES)}")
        self.cfg = cfg
        self.clk_hz = clk_hz
        if divisor is None:
            divisor, self.baud_error = uart_divisor(clk_hz, baud)
        else:
            self.baud_error = 0.0
        self.divisor = divisor
        self.baud = clk_hz / divisor
        if por_cycles is None:
            por_cycles = max(16, int(clk_hz * 200e-6))       # 200 us
        self.por_cycles = por_cycles
        self._fabric = build_top(cfg, "fabric")
        self._bridge = UartBridge(layout=layout_for(cfg), divisor=divisor, max_flits=max_flits,
                                  counter_bits=cfg["counter_bits"])
        self._leds = leds
        super().__init__({
            "clk": In(1),
            "rst": In(1),
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "led": Out(max(1, leds)),
        })

    @property
    def bridge(self) -> UartBridge:
        return self._bridge

    def elaborate(self, platform):
        m = Module()
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("por").eq(self.clk), ClockSignal("sync").eq(self.clk)]

        button = Signal()
        m.submodules.rst_sync = FFSynchronizer(self.rst, button, o_domain="por", init=1)
        count = Signal(range(self.por_cycles + 1), init=self.por_cycles)
        held = Signal(init=1)
        with m.If(button):
            m.d.por += count.eq(self.por_cycles)
        with m.Elif(count != 0):
            m.d.por += count.eq(count - 1)
        m.d.por += held.eq(button | (count != 0))
        m.d.comb += ResetSignal("sync").eq(held)

        m.submodules.fabric = fabric = self._fabric
        m.submodules.bridge = bridge = self._bridge
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx)]
        wiring.connect(m, bridge.host_in, fabric.host_in)
        wiring.connect(m, fabric.host_out, bridge.host_out)

        # Heartbeat: a counter's top bit toggles at HEARTBEAT_HZ; traffic LEDs stay on
        # for 2**stretch cycles (~20 ms on a board) after each flit, so a flit is seen.
        half = max(1, int(self.clk_hz / HEARTBEAT_HZ / 2))
        beat = Signal(range(half))
        beat_led = Signal()
        with m.If(beat == half - 1):
            m.d.sync += [beat.eq(0), beat_led.eq(~beat_led)]
        with m.Else():
            m.d.sync += beat.eq(beat + 1)
        stretch = max(2, int(self.clk_hz * 0.02).bit_length())
        lights = [beat_led, held]
        for name, port in (("in", bridge.host_in), ("out", fabric.host_out)):
            timer = Signal(stretch, name=f"led_{name}_timer")
            with m.If(port.valid & port.ready):
                m.d.sync += timer.eq(-1)
            with m.Elif(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            lights.append(timer != 0)
        if self._leds:
            m.d.comb += self.led.eq(Cat(*lights[:self._leds]))
        return m
