"""The UART host bridge: framing vectors, the UART at the bit level, the bridge's
registers and framing in amaranth.sim, a 10^4-frame fuzz of the protocol on
Verilator against the golden receive model, and lint and synthesis of the RTL."""

import random
from collections import deque

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator
from tilefab.gen.emit import to_verilog
from tilefab.gen.lint import lint_file
from tilefab.gen.synth import synthesize
from tilefab.golden.frame import (
    RX_COUNTERS,
    STATUS_REGISTERS,
    BridgeModel,
    FrameError,
    FrameSplitter,
    HostLink,
    build_frame,
    cobs_decode,
    cobs_encode,
    crc16,
    flits_to_payload,
    parse_frame,
    payload_to_flits,
)
from tilefab.golden.packet import Op, Packet, PacketFormat
from tilefab.hw.bridge import HostBridge, UartBridge, UartRx, UartTx, divisor_for
from tilefab.hw.bridge.bridge import crc16_byte
from tilefab.hw.noc.packet import packet_layout
from tilefab.verif.pyverilator_sim import VerilatedTop

SEED = 20260511
FMT = PacketFormat(coord_bits=2, addr_bits=8, data_bits=16)      # 35 bits: 5-byte flits
LAYOUT = packet_layout(coord_bits=2, addr_bits=8, data_bits=16)
FB = (FMT.width + 7) // 8
HOST = FMT.host
STATUS = {name: (1 << FMT.addr_bits) - 16 + k for k, name in enumerate(STATUS_REGISTERS)}


def _rng(name):
    seed = f"{SEED}-{name}"
    print(f"seed {seed}")
    return random.Random(seed)


def _simulate(dut, *testbenches, processes=()):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    for p in processes:
        sim.add_process(p)
    sim.run()


# ---- framing: known vectors ----------------------------------------------------------

@pytest.mark.parametrize("data, crc", [
    (b"123456789", 0x29B1),        # the CRC-16/CCITT-FALSE check value
    (b"", 0xFFFF),
    (b"A", 0xB915),
])
def test_crc16_vectors(data, crc):
    assert crc16(data) == crc


def test_crc16_matches_bitwise_definition():
    def bitwise(data):
        crc = 0xFFFF
        for b in data:
            for i in reversed(range(8)):
                fb = ((crc >> 15) ^ (b >> i)) & 1
                crc = ((crc << 1) & 0xFFFF) ^ (0x1021 if fb else 0)
        return crc
    rng = _rng("crc")
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        assert crc16(data) == bitwise(data)


def test_crc16_of_frame_with_crc_is_zero():
    raw = b"\x05\x07hello"
    c = crc16(raw)
    assert crc16(raw + bytes([c >> 8, c & 0xFF])) == 0


@pytest.mark.parametrize("data, encoded", [
    # Cheshire & Baker's examples, as on the COBS Wikipedia page (without delimiter)
    ("", "01"),
    ("00", "0101"),
    ("0000", "010101"),
    ("001100", "01021101"),
    ("11220033", "0311220233"),
    ("11223344", "0511223344"),
    ("11000000", "0211010101"),
    (bytes(range(1, 255)).hex(), "ff" + bytes(range(1, 255)).hex()),
    (bytes(range(255)).hex(), "01ff" + bytes(range(1, 255)).hex()),
    (bytes(range(1, 256)).hex(), "ff" + bytes(range(1, 255)).hex() + "02ff"),
    (bytes(range(2, 256)).hex() + "00", "ff" + bytes(range(2, 256)).hex() + "0101"),
])
def test_cobs_vectors(data, encoded):
    data, encoded = bytes.fromhex(data), bytes.fromhex(encoded)
    assert cobs_encode(data) == encoded
    assert cobs_decode(encoded) == data


def test_cobs_round_trip_and_malformed():
    rng = _rng("cobs")
    for _ in range(500):
        data = bytes(rng.choice([0, rng.randrange(256)]) for _ in range(rng.randrange(600)))
        enc = cobs_encode(data)
        assert 0 not in enc and len(enc) <= len(data) + 1 + len(data) // 254
        assert cobs_decode(enc) == data
    with pytest.raises(ValueError, match="cut short"):
        cobs_decode(b"\x05\x11\x22")
    with pytest.raises(ValueError, match="0x00"):
        cobs_decode(b"\x03\x00\x22")


def test_frame_build_parse():
    flits = [0x7_1234_5678, 0, (1 << FMT.width) - 1]
    wire = build_frame(200, flits_to_payload(flits, FB))
    assert wire[-1] == 0 and 0 not in wire[:-1]
    seq, payload = parse_frame(wire[:-1], FB)
    assert seq == 200 and payload_to_flits(payload, FB, FMT.width) == flits
    raw = bytearray(cobs_decode(wire[:-1]))
    raw[3] ^= 0x10
    with pytest.raises(FrameError) as e:
        parse_frame(cobs_encode(bytes(raw)), FB)
    assert e.value.kind == "crc"
    for bad in (raw[:-1], b"\x04\x00" + bytes(6), b""):     # short, len not whole flits, empty
        with pytest.raises(FrameError) as e:
            parse_frame(cobs_encode(bytes(bad)), FB)
        assert e.value.kind == "length"
    with pytest.raises(ValueError, match="seq"):
        build_frame(256)
    with pytest.raises(ValueError, match="payload"):
        build_frame(0, bytes(250))


def test_hw_crc_matches_golden():
    crc, byte = Signal(16), Signal(8)
    out = Signal(16)
    m = Module()
    m.d.comb += out.eq(crc16_byte(crc, byte))
    rng = _rng("crc-hw")
    cases = [(rng.randrange(1 << 16), rng.randrange(256)) for _ in range(300)]

    async def tb(ctx):
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == crc16(bytes([b]), c), (hex(c), b)

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()


# ---- parameters ----------------------------------------------------------------------

def test_bad_parameters():
    with pytest.raises(ValueError, match=r"divisor: 4 is not allowed, must be >= 5"):
        UartRx(divisor=4)
    with pytest.raises(ValueError, match="divisor: 0 is not allowed"):
        UartTx(divisor=0)
    assert divisor_for(12_000_000) == 12 and divisor_for(25_000_000) == 25
    with pytest.raises(ValueError, match="baud: 3000000 does not divide clk_hz 25000000"):
        divisor_for(25_000_000, 3_000_000)
    with pytest.raises(ValueError, match="divisor: 4 is not allowed"):
        UartBridge(layout=LAYOUT, clk_hz=12_000_000, baud=3_000_000)
    with pytest.raises(ValueError, match=r"max_flits: 50 is not allowed, must be 1\.\.49"):
        HostBridge(layout=LAYOUT, max_flits=50)
    with pytest.raises(ValueError, match="buffer_flits: 12 is not allowed, must be a power"):
        HostBridge(layout=LAYOUT, max_flits=4, buffer_flits=12)
    with pytest.raises(ValueError, match="buffer_flits: 4 is not allowed"):
        HostBridge(layout=LAYOUT, max_flits=8, buffer_flits=4)
    with pytest.raises(ValueError, match="layout.addr"):
        HostBridge(layout=packet_layout(coord_bits=2, addr_bits=3, data_bits=8))
    with pytest.raises(TypeError, match="layout"):
        HostBridge(layout=35)
    with pytest.raises(ValueError, match="window"):
        HostLink(None, flit_bytes=FB, width=FMT.width, max_flits=4, clock=lambda: 0,
                 timeout=1, window=128)
    b = HostBridge(layout=LAYOUT)
    assert (b.flit_bytes, b.max_flits, b.buffer_flits) == (5, 16, 32)
    assert b.status_registers.addresses == STATUS


# ---- the UART at the bit level -------------------------------------------------------

DIVISORS = (5, 12)          # the receiver's minimum, and 1 Mbaud from 12 MHz


def _uart_case(name, divisor=None):
    rng = _rng(name)
    choice = rng.choice(DIVISORS)
    divisor = choice if divisor is None else divisor
    print(f"divisor {divisor}")
    return rng, divisor


@pytest.mark.parametrize("divisor", DIVISORS)
def test_uart_tx_bits(divisor):
    rng, div = _uart_case("uart-tx", divisor)
    dut = UartTx(divisor=div)
    data = [rng.randrange(256) for _ in range(200)]
    line = []

    async def feed(ctx):
        for b in data:
            while rng.random() < 0.2:
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, b)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(12 * div)

    async def watch(ctx):
        async for _, _, tx in ctx.tick().sample(dut.tx):
            line.append(tx)

    _simulate(dut, feed, processes=[watch])
    # Decode the recorded line as a receiver would: every bit exactly `div` cycles.
    got, i = [], 0
    assert line[0] == 1
    while i < len(line):
        if line[i] == 1:
            i += 1
            continue
        bits = [line[i + k * div] for k in range(10)]
        assert all(line[i + k * div + j] == bits[k] for k in range(10) for j in range(div)), \
            f"bit not held {div} cycles at {i}"
        assert bits[0] == 0 and bits[9] == 1, f"bad framing at cycle {i}"
        got.append(sum(b << k for k, b in enumerate(bits[1:9])))
        i += 10 * div
    assert got == data


async def _wait(ctx, cycles):
    if cycles > 0:
        await ctx.tick().repeat(cycles)


def _drive_line(ctx, pin, div, rng):
    """An async helper that sends a byte on ``pin``; above divisor 5 each bit edge is
    off its ideal time by up to one cycle (a sender whose clock is not ours)."""
    async def send(b, stop=1):
        drift = 0
        for bit in [0, *((b >> k) & 1 for k in range(8)), stop]:
            ctx.set(pin, bit)
            step = rng.choice([d for d in (-1, 0, 1) if abs(drift + d) <= 1]) if div > 5 else 0
            drift += step
            await ctx.tick().repeat(div + step)
        ctx.set(pin, 1)
    return send


@pytest.mark.parametrize("divisor", DIVISORS)
def test_uart_rx_bits(divisor):
    rng, div = _uart_case("uart-rx", divisor)
    dut = UartRx(divisor=div)
    sent = [rng.randrange(256) for _ in range(300)]
    expect, got, errors = [], [], {"framing": 0, "overrun": 0}
    bad_stop = set(rng.sample(range(len(sent)), 10))

    async def line(ctx):
        send = _drive_line(ctx, dut.rx, div, rng)
        await ctx.tick().repeat(3)
        for k, b in enumerate(sent):
            if k in bad_stop:
                await send(b, stop=0)
                await _wait(ctx, div)          # the line goes high again before a new byte
            else:
                await send(b)
                expect.append(b)
            await _wait(ctx, rng.choice([0, 0, 1, 2 * div]))
        await ctx.tick().repeat(4 * div)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        async for _, _, v, p, fe, ov in ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                           dut.framing_error, dut.overrun):
            if v:
                got.append(p)
            errors["framing"] += fe
            errors["overrun"] += ov

    _simulate(dut, line, processes=[sink])
    assert got == expect
    assert errors == {"framing": len(bad_stop), "overrun": 0}


def test_uart_rx_overrun_and_glitch():
    rng, div = _uart_case("uart-rx-overrun")
    dut = UartRx(divisor=div)
    flags = {"overrun": 0, "framing": 0}
    got = []

    async def line(ctx):
        send = _drive_line(ctx, dut.rx, div, rng)
        await ctx.tick().repeat(3)
        ctx.set(dut.rx, 0)                    # a glitch shorter than half a bit
        await _wait(ctx, div // 2 - 1)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * div)
        for b in (0x11, 0x22, 0x33):          # nobody takes them: the 2nd and 3rd are lost
            await send(b)
        await ctx.tick().repeat(2 * div)
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        await send(0x44)
        await ctx.tick().repeat(2 * div)

    async def watch(ctx):
        async for _, _, v, r, p, fe, ov in ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload, dut.framing_error, dut.overrun):
            if v and r:
                got.append(p)
            flags["overrun"] += ov
            flags["framing"] += fe

    _simulate(dut, line, processes=[watch])
    assert got == [0x11]
    assert flags == {"overrun": 2, "framing": 0}


def _line_bytes(samples, div):
    """Bytes on a recorded line (one sample per cycle), sampled mid-bit."""
    out, i = [], 0
    while i < len(samples) - 10 * div:
        if samples[i] == 1:
            i += 1
            continue
        mid = i + div // 2
        bits = [samples[mid + k * div] for k in range(10)]
        assert bits[9] == 1, f"stop bit low at {i}"
        out.append(sum(b << k for k, b in enumerate(bits[1:9])))
        i = mid + 9 * div
    return bytes(out)


def test_uart_bridge_bit_level():
    """Frames over the UART pins: flits reach the mesh side, a byte with a bad stop bit
    poisons its frame (line error), the ACKs and a status READ come back on ``tx``."""
    rng, div = _uart_case("uart-bridge")
    dut = UartBridge(layout=LAYOUT, divisor=div, max_flits=4, buffer_flits=8)
    flits = [[_mesh_flit(rng) for _ in range(rng.randrange(1, 5))] for _ in range(6)]
    wires = [build_frame(0)] + [build_frame(s + 1, flits_to_payload(f, FB))
                                for s, f in enumerate(flits)]
    poisoned = build_frame(7, flits_to_payload(flits[0], FB))
    read = build_frame(7, flits_to_payload([_request(Op.READ, STATUS["line_errors"]),
                                            _request(Op.READ, STATUS["frames"])], FB))
    got, line = [], []

    async def host(ctx):
        send = _drive_line(ctx, dut.rx, div, rng)
        await ctx.tick().repeat(3)
        for wire in wires:
            for b in wire:
                await send(b)
        for k, b in enumerate(poisoned):
            await send(b, stop=0 if k == 3 else 1)
            if k == 3:
                await _wait(ctx, div)
        for b in read:
            await send(b)
        await ctx.tick().repeat(500 * div)

    async def mesh(ctx):
        ctx.set(dut.host_in.ready, 1)
        async for _, _, v, p, tx in ctx.tick().sample(dut.host_in.valid,
                                                      dut.host_in.payload.as_value(), dut.tx):
            if v:
                got.append(p)
            line.append(tx)

    _simulate(dut, host, processes=[mesh])
    assert got == [f for fs in flits for f in fs]
    frames = [parse_frame(f, FB) for f in FrameSplitter().feed(_line_bytes(line, div))]
    acks = [seq for seq, payload in frames if not payload]
    assert acks == [0, 1, 2, 3, 4, 5, 6, 7]
    replies = [FMT.unpack(w) for _, p in frames if p for w in payload_to_flits(p, FB, FMT.width)]
    assert [(r.op, r.addr, r.data) for r in replies] == [
        (Op.REPLY, STATUS["line_errors"], 1), (Op.REPLY, STATUS["frames"], 8)]


# ---- the bridge in amaranth.sim: registers and transmit framing ----------------------

def _mesh_flit(rng):
    """A random flit for a tile (never the host coordinate)."""
    p = Packet(rng.randrange(3), rng.randrange(4), rng.randrange(4), rng.randrange(4),
               rng.randrange(8), rng.randrange(256), rng.randrange(1 << 16))
    return FMT.pack(p)


def _request(op, addr, data=0, src=HOST):
    return FMT.pack(Packet(*HOST, *src, int(op), addr, data))


def _bridge_frames(dut, stream, idle=400):
    """Feed ``stream`` to ``dut.rx`` a byte per cycle, then ``idle`` cycles; return the
    frames it sent as ``(seq, payload)`` and the flits in their payloads. Nothing may
    enter the mesh (every request is for the bridge)."""
    tx = bytearray()

    async def feed(ctx):
        ctx.set(dut.rx.valid, 1)
        for b in stream:
            ctx.set(dut.rx.payload, b)
            await ctx.tick()
        ctx.set(dut.rx.valid, 0)
        await ctx.tick().repeat(idle)

    async def sink(ctx):
        ctx.set(dut.tx.ready, 1)
        ctx.set(dut.host_in.ready, 1)
        async for _, _, v, p, mv in ctx.tick().sample(dut.tx.valid, dut.tx.payload,
                                                      dut.host_in.valid):
            assert not mv, "a request to the bridge entered the mesh"
            if v:
                tx.append(p)

    _simulate(dut, feed, processes=[sink])
    frames = [parse_frame(f, FB) for f in FrameSplitter().feed(bytes(tx))]
    replies = [FMT.unpack(w) for _, p in frames if p for w in payload_to_flits(p, FB, FMT.width)]
    return frames, replies


def test_status_registers_and_errors():
    dut = HostBridge(layout=LAYOUT, max_flits=4, buffer_flits=8)
    bad = bytearray(build_frame(1, flits_to_payload([_mesh_flit(random.Random(1))], FB)))
    bad[4] ^= 0x01                                          # a CRC error
    reqs = [_request(Op.READ, STATUS["frames"]), _request(Op.READ, STATUS["crc_errors"]),
            _request(Op.READ, STATUS["duplicates"], src=(1, 2)),
            _request(Op.READ, STATUS["acks"] + 1), _request(Op.WRITE, STATUS["frames"], 5)]
    stream = (build_frame(0) + bytes(bad) + build_frame(0)
              + build_frame(1, flits_to_payload(reqs[:4], FB))
              + build_frame(2, flits_to_payload(reqs[4:], FB)))
    frames, replies = _bridge_frames(dut, stream)
    assert [s for s, p in frames if not p] == [0, 0, 1, 2]
    assert [(r.dst, r.src, Op(r.op), r.addr, r.data) for r in replies] == [
        (HOST, HOST, Op.REPLY, STATUS["frames"], 2),
        (HOST, HOST, Op.REPLY, STATUS["crc_errors"], 1),
        ((1, 2), HOST, Op.REPLY, STATUS["duplicates"], 1),
        (HOST, HOST, Op.ERROR, STATUS["acks"] + 1, int(Op.READ)),
        (HOST, HOST, Op.ERROR, STATUS["frames"], int(Op.WRITE)),
    ]


def test_counters_wrap_at_counter_bits():
    """With ``counter_bits=8`` the status counters are 8 bits wide: 260 accepted frames
    and the frame carrying the READ read back as 261 mod 256."""
    dut = HostBridge(layout=LAYOUT, max_flits=4, buffer_flits=8, counter_bits=8)
    n = 260
    stream = b"".join(build_frame(k % 256) for k in range(n)) + build_frame(
        n % 256, flits_to_payload([_request(Op.READ, STATUS["frames"])], FB))
    _, replies = _bridge_frames(dut, stream, idle=200)
    assert [(Op(r.op), r.addr, r.data) for r in replies] == [
        (Op.REPLY, STATUS["frames"], (n + 1) % 256)]
    with pytest.raises(ValueError, match="counter_bits"):
        HostBridge(layout=LAYOUT, counter_bits=4)


def test_transmit_packs_flits_into_frames():
    """Flits offered on ``host_out`` come back in data frames of at most ``max_flits``,
    in order, with consecutive seqs, under random backpressure on ``tx``."""
    rng = _rng("tx-frames")
    dut = HostBridge(layout=LAYOUT, max_flits=3, buffer_flits=4)
    words = [rng.randrange(1 << FMT.width) for _ in range(60)]
    tx = bytearray()

    async def mesh(ctx):
        for w in words:
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.host_out.valid, 1)
            ctx.set(dut.host_out.payload.as_value(), w)
            await ctx.tick().until(dut.host_out.ready)
            ctx.set(dut.host_out.valid, 0)
        await ctx.tick().repeat(600)

    async def host(ctx):
        async for _, _, v, r, p in ctx.tick().sample(dut.tx.valid, dut.tx.ready, dut.tx.payload):
            if v and r:
                tx.append(p)
            ctx.set(dut.tx.ready, rng.random() < 0.7)

    _simulate(dut, mesh, processes=[host])
    frames = [parse_frame(f, FB) for f in FrameSplitter().feed(bytes(tx))]
    assert [s for s, _ in frames] == list(range(len(frames)))
    assert all(0 < len(p) <= 3 * FB for _, p in frames)
    assert [w for _, p in frames for w in payload_to_flits(p, FB, FMT.width)] == words
    assert max(len(p) for _, p in frames) == 3 * FB        # frames did carry several flits


# ---- the protocol fuzz on Verilator --------------------------------------------------

LOST = -1


class _Channel:
    """The host-to-bridge wire: corrupts, drops and inserts bytes, frame by frame."""

    def __init__(self, rng, stats):
        self.rng, self.stats = rng, stats
        self.events = deque()         # bytes, or LOST (a byte the UART reports lost)
        self.clean = False

    def write(self, wire: bytes):
        rng, out = self.rng, list(wire)
        self.stats["frames_sent"] += 1
        r = rng.random()
        if not self.clean and r < 0.12:
            k = rng.randrange(len(out))
            if r < 0.05:
                out[k] ^= 1 << rng.randrange(8)
                self.stats["corrupted"] += 1
            elif r < 0.08:
                del out[k]
                self.stats["dropped"] += 1
            elif r < 0.10:
                out[k] = LOST
                self.stats["lost"] += 1
            elif r < 0.11:
                out.insert(k, rng.randrange(256))
                self.stats["inserted"] += 1
            else:
                out[:0] = [0]                  # an empty frame (a spare delimiter)
        self.events.extend(out)


def _bridge_top():
    dut = HostBridge(layout=LAYOUT, max_flits=4, buffer_flits=8)
    return VerilatedTop(to_verilog(dut, "host_bridge"), "host_bridge")


def test_bridge_fuzz():
    """10^4 random frames, back to back in a window of 4, through a wire that corrupts,
    drops and inserts bytes, with lost ACKs, mesh backpressure and traffic from the mesh:
    every flit is delivered exactly once and in order, nothing corrupt enters the mesh,
    and the counters (read by NoC READs at the end) equal the golden model's."""
    rng = _rng("fuzz")
    top = _bridge_top()
    top.reset()
    stats = dict.fromkeys(("frames_sent", "corrupted", "dropped", "lost", "inserted"), 0)
    chan = _Channel(rng, stats)
    back = bytearray()

    class Transport:
        write = chan.write

        @staticmethod
        def read():
            data = bytes(back)
            back.clear()
            return data

    link = HostLink(Transport, flit_bytes=FB, width=FMT.width, max_flits=4,
                    clock=lambda: top.cycles, timeout=250, window=4)
    model = BridgeModel(flit_bytes=FB, width=FMT.width, max_flits=4, buffer_flits=8)
    frames = 10_000
    sent = []
    for _ in range(frames):
        flits = [_mesh_flit(rng) for _ in range(rng.randrange(5))]
        sent += flits
        link.send_frame(flits)
    injected = [rng.randrange(1 << FMT.width) for _ in range(3000)]
    inject = deque(injected)
    ports = {n: top._port(top._ports, n, "a port") for n in (
        "rx__payload", "rx__valid", "rx__ready", "rx_error", "tx__payload", "tx__valid",
        "tx__ready", "host_in__payload", "host_in__valid", "host_in__ready",
        "host_out__payload", "host_out__valid", "host_out__ready")}
    delivered = []
    state = {"p_mesh": 1.0, "p_tx": 0.8, "tx_flip": 0.01, "p_inject": 0.05, "offer": None}

    def poke(name, value):
        p = ports[name]
        if p.value != value:
            p.write(value)
            top._dirty = True

    def step():
        """One clock: the wire's next byte (or line error) in, the mesh and the host out."""
        ev = chan.events.popleft() if chan.events else None
        poke("rx_error", 1 if ev == LOST else 0)
        poke("rx__valid", 1 if ev is not None and ev != LOST else 0)
        if ev is not None and ev != LOST:
            poke("rx__payload", ev)
        poke("tx__ready", 1 if rng.random() < state["p_tx"] else 0)
        poke("host_in__ready", 1 if rng.random() < state["p_mesh"] else 0)
        if state["offer"] is None and inject and rng.random() < state["p_inject"]:
            state["offer"] = inject.popleft()
            poke("host_out__payload", state["offer"])
        poke("host_out__valid", 0 if state["offer"] is None else 1)
        top.eval()
        assert ev is None or ev == LOST or ports["rx__ready"].read()
        if ev == LOST:
            model.lost()
        elif ev is not None:
            model.byte(ev)
        if ports["host_in__valid"].read() and ports["host_in__ready"].read():
            delivered.append(ports["host_in__payload"].read())
            model.drained()
        if ports["tx__valid"].read() and ports["tx__ready"].read():
            b = ports["tx__payload"].read()
            flip = rng.random() < state["tx_flip"]
            back.append(b ^ (1 << rng.randrange(8)) if flip else b)
        if state["offer"] is not None and ports["host_out__ready"].read():
            state["offer"] = None
        top.tick()
        if top.cycles % 4 == 0 or not chan.events:
            link.poll()

    limit = 100 * frames
    while not (link.idle and not chan.events and not inject and state["offer"] is None):
        assert top.cycles < limit, (f"the link stopped making progress: {len(link._queue)} "
                                    f"frames queued, {model.counters}, {stats}")
        if top.cycles % 400 == 0:
            state["p_mesh"] = rng.choice([1.0, 0.7, 0.3, 0.05, 0.0])
        step()
    for _ in range(100):
        step()
    assert model.delivered == delivered, "hardware and golden model delivered differently"
    assert delivered == sent, "a flit was lost, duplicated, reordered or corrupted"
    cycles = top.cycles

    # The counters, read through the protocol as a host would, on a clean wire: one
    # frame of READs at a time, each against the model as it stood after that frame.
    chan.clean = True
    state.update(p_mesh=1.0, p_tx=1.0, tx_flip=0.0)
    got = list(link.received)
    hw, golden = {}, {}
    for k in range(0, len(STATUS_REGISTERS), 4):
        names = STATUS_REGISTERS[k:k + 4]
        before = len(link.received)
        link.send_frame([_request(Op.READ, STATUS[name]) for name in names])
        while len(link.received) < before + len(names) or not link.idle:
            assert top.cycles < limit + 20_000, "no answer to the status READs"
            step()
        model.drained(len(names), local=True)
        replies = [FMT.unpack(w) for w in link.received[before:]]
        assert [(Op(r.op), r.addr) for r in replies] == [(Op.REPLY, STATUS[n]) for n in names]
        hw.update({n: r.data for n, r in zip(names, replies)})
        golden.update({n: model.counters[n] for n in names if n in model.counters})
    print(f"fuzz: {stats['frames_sent']} frames sent ({frames} distinct, window 4), "
          f"{stats['corrupted']} with a corrupted byte, {stats['dropped']} with a dropped "
          f"byte, {stats['lost']} with a lost byte reported, {stats['inserted']} with an "
          f"inserted byte; {frames} delivered exactly once ({len(delivered)} flits), "
          f"0 undetected errors; {cycles} cycles")
    print(f"counters: {hw}")
    print(f"host: {link.resends} frames resent, {link.rx_bad} bad frames and "
          f"{link.rx_lost} lost data frames from the bridge")
    assert {n: hw[n] for n in golden} == golden
    # Every path of the protocol was taken, often.
    assert min(golden[n] for n in RX_COUNTERS if n != "frames") > 50, golden
    # Flits from the mesh: the host got them in order, minus those in frames lost on the way.
    it = iter(injected)
    assert all(any(g == w for w in it) for g in got), "flits from the mesh out of order"
    assert len(injected) - 4 * link.rx_lost <= len(got) < len(injected) and link.rx_lost > 0
    assert hw["flits_out"] >= len(injected) and hw["acks"] >= link.acks - 3


# ---- lint and synthesis --------------------------------------------------------------

@pytest.fixture(scope="module")
def uart_bridge_verilog(tmp_path_factory):
    text = to_verilog(UartBridge(layout=packet_layout(coord_bits=2, addr_bits=16,
                                                      data_bits=32), clk_hz=12_000_000),
                      "uart_bridge")
    path = tmp_path_factory.mktemp("bridge") / "uart_bridge.v"
    path.write_text(text)
    return path


def test_lint(uart_bridge_verilog):
    proc = lint_file(uart_bridge_verilog, "uart_bridge")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.synth
@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_synth(uart_bridge_verilog, family):
    res = synthesize(uart_bridge_verilog.read_text(), "uart_bridge", family)
    print(res.line())
    assert 200 < res.lut < 4000 and res.ff > 300 and res.ram >= 1
