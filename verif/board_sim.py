"""The ``board-sim`` backend: the Verilator model of the board top, UART at the bit level.

``BoardSimBackend(config)`` emits ``gen.board_top.BoardTop`` -- the fabric, the UART
host bridge, the power-on reset and the LEDs, with ``rx``/``tx`` as plain ports
instead of the platform's pin buffers and no PLL (the model's ``clk`` is the
fabric clock) -- and builds it through pyverilator (cached by its Verilog). The
host end is ``LinkBackend``: the same ``golden.frame.HostLink`` framing that the
``serial`` backend uses, over ``BitUart``, which drives ``rx`` one bit every
``divisor`` cycles (8N1, LSB first) and samples ``tx`` mid-bit.

The simulation's divisor defaults to the receiver's minimum (5) so that a job
takes few cycles; a board build uses clock / baud (24 at 24 MHz and 1 Mbaud). The
power-on reset is shortened the same way. Cycle counts are the board top's clock
cycles; ``line_rate`` converts payload bytes per cycle to bytes per second at a
real baud.
"""

from __future__ import annotations

from collections import deque

from ..gen.board_top import BoardTop
from ..gen.cache import cache_root, locked
from ..gen.config import config_hash
from ..gen.emit import to_verilog
from ..gen.generate import layout_for
from ..hw.bridge import DEFAULT_BAUD
from ..hw.bridge.uart import RX_MIN_DIVISOR
from .pyverilator_sim import VerilatedTop
from .serial_link import LinkBackend

SIM_POR_CYCLES = 16
SIM_FORMAT = 1


def board_sim_verilog(cfg: dict, divisor: int, por_cycles: int = SIM_POR_CYCLES,
                      max_flits: int | None = None) -> tuple[str, str, BoardTop]:
    """(Verilog text, module name, the BoardTop) of the simulation top, cached."""
    top = BoardTop(cfg, clk_hz=divisor * DEFAULT_BAUD, divisor=divisor,
                   por_cycles=por_cycles, max_flits=max_flits)
    module = f"{cfg['name']}_board"
    entry = cache_root() / "board_sim" / (f"{module}-{config_hash(cfg)}-d{divisor}-"
                                          f"p{por_cycles}-m{max_flits}-f{SIM_FORMAT}")
    vfile = entry / f"{module}.v"
    with locked(entry):
        if not vfile.exists():
            text = to_verilog(top, module)
            entry.mkdir(parents=True, exist_ok=True)
            tmp = entry / "tmp.v"
            tmp.write_text(text)
            tmp.rename(vfile)
    return vfile.read_text(), module, top


class BitUart:
    """A host's UART on a model's ``rx``/``tx`` pins, one clock cycle per ``step``."""

    def __init__(self, top: VerilatedTop, divisor: int):
        self.top, self.div = top, divisor
        self._rx = top._port(top._inputs, "rx", "an input")
        self._tx = top._port(top._ports, "tx", "a port")
        self.bits = deque()          # levels still to drive on rx, one per bit
        self._hold = 0               # cycles the current rx level still lasts
        self._level = 1
        self._rx_state = None        # None: idle; else (cycles to the next sample, bit, byte)
        self._in = bytearray()
        self.bytes_in = 0            # bytes the host sent / received
        self.bytes_out = 0

    # transport side (HostLink)
    def write(self, data: bytes) -> None:
        for byte in data:
            self.bits.append(0)
            self.bits.extend((byte >> k) & 1 for k in range(8))
            self.bits.append(1)
        self.bytes_in += len(data)

    def read(self) -> bytes:
        out = bytes(self._in)
        self._in.clear()
        return out

    @property
    def busy(self) -> bool:
        return bool(self.bits) or self._hold > 0 or self._rx_state is not None

    def step(self, cycles: int) -> None:
        top, div = self.top, self.div
        for _ in range(cycles):
            if self._hold == 0 and self.bits:
                level = self.bits.popleft()
                if level != self._level:
                    self._rx.write(level)
                    top._dirty = True
                    self._level = level
                self._hold = div
            if self._hold:
                self._hold -= 1
            top.tick()
            # tx is a register output, settled by the rising edge's eval.
            tx = self._tx.view.value
            st = self._rx_state
            if st is None:
                if not tx:
                    self._rx_state = (div // 2, 0, 0)     # to the middle of the start bit
            else:
                wait, bit, byte = st
                if wait:
                    self._rx_state = (wait - 1, bit, byte)
                elif bit == 0:
                    self._rx_state = (div - 1, 1, 0) if not tx else None   # glitch
                elif bit <= 8:
                    self._rx_state = (div - 1, bit + 1, byte | (tx << (bit - 1)))
                else:
                    if tx:                               # a good stop bit
                        self._in.append(byte)
                        self.bytes_out += 1
                    self._rx_state = None


class BoardSimBackend(LinkBackend):
    """``Fabric(config, backend="board-sim")``: see the module docstring."""

    def __init__(self, cfg: dict, *, divisor: int = RX_MIN_DIVISOR, seed=None,
                 in_stall: float = 0.0, out_stall: float = 0.0, max_flits: int | None = None):
        text, module, board = board_sim_verilog(cfg, divisor, max_flits=max_flits)
        self.board = board
        self.divisor = divisor
        self.top = VerilatedTop(text, module)
        self.top.poke("rx", 1)
        self.top.poke("rst", 0)
        self.uart = BitUart(self.top, divisor)
        bridge = board.bridge.bridge
        geometry = {"flit_bytes": bridge.flit_bytes, "width": layout_for(cfg).size,
                    "max_flits": bridge.max_flits, "buffer_flits": bridge.buffer_flits}
        self._frame_cycles = 10 * divisor * (geometry["max_flits"] * geometry["flit_bytes"] + 8)
        super().__init__(geometry, self.uart,
                         link_timeout=4 * self.WINDOW * self._frame_cycles,
                         seed=seed, in_stall=in_stall, out_stall=out_stall)
        # The power-on reset, then an idle line.
        self.uart.step(board.por_cycles + 4)

    @property
    def cycle(self) -> int:
        return self.top.cycles

    def no_progress_limit(self, timeout: int) -> int:
        # A flit takes flit_bytes * 10 * divisor cycles on the line; a resend waits the
        # link timeout. No flit moved for this long means a stuck run.
        return timeout + 8 * self.link.timeout

    def advance(self) -> None:
        # One byte time: HostLink has nothing to do in between.
        self.uart.step(10 * self.divisor)

    def line_rate(self, payload_bytes: int, cycles: int, baud: int = DEFAULT_BAUD) -> tuple:
        """(payload bytes/s, line-rate limit baud/10 bytes/s) at ``baud``: the run's
        cycles are bit times / divisor."""
        seconds = cycles / self.divisor / baud
        return payload_bytes / seconds, baud / 10
