"""The host side of the NoC protocol, and the backends that turn it into clock cycles.

A ``HostSession`` holds, per destination tile, the flits the host still has to
send (each may wait for a number of DONEs from its tile, which frees a
scratchpad region or a descriptor slot) and what came back. Each cycle it offers
at most one flit on ``host_in`` -- round robin over the tiles whose next item is
allowed -- and takes what arrives on ``host_out``. An offered flit is held until
taken (the stream rule). An ERROR from a tile stops the run with the tile's
coordinates and the request it refused, unless the session was built with
``errors_ok`` (then ERRORs count as replies). The measured window runs from the
first flit taken into the fabric to the last flit out of it.

Backends: ``PyverilatorBackend`` steps a Verilator model from Python;
``CocotbBackend(dut)`` drives the host port inside a cocotb test. Both take
``in_stall`` (the host pauses its sends) and ``out_stall`` (the host drops
``host_out.ready``) as per-cycle probabilities, drawn from ``seed``, as
defaults that each ``run`` may override. A pyverilator run that lasts more than
two seconds shows a progress bar of flits moved on a terminal (``progress``).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from tqdm import tqdm

from ..gen.errors import TilefabError
from ..golden.packet import Op, Packet, PacketFormat
from . import tb
from .pyverilator_sim import HostPort, VerilatedTop
from .stream import Clocked, StreamSink, StreamSource, random_pause


class HostError(TilefabError):
    """A tile refused a request, or the fabric stopped making progress."""


@dataclass
class _Stream:
    """The flits the host still has to send to one tile, with their DONE preconditions."""
    dst: tuple
    words: deque                     # (packed word, after_done)
    expected_replies: int
    expected_dones: int
    replies: list = field(default_factory=list)
    dones: list = field(default_factory=list)     # tags, in arrival order
    packets: list = field(default_factory=list)   # every packet back, (op, addr, data)


class HostSession:
    """The host's side of one run: what to send, what came back, when."""

    def __init__(self, fmt: PacketFormat, streams: list, errors_ok: bool = False):
        self.fmt = fmt
        self.errors_ok = errors_ok
        self.streams = {s.dst: s for s in streams}
        self.order = [s.dst for s in streams]
        self._rr = 0
        self.offer = None                # (dst, word) offered and not yet taken
        self.first_in = None
        self.last_out = None
        self.flits_in = 0
        self.flits_out = 0
        self.last_progress = 0

    @classmethod
    def build(cls, fmt: PacketFormat, requests: dict, expect: dict, errors_ok: bool = False):
        """``requests``: dst -> [(op, addr, data, after_done)]; ``expect``: dst -> (replies, dones)."""
        hx, hy = fmt.host
        streams = []
        for dst in sorted(set(requests) | set(expect), key=lambda d: (d[1], d[0])):
            words = deque((fmt.pack(Packet(dst[0], dst[1], hx, hy, op, addr, data)), after)
                          for op, addr, data, after in requests.get(dst, ()))
            replies, dones = expect.get(dst, (0, 0))
            streams.append(_Stream(dst, words, replies, dones))
        return cls(fmt, streams, errors_ok)

    @property
    def finished(self) -> bool:
        return self.offer is None and all(
            not s.words and len(s.replies) >= s.expected_replies and
            len(s.dones) >= s.expected_dones for s in self.streams.values())

    def next_word(self):
        """The flit to offer this cycle (the held one, or the next allowed one), or None."""
        if self.offer is None:
            n = len(self.order)
            for step in range(n):
                s = self.streams[self.order[(self._rr + step) % n]]
                if s.words and len(s.dones) >= s.words[0][1]:
                    self.offer = (s.dst, s.words[0][0])
                    self._rr = (self._rr + step + 1) % n
                    break
        return None if self.offer is None else self.offer[1]

    def taken(self, cycle: int):
        dst, _ = self.offer
        self.streams[dst].words.popleft()
        self.offer = None
        self.flits_in += 1
        self.last_progress = cycle
        if self.first_in is None:
            self.first_in = cycle

    def receive(self, cycle: int, word: int):
        p = self.fmt.unpack(word)
        self.flits_out += 1
        self.last_out = self.last_progress = cycle
        src = (p.src_x, p.src_y)
        stream = self.streams.get(src)
        if stream is not None:
            stream.packets.append((Op(p.op), p.addr, p.data))
        if p.op == Op.ERROR and self.errors_ok and stream is not None:
            stream.replies.append(p.data)
            return
        if p.op == Op.ERROR:
            raise HostError(f"tile {src} answered ERROR to op {p.data & 0xff} at addr "
                            f"{p.addr} (reason {p.data >> 8}) at cycle {cycle}")
        if stream is None or p.op not in (Op.REPLY, Op.DONE):
            raise HostError(f"unexpected {Op(p.op).name} from {src} at cycle {cycle}")
        (stream.replies if p.op == Op.REPLY else stream.dones).append(
            p.data if p.op == Op.REPLY else p.addr)

    @property
    def total_flits(self) -> int:
        """Flits this session moves: the ones still to send, the ones sent, and every
        expected reply and DONE."""
        return self.flits_in + sum(len(s.words) + s.expected_replies + s.expected_dones
                                   for s in self.streams.values())

    @property
    def cycles(self) -> int:
        """First flit in to last flit out, inclusive."""
        if self.first_in is None or self.last_out is None:
            return 0
        return self.last_out - self.first_in + 1

    def describe(self) -> str:
        lines = []
        for s in self.streams.values():
            lines.append(f"  tile {s.dst}: {len(s.words)} flits unsent"
                         f"{f' (next waits for {s.words[0][1]} DONEs)' if s.words else ''}, "
                         f"replies {len(s.replies)}/{s.expected_replies}, "
                         f"DONEs {len(s.dones)}/{s.expected_dones}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Backends: who turns a session into clock cycles.

class PyverilatorBackend:
    """Steps a Verilator model of the fabric from Python (no cocotb)."""

    asynchronous = False

    PROGRESS_EVERY = 4096      # cycles between progress-bar updates

    def __init__(self, generated, seed: int | None = None, in_stall: float = 0.0,
                 out_stall: float = 0.0, progress: bool | None = None):
        self.top = VerilatedTop(generated.verilog, generated.module)
        self.top.reset()
        self.port = HostPort(self.top)
        self.rng = random.Random(seed)
        self.in_stall, self.out_stall = in_stall, out_stall
        # progress None: a bar on a terminal only (tqdm's rule); True: always; False: never.
        self.no_bar = None if progress is None else not progress

    @property
    def cycle(self) -> int:
        return self.top.cycles

    def run(self, session: HostSession, *, seed: int | None = None, in_stall=None,
            out_stall=None, timeout: int = 20000):
        port = self.port
        rng = self.rng if seed is None else random.Random(seed)
        host_stall = self.in_stall if in_stall is None else in_stall
        accept_stall = self.out_stall if out_stall is None else out_stall
        session.last_progress = self.top.cycles
        bar = tqdm(total=session.total_flits, unit="flit", delay=2.0, leave=False,
                   disable=self.no_bar, desc="simulating")
        try:
            self._steps(session, port, rng, host_stall, accept_stall, timeout, bar)
        finally:
            bar.close()
        return session

    def _steps(self, session, port, rng, host_stall, accept_stall, timeout, bar):
        while not session.finished:
            cycle = self.top.cycles
            if cycle % self.PROGRESS_EVERY == 0:
                bar.update(session.flits_in + session.flits_out - bar.n)
            if session.offer is None and host_stall and rng.random() < host_stall:
                send = None
            else:
                send = session.next_word()
            accept = not (accept_stall and rng.random() < accept_stall)
            taken, got = port.cycle(send, accept)
            if taken:
                session.taken(cycle)
            if got is not None:
                session.receive(cycle, got)
            if cycle - session.last_progress > timeout:
                raise HostError(f"no flit moved for {timeout} cycles (cycle {cycle}):\n"
                                f"{session.describe()}")


class CocotbBackend:
    """Drives the fabric's host port inside a cocotb test, with random backpressure."""

    asynchronous = True

    def __init__(self, dut, seed: int | None = None, in_stall: float = 0.0,
                 out_stall: float = 0.0):
        self.dut = dut
        self.rng = random.Random(seed)
        self.in_stall, self.out_stall = in_stall, out_stall
        self.clocked = None

    async def start(self):
        await tb.start(self.dut)
        self.source = _SessionSource(self.dut, "host_in", random_pause(self.in_stall, self.rng))
        self.sink = StreamSink(self.dut, "host_out", random_pause(self.out_stall, self.rng),
                               on_word=self._on_word)
        self.clocked = Clocked(self.dut.clk, [self.source, self.sink]).start()
        self.session = None

    def _on_word(self, cycle, word):
        self.session.receive(cycle, word)

    @property
    def cycle(self) -> int:
        return self.clocked.cycle

    async def run(self, session: HostSession, *, seed: int | None = None, in_stall=None,
                  out_stall=None, timeout: int = 20000):
        if self.clocked is None:
            await self.start()
        if seed is not None or in_stall is not None or out_stall is not None:
            rng = self.rng if seed is None else random.Random(seed)
            self.source.pause = random_pause(self.in_stall if in_stall is None else in_stall,
                                             rng)
            self.sink.pause = random_pause(self.out_stall if out_stall is None else out_stall,
                                           rng)
        self.session = self.source.session = session
        session.last_progress = self.clocked.cycle

        def done():
            if self.clocked.cycle - session.last_progress > timeout:
                raise HostError(f"no flit moved for {timeout} cycles:\n{session.describe()}")
            return session.finished
        await self.clocked.wait_until(done, timeout=10 ** 9, what="the host session")
        errors = self.clocked.protocol_errors
        if errors:
            raise AssertionError("stream rule broken on host_out: " + "; ".join(errors[:5]))
        return session


class _SessionSource(StreamSource):
    """A stream source that asks the session for its next flit each cycle."""

    session = None

    def drive(self, cycle):
        if self.current is None and not self.queue and self.session is not None:
            word = self.session.next_word()
            if word is not None:
                self.queue.append((word, None, 0))
        super().drive(cycle)

    def on_sent(self, cycle):
        self.session.taken(cycle)
