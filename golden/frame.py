"""The host bridge's framing and protocol, in plain Python (DESIGN.md "Boards").

A frame is ``COBS(len · seq · payload · CRC-16) · 0x00``: ``len`` (1 byte) counts
payload bytes, ``seq`` is 1 byte, the payload is whole flits of ``flit_bytes =
ceil(width / 8)`` little-endian bytes each, and the CRC is CRC-16/CCITT-FALSE
(poly 0x1021, init 0xFFFF, unreflected, no final xor) of ``len · seq · payload``,
most significant byte first. A frame is at most ``MAX_FRAME`` bytes before COBS.
``len = 0`` from the bridge is an ACK carrying the last accepted seq.

Here:
- ``crc16``, ``cobs_encode``, ``cobs_decode``, ``build_frame``, ``parse_frame``,
  ``flits_to_payload``, ``payload_to_flits``: the format;
- ``FrameSplitter``: bytes in, delimited frames out (resynchronising at 0x00);
- ``BridgeModel``: the bridge's receive side from its protocol (hw/bridge/bridge.py
  docstring): bytes, line errors and buffer drains in; flits delivered, counters
  out;
- ``HostLink``: the host's end of the protocol over any byte transport with
  ``write(bytes)`` and ``read() -> bytes`` (what has arrived, maybe nothing):
  session start, sequence numbers, a window of unacknowledged frames, go-back-N
  resend on timeout, exactly-once delivery; and the bridge's data frames back,
  with lost ones detected by their ``seq``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MAX_FRAME = 253
MAX_PAYLOAD = MAX_FRAME - 4
SEQ_WINDOW = 128
STATUS_REGISTERS = ("frames", "crc_errors", "length_errors", "overruns", "duplicates",
                    "seq_errors", "line_errors", "flits_in", "flits_out", "acks")
RX_COUNTERS = STATUS_REGISTERS[:8]


def _crc_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``crc16(b"123456789") == 0x29B1``)."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ b]
    return crc


def cobs_encode(data: bytes) -> bytes:
    """COBS of ``data``, without the delimiter."""
    out = bytearray()
    block = bytearray()
    full = False                  # the last block was a full one, which implies no zero
    for b in data:
        full = False
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(0xFF)
                out += block
                block.clear()
                full = True
    if not full:
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """The bytes ``data`` (one frame, no delimiter) encodes; ``ValueError`` if malformed."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ValueError("cobs: 0x00 inside a frame")
        end = i + code
        if end > n:
            raise ValueError(f"cobs: block of {code - 1} bytes cut short after {n - i - 1}")
        block = data[i + 1:end]
        if 0 in block:
            raise ValueError("cobs: 0x00 inside a frame")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


class FrameError(ValueError):
    """A frame the bridge would drop: ``kind`` is ``"length"`` or ``"crc"``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def build_frame(seq: int, payload: bytes = b"") -> bytes:
    """The wire bytes of one frame, delimiter included."""
    if not 0 <= seq < 256:
        raise ValueError(f"seq: {seq} is not allowed, must be 0..255")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload: {len(payload)} bytes is not allowed, must be "
                         f"0..{MAX_PAYLOAD}")
    raw = bytes([len(payload), seq]) + bytes(payload)
    c = crc16(raw)
    return cobs_encode(raw + bytes([c >> 8, c & 0xFF])) + b"\x00"


def parse_frame(encoded: bytes, flit_bytes: int = 1, max_payload: int = MAX_PAYLOAD):
    """``(seq, payload)`` of one frame (COBS bytes, no delimiter), or ``FrameError``
    with the bridge's verdict: ``"length"`` (malformed COBS, ``len`` not a multiple of
    ``flit_bytes`` or above ``max_payload``, size != ``len + 4``) or ``"crc"``."""
    try:
        raw = cobs_decode(encoded)
    except ValueError as e:
        raise FrameError("length", str(e)) from None
    if not raw:
        raise FrameError("length", "frame: empty")
    n = raw[0]
    if n % flit_bytes or n > max_payload:
        raise FrameError("length", f"frame: len {n} is not a multiple of {flit_bytes} "
                                   f"up to {max_payload}")
    if len(raw) != n + 4:
        raise FrameError("length", f"frame: {len(raw)} bytes for len {n}, must be {n + 4}")
    if crc16(raw) != 0:
        raise FrameError("crc", "frame: CRC mismatch")
    return raw[1], raw[2:2 + n]


def flits_to_payload(flits, flit_bytes: int) -> bytes:
    return b"".join(int(f).to_bytes(flit_bytes, "little") for f in flits)


def payload_to_flits(payload: bytes, flit_bytes: int, width: int) -> list:
    mask = (1 << width) - 1
    return [int.from_bytes(payload[i:i + flit_bytes], "little") & mask
            for i in range(0, len(payload), flit_bytes)]


class FrameSplitter:
    """Bytes in, the COBS bytes of each delimited frame out; empty frames skipped."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list:
        frames = []
        for b in data:
            if b == 0:
                if self._buf:
                    frames.append(bytes(self._buf))
                    self._buf.clear()
            else:
                self._buf.append(b)
        return frames


@dataclass
class BridgeModel:
    """The bridge's receive side, from its protocol.

    Call, in the order they happen: ``byte(b)`` for every byte taken, ``lost()`` for a
    line error (a byte the line lost), ``drained(n)`` when ``n`` flits have left the
    buffer. A flit is stored when its last byte arrives if the buffer (flits of
    accepted frames not yet drained, plus this frame's) has room, else the frame is an
    overrun. ``delivered`` lists the flits of accepted frames, in order; ``counters``
    the receive-side status registers.
    """
    flit_bytes: int
    width: int
    max_flits: int
    buffer_flits: int
    expected: int = 0
    delivered: list = field(default_factory=list)
    acks: list = field(default_factory=list)

    def __post_init__(self):
        self.counters = dict.fromkeys(RX_COUNTERS, 0)
        self._held = 0              # flits of accepted frames still in the buffer
        self._mask = (1 << self.width) - 1
        self._reset_frame()

    def _reset_frame(self):
        self._started = self._poison = False
        self._first, self._left, self._ff = True, 0, False
        self._raw = bytearray()
        self._flits = []
        self._overflow = False

    def lost(self):
        self.counters["line_errors"] += 1
        self._started = self._poison = True

    def drained(self, n: int = 1, local: bool = False):
        """``n`` flits left the buffer: into the mesh, or to the bridge's registers."""
        self._held -= n
        if not local:
            self.counters["flits_in"] += n
        if self._held < 0:
            raise AssertionError("drained more flits than were accepted")

    def _decoded(self, b: int):
        raw = self._raw
        raw.append(b)
        k = len(raw) - 1
        if k < 2 or k >= 2 + raw[0]:
            return
        fb = self.flit_bytes
        if (k - 1) % fb or raw[0] % fb or raw[0] > self.max_flits * fb:
            return
        if self._held + len(self._flits) >= self.buffer_flits:
            self._overflow = True
        else:
            word = int.from_bytes(raw[k + 1 - fb:k + 1], "little") & self._mask
            self._flits.append(word)

    def byte(self, b: int):
        if b != 0:
            self._started = True
            if self._left == 0:
                if not self._first and not self._ff:
                    self._decoded(0)
                self._left, self._ff = b - 1, b == 0xFF
            else:
                self._decoded(b)
                self._left -= 1
            self._first = False
            return
        if self._started:
            self._end()
        self._reset_frame()

    def _end(self):
        raw = self._raw
        n = raw[0] if raw else 0
        c = self.counters
        if (self._poison or self._left or not raw or n % self.flit_bytes
                or n > self.max_flits * self.flit_bytes or len(raw) != n + 4):
            c["length_errors"] += 1
        elif crc16(bytes(raw)) != 0:
            c["crc_errors"] += 1
        else:
            d = (raw[1] - self.expected) % 256
            if d == 0 and not self._overflow:
                c["frames"] += 1
                self.expected = (self.expected + 1) % 256
                self.delivered += self._flits
                self._held += len(self._flits)
            elif d == 0:
                c["overruns"] += 1
            elif d >= SEQ_WINDOW:
                c["duplicates"] += 1
            else:
                c["seq_errors"] += 1
            self.acks.append((self.expected - 1) % 256)


class HostLink:
    """The host's end of the bridge protocol over a byte transport.

    ``send(flits)`` queues flits (packed ``width``-bit words), ``max_flits`` per frame;
    ``poll()`` moves bytes both ways: it reads what has arrived, takes ACKs, keeps up
    to ``window`` frames unacknowledged and resends all of them, oldest first, when
    ``timeout`` (in units of ``clock()``) passes without an ACK that advances the
    window; an ACK that does not advance the window (the bridge dropped a frame) makes
    it resend at once, once until the window advances. ``received`` collects the flits of the bridge's good data frames;
    ``rx_lost`` counts data frames missing by ``seq``, ``rx_bad`` frames dropped for
    length or CRC. The session starts with an empty frame, resent until it is
    acknowledged, whose ACK tells the next seq the bridge expects.
    """

    def __init__(self, transport, *, flit_bytes: int, width: int, max_flits: int,
                 clock, timeout: float, window: int = 8):
        if not 1 <= window < SEQ_WINDOW:
            raise ValueError(f"window: {window} is not allowed, must be 1..{SEQ_WINDOW - 1}")
        if not 1 <= max_flits <= MAX_PAYLOAD // flit_bytes:
            raise ValueError(f"max_flits: {max_flits} is not allowed, must be "
                             f"1..{MAX_PAYLOAD // flit_bytes}")
        self.transport = transport
        self.flit_bytes, self.width, self.max_flits = flit_bytes, width, max_flits
        self.clock, self.timeout, self.window = clock, timeout, window
        self._queue = deque()            # payloads not yet given a seq
        self._unacked = deque()          # (seq, wire bytes)
        self._next_seq = 0
        self._synced = False
        self._resent = False
        self._sync_frame = build_frame(0)
        self._last_progress = None
        self._splitter = FrameSplitter()
        self._rx_seq = None
        self.received = []
        self.rx_lost = 0
        self.rx_bad = 0
        self.acks = 0
        self.frames_sent = 0
        self.resends = 0

    @property
    def idle(self) -> bool:
        """Everything sent has been acknowledged."""
        return self._synced and not self._queue and not self._unacked

    def send(self, flits) -> None:
        """Queue ``flits`` in frames of ``max_flits``."""
        flits = list(flits)
        for i in range(0, len(flits), self.max_flits):
            self.send_frame(flits[i:i + self.max_flits])

    def send_frame(self, flits) -> None:
        """Queue one frame of ``flits`` (at most ``max_flits``; none makes an empty frame)."""
        flits = list(flits)
        if len(flits) > self.max_flits:
            raise ValueError(f"flits: {len(flits)} is not allowed in one frame, must be "
                             f"0..{self.max_flits}")
        self._queue.append(flits_to_payload(flits, self.flit_bytes))

    def _write(self, wire: bytes):
        self.transport.write(wire)
        self.frames_sent += 1

    def _ack(self, seq: int):
        self.acks += 1
        if not self._synced:
            self._next_seq = (seq + 1) % 256
            self._synced = True
            self._last_progress = self.clock()
            return
        advanced = False
        while self._unacked and (seq - self._unacked[0][0]) % 256 < SEQ_WINDOW:
            self._unacked.popleft()
            advanced = True
        if advanced:
            self._last_progress = self.clock()
            self._resent = False
        elif self._unacked and not self._resent:
            # An ACK that does not advance answers a frame the bridge dropped (overrun,
            # out of order, duplicate): resend now, once until the window moves again.
            self._resend()

    def _resend(self):
        for _, wire in self._unacked:
            self._write(wire)
            self.resends += 1
        self._last_progress = self.clock()
        self._resent = True

    def poll(self) -> None:
        for encoded in self._splitter.feed(self.transport.read()):
            try:
                seq, payload = parse_frame(encoded, self.flit_bytes)
            except FrameError:
                self.rx_bad += 1
                continue
            if not payload:
                self._ack(seq)
                continue
            if self._rx_seq is not None:
                self.rx_lost += (seq - self._rx_seq) % 256
            self._rx_seq = (seq + 1) % 256
            self.received += payload_to_flits(payload, self.flit_bytes, self.width)
        now = self.clock()
        if not self._synced:
            if self._last_progress is None or now - self._last_progress > self.timeout:
                self._write(self._sync_frame)
                self._last_progress = now
            return
        if self._unacked and now - self._last_progress > self.timeout:
            self._resend()
        while self._queue and len(self._unacked) < self.window:
            if not self._unacked:
                self._last_progress = now
            seq = self._next_seq
            wire = build_frame(seq, self._queue.popleft())
            self._unacked.append((seq, wire))
            self._next_seq = (seq + 1) % 256
            self._write(wire)
