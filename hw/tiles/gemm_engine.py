"""The GEMM PE's compute side: the operand scratchpads and the MAC engine.

Nothing here knows about packets. ``GemmScratchpad`` holds the A and B words;
``GemmEngine`` takes job descriptors, sweeps their k panels through the
scratchpad's read ports and emits one result entry per (row, lane block) group
and one DONE entry per job. Inside it, ``GemmSequencer`` walks the loops and
issues one fetch per k step, and ``GemmMac`` multiplies and accumulates what
the fetches return, with result-FIFO credits between them. A job's reply
address travels with it as an opaque ``reply`` field (its layout chosen by the
tile) and comes back on each of its entries. The word geometry (``P``, ``g``,
strides, and for an N:M tile the metadata words and ``ks`` steps per k-panel) is
that of ``tiles.gemm``, whose ``GemmParams`` every component takes. An N:M tile
adds a third memory, the metadata, fetched with B; its MAC lanes each select
their A operand by their own position.
"""

from amaranth import *
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

RESULT_DEPTH = 4
SEQUENCER_COUNTERS = ("busy", "stall_operands", "stall_noc")
ENGINE_COUNTERS = ("jobs_done", *SEQUENCER_COUNTERS)


def scratchpad_layouts(p):
    """(write, read, fetch, operands) payload layouts of ``GemmScratchpad``; an N:M
    tile's have an ``m`` (metadata) region flag, fetch address and word besides."""
    addr = range(max(p.a_words, p.b_words))
    region = {"a": 1, "m": 1} if p.sparse else {"a": 1}
    read = data.StructLayout({**region, "addr": addr})
    write = data.StructLayout({**region, "addr": addr, "data": p.data_bits})
    meta_addr = {"m_addr": range(p.meta_words)} if p.sparse else {}
    fetch = data.StructLayout({"a_addr": range(p.a_words), "b_addr": range(p.b_words),
                               **meta_addr})
    meta = {"m": p.meta_word_layout} if p.sparse else {}
    operands = data.StructLayout({"a": p.data_bits, "b": p.data_bits, **meta})
    return write, read, fetch, operands


class GemmScratchpad(wiring.Component):
    """The A and B scratchpads (``a_words`` and ``b_words`` words of ``D`` bits).

    - ``write`` (always ready): stores ``data`` at ``addr`` of A (``a = 1``) or B
      at the end of the cycle of the transfer.
    - ``read`` (always ready) and ``read_data`` (no backpressure): a read of one
      word of A (``a = 1``) or B; ``read_data`` is valid with the word on the
      cycle after the transfer.
    - ``fetch`` and ``operands`` (the latter with no backpressure): the engine's
      read of an A and a B word at once; ``operands`` is valid with both on the
      cycle after the transfer. A ``read`` borrows both read ports: ``fetch`` is
      ready exactly when ``read`` is not valid.
    - N:M tiles: a third memory of ``meta_words`` metadata words, written and read
      with ``m = 1`` and fetched at ``m_addr`` with A and B (``operands.m``); it
      resets to ``meta_reset_word`` (positions 0..N-1 in every group).
    """

    def __init__(self, params):
        self._p = params
        write, read, fetch, operands = scratchpad_layouts(params)
        super().__init__({
            "write": In(stream.Signature(write, always_ready=True)),
            "read": In(stream.Signature(read, always_ready=True)),
            "read_data": Out(stream.Signature(params.data_bits, always_ready=True)),
            "fetch": In(stream.Signature(fetch)),
            "operands": Out(stream.Signature(operands, always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._p
        m.submodules.a_mem = a_mem = memory.Memory(shape=p.data_bits, depth=p.a_words, init=[])
        m.submodules.b_mem = b_mem = memory.Memory(shape=p.data_bits, depth=p.b_words, init=[])
        a_wr, b_wr = a_mem.write_port(), b_mem.write_port()
        a_rd, b_rd = a_mem.read_port(), b_mem.read_port()

        wr, rd, fetch = self.write.payload, self.read.payload, self.fetch.payload
        m.d.comb += [
            a_wr.addr.eq(wr.addr), a_wr.data.eq(wr.data), a_wr.en.eq(self.write.valid & wr.a),
            b_wr.addr.eq(wr.addr), b_wr.data.eq(wr.data), b_wr.en.eq(self.write.valid & ~wr.a),
            self.fetch.ready.eq(~self.read.valid),
            a_rd.addr.eq(Mux(self.read.valid, rd.addr, fetch.a_addr)),
            b_rd.addr.eq(Mux(self.read.valid, rd.addr, fetch.b_addr)),
        ]

        read_a = Signal()
        m.d.sync += [
            self.read_data.valid.eq(self.read.valid), read_a.eq(rd.a),
            self.operands.valid.eq(self.fetch.valid & self.fetch.ready),
        ]
        read_word = Mux(read_a, a_rd.data, b_rd.data)
        if p.sparse:
            # Reset to positions 0..N-1 in every group: every metadata word the engine
            # can read is well-formed, so a sum never has more than k nonzero products.
            m.submodules.m_mem = m_mem = memory.Memory(
                shape=p.meta_word_layout.size, depth=p.meta_words,
                init=[p.meta_reset_word] * p.meta_words)
            m_wr, m_rd = m_mem.write_port(), m_mem.read_port()
            read_m = Signal()
            m.d.comb += [
                m_wr.addr.eq(wr.addr), m_wr.data.eq(wr.data),
                m_wr.en.eq(self.write.valid & wr.m),
                a_wr.en.eq(self.write.valid & wr.a & ~wr.m),
                b_wr.en.eq(self.write.valid & ~wr.a & ~wr.m),
                m_rd.addr.eq(Mux(self.read.valid, rd.addr, fetch.m_addr)),
                self.operands.payload.m.eq(m_rd.data),
            ]
            m.d.sync += read_m.eq(rd.m)
            read_word = Mux(read_m, m_rd.data, read_word)
        m.d.comb += [
            self.read_data.payload.eq(read_word),
            self.operands.payload.a.eq(a_rd.data), self.operands.payload.b.eq(b_rd.data),
        ]
        return m


class GemmSequencer(wiring.Component):
    """The k-panel walk: per job, rows (outer) x lane blocks (inner) x ``k`` steps.

    - ``jobs`` / ``words``: a job is taken when idle and fired (as ``GemmEngine``).
    - ``fetch``: the A and B word of each k step, offered while a job runs except
      at a group's first step while no result credit is left.
    - ``steps`` (no backpressure): valid the cycle after each ``fetch`` transfer, in
      line with the scratchpad's ``operands``: the step's slots in those words and
      whether it is the first or the last of its group (N:M tiles: ``a_slot`` is the
      group of ``M`` operands in the A word, ``m_slot`` the step in the metadata
      word, ``a_limit`` how many of the group's operands lie below ``k``); after a
      job's last group,
      one token with ``done = 1`` and no fetch. ``meta`` is the job's ``reply`` and
      its group count ``rows * blocks``.
    - ``free``: a pulse for each result entry that has left. Of ``RESULT_DEPTH``
      credits, a group's first step and a DONE token each take one.
    - ``busy`` (fetched steps), ``stall_operands``, ``stall_noc``: as ``GemmEngine``.
    """

    def __init__(self, params, *, job_layout, counter_bits: int):
        self._p = params
        self._job_layout = job_layout
        d = params.descriptor_layout
        groups = Shape.cast(d["rows"].shape).width + Shape.cast(d["blocks"].shape).width
        sparse = {"m_slot": range(max(2, params.meta_steps)),
                  "a_limit": range(params.m + 1)} if params.sparse else {}
        self.step_layout = data.StructLayout({
            "first": 1, "last": 1, "done": 1,
            "a_slot": range(max(2, self._a_slots())),
            "b_slot": range(max(2, params.rows_per_b_word)),
            **sparse,
            "meta": data.StructLayout({"reply": job_layout["reply"].shape, "groups": groups}),
        })
        _, _, fetch, _ = scratchpad_layouts(params)
        super().__init__({
            "jobs": In(stream.Signature(job_layout)),
            "words": In(params.wait_bits),
            "fetch": Out(stream.Signature(fetch)),
            "steps": Out(stream.Signature(self.step_layout, always_ready=True)),
            "free": In(1),
            "counters": Out(data.StructLayout({name: counter_bits
                                               for name in SEQUENCER_COUNTERS})),
        })

    def _a_slots(self):
        # The A word is stepped through by operand, or by group of M operands (N:M).
        p = self._p
        return p.operands_per_word // p.m if p.sparse else p.operands_per_word

    def elaborate(self, platform):
        m = Module()
        p = self._p
        g, a_words, b_words = p.rows_per_b_word, p.a_words, p.b_words
        P = self._a_slots()
        counters, step = self.counters, self.steps.payload

        head = self.jobs.payload
        fired = ~(self.words - head.desc.wait)[p.wait_bits - 1]

        job = Signal(self._job_layout)
        a_stride = Signal(range(a_words + 1))
        b_stride = Signal(range(b_words + 1))
        kk = Signal(range(max(2, p.max_steps)))
        a_word = Signal(range(a_words))
        a_slot = Signal(range(max(2, P)))
        b_word = Signal(range(b_words))
        b_slot = Signal(range(max(2, g)))
        row = Signal.like(job.desc.rows)
        blk = Signal.like(job.desc.blocks)
        a_base = Signal(range(a_words + 1))
        b_base = Signal(range(b_words + 1))
        reserved = Signal(range(RESULT_DEPTH + 1))   # result entries queued or in flight

        # Each token carries its job's reply address so the next job may start behind it.
        m.d.sync += [self.steps.valid.eq(0), step.done.eq(0), step.meta.reply.eq(job.reply),
                     step.meta.groups.eq(job.desc.rows * job.desc.blocks)]

        room = reserved < RESULT_DEPTH
        reserve = Signal()
        issue = self.fetch.valid & self.fetch.ready
        m.d.comb += [self.fetch.payload.a_addr.eq(a_base + a_word),
                     self.fetch.payload.b_addr.eq(b_base + b_word)]
        if p.sparse:
            # b_base is a multiple of E, so B word b_base + b_word has its positions in
            # metadata word (b_base + b_word) / E at step (b_word mod E)*g + b_slot.
            e_bits = p.meta_group_words.bit_length() - 1
            ksteps = Signal(range(p.max_steps + 1))
            tail = Signal(range(p.max_steps + 1))       # the last group's first step
            rem = Signal(range(p.m + 1))                # operands of the last group below k
            j = Signal(range(max(2, p.n)))              # step in its group
            m_slot = b_slot if e_bits == 0 else b_word[:e_bits] * g + b_slot
            m.d.comb += self.fetch.payload.m_addr.eq((b_base + b_word) >> e_bits)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.jobs.valid & fired):
                    d = head.desc
                    m.d.comb += self.jobs.ready.eq(1)
                    m.d.sync += [
                        job.eq(head),
                        a_stride.eq(p.a_stride(d.k)),
                        b_stride.eq(p.b_stride(d.k)),
                        a_base.eq(d.a_addr), b_base.eq(d.b_addr),
                        kk.eq(0), a_word.eq(0), a_slot.eq(0), b_word.eq(0), b_slot.eq(0),
                        row.eq(0), blk.eq(0),
                    ]
                    if p.sparse:
                        m.d.sync += [ksteps.eq(p.k_steps(d.k)),
                                     tail.eq(p.k_steps(d.k) - p.n),
                                     rem.eq(((d.k - 1) & (p.m - 1)) + 1), j.eq(0)]
                    m.next = "RUN"
                with m.Elif(self.jobs.valid):
                    m.d.sync += counters.stall_operands.eq(counters.stall_operands + 1)
            with m.State("RUN"):
                first = kk == 0
                last = kk == (ksteps if p.sparse else job.desc.k) - 1
                m.d.comb += self.fetch.valid.eq(~first | room)
                with m.If(issue):
                    m.d.comb += reserve.eq(first)
                    m.d.sync += [
                        self.steps.valid.eq(1), step.first.eq(first), step.last.eq(last),
                        step.a_slot.eq(a_slot), step.b_slot.eq(b_slot),
                    ]
                    if p.sparse:
                        m.d.sync += [step.m_slot.eq(m_slot),
                                     step.a_limit.eq(Mux(kk >= tail, rem, p.m))]
                    with m.If(last):
                        m.d.sync += [kk.eq(0), a_word.eq(0), a_slot.eq(0),
                                     b_word.eq(0), b_slot.eq(0)]
                        if p.sparse:
                            m.d.sync += j.eq(0)
                        with m.If(blk == job.desc.blocks - 1):
                            m.d.sync += [blk.eq(0), b_base.eq(job.desc.b_addr),
                                         row.eq(row + 1), a_base.eq(a_base + a_stride)]
                            with m.If(row == job.desc.rows - 1):
                                m.next = "DONE"
                        with m.Else():
                            m.d.sync += [blk.eq(blk + 1), b_base.eq(b_base + b_stride)]
                    with m.Else():
                        m.d.sync += kk.eq(kk + 1)
                        def next_a_slot():
                            with m.If(a_slot == P - 1):
                                m.d.sync += [a_slot.eq(0), a_word.eq(a_word + 1)]
                            with m.Else():
                                m.d.sync += a_slot.eq(a_slot + 1)
                        if p.sparse:
                            # The A group moves on after the group's N steps.
                            with m.If(j == p.n - 1):
                                m.d.sync += j.eq(0)
                                next_a_slot()
                            with m.Else():
                                m.d.sync += j.eq(j + 1)
                        else:
                            next_a_slot()
                        with m.If(b_slot == g - 1):
                            m.d.sync += [b_slot.eq(0), b_word.eq(b_word + 1)]
                        with m.Else():
                            m.d.sync += b_slot.eq(b_slot + 1)
                with m.Elif(first & ~room):
                    m.d.sync += counters.stall_noc.eq(counters.stall_noc + 1)
            with m.State("DONE"):
                with m.If(room):
                    m.d.comb += reserve.eq(1)
                    m.d.sync += [self.steps.valid.eq(1), step.done.eq(1),
                                 step.first.eq(0), step.last.eq(0)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += counters.stall_noc.eq(counters.stall_noc + 1)

        with m.If(issue):
            m.d.sync += counters.busy.eq(counters.busy + 1)
        m.d.sync += reserved.eq(reserved + reserve - self.free)
        return m


class GemmMac(wiring.Component):
    """``L`` signed multiply-accumulates per step; the sums go into a result FIFO.

    - ``steps`` and ``operands`` (no backpressure, in lockstep): a step with
      ``done = 0`` multiplies operand ``a_slot`` of the A word with lane block
      ``b_slot`` of the B word (N:M: lane ``l`` multiplies its value ``[b_slot][l]``
      with operand ``position`` of group ``a_slot`` of the A word, ``position`` being
      ``[m_slot][l]`` of the metadata word, and with 0 when ``position >= a_limit``);
      ``first`` restarts the accumulators, ``last``
      enters their sums as an entry two cycles later. A ``done`` token enters a
      DONE entry (``data = groups``) and counts in ``jobs_done``.
    - ``results``: the entries in order, from a ``RESULT_DEPTH`` FIFO. The MAC never
      waits, so whoever sends ``steps`` keeps at most ``RESULT_DEPTH`` entries
      outstanding (``GemmSequencer``'s credits).
    """

    def __init__(self, params, *, step_layout, result_layout, counter_bits: int):
        self._p = params
        self._step_layout = step_layout
        self._result_layout = result_layout
        _, _, _, operands = scratchpad_layouts(params)
        super().__init__({
            "steps": In(stream.Signature(step_layout, always_ready=True)),
            "operands": In(stream.Signature(operands, always_ready=True)),
            "results": Out(stream.Signature(result_layout)),
            "jobs_done": Out(counter_bits),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._p
        L, w, acc_w = p.lanes, p.op_bits, p.acc_bits
        step, operands = self.steps.payload, self.operands.payload

        # Stage 1 -> 2: pick the A operand and the B lane block, multiply.
        products = [Signal(signed(2 * w), name=f"product{l}") for l in range(L)]
        if p.sparse:
            pairs = self._sparse_pairs(m)
            m.d.sync += [products[l].eq(a * b) for l, (a, b) in enumerate(pairs)]
        else:
            a_op = operands.a.word_select(step.a_slot, w).as_signed()
            b_chunk = operands.b.word_select(step.b_slot, L * w)
            m.d.sync += [products[l].eq(a_op * b_chunk.word_select(l, w).as_signed())
                         for l in range(L)]
        s2 = Signal(data.StructLayout({"valid": 1, "first": 1, "last": 1, "done": 1,
                                       "meta": self._step_layout["meta"].shape}))
        m.d.sync += [s2.valid.eq(self.steps.valid), s2.first.eq(step.first),
                     s2.last.eq(step.last), s2.done.eq(step.done), s2.meta.eq(step.meta)]

        # Stage 2: accumulate; the last k step of a group enters the result buffer.
        acc = [Signal(signed(acc_w), name=f"acc{l}") for l in range(L)]
        acc_next = [Mux(s2.first, 0, acc[l]) + products[l] for l in range(L)]
        m.submodules.results = results = fifo.SyncFIFO(width=self._result_layout.size,
                                                       depth=RESULT_DEPTH)
        entry = data.View(self._result_layout, results.w_data)
        m.d.comb += entry.reply.eq(s2.meta.reply)
        with m.If(s2.valid & ~s2.done):
            m.d.sync += [acc[l].eq(acc_next[l]) for l in range(L)]
        with m.If(s2.valid & s2.done):
            m.d.comb += [results.w_en.eq(1), entry.done.eq(1), entry.data.eq(s2.meta.groups)]
            m.d.sync += self.jobs_done.eq(self.jobs_done + 1)
        with m.Elif(s2.valid & s2.last):
            m.d.comb += [results.w_en.eq(1), entry.data.eq(Cat(*(a[:acc_w] for a in acc_next)))]

        m.d.comb += [self.results.payload.eq(results.r_data),
                     self.results.valid.eq(results.r_rdy),
                     results.r_en.eq(self.results.ready)]
        return m

    def _sparse_pairs(self, m):
        """Per lane, the (A operand, B value) of an N:M step: each lane selects its A
        operand in the step's group by its own position."""
        p = self._p
        step, operands = self.steps.payload, self.operands.payload
        group = data.ArrayLayout(signed(p.op_bits), p.m)
        a_groups = data.View(data.ArrayLayout(group, p.operands_per_word // p.m), operands.a)
        window = Signal(group, name="a_window")     # operands at or beyond k read as 0
        m.d.comb += [window[i].eq(Mux(i < step.a_limit, a_groups[step.a_slot][i], 0))
                     for i in range(p.m)]
        values = data.View(p.b_word_layout, operands.b)[step.b_slot]
        positions = operands.m[step.m_slot]
        return [(window[positions[l]], values[l]) for l in range(p.lanes)]


class GemmEngine(wiring.Component):
    """The MAC engine: ``L`` signed MACs per cycle over the jobs it is given.

    - ``jobs`` (``job_layout``: ``desc`` = ``descriptor_layout``, ``reply``): a
      checked descriptor. The engine takes the head only when idle and once it has
      fired, i.e. once ``words`` (the operand semaphore, modulo ``2**wait_bits``)
      has reached ``desc.wait``; ``stall_operands`` counts idle cycles with a job
      offered but not fired.
    - ``fetch`` / ``operands``: one A and one B word per k step, read from a
      ``GemmScratchpad``; the words are used the cycle after the transfer.
    - ``results`` (``result_layout``: ``done``, ``reply``, ``data``): per row
      (outer) and lane block (inner) an entry with the ``L`` sums of ``acc_bits``
      each (lane ``l`` at bits ``[l*acc_bits, (l+1)*acc_bits)``), then one entry
      with ``done = 1`` and ``data = rows * blocks``. Entries leave in order from a
      ``RESULT_DEPTH`` FIFO.

    Timing: one k step per cycle while ``fetch`` is ready; a group's first k step
    issues only with a result entry free, an entry being reserved at issue and
    freed by its transfer on ``results``, so the pipeline behind the issue
    (``GemmSequencer`` -> scratchpad -> ``GemmMac``) never stops. ``stall_noc``
    counts the cycles a group or DONE waits for an entry, ``busy`` the issued k
    steps, ``jobs_done`` the DONE entries.
    """

    def __init__(self, params, *, reply_layout, counter_bits: int):
        self._p = params
        self._counter_bits = counter_bits
        self.job_layout = data.StructLayout({"desc": params.descriptor_layout,
                                             "reply": reply_layout})
        d = params.descriptor_layout
        groups = Shape.cast(d["rows"].shape).width + Shape.cast(d["blocks"].shape).width
        # Wide enough for a group's results and for a DONE's group count alike.
        self.result_layout = data.StructLayout({
            "done": 1, "reply": reply_layout,
            "data": max(params.lanes * params.acc_bits, groups)})
        _, _, fetch, operands = scratchpad_layouts(params)
        super().__init__({
            "jobs": In(stream.Signature(self.job_layout)),
            "words": In(params.wait_bits),
            "fetch": Out(stream.Signature(fetch)),
            "operands": In(stream.Signature(operands, always_ready=True)),
            "results": Out(stream.Signature(self.result_layout)),
            "counters": Out(data.StructLayout({name: counter_bits
                                               for name in ENGINE_COUNTERS})),
        })

    def elaborate(self, platform):
        m = Module()
        p, cb = self._p, self._counter_bits
        m.submodules.sequencer = seq = GemmSequencer(p, job_layout=self.job_layout,
                                                     counter_bits=cb)
        m.submodules.mac = mac = GemmMac(p, step_layout=seq.step_layout,
                                         result_layout=self.result_layout, counter_bits=cb)
        wiring.connect(m, wiring.flipped(self.jobs), seq.jobs)
        wiring.connect(m, seq.fetch, wiring.flipped(self.fetch))
        wiring.connect(m, seq.steps, mac.steps)
        wiring.connect(m, wiring.flipped(self.operands), mac.operands)
        wiring.connect(m, mac.results, wiring.flipped(self.results))
        m.d.comb += [
            seq.words.eq(self.words),
            seq.free.eq(self.results.valid & self.results.ready),
            self.counters.jobs_done.eq(mac.jobs_done),
        ]
        m.d.comb += [self.counters[name].eq(seq.counters[name]) for name in SEQUENCER_COUNTERS]
        return m
