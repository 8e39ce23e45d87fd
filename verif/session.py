"""The host side of the NoC protocol, and the backends that turn it into clock cycles.

A ``HostSession`` holds, per destination tile, the flits the host still has to
send (each may wait for a number of DONEs from its tile, which frees a
scratchpad region or a descriptor slot) and what came back. Each cycle it offers
at most one flit on ``host_in`` -- round robin over the tiles whose next item is
allowed -- and takes what arrives on ``host_out``. A ``Multicast`` item (on a
fabric whose packets have ``multicast``) is one flit for a rectangle of tiles:
the same object stands in the list of every tile of the rectangle, and it is
sent once, when it is the next item of each of them and each of their DONE
gates holds, so every tile still receives its items in its list's order. An offered flit is held until
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
from ..golden.packet import Op, Packet, PacketFormat, multicast_packet
from . import tb
from .pyverilator_sim import HostPort, VerilatedTop
from .stream import Clocked, StreamSink, StreamSource, random_pause


class HostError(TilefabError):
    """A tile refused a request, or the fabric stopped making progress."""


@dataclass(frozen=True, eq=False)
class Multicast:
    """One flit for every tile of ``rect`` = ``(x0, y0, x1, y1)`` (inclusive). ``after``
    holds ``(tile, dones)`` pairs: the DONEs each tile must have sent before it goes
    (tiles not named: 0). Put the same object in the request list of every tile of
    the rectangle, once each."""
    rect: tuple
    op: int
    addr: int = 0
    data: int = 0
    after: tuple = ()

    @property
    def tiles(self) -> list:
        x0, y0, x1, y1 = self.rect
        return [(x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


class _Group:
    """A multicast flit waiting in the queues of all its tiles."""

    def __init__(self, word: int, item: Multicast):
        self.word = word
        self.tiles = item.tiles
        self.gates = {t: 0 for t in self.tiles}
        for tile, dones in item.after:
            if tuple(tile) not in self.gates:
                raise ValueError(f"multicast after: tile {tuple(tile)} is not in rect "
                                 f"{item.rect}")
            self.gates[tuple(tile)] = dones


def _check_order(streams: dict):
    """Every multicast group can reach the head of all its tiles' queues: the tiles'
    orders agree (else the session would wait forever)."""
    pos = {dst: 0 for dst in streams}
    queues = {dst: list(s.words) for dst, s in streams.items()}
    left = sum(len(q) for q in queues.values())
    progress = True
    while left and progress:
        progress = False
        for dst, q in queues.items():
            while pos[dst] < len(q):
                head = q[pos[dst]]
                if not isinstance(head, _Group):
                    pos[dst] += 1
                    left -= 1
                    progress = True
                    continue
                if all(pos[t] < len(queues[t]) and queues[t][pos[t]] is head
                       for t in head.tiles):
                    for t in head.tiles:
                        pos[t] += 1
                        left -= 1
                    progress = True
                    continue
                break
    if left:
        stuck = sorted(dst for dst, q in queues.items() if pos[dst] < len(q))
        raise ValueError(f"requests: multicast items stand in different orders in the "
                         f"lists of tiles {stuck[:4]}; no order of sends serves them all")


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
        groups = {}                      # id(Multicast) -> _Group

        def entry(dst, item):
            if not isinstance(item, Multicast):
                op, addr, data, after = item
                return (fmt.pack(Packet(dst[0], dst[1], hx, hy, op, addr, data)), after)
            g = groups.get(id(item))
            if g is None:
                word = fmt.pack(multicast_packet(item.rect, (hx, hy), item.op, item.addr,
                                                 item.data))
                g = groups[id(item)] = (_Group(word, item), item, [])
            if dst not in g[0].gates:
                raise ValueError(f"requests: tile {dst} lists a multicast for rect "
                                 f"{item.rect}, which does not hold it")
            g[2].append(dst)
            return g[0]

        streams = []
        for dst in sorted(set(requests) | set(expect), key=lambda d: (d[1], d[0])):
            words = deque(entry(dst, item) for item in requests.get(dst, ()))
            replies, dones = expect.get(dst, (0, 0))
            streams.append(_Stream(dst, words, replies, dones))
        for g, item, listed in groups.values():
            if sorted(listed) != sorted(g.tiles):
                raise ValueError(f"requests: the multicast for rect {item.rect} must stand "
                                 f"once in the list of each of its tiles {g.tiles}; it is "
                                 f"in those of {sorted(listed)}")
        if groups:
            _check_order({s.dst: s for s in streams})
        return cls(fmt, streams, errors_ok)

    def _allowed(self, s: _Stream) -> bool:
        head = s.words[0]
        if not isinstance(head, _Group):
            return len(s.dones) >= head[1]
        return all(self.streams[t].words and self.streams[t].words[0] is head and
                   len(self.streams[t].dones) >= head.gates[t] for t in head.tiles)

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
                if s.words and self._allowed(s):
                    head = s.words[0]
                    self.offer = (s.dst, head.word if isinstance(head, _Group) else head[0])
                    self._rr = (self._rr + step + 1) % n
                    break
        return None if self.offer is None else self.offer[1]

    def taken(self, cycle: int):
        dst, _ = self.offer
        head = self.streams[dst].words.popleft()
        if isinstance(head, _Group):
            for t in head.tiles:
                if t != dst:
                    self.streams[t].words.popleft()
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
        unsent = {id(w) if isinstance(w, _Group) else (s.dst, k)
                  for s in self.streams.values() for k, w in enumerate(s.words)}
        return self.flits_in + len(unsent) + sum(s.expected_replies + s.expected_dones
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
            head = s.words[0] if s.words else None
            wait = ("" if head is None else
                    f" (next: a multicast to {head.tiles[0]}..{head.tiles[-1]})"
                    if isinstance(head, _Group) else f" (next waits for {head[1]} DONEs)")
            lines.append(f"  tile {s.dst}: {len(s.words)} flits unsent{wait}, "
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
