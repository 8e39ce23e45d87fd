"""The boards tilefab builds for, and the design that puts a ``BoardTop`` on one.

``BOARDS`` maps a board name to its ``Board``: the amaranth-boards platform, the
oscillator, the FPGA family and its capacity (for the fit check), the LEDs, the
reset button and how it is programmed. ``board(name)`` looks one up and names the
allowed ones when it is not there.

``BoardDesign(board, top, pll)`` is the elaboratable handed to the platform: the
board clock drives ``top.clk`` directly when no PLL is asked for, else through the
family's PLL (``clocking``), whose lock is part of the reset; the UART, the LEDs and
the button are the platform's resources, each requested as raw ports (``dir="-"``)
and driven through an ``amaranth.lib.io.Buffer``.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import *
from amaranth.lib import io
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from ..gen.board_top import BoardTop
from ..gen.errors import TilefabError
from .clocking import PllSettings


@dataclass(frozen=True)
class Board:
    name: str
    platform: type
    family: str                 # ice40 | ecp5
    clk: str                    # the oscillator's resource
    clk_hz: int
    leds: tuple                 # LED resources, (name, number), in BoardTop's order
    button: tuple | None        # the reset button's resource
    capacity: dict              # resource -> what the device has
    cells: dict                 # resource -> nextpnr's cell type in its report
    bitstream: str              # the file the build writes: top.bin / top.bit
    program: tuple              # openFPGALoader's board name, and iceprog's use

    def new_platform(self):
        return self.platform()


BOARDS = {
    "icebreaker": Board(
        name="icebreaker", platform=ICEBreakerPlatform, family="ice40", clk="clk12",
        clk_hz=12_000_000, leds=(("led_g", 0), ("led_r", 0)), button=("button", 0),
        capacity={"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "spram": 4, "io": 39},
        cells={"lut": "ICESTORM_LC", "bram": "ICESTORM_RAM", "dsp": "ICESTORM_DSP",
               "spram": "ICESTORM_SPRAM", "io": "SB_IO"},
        bitstream="top.bin", program=("icebreaker", True)),
    "ulx3s-85f": Board(
        name="ulx3s-85f", platform=ULX3S_85F_Platform, family="ecp5", clk="clk25",
        clk_hz=25_000_000, leds=tuple(("led", i) for i in range(4)),
        button=("button_fire", 0),
        capacity={"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156, "io": 365},
        cells={"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD",
               "dsp": "MULT18X18D", "io": "TRELLIS_IO"},
        bitstream="top.bit", program=("ulx3s", False)),
}


def board(name: str) -> Board:
    if name not in BOARDS:
        raise TilefabError(f"--board: {name!r} is not a board tilefab builds for, must be one "
                           f"of {', '.join(BOARDS)}")
    return BOARDS[name]


class BoardDesign(Elaboratable):
    def __init__(self, board: Board, top: BoardTop, pll: PllSettings | None):
        self.board, self.top, self.pll = board, top, pll

    def elaborate(self, platform):
        m = Module()
        b, top = self.board, self.top
        m.submodules.top = top
        locked = Signal(init=1)
        if self.pll is None:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", platform.request(b.clk, dir="-"))
            m.d.comb += top.clk.eq(clk_buf.i)
        else:
            clk = Signal()
            locked = Signal()
            pad = platform.request(b.clk, dir="-")
            if b.family == "ice40":
                m.submodules.pll = self.pll.instance(pad.io, clk, locked)
            else:
                m.submodules.clk_buf = clk_buf = io.Buffer("i", pad)
                m.submodules.pll = self.pll.instance(clk_buf.i, clk, locked)
            platform.add_clock_constraint(clk, self.pll.fout_hz)
            m.d.comb += top.clk.eq(clk)
        button = C(0, 1)
        if b.button is not None:
            m.submodules.button_buf = button_buf = io.Buffer(
                "i", platform.request(*b.button, dir="-"))
            button = button_buf.i
        m.d.comb += top.rst.eq(button | ~locked)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx_buf.i), tx_buf.o.eq(top.tx)]
        for k, res in enumerate(b.leds):
            m.submodules[f"led{k}_buf"] = led_buf = io.Buffer("o", platform.request(*res, dir="-"))
            m.d.comb += led_buf.o.eq(top.led[k])
        return m
