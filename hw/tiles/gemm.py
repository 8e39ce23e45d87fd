"""GEMM PE tile: two scratchpads, ``lanes`` signed MACs per cycle and dataflow firing.

Ports: ``i`` (flits from the NoC), ``o`` (flits to the NoC), ``dropped`` (its
router's drop counter, readable as a status register).

Geometry (``D`` = packet data bits, ``w`` = ``op_bits``, ``L`` = ``lanes``):
one WRITE flit is one scratchpad word of ``P = D // w`` operands (slot ``j`` at
bits ``[j*w, (j+1)*w)``, two's complement); ``D`` must be a multiple of ``L*w``
and a B word holds ``g = P // L`` consecutive K-rows of one lane block. An A row
of a job takes ``ceil(k / P)`` words, a B lane block ``ceil(k / g)`` words.

Address map: B scratchpad at ``[0, b_words)``, A at ``[b_words, b_words +
a_words)``, status registers at ``2**addr_bits - 16 + i`` (``STATUS_REGISTERS``).

Ops: ``WRITE`` into A or B stores the word and counts it in ``words`` (the
operand semaphore). ``READ`` of A, B or a status register replies ``REPLY``.
``EXEC`` carries a job tag in ``addr`` and a descriptor in ``data`` (fields
LSB first: ``k, rows, blocks, a_addr, b_addr, wait``; ``descriptor_layout``).
A valid descriptor joins a queue of ``jobs``; the head fires once ``words`` has
reached ``wait`` (compared modulo ``2**wait_bits``, wrap-safe), so a host may
post an EXEC before its operands and compute starts on the last word. A job
computes, for each row (outer) and lane block (inner), ``L`` exact sums over
``k`` and sends them as ``ceil(L / R)`` ``REPLY`` flits (``R = D // acc_bits``
results per flit) with ``addr = tag``, then one ``DONE`` (``data = rows *
blocks``), all to the EXEC's source. A bad descriptor or a full queue is
answered with ``ERROR`` (``data = op | reason << 8``, reason 1 bad, 2 full) and
dropped; every other request the tile cannot serve gets ``ERROR`` (``data =
op``). ``REPLY``/``DONE``/``ERROR`` arriving here are counted as errors.

Timing: one k step (``L`` MACs) per cycle while operands are present and the
result buffer has room; a READ of A or B borrows the read ports for one cycle.
Accumulators are ``acc_bits`` wide, derived so that ``max_k`` products of
extreme operands never overflow. Nothing is dropped: a reply that cannot leave
holds the input.
"""

from amaranth import *
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..noc.packet import Op
from ..tile import (COUNTER_BITS, Param, TileSignature, check_params, field_width,
                    layout_positions)

STATUS_REGISTERS = ("dropped", "errors", "flits_in", "flits_out", "words", "jobs_done",
                    "busy", "stall_operands", "stall_noc")
STATUS_WINDOW = 16
RESULT_DEPTH = 4

ERROR_BAD_DESCRIPTOR = 1
ERROR_QUEUE_FULL = 2


def status_base(addr_bits: int) -> int:
    return (1 << addr_bits) - STATUS_WINDOW


def acc_bits_for(op_bits: int, max_k: int) -> int:
    # The largest magnitude is max_k * (-2**(w-1))**2, a positive sum.
    return (max_k << (2 * op_bits - 2)).bit_length() + 1


def _ceil_div(a, b):
    return -(-a // b)


class GemmParams:
    """A GEMM tile's parameters, checked, with every quantity derived from them."""

    PARAMS = (
        Param("lanes", 8, lo=1, hi=32, doc="signed integer MACs per cycle"),
        Param("op_bits", 8, lo=4, hi=16, doc="operand width (two's complement)"),
        Param("max_k", 1024, lo=1, hi=65535, doc="largest K the accumulators are sized for"),
        Param("a_words", 512, lo=16, hi=65536, doc="A scratchpad depth in packet-data words"),
        Param("b_words", 512, lo=16, hi=65536, doc="B scratchpad depth in packet-data words"),
        Param("jobs", 4, lo=1, hi=64, doc="EXEC descriptor queue depth"),
    )

    def __init__(self, *, data_bits: int, addr_bits: int, **values):
        v = check_params(self.PARAMS, values, "gemm tile")
        lanes, op_bits, max_k = v["lanes"], v["op_bits"], v["max_k"]
        a_words, b_words, jobs = v["a_words"], v["b_words"], v["jobs"]
        if data_bits % (lanes * op_bits):
            raise ValueError(f"data_bits: {data_bits} is not allowed, must be a multiple of "
                             f"lanes*op_bits = {lanes * op_bits}")
        self.lanes, self.op_bits, self.max_k = lanes, op_bits, max_k
        self.a_words, self.b_words, self.jobs = a_words, b_words, jobs
        self.data_bits, self.addr_bits = data_bits, addr_bits
        self.operands_per_word = P = data_bits // op_bits
        self.rows_per_b_word = P // lanes
        self.acc_bits = acc_bits_for(op_bits, max_k)
        if self.acc_bits > data_bits:
            raise ValueError(f"data_bits: {data_bits} is not allowed, must be at least "
                             f"acc_bits = {self.acc_bits} (op_bits {op_bits}, max_k {max_k})")
        self.results_per_flit = data_bits // self.acc_bits
        self.flits_per_group = _ceil_div(lanes, self.results_per_flit)
        ab, bb = a_words.bit_length(), b_words.bit_length()
        self.wait_bits = (a_words + b_words).bit_length() + 1
        self.descriptor_layout = data.StructLayout({
            "k": max_k.bit_length(), "rows": ab, "blocks": bb,
            "a_addr": ab, "b_addr": bb, "wait": self.wait_bits})
        if self.descriptor_layout.size > data_bits:
            raise ValueError(f"data_bits: {data_bits} is not allowed, must be at least the "
                             f"{self.descriptor_layout.size}-bit EXEC descriptor")
        limit = status_base(addr_bits)
        if a_words + b_words > limit:
            raise ValueError(f"a_words: {a_words} is not allowed with b_words {b_words}, "
                             f"a_words + b_words must be at most {limit} with addr_bits "
                             f"{addr_bits} (16 addresses hold the status registers)")
        if _ceil_div(max_k, P) > a_words:
            raise ValueError(f"a_words: {a_words} is not allowed, must hold one A row of "
                             f"max_k: at least {_ceil_div(max_k, P)}")
        if _ceil_div(max_k, self.rows_per_b_word) > b_words:
            raise ValueError(f"b_words: {b_words} is not allowed, must hold one B block of "
                             f"max_k: at least {_ceil_div(max_k, self.rows_per_b_word)}")

    def manifest(self) -> dict:
        """What a host needs to drive this tile, as the tile derives it."""
        base = status_base(self.addr_bits)
        return {
            "acc_bits": self.acc_bits,
            "operands_per_word": self.operands_per_word,
            "rows_per_b_word": self.rows_per_b_word,
            "results_per_flit": self.results_per_flit,
            "flits_per_group": self.flits_per_group,
            "b_base": 0,
            "a_base": self.b_words,
            "descriptor": layout_positions(self.descriptor_layout),
            "status_registers": {name: base + k for k, name in enumerate(STATUS_REGISTERS)},
        }


class GemmTile(wiring.Component):
    Params = GemmParams

    def __init__(self, *, layout, x: int, y: int, counter_bits: int = COUNTER_BITS, **params):
        self.params = GemmParams(data_bits=field_width(layout, "data"),
                                 addr_bits=field_width(layout, "addr"), **params)
        self._layout = layout
        self._x, self._y = x, y
        self._counter_bits = counter_bits
        super().__init__(TileSignature(layout, counter_bits))

    def elaborate(self, platform):
        m = Module()
        layout, p = self._layout, self.params
        L, w, P = p.lanes, p.op_bits, p.operands_per_word
        g = p.rows_per_b_word
        acc_w, R, F = p.acc_bits, p.results_per_flit, p.flits_per_group
        D, cb = p.data_bits, self._counter_bits
        a_words, b_words = p.a_words, p.b_words
        coord = Shape.cast(layout["dst_x"].shape).width
        addr_w = p.addr_bits
        desc_layout = p.descriptor_layout

        m.submodules.a_mem = a_mem = memory.Memory(shape=D, depth=a_words, init=[])
        m.submodules.b_mem = b_mem = memory.Memory(shape=D, depth=b_words, init=[])
        a_wr, b_wr = a_mem.write_port(), b_mem.write_port()
        a_rd, b_rd = a_mem.read_port(), b_mem.read_port()

        counters = {name: Signal(cb, name=name) for name in STATUS_REGISTERS[1:]}
        errors, words = counters["errors"], counters["words"]

        # ---- Front end: one request per cycle unless a reply is waiting to leave.
        req = self.i.payload
        pending = Signal()        # `reply` is complete and waits for the output
        capture = Signal()        # a scratchpad READ: the data arrives next cycle
        capture_a = Signal()
        # Outgoing messages before the output register adds this tile as the source.
        message = data.StructLayout({name: layout[name].shape
                                     for name in ("dst_x", "dst_y", "op", "addr", "data")})
        reply = Signal(message)
        take = Signal()
        steal = Signal()          # this cycle's read ports serve a READ, not the engine
        m.d.comb += [
            self.i.ready.eq(~pending & ~capture),
            take.eq(self.i.valid & self.i.ready),
        ]

        in_b = req.addr < b_words
        in_a = (req.addr >= b_words) & (req.addr < b_words + a_words)
        a_index = (req.addr - b_words)[:max(1, (a_words - 1).bit_length())]
        base = status_base(addr_w)
        is_status = (req.addr >= base) & (req.addr < base + len(STATUS_REGISTERS))

        # Descriptor checks, done as the EXEC arrives so a bad one never reaches the engine.
        desc = data.View(desc_layout, req.data[:desc_layout.size])
        a_stride_in = (desc.k + (P - 1)) // P
        b_stride_in = (desc.k + (g - 1)) // g
        desc_ok = ((desc.k >= 1) & (desc.k <= p.max_k) & (desc.rows >= 1) &
                   (desc.blocks >= 1) &
                   (desc.a_addr + desc.rows * a_stride_in <= a_words) &
                   (desc.b_addr + desc.blocks * b_stride_in <= b_words))

        job_layout = data.StructLayout({"desc": desc_layout, "tag": addr_w,
                                        "dst_x": coord, "dst_y": coord})
        m.submodules.queue = queue = fifo.SyncFIFO(width=job_layout.size, depth=p.jobs)

        answer, is_error = Signal(), Signal()
        answer_data = Signal(D)
        m.d.comb += [
            a_wr.addr.eq(a_index), a_wr.data.eq(req.data),
            b_wr.addr.eq(req.addr), b_wr.data.eq(req.data),
        ]
        with m.If(take):
            m.d.sync += counters["flits_in"].eq(counters["flits_in"] + 1)
            with m.Switch(req.op):
                with m.Case(Op.WRITE):
                    with m.If(in_b):
                        m.d.comb += b_wr.en.eq(1)
                    with m.Elif(in_a):
                        m.d.comb += a_wr.en.eq(1)
                    with m.Else():
                        m.d.comb += [answer.eq(1), is_error.eq(1),
                                     answer_data.eq(req.op.as_value())]
                    with m.If(in_a | in_b):
                        m.d.sync += words.eq(words + 1)
                with m.Case(Op.READ):
                    with m.If(in_a | in_b):
                        m.d.comb += steal.eq(1)
                        m.d.sync += [capture.eq(1), capture_a.eq(in_a)]
                    with m.Elif(is_status):
                        m.d.comb += answer.eq(1)
                        with m.Switch(req.addr - base):
                            values = (self.dropped, *counters.values())
                            for k, value in enumerate(values):
                                with m.Case(k):
                                    m.d.comb += answer_data.eq(value)
                    with m.Else():
                        m.d.comb += [answer.eq(1), is_error.eq(1),
                                     answer_data.eq(req.op.as_value())]
                with m.Case(Op.EXEC):
                    with m.If(desc_ok & queue.w_rdy):
                        m.d.comb += [
                            queue.w_en.eq(1),
                            queue.w_data.eq(Cat(req.data[:desc_layout.size], req.addr,
                                                req.src_x, req.src_y)),
                        ]
                    with m.Else():
                        reason = Mux(desc_ok, ERROR_QUEUE_FULL, ERROR_BAD_DESCRIPTOR)
                        m.d.comb += [answer.eq(1), is_error.eq(1),
                                     answer_data.eq(Cat(req.op.as_value(), C(0, 5), reason))]
                with m.Case(Op.REPLY, Op.DONE, Op.ERROR):
                    m.d.sync += errors.eq(errors + 1)
                with m.Default():
                    m.d.comb += [answer.eq(1), is_error.eq(1),
                                 answer_data.eq(req.op.as_value())]
            with m.If(answer | steal):
                m.d.sync += [
                    reply.dst_x.eq(req.src_x), reply.dst_y.eq(req.src_y),
                    reply.addr.eq(req.addr),
                    reply.op.eq(Mux(is_error, Op.ERROR, Op.REPLY)),
                    reply.data.eq(answer_data),
                ]
            with m.If(answer):
                m.d.sync += pending.eq(1)
            with m.If(is_error):
                m.d.sync += errors.eq(errors + 1)
        with m.If(capture):
            m.d.sync += [capture.eq(0), pending.eq(1),
                         reply.data.eq(Mux(capture_a, a_rd.data, b_rd.data))]

        # ---- Engine: walks rows x blocks x k, one k step per cycle.
        head = data.View(job_layout, queue.r_data)
        fired = Signal()
        m.d.comb += fired.eq(~(words[:p.wait_bits] - head.desc.wait)[p.wait_bits - 1])

        job = Signal(job_layout)
        a_stride = Signal(range(a_words + 1))
        b_stride = Signal(range(b_words + 1))
        kk = Signal(range(p.max_k))
        a_word = Signal(range(a_words))
        a_slot = Signal(range(max(2, P)))
        b_word = Signal(range(b_words))
        b_slot = Signal(range(max(2, g)))
        row = Signal.like(job.desc.rows)
        blk = Signal.like(job.desc.blocks)
        a_base = Signal(range(a_words + 1))
        b_base = Signal(range(b_words + 1))
        reserved = Signal(range(RESULT_DEPTH + 1))   # result entries queued or in flight
        released = Signal()                           # the serializer freed an entry

        # Pipeline tokens: stage 1 (scratchpad data out), stage 2 (products). Each
        # carries its job's reply address so the next job may start behind it.
        meta_layout = data.StructLayout({"tag": addr_w, "dst_x": coord, "dst_y": coord,
                                         "groups": len(job.desc.rows) + len(job.desc.blocks)})
        s1 = Signal(data.StructLayout({"valid": 1, "first": 1, "last": 1, "done": 1,
                                       "a_slot": range(max(2, P)), "b_slot": range(max(2, g)),
                                       "meta": meta_layout}))
        s2 = Signal(data.StructLayout({"valid": 1, "first": 1, "last": 1, "done": 1,
                                       "meta": meta_layout}))
        meta = Signal(meta_layout)
        m.d.comb += [meta.tag.eq(job.tag), meta.dst_x.eq(job.dst_x), meta.dst_y.eq(job.dst_y),
                     meta.groups.eq(job.desc.rows * job.desc.blocks)]
        m.d.sync += [s1.valid.eq(0), s1.done.eq(0), s1.meta.eq(meta)]

        room = reserved < RESULT_DEPTH
        issue = Signal()
        reserve = Signal()
        m.d.comb += [
            a_rd.addr.eq(Mux(steal, a_index, a_base + a_word)),
            b_rd.addr.eq(Mux(steal, req.addr, b_base + b_word)),
        ]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(queue.r_rdy & fired):
                    d = head.desc
                    m.d.comb += queue.r_en.eq(1)
                    m.d.sync += [
                        job.eq(head),
                        a_stride.eq((d.k + (P - 1)) // P),
                        b_stride.eq((d.k + (g - 1)) // g),
                        a_base.eq(d.a_addr), b_base.eq(d.b_addr),
                        kk.eq(0), a_word.eq(0), a_slot.eq(0), b_word.eq(0), b_slot.eq(0),
                        row.eq(0), blk.eq(0),
                    ]
                    m.next = "RUN"
                with m.Elif(queue.r_rdy):
                    m.d.sync += counters["stall_operands"].eq(counters["stall_operands"] + 1)
            with m.State("RUN"):
                first = kk == 0
                last = kk == job.desc.k - 1
                with m.If(~steal & (~first | room)):
                    m.d.comb += [issue.eq(1), reserve.eq(first)]
                    m.d.sync += [
                        s1.valid.eq(1), s1.first.eq(first), s1.last.eq(last),
                        s1.a_slot.eq(a_slot), s1.b_slot.eq(b_slot),
                    ]
                    with m.If(last):
                        m.d.sync += [kk.eq(0), a_word.eq(0), a_slot.eq(0),
                                     b_word.eq(0), b_slot.eq(0)]
                        with m.If(blk == job.desc.blocks - 1):
                            m.d.sync += [blk.eq(0), b_base.eq(job.desc.b_addr),
                                         row.eq(row + 1), a_base.eq(a_base + a_stride)]
                            with m.If(row == job.desc.rows - 1):
                                m.next = "DONE"
                        with m.Else():
                            m.d.sync += [blk.eq(blk + 1), b_base.eq(b_base + b_stride)]
                    with m.Else():
                        m.d.sync += kk.eq(kk + 1)
                        with m.If(a_slot == P - 1):
                            m.d.sync += [a_slot.eq(0), a_word.eq(a_word + 1)]
                        with m.Else():
                            m.d.sync += a_slot.eq(a_slot + 1)
                        with m.If(b_slot == g - 1):
                            m.d.sync += [b_slot.eq(0), b_word.eq(b_word + 1)]
                        with m.Else():
                            m.d.sync += b_slot.eq(b_slot + 1)
                with m.Elif(first & ~room):
                    m.d.sync += counters["stall_noc"].eq(counters["stall_noc"] + 1)
            with m.State("DONE"):
                with m.If(room):
                    m.d.comb += reserve.eq(1)
                    m.d.sync += [s1.valid.eq(1), s1.done.eq(1), s1.first.eq(0), s1.last.eq(0)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += counters["stall_noc"].eq(counters["stall_noc"] + 1)

        with m.If(issue):
            m.d.sync += counters["busy"].eq(counters["busy"] + 1)

        # Stage 1 -> 2: pick the A operand and the B lane block, multiply.
        a_op = a_rd.data.word_select(s1.a_slot, w).as_signed()
        b_chunk = b_rd.data.word_select(s1.b_slot, L * w)
        products = [Signal(signed(2 * w), name=f"product{l}") for l in range(L)]
        m.d.sync += [products[l].eq(a_op * b_chunk.word_select(l, w).as_signed())
                     for l in range(L)]
        m.d.sync += s2.eq(Cat(s1.valid, s1.first, s1.last, s1.done, s1.meta))

        # Stage 2: accumulate; the last k step of a group enters the result buffer.
        acc = [Signal(signed(acc_w), name=f"acc{l}") for l in range(L)]
        acc_next = [Mux(s2.first, 0, acc[l]) + products[l] for l in range(L)]
        entry_layout = data.StructLayout({"done": 1, "tag": addr_w, "dst_x": coord,
                                          "dst_y": coord, "data": L * acc_w})
        m.submodules.results = results = fifo.SyncFIFO(width=entry_layout.size,
                                                       depth=RESULT_DEPTH)
        entry = Signal(entry_layout)
        m.d.comb += [
            entry.tag.eq(s2.meta.tag), entry.dst_x.eq(s2.meta.dst_x),
            entry.dst_y.eq(s2.meta.dst_y), results.w_data.eq(entry),
        ]
        with m.If(s2.valid & ~s2.done):
            m.d.sync += [acc[l].eq(acc_next[l]) for l in range(L)]
        with m.If(s2.valid & s2.done):
            m.d.comb += [results.w_en.eq(1), entry.done.eq(1),
                         entry.data.eq(s2.meta.groups)]
            m.d.sync += counters["jobs_done"].eq(counters["jobs_done"] + 1)
        with m.Elif(s2.valid & s2.last):
            m.d.comb += [results.w_en.eq(1), entry.data.eq(Cat(*(a[:acc_w] for a in acc_next)))]

        # ---- Serializer: a result entry becomes F REPLY flits, a DONE entry one flit.
        out_entry = data.View(entry_layout, results.r_data)
        flit = Signal(range(max(2, F)))
        res_flit = Signal(message)
        res_last = Signal()
        m.d.comb += [
            res_flit.dst_x.eq(out_entry.dst_x), res_flit.dst_y.eq(out_entry.dst_y),
            res_flit.addr.eq(out_entry.tag),
        ]
        with m.If(out_entry.done):
            m.d.comb += [res_flit.op.eq(Op.DONE), res_flit.data.eq(out_entry.data),
                         res_last.eq(1)]
        with m.Else():
            m.d.comb += [res_flit.op.eq(Op.REPLY), res_last.eq(flit == F - 1)]
            with m.Switch(flit):
                for f in range(F):
                    lo = f * R * acc_w
                    hi = min(L, (f + 1) * R) * acc_w
                    with m.Case(f):
                        m.d.comb += res_flit.data.eq(out_entry.data[lo:hi])

        # ---- Output register, shared by replies and results in turn.
        out_valid = Signal()
        out = Signal(message)
        last_reply = Signal()
        m.d.comb += [self.o.valid.eq(out_valid)]
        m.d.comb += [getattr(self.o.payload, name).eq(getattr(out, name))
                     for name in ("dst_x", "dst_y", "op", "addr", "data")]
        load = ~out_valid | self.o.ready
        m.d.comb += [self.o.payload.src_x.eq(self._x), self.o.payload.src_y.eq(self._y)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [out_valid.eq(0),
                         counters["flits_out"].eq(counters["flits_out"] + 1)]
        use_reply = pending & (~results.r_rdy | ~last_reply)
        with m.If(load):
            with m.If(use_reply):
                m.d.sync += [out.eq(reply), out_valid.eq(1), pending.eq(0), last_reply.eq(1)]
            with m.Elif(results.r_rdy):
                m.d.sync += [out.eq(res_flit), out_valid.eq(1), last_reply.eq(0)]
                with m.If(res_last):
                    m.d.comb += [results.r_en.eq(1), released.eq(1)]
                    m.d.sync += flit.eq(0)
                with m.Else():
                    m.d.sync += flit.eq(flit + 1)

        # A result entry is reserved when its group (or DONE) is issued and released
        # when its last flit leaves, so the pipeline behind the issue never stops.
        m.d.sync += reserved.eq(reserved + reserve - released)
        return m
