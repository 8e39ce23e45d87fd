"""The host bridge: NoC flits carried in COBS frames over a byte stream (a UART).

Ports of ``HostBridge``: ``rx``/``tx`` (byte streams from and to the host),
``rx_error`` (a pulse: the line lost a byte, e.g. a UART framing error or
overrun), ``host_in`` (flits into the mesh, wired to the fabric's ``host_in``) and
``host_out`` (flits from the mesh, wired from the fabric's ``host_out``).
``UartBridge`` is the same with the UART in front: pins ``rx`` and ``tx``.

Frame (both directions), before COBS:
``len`` (1 byte: payload bytes) · ``seq`` (1 byte) · payload · CRC (2 bytes),
COBS-encoded and followed by one 0x00 delimiter. The payload is whole flits,
each flit as ``flit_bytes = ceil(width / 8)`` little-endian bytes (bits above
the layout's width are ignored on receive and zero on send). The CRC is
CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) of
``len · seq · payload``, sent most significant byte first, so the CRC of a whole
good frame is 0. ``len`` is a multiple of ``flit_bytes`` and at most
``max_flits * flit_bytes`` (``max_flits <= 249 // flit_bytes``, so a frame is at
most 253 bytes and COBS needs one code byte per zero, never a 0xFF block).

Host to bridge, go-back-N with cumulative ACKs. The bridge keeps ``expected``
(the next seq it will accept, 0 after reset). A frame is checked when its
delimiter arrives; every byte is taken (``rx.ready`` is always high):
- COBS malformed (a block cut short by the delimiter), a line error since the
  previous delimiter, ``len`` not allowed, or decoded length != ``len + 4``:
  ``length_errors`` += 1, dropped, not answered;
- else a CRC mismatch: ``crc_errors`` += 1, dropped, not answered;
- else the frame is good and answered by an ACK (below), and by ``d = (seq -
  expected) mod 256``: ``d = 0`` and all its flits fitted in the buffer:
  accepted (``frames`` += 1, ``expected`` += 1, its flits released to the mesh);
  ``d = 0`` but the buffer filled up: ``overruns`` += 1, dropped, so the host
  resends it; ``d >= 128``: an old frame resent (its ACK was lost):
  ``duplicates`` += 1, dropped; ``1 <= d < 128``: a frame after a missing one:
  ``seq_errors`` += 1, dropped.
The flits of a frame wait in a buffer of ``buffer_flits`` until the frame is
good, so a corrupt flit never reaches the mesh, and each good frame is delivered
exactly once. Empty delimiters (0x00 0x00) are ignored; after any error the
receiver starts afresh at the next 0x00. A host keeps at most 127 frames
unacknowledged, resends them from the oldest on a timeout or on an ACK that does
not advance its window, and starts a session by
sending an empty frame (``len = 0``) whose ACK tells it ``expected - 1``.

Bridge to host: an ACK is a frame with ``len = 0`` whose ``seq`` is the last
accepted seq (``expected - 1``); ACKs are cumulative, so only the newest pending
one is sent, ahead of data. A data frame carries up to ``max_flits`` flits from
``host_out`` and the bridge's own replies (all those queued when the frame starts;
``len > 0``), with ``seq`` counting data frames mod 256: the bridge does not
resend, a host detects a lost data frame by the gap in ``seq``. ``host_out`` is
held back (backpressure) while the queue of ``max_flits`` flits is full.

Status registers: a flit from the host whose destination is the host coordinate
(all ones) is the bridge's. ``READ`` of address ``2**addr_bits - 16 + k`` replies
``REPLY`` with register ``k`` of ``STATUS_REGISTERS`` (its value when the READ
leaves the buffer, truncated to the data width) to the request's source, with
the host coordinate as source; any other op or address is answered ``ERROR``
echoing the op in ``data``, as a tile does. Registers are ``counter_bits``-bit
counters (32 unless given; they wrap):
``frames``, ``crc_errors``, ``length_errors``, ``overruns``, ``duplicates``,
``seq_errors``, ``line_errors`` (``rx_error`` pulses), ``flits_in`` (flits into
the mesh), ``flits_out`` (flits sent to the host) and ``acks`` (ACK frames sent).
"""

from amaranth import *
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..noc.packet import Op, host_coord
from ..params import check_int
from ..tile import COUNTER_BITS, StatusRegisters, field_width, status_base
from .uart import DEFAULT_BAUD, UartRx, UartTx, divisor_for

MAX_FRAME = 253                  # len · seq · payload · CRC: never a 0xFF COBS block
MAX_PAYLOAD = MAX_FRAME - 4
CRC_POLY, CRC_INIT = 0x1021, 0xFFFF
SEQ_WINDOW = 128
STATUS_REGISTERS = ("frames", "crc_errors", "length_errors", "overruns", "duplicates",
                    "seq_errors", "line_errors", "flits_in", "flits_out", "acks")


def crc16_byte(crc, byte):
    """CRC-16/CCITT-FALSE of ``crc`` extended by ``byte``, MSB first (combinational)."""
    crc = Value.cast(crc)
    for i in reversed(range(8)):
        feedback = crc[15] ^ byte[i]
        crc = Cat(C(0, 1), crc[:15]) ^ Mux(feedback, C(CRC_POLY, 16), C(0, 16))
    return crc


def flit_bytes_of(layout) -> int:
    return (Shape.cast(layout).width + 7) // 8


class HostBridge(wiring.Component):
    def __init__(self, *, layout, max_flits: int | None = None,
                 buffer_flits: int | None = None, counter_bits: int = COUNTER_BITS):
        if not isinstance(layout, data.StructLayout) or "dst_x" not in dict(layout):
            raise TypeError(f"layout: {layout!r} is not a packet layout, must come from "
                            f"noc.packet.packet_layout")
        fb = flit_bytes_of(layout)
        top = MAX_PAYLOAD // fb
        if max_flits is None:
            max_flits = min(16, top)
        self._max_flits = check_int("max_flits", max_flits, 1, top)
        if buffer_flits is None:
            buffer_flits = 1 << (2 * max_flits - 1).bit_length()
        self._buffer_flits = check_int("buffer_flits", buffer_flits, max(2, max_flits), 4096,
                                       power_of_two=True)
        addr_bits = field_width(layout, "addr")
        if addr_bits < 4:
            raise ValueError(f"layout.addr: {addr_bits} bits is not allowed, must be >= 4 "
                             f"(16 addresses hold the bridge's status window)")
        self._counter_bits = check_int("counter_bits", counter_bits, 8, 64)
        self._layout = layout
        self._flit_bytes = fb
        self.status_registers = StatusRegisters(STATUS_REGISTERS, status_base(addr_bits))
        super().__init__({
            "rx": In(stream.Signature(8)),
            "rx_error": In(1),
            "tx": Out(stream.Signature(8)),
            "host_in": Out(stream.Signature(layout)),
            "host_out": In(stream.Signature(layout)),
        })

    @property
    def flit_bytes(self) -> int:
        return self._flit_bytes

    @property
    def max_flits(self) -> int:
        return self._max_flits

    @property
    def buffer_flits(self) -> int:
        return self._buffer_flits

    def elaborate(self, platform):
        m = Module()
        layout, fb = self._layout, self._flit_bytes
        width = Shape.cast(layout).width
        host = host_coord(layout)
        counters = {name: Signal(self._counter_bits, name=f"n_{name}")
                    for name in STATUS_REGISTERS}

        def count(name):
            m.d.sync += counters[name].eq(counters[name] + 1)

        # ---- receive: COBS decode, parse, CRC, speculative store -----------------
        depth = self._buffer_flits
        abits = (depth - 1).bit_length()
        m.submodules.buf = buf = memory.Memory(shape=width, depth=depth, init=[])
        bw = buf.write_port()
        br = buf.read_port(domain="sync", transparent_for=(bw,))
        wptr = Signal(abits + 1)      # next free slot (speculative, this frame's flits)
        cptr = Signal(abits + 1)      # end of the flits of accepted frames
        rptr = Signal(abits + 1)      # next flit to leave

        started = Signal()            # a byte or a line error since the last delimiter
        poison = Signal()
        first = Signal(init=1)        # the next byte is the frame's first COBS code
        left = Signal(8)              # data bytes still due in this COBS block
        ff_block = Signal()
        idx = Signal(9)               # decoded bytes so far (saturates)
        len_r = Signal(8)
        seq_r = Signal(8)
        len_ok = Signal()
        pay_left = Signal(8)
        in_flit = Signal(range(fb))
        shreg = Signal(8 * fb)
        crc = Signal(16, init=CRC_INIT)
        overflow = Signal()
        expected = Signal(8)
        ack_pending = Signal()
        ack_seq = Signal(8)

        byte = self.rx.payload
        take = Signal()
        m.d.comb += [self.rx.ready.eq(1), take.eq(self.rx.valid)]
        poison_now = poison | self.rx_error
        started_now = started | self.rx_error
        with m.If(self.rx_error):
            count("line_errors")
            m.d.sync += [poison.eq(1), started.eq(1)]

        dec_valid = Signal()
        dec_byte = Signal(8)
        with m.If(take & (byte != 0)):
            m.d.sync += [started.eq(1), first.eq(0)]
            with m.If(left == 0):                 # a code byte
                m.d.comb += [dec_valid.eq(~first & ~ff_block), dec_byte.eq(0)]
                m.d.sync += [left.eq(byte - 1), ff_block.eq(byte == 0xFF)]
            with m.Else():
                m.d.comb += [dec_valid.eq(1), dec_byte.eq(byte)]
                m.d.sync += left.eq(left - 1)

        full = (wptr - rptr)[:abits + 1] == depth
        with m.If(dec_valid):
            m.d.sync += [crc.eq(crc16_byte(crc, dec_byte)),
                         idx.eq(Mux(idx == 511, idx, idx + 1))]
            with m.If(idx == 0):
                allowed = [k * fb for k in range(self._max_flits + 1)]
                m.d.sync += [len_r.eq(dec_byte), pay_left.eq(dec_byte),
                             len_ok.eq(0), in_flit.eq(0)]
                with m.Switch(dec_byte), m.Case(*allowed):
                    m.d.sync += len_ok.eq(1)
            with m.Elif(idx == 1):
                m.d.sync += seq_r.eq(dec_byte)
            with m.Elif(pay_left != 0):
                flit = Cat(shreg[8:], dec_byte)
                m.d.sync += [shreg.eq(flit), pay_left.eq(pay_left - 1)]
                with m.If(in_flit == fb - 1):
                    m.d.sync += in_flit.eq(0)
                    with m.If(len_ok):
                        with m.If(full):
                            m.d.sync += overflow.eq(1)
                        with m.Else():
                            m.d.comb += [bw.en.eq(1), bw.addr.eq(wptr[:abits]),
                                         bw.data.eq(flit[:width])]
                            m.d.sync += wptr.eq(wptr + 1)
                with m.Else():
                    m.d.sync += in_flit.eq(in_flit + 1)

        delta = Signal(8)
        frame_end = Signal()
        frame_good = Signal()         # length and CRC right: answered by an ACK
        frame_accept = Signal()
        length_bad = poison_now | (left != 0) | ~len_ok | (idx != len_r + 4)
        m.d.comb += [
            delta.eq(seq_r - expected),
            frame_end.eq(take & (byte == 0) & started_now),
            frame_good.eq(frame_end & ~length_bad & (crc == 0)),
            frame_accept.eq(frame_good & (delta == 0) & ~overflow),
        ]
        cptr_next = Mux(frame_accept, wptr, cptr)
        with m.If(take & (byte == 0)):
            m.d.sync += [started.eq(0), poison.eq(0), first.eq(1), left.eq(0),
                         ff_block.eq(0), idx.eq(0), crc.eq(CRC_INIT), overflow.eq(0),
                         wptr.eq(cptr_next), cptr.eq(cptr_next)]
        with m.If(frame_end):
            with m.If(length_bad):
                count("length_errors")
            with m.Elif(crc != 0):
                count("crc_errors")
            with m.Else():
                m.d.sync += ack_seq.eq(Mux(frame_accept, seq_r, expected - 1))
                with m.If(delta == 0):
                    with m.If(overflow):
                        count("overruns")
                    with m.Else():
                        count("frames")
                        m.d.sync += expected.eq(expected + 1)
                with m.Elif(delta >= SEQ_WINDOW):
                    count("duplicates")
                with m.Else():
                    count("seq_errors")

        # ---- buffer head: to the mesh, or to the bridge's own registers ----------
        head_valid = Signal()
        head = data.View(layout, br.data)
        local = (head.dst_x == host) & (head.dst_y == host)
        reply = Signal(layout)
        reply_valid = Signal()
        reply_taken = Signal()
        local_take = Signal()
        pop = Signal()
        m.d.comb += [
            self.host_in.payload.eq(br.data),
            self.host_in.valid.eq(head_valid & ~local),
            local_take.eq(head_valid & local & (~reply_valid | reply_taken)),
            pop.eq((self.host_in.valid & self.host_in.ready) | local_take),
        ]
        rptr_next = (rptr + pop)[:abits + 1]
        m.d.comb += br.addr.eq(rptr_next[:abits])
        m.d.sync += [rptr.eq(rptr_next), head_valid.eq(rptr_next != cptr_next)]
        with m.If(self.host_in.valid & self.host_in.ready):
            count("flits_in")

        hit, value = self.status_registers.read(m, head.addr, counters)
        is_read = head.op == Op.READ
        with m.If(reply_taken):
            m.d.sync += reply_valid.eq(0)
        with m.If(local_take):
            ok = is_read & hit
            m.d.sync += [reply_valid.eq(1),
                         reply.dst_x.eq(head.src_x), reply.dst_y.eq(head.src_y),
                         reply.src_x.eq(host), reply.src_y.eq(host),
                         reply.addr.eq(head.addr),
                         reply.op.eq(Mux(ok, Op.REPLY, Op.ERROR)),
                         reply.data.eq(Mux(ok, value, head.op))]

        # ---- transmit: queue flits, frame, COBS-encode in place, send ------------
        mf = self._max_flits
        m.submodules.txq = txq = fifo.SyncFIFOBuffered(width=width, depth=max(2, mf))
        last_reply = Signal()
        pick_reply = reply_valid & (~self.host_out.valid | ~last_reply)
        m.d.comb += [
            txq.w_en.eq(pick_reply | self.host_out.valid),
            txq.w_data.eq(Mux(pick_reply, reply, self.host_out.payload)),
            reply_taken.eq(pick_reply & txq.w_rdy),
            self.host_out.ready.eq(~pick_reply & txq.w_rdy),
        ]
        with m.If(txq.w_en & txq.w_rdy):
            m.d.sync += last_reply.eq(pick_reply)

        m.submodules.txbuf = txbuf = memory.Memory(shape=8, depth=256, init=[])
        tw = txbuf.write_port()
        tr = txbuf.read_port(domain="sync", transparent_for=(tw,))
        t_len = Signal(8)
        t_seq = Signal(8)
        t_flits = Signal(range(mf + 1))
        t_byte = Signal(range(fb))
        t_crc = Signal(16)
        tx_seq = Signal(8)
        slot = Signal(9)              # where the open COBS block's code byte goes
        pos = Signal(9)               # next free byte of the encoded frame
        ridx = Signal(9)

        feed = Signal()
        feed_crc = Signal()           # the fed byte is covered by the CRC
        feed_byte = Signal(8)
        with m.If(feed):
            with m.If(feed_byte == 0):
                m.d.comb += [tw.en.eq(1), tw.addr.eq(slot), tw.data.eq(pos - slot)]
                m.d.sync += slot.eq(pos)
            with m.Else():
                m.d.comb += [tw.en.eq(1), tw.addr.eq(pos), tw.data.eq(feed_byte)]
            m.d.sync += pos.eq(pos + 1)
        with m.If(feed_crc):
            m.d.sync += t_crc.eq(crc16_byte(t_crc, feed_byte))

        level = Mux(txq.level > mf, mf, txq.level)
        word = Cat(txq.r_data, C(0, 8 * fb - width)).word_select(t_byte, 8)
        m.d.comb += tr.addr.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                start = [slot.eq(0), pos.eq(1), t_crc.eq(CRC_INIT)]
                with m.If(ack_pending):
                    m.d.sync += [*start, t_len.eq(0), t_seq.eq(ack_seq), t_flits.eq(0),
                                 ack_pending.eq(0)]
                    count("acks")
                    m.next = "LEN"
                with m.Elif(level != 0):
                    m.d.sync += [*start, t_len.eq(level * fb), t_seq.eq(tx_seq),
                                 t_flits.eq(level), t_byte.eq(0), tx_seq.eq(tx_seq + 1)]
                    m.next = "LEN"
            with m.State("LEN"):
                m.d.comb += [feed.eq(1), feed_crc.eq(1), feed_byte.eq(t_len)]
                m.next = "SEQ"
            with m.State("SEQ"):
                m.d.comb += [feed.eq(1), feed_crc.eq(1), feed_byte.eq(t_seq)]
                m.next = "PAYLOAD"
                with m.If(t_flits == 0):
                    m.next = "CRC_HI"
            with m.State("PAYLOAD"), m.If(txq.r_rdy):
                m.d.comb += [feed.eq(1), feed_crc.eq(1), feed_byte.eq(word)]
                m.d.sync += t_byte.eq(t_byte + 1)
                with m.If(t_byte == fb - 1):
                    m.d.comb += txq.r_en.eq(1)
                    m.d.sync += [t_byte.eq(0), t_flits.eq(t_flits - 1)]
                    count("flits_out")
                    with m.If(t_flits == 1):
                        m.next = "CRC_HI"
            with m.State("CRC_HI"):
                m.d.comb += [feed.eq(1), feed_byte.eq(t_crc[8:])]
                m.next = "CRC_LO"
            with m.State("CRC_LO"):
                m.d.comb += [feed.eq(1), feed_byte.eq(t_crc[:8])]
                m.next = "CLOSE"
            with m.State("CLOSE"):
                m.d.comb += [tw.en.eq(1), tw.addr.eq(slot), tw.data.eq(pos - slot)]
                m.d.sync += ridx.eq(0)
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(tr.data),
                             tr.addr.eq(ridx + self.tx.ready)]
                with m.If(self.tx.ready):
                    m.d.sync += ridx.eq(ridx + 1)
                    with m.If(ridx + 1 == pos):
                        m.next = "DELIMIT"
            with m.State("DELIMIT"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(0)]
                with m.If(self.tx.ready):
                    m.next = "IDLE"
        # The receiver's ACK request wins over the transmitter's clear in the same cycle.
        with m.If(frame_good):
            m.d.sync += ack_pending.eq(1)
        return m


class UartBridge(wiring.Component):
    """``HostBridge`` behind an 8N1 UART: pins ``rx`` (from the host) and ``tx``."""

    def __init__(self, *, layout, divisor: int | None = None, clk_hz: int | None = None,
                 baud: int = DEFAULT_BAUD, max_flits: int | None = None,
                 buffer_flits: int | None = None, counter_bits: int = COUNTER_BITS):
        if divisor is None:
            if clk_hz is None:
                raise ValueError("divisor: give divisor (clock Hz / baud) or clk_hz")
            divisor = divisor_for(clk_hz, baud)
        self._uart_rx = UartRx(divisor=divisor)
        self._uart_tx = UartTx(divisor=divisor)
        self._bridge = HostBridge(layout=layout, max_flits=max_flits,
                                  buffer_flits=buffer_flits, counter_bits=counter_bits)
        self.status_registers = self._bridge.status_registers
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "host_in": Out(stream.Signature(layout)),
            "host_out": In(stream.Signature(layout)),
        })

    @property
    def bridge(self) -> HostBridge:
        return self._bridge

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = self._uart_rx
        m.submodules.uart_tx = utx = self._uart_tx
        m.submodules.bridge = br = self._bridge
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     br.rx_error.eq(urx.framing_error | urx.overrun)]
        wiring.connect(m, urx.o, br.rx)
        wiring.connect(m, br.tx, utx.i)
        wiring.connect(m, br.host_in, wiring.flipped(self.host_in))
        wiring.connect(m, wiring.flipped(self.host_out), br.host_out)
        return m
