"""The host runtime: run jobs on a generated fabric from Python.

``Fabric(config, backend="pyverilator")`` generates the fabric (cached), builds
it once through pyverilator and steps it cycle by cycle from Python;
``fabric.gemm(a, b)`` compiles C = A·B into per-PE packet streams, runs them
and returns the exact product with its cycle counts. In a cocotb test,
``Fabric(config, backend=CocotbBackend(dut))`` drives the same host port through
the cocotb stream drivers (with backpressure) and ``await fabric.gemm_async(a, b)``.

Both backends run one ``HostSession``: the host side of the NoC protocol. Each
cycle it offers at most one flit on ``host_in`` — round robin over the PEs whose
next item is allowed (an item may wait for a number of DONEs from its PE, which
frees a scratchpad region or a descriptor slot) — and takes what arrives on
``host_out``. An offered flit is held until taken (the stream rule). Any ERROR
from a tile stops the run with the tile's coordinates and the request it
refused. The measured window runs from the first flit taken into the fabric to
the last flit out of it, as utilization = MACs / (PEs × lanes × cycles) is
defined.

Before a GEMM the host reads each PE's ``words`` counter and the compiler
counts the ``wait`` fields from there, so a fabric runs job after job without a
reset.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..gen.config import as_config
from ..gen.errors import TilefabError
from ..gen.gemm.compiler import compile_gemm
from ..gen.generate import generate
from ..golden.gemm import GemmGeometry
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


class HostSession:
    """The host's side of one run: what to send, what came back, when."""

    def __init__(self, fmt: PacketFormat, streams: list):
        self.fmt = fmt
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
    def build(cls, fmt: PacketFormat, requests: dict, expect: dict):
        """``requests``: dst -> [(op, addr, data, after_done)]; ``expect``: dst -> (replies, dones)."""
        hx, hy = fmt.host
        streams = []
        for dst in sorted(set(requests) | set(expect), key=lambda d: (d[1], d[0])):
            words = deque((fmt.pack(Packet(dst[0], dst[1], hx, hy, op, addr, data)), after)
                          for op, addr, data, after in requests.get(dst, ()))
            replies, dones = expect.get(dst, (0, 0))
            streams.append(_Stream(dst, words, replies, dones))
        return cls(fmt, streams)

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
        if p.op == Op.ERROR:
            raise HostError(f"tile {src} answered ERROR to op {p.data & 0xff} at addr "
                            f"{p.addr} (reason {p.data >> 8}) at cycle {cycle}")
        if stream is None or p.op not in (Op.REPLY, Op.DONE):
            raise HostError(f"unexpected {Op(p.op).name} from {src} at cycle {cycle}")
        (stream.replies if p.op == Op.REPLY else stream.dones).append(
            p.data if p.op == Op.REPLY else p.addr)

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

    def __init__(self, generated, seed: int | None = None, host_stall: float = 0.0,
                 accept_stall: float = 0.0):

        self.top = VerilatedTop(generated.verilog, generated.module)
        self.top.reset()
        self.port = HostPort(self.top)
        self.rng = random.Random(seed)
        self.host_stall, self.accept_stall = host_stall, accept_stall

    @property
    def cycle(self) -> int:
        return self.top.cycles

    def run(self, session: HostSession, timeout: int = 20000):
        rng, port = self.rng, self.port
        host_stall, accept_stall = self.host_stall, self.accept_stall
        session.last_progress = self.top.cycles
        while not session.finished:
            cycle = self.top.cycles
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
        return session


class CocotbBackend:
    """Drives the fabric's host port inside a cocotb test, with random backpressure."""

    asynchronous = True

    def __init__(self, dut, seed: int | None = None, host_stall: float = 0.0,
                 accept_stall: float = 0.0):
        self.dut = dut
        self.rng = random.Random(seed)
        self.host_stall, self.accept_stall = host_stall, accept_stall
        self.clocked = None

    async def start(self):
        await tb.start(self.dut)
        self.source = _SessionSource(self.dut, "host_in", random_pause(self.host_stall, self.rng))
        self.sink = StreamSink(self.dut, "host_out", random_pause(self.accept_stall, self.rng),
                               on_word=self._on_word)
        self.clocked = Clocked(self.dut.clk, [self.source, self.sink]).start()
        self.session = None

    def _on_word(self, cycle, word):
        self.session.receive(cycle, word)

    @property
    def cycle(self) -> int:
        return self.clocked.cycle

    async def run(self, session: HostSession, timeout: int = 20000):
        if self.clocked is None:
            await self.start()
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


# ---------------------------------------------------------------------------

@dataclass
class GemmRun:
    """One GEMM on the fabric: the product and how long it took."""
    c: np.ndarray
    cycles: int                     # first flit in to last flit out
    macs: int                       # m * k * n
    pes: int
    lanes: int
    flits_in: int
    flits_out: int
    counters: dict                  # (x, y) -> {status register: value during the run}

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.pes * self.lanes

    @property
    def utilization(self) -> float:
        return self.macs / (self.peak_macs_per_cycle * self.cycles)

    def pe_utilization(self) -> dict:
        """Per PE: cycles its MAC engine issued, over the run's cycles."""
        return {pe: c["busy"] / self.cycles for pe, c in self.counters.items()}

    def stall_breakdown(self) -> dict:
        """Mean over PEs of each kind of engine cycle, as fractions of the run."""
        out = {}
        for name in ("busy", "stall_operands", "stall_noc"):
            out[name] = float(np.mean([c[name] for c in self.counters.values()])) / self.cycles
        out["idle"] = max(0.0, 1.0 - sum(out.values()))
        return out


class Fabric:
    """A generated fabric and a simulator to run jobs on it.

    ``config``: a YAML path or a config dict. ``backend``: ``"pyverilator"`` or a
    backend object (``PyverilatorBackend``/``CocotbBackend``). ``host_stall`` and
    ``accept_stall`` make the host pause its sends / its ``host_out.ready`` at
    random with those probabilities (``seed`` fixes the pattern).
    """

    def __init__(self, config, backend="pyverilator", *, seed: int | None = None,
                 host_stall: float = 0.0, accept_stall: float = 0.0):
        self.config = as_config(config)
        self.generated = generate(self.config)
        self.manifest = self.generated.manifest
        p = self.config["packet"]
        self.fmt = PacketFormat(coord_bits=p["coord_bits"], addr_bits=p["addr_bits"],
                                data_bits=p["data_bits"])
        if backend == "pyverilator":
            backend = PyverilatorBackend(self.generated, seed, host_stall, accept_stall)
        elif isinstance(backend, str):
            raise TilefabError(f"backend: {backend!r} is not allowed, must be 'pyverilator' "
                               f"or a backend object (CocotbBackend(dut) in cocotb tests)")
        self.backend = backend
        self.gemm_info = self.manifest["gemm"]

    # -- generic requests

    def _session(self, requests, expect):
        return HostSession.build(self.fmt, requests, expect)

    def read_status(self, pes=None) -> dict:
        """Every GEMM status register of every PE (synchronous backends)."""
        return self._sync(self.read_status_async(pes))

    async def read_status_async(self, pes=None) -> dict:
        regs = self._gemm()["status_registers"]
        pes = [tuple(p) for p in (pes or self._gemm()["pes"])]
        requests = {pe: [(Op.READ, addr, 0, 0) for addr in regs.values()] for pe in pes}
        s = await self._run(self._session(requests, {pe: (len(regs), 0) for pe in pes}))
        return {pe: dict(zip(regs, s.streams[pe].replies)) for pe in pes}

    # -- GEMM

    def gemm(self, a, b) -> GemmRun:
        """C = A·B on the fabric (synchronous backends such as pyverilator)."""
        return self._sync(self.gemm_async(a, b))

    async def gemm_async(self, a, b) -> GemmRun:

        info = self._gemm()
        p = self.config["packet"]
        geom = GemmGeometry(data_bits=p["data_bits"], addr_bits=p["addr_bits"],
                            **info["params"])
        pes = [tuple(pe) for pe in info["pes"]]
        before = await self.read_status_async(pes)
        plan = compile_gemm(a, b, geom, pes,
                            words_before={pe: before[pe]["words"] for pe in pes})
        F = geom.flits_per_group
        ops = {"write": Op.WRITE, "exec": Op.EXEC}
        requests, expect = {}, {}
        for prog in plan.programs:
            pe = (prog.x, prog.y)
            requests[pe] = [(ops[it.kind], it.addr, it.data, it.after_done)
                            for it in prog.items]
            expect[pe] = (sum(j.groups for j in prog.jobs) * F, len(prog.jobs))
        session = await self._run(self._session(requests, expect))
        for prog in plan.programs:
            got = session.streams[(prog.x, prog.y)].dones
            want = [j.tag for j in prog.jobs]
            if got != want:
                raise HostError(f"tile {(prog.x, prog.y)} finished jobs {got}, expected {want}")
        c = plan.assemble({dst: s.replies for dst, s in session.streams.items()})
        after = await self.read_status_async(pes)
        counters = {pe: {k: (after[pe][k] - before[pe][k]) % (1 << 32) for k in after[pe]}
                    for pe in pes}
        return GemmRun(c=c, cycles=session.cycles, macs=plan.macs, pes=len(pes),
                       lanes=info["params"]["lanes"], flits_in=session.flits_in,
                       flits_out=session.flits_out, counters=counters)

    # -- plumbing

    def _gemm(self) -> dict:
        if self.gemm_info is None:
            raise TilefabError(f"{self.config['name']}: this fabric has no gemm tiles "
                               f"(tiles.default.kind or tiles.at[...].kind: gemm)")
        return self.gemm_info

    async def _run(self, session):
        if self.backend.asynchronous:
            return await self.backend.run(session)
        return self.backend.run(session)

    def _sync(self, coro):
        if self.backend.asynchronous:
            coro.close()
            raise TilefabError("this backend runs inside cocotb: use the *_async methods "
                               "with await")
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value
        raise RuntimeError("a synchronous backend suspended")
