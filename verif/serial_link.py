"""Runtime backends that reach the fabric through the UART host bridge.

``LinkBackend`` runs a ``HostSession`` over any byte transport with the host end of
the bridge protocol, ``golden.frame.HostLink``: each step it takes every flit the
session allows now (its DONE preconditions decide), hands them to the link, which
packs them into frames of up to ``max_flits`` and keeps a window of them
unacknowledged (go-back-N), and feeds the flits of the bridge's data frames back to
the session. A subclass says how time passes (``advance``) and what the clock is.

``SerialBackend(config, port)`` is a real board over pyserial: the transport is the
serial port, the clock is host time, and ``cycles`` are microseconds of it (the
wire carries no cycle count). ``BoardSimBackend`` (``verif.board_sim``) is the
Verilator model of the same board top with the UART at the bit level.

``in_stall`` is the probability that the host skips a step of handing flits to the
link; ``out_stall`` that it leaves the flits that arrived unread for a step (a UART
host cannot hold the bridge back: the line rate already paces ``host_out``).
"""

from __future__ import annotations

import random
import time

from ..gen.errors import TilefabError
from ..gen.generate import layout_for
from ..golden.frame import HostLink
from ..hw.bridge import DEFAULT_BAUD, HostBridge
from .session import HostError, HostSession


def link_geometry(cfg: dict, max_flits: int | None = None) -> dict:
    """The bridge's frame geometry for ``cfg`` (what ``HostLink`` needs)."""
    layout = layout_for(cfg)
    bridge = HostBridge(layout=layout, max_flits=max_flits)
    return {"flit_bytes": bridge.flit_bytes, "width": layout.size,
            "max_flits": bridge.max_flits, "buffer_flits": bridge.buffer_flits}


class LinkBackend:
    """A ``HostSession`` over ``HostLink``; subclasses provide the transport and time."""

    asynchronous = False
    WINDOW = 8

    def __init__(self, geometry: dict, transport, *, link_timeout: float, seed=None,
                 in_stall: float = 0.0, out_stall: float = 0.0):
        self.geometry = geometry
        self.link = HostLink(transport, flit_bytes=geometry["flit_bytes"],
                             width=geometry["width"], max_flits=geometry["max_flits"],
                             clock=lambda: self.cycle, timeout=link_timeout,
                             window=self.WINDOW)
        self.rng = random.Random(seed)
        self.in_stall, self.out_stall = in_stall, out_stall
        self._delivered = 0          # link.received flits already given to a session
        self.payload_in = 0          # flit bytes sent to the board (resends excluded)
        self.payload_out = 0         # flit bytes received from it

    @property
    def cycle(self) -> int:
        raise NotImplementedError

    def advance(self) -> None:
        """Let time pass until something may have happened on the wire."""
        raise NotImplementedError

    def no_progress_limit(self, timeout: int) -> int:
        """Clock units without a flit moved that mean the run is stuck."""
        return timeout

    def run(self, session: HostSession, *, seed=None, in_stall=None, out_stall=None,
            timeout: int = 20000):
        rng = self.rng if seed is None else random.Random(seed)
        host_stall = self.in_stall if in_stall is None else in_stall
        read_stall = self.out_stall if out_stall is None else out_stall
        link = self.link
        limit = self.no_progress_limit(timeout)
        session.last_progress = self.cycle
        fb = self.geometry["flit_bytes"]
        while True:
            if not (host_stall and rng.random() < host_stall):
                batch = []
                while (word := session.next_word()) is not None:
                    session.taken(self.cycle)
                    batch.append(word)
                if batch:
                    link.send(batch)
                    self.payload_in += fb * len(batch)
            link.poll()
            if link.rx_lost or link.rx_bad:
                raise HostError(f"the bridge's data frames were lost on the line "
                                f"({link.rx_lost} missing by seq, {link.rx_bad} bad): "
                                f"their flits cannot be resent")
            if not (read_stall and rng.random() < read_stall):
                got = link.received[self._delivered:]
                self._delivered = len(link.received)
                for word in got:
                    session.receive(self.cycle, word)
                self.payload_out += fb * len(got)
            if session.finished and link.idle:
                return session
            if self.cycle - session.last_progress > limit:
                raise HostError(f"no flit moved for {limit} {self.unit} (at {self.cycle}):\n"
                                f"{session.describe()}")
            self.advance()

    unit = "cycles"


class _SerialTransport:
    def __init__(self, port):
        self.port = port

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def read(self) -> bytes:
        n = self.port.in_waiting
        return self.port.read(n) if n else b""


class SerialBackend(LinkBackend):
    """A board on a serial port (pyserial): ``SerialBackend(config, "/dev/ttyUSB0")``."""

    unit = "us"

    def __init__(self, cfg: dict, port: str, *, baud: int = DEFAULT_BAUD, seed=None,
                 in_stall: float = 0.0, out_stall: float = 0.0, max_flits: int | None = None):
        try:
            import serial
        except ImportError:
            raise TilefabError("backend serial: pyserial is not installed "
                               "(pip install pyserial)") from None
        if not isinstance(port, str) or not port:
            raise TilefabError("port: backend serial needs the board's serial port, e.g. "
                               "port='/dev/ttyUSB0'")
        try:
            self.serial = serial.Serial(port, baudrate=baud, timeout=0)
        except (serial.SerialException, ValueError) as exc:
            raise TilefabError(f"port {port}: cannot open it ({exc}); is the board plugged "
                               f"in and programmed (tilefab program)?") from None
        self._t0 = time.monotonic()
        geometry = link_geometry(cfg, max_flits)
        frame_bits = 10 * (geometry["max_flits"] * geometry["flit_bytes"] + 8)
        # A window of frames at the line rate, twice over, in microseconds.
        link_timeout = 2e6 * self.WINDOW * frame_bits / baud + 20_000
        super().__init__(geometry, _SerialTransport(self.serial), link_timeout=link_timeout,
                         seed=seed, in_stall=in_stall, out_stall=out_stall)

    @property
    def cycle(self) -> int:
        return int((time.monotonic() - self._t0) * 1e6)

    def no_progress_limit(self, timeout: int) -> int:
        return max(timeout, 2_000_000)       # 2 s of host time

    def advance(self) -> None:
        time.sleep(0.0005)

    def close(self) -> None:
        self.serial.close()
