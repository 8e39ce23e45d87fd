"""GEMM PE tile: two scratchpads, ``lanes`` signed MACs per cycle and dataflow firing.

Ports: ``i`` (flits from the NoC), ``o`` (flits to the NoC), ``dropped`` (its
router's drop counter, readable as a status register).

Geometry (``D`` = packet data bits, ``w`` = ``op_bits``, ``L`` = ``lanes``):
one WRITE flit is one scratchpad word of ``P = D // w`` operands (slot ``j`` at
bits ``[j*w, (j+1)*w)``, two's complement); ``D`` must be a multiple of ``L*w``
and a B word holds ``g = P // L`` consecutive K-rows of one lane block. An A row
of a job takes ``ceil(k / P)`` words, a B lane block ``ceil(k / g)`` words.

Address map: B scratchpad at ``[0, b_words)``, A at ``[b_words, b_words +
a_words)`` (N:M: the metadata after A), status registers at ``2**addr_bits -
16 + i`` (``STATUS_REGISTERS``).

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

N:M sparsity (``sparsity`` "2:4" or "4:8"; "dense" is all of the above). B is
stored compressed along K: per lane, every group of ``M`` K-rows keeps ``N``
values and ``N`` positions of ``mb = log2 M`` bits (the offset in the group,
strictly increasing), NVIDIA's 2:4 layout: a column's group (1, 2, 0, 0) is
values (1, 2), positions (0, 1); a group with fewer than ``N`` nonzeros pads with
zero values at unused positions. A k-panel is ``ks = ceil(k / M) * N`` steps;
step ``t = grp*N + j`` is the ``j``-th stored entry of group ``grp``. Words, with
``E`` the largest power of two with ``E*P*mb <= D`` and ``T = E*g``:

- A word (``a_word_layout``, ``ArrayLayout(signed(w), P)``): as dense; ``P`` must
  be a multiple of ``M``, so group ``grp`` of a row is slots ``[grp*M, grp*M + M)``
  of word ``grp*M // P``.
- B value word (``b_word_layout``, ``ArrayLayout(ArrayLayout(signed(w), L), g)``,
  the dense B word too): ``[s][l]`` is step ``t = word*g + s`` of lane ``l``.
  A block takes ``vstride = ceil(ks / g)`` words; its stride in B is ``vstride``
  rounded up to a multiple of ``E`` and ``b_addr`` must be a multiple of ``E``.
- Metadata word (``meta_word_layout``, ``ArrayLayout(ArrayLayout(unsigned(mb),
  L), T)``): a region of ``meta_words = ceil(b_words / E)`` words after A
  (``meta_base = b_words + a_words``); metadata word ``i`` holds the positions of
  B words ``[i*E, i*E + E)``, ``[t][l]`` being lane ``l`` of step ``t`` of those
  words (value word ``i*E + t // g``, slot ``t % g``). ``T`` must be a multiple of
  ``N``, so a block's groups never straddle metadata words. Bits above
  ``T*L*mb`` are ignored.

E.g. D = 64, int8, 4 lanes, 2:4: P = 8 (two groups per A word), g = 2, E = 4,
T = 8; a metadata word is 8 steps x 4 lanes x 2 bits, one per 4 value words.

Each lane picks its own A operand, ``grp*M + position`` of the row (0 when that
is ``k`` or beyond), so a job issues ``ks`` steps (``L`` MACs each) per (row,
lane block): ``K*N/M`` cycles per k-panel instead of ``K``. A metadata WRITE
whose positions do not strictly increase inside every group of ``N`` steps is
refused: ``ERROR`` with ``data = op | 3 << 8``, neither stored nor counted. The
metadata resets to positions 0..N-1 in every group, so every word the engine
reads is well-formed and a sum has at most ``k`` nonzero products (``acc_bits``
holds it). A descriptor whose ``b_addr`` is not a multiple of ``E`` is bad.

Structure (joined by streams; each class states its contract): ``GemmDecoder``
takes ``i``, writes and reads ``GemmScratchpad`` and queues checked jobs for
``GemmEngine`` (``tiles.gemm_engine``), which fetches k steps from the
scratchpad and emits result entries; ``GemmSerializer`` turns those entries and
the decoder's answers into flits on ``o``. ``GemmTile`` wires them, with a two-entry
queue between ``i`` and the decoder: its ``ready`` and its head are registers, so
neither the descriptor checks nor the decoder's ``ready`` sit in one clock cycle with
the router's arbitration, at one flit per cycle.
"""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arith import below, ceil_div
from ..fifo import sync_fifo
from ..noc.packet import Op
from ..tile import (
    COUNTER_BITS,
    NocTile,
    Param,
    StatusRegisters,
    check_params,
    layout_positions,
    status_base,
)
from .gemm_engine import ENGINE_COUNTERS, GemmEngine, GemmScratchpad, scratchpad_layouts

STATUS_REGISTERS = ("dropped", "errors", "flits_in", "flits_out", "words", "jobs_done",
                    "busy", "stall_operands", "stall_noc")
ERROR_BAD_DESCRIPTOR = 1
ERROR_QUEUE_FULL = 2
ERROR_BAD_METADATA = 3

SPARSITY = {"dense": None, "2:4": (2, 4), "4:8": (4, 8)}


def acc_bits_for(op_bits: int, max_k: int) -> int:
    # The largest magnitude is max_k * (-2**(w-1))**2, a positive sum.
    return (max_k << (2 * op_bits - 2)).bit_length() + 1


class GemmParams:
    """A GEMM tile's parameters, checked, with every quantity derived from them."""

    PARAMS = (
        Param("lanes", 8, lo=1, hi=32, doc="signed integer MACs per cycle"),
        Param("op_bits", 8, lo=4, hi=16, doc="operand width (two's complement)"),
        Param("max_k", 1024, lo=1, hi=65535, doc="largest K the accumulators are sized for"),
        Param("a_words", 512, lo=16, hi=65536, doc="A scratchpad depth in packet-data words"),
        Param("b_words", 512, lo=16, hi=65536, doc="B scratchpad depth in packet-data words"),
        Param("jobs", 4, lo=1, hi=64, doc="EXEC descriptor queue depth"),
        Param("sparsity", "dense", type="string", choices=tuple(SPARSITY),
              doc="B's structure along K: dense, or N:M (at most N nonzeros in every M, "
                  "stored compressed, K*N/M cycles per k-panel)"),
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
        self.status_registers = StatusRegisters(STATUS_REGISTERS, status_base(addr_bits))
        self.operands_per_word = P = data_bits // op_bits
        self.rows_per_b_word = g = P // lanes
        self.sparsity = v["sparsity"]
        self.sparse = SPARSITY[self.sparsity] is not None
        self.a_word_layout = data.ArrayLayout(signed(op_bits), P)
        self.b_word_layout = data.ArrayLayout(data.ArrayLayout(signed(op_bits), lanes), g)
        self.meta_words = 0
        if self.sparse:
            self._check_sparse()
        self.max_steps = self.k_steps(max_k)
        self.acc_bits = acc_bits_for(op_bits, max_k)
        if self.acc_bits > data_bits:
            raise ValueError(f"data_bits: {data_bits} is not allowed, must be at least "
                             f"acc_bits = {self.acc_bits} (op_bits {op_bits}, max_k {max_k})")
        self.results_per_flit = data_bits // self.acc_bits
        self.flits_per_group = ceil_div(lanes, self.results_per_flit)
        ab, bb = a_words.bit_length(), b_words.bit_length()
        self.wait_bits = (a_words + b_words + self.meta_words).bit_length() + 1
        self.descriptor_layout = data.StructLayout({
            "k": max_k.bit_length(), "rows": ab, "blocks": bb,
            "a_addr": ab, "b_addr": bb, "wait": self.wait_bits})
        if self.descriptor_layout.size > data_bits:
            raise ValueError(f"data_bits: {data_bits} is not allowed, must be at least the "
                             f"{self.descriptor_layout.size}-bit EXEC descriptor")
        limit = status_base(addr_bits)
        meta = f" + {self.meta_words} metadata words" if self.sparse else ""
        if a_words + b_words + self.meta_words > limit:
            raise ValueError(f"a_words: {a_words} is not allowed with b_words {b_words}, "
                             f"a_words + b_words{meta} must be at most {limit} with addr_bits "
                             f"{addr_bits} (16 addresses hold the status registers)")
        if self.a_stride(max_k) > a_words:
            raise ValueError(f"a_words: {a_words} is not allowed, must hold one A row of "
                             f"max_k: at least {self.a_stride(max_k)}")
        if self.b_stride(max_k) > b_words:
            raise ValueError(f"b_words: {b_words} is not allowed, must hold one B block of "
                             f"max_k: at least {self.b_stride(max_k)}")

    def _check_sparse(self):
        n, m = SPARSITY[self.sparsity]
        P, g, w, D = self.operands_per_word, self.rows_per_b_word, self.op_bits, self.data_bits
        if P % m:
            raise ValueError(f"sparsity: {self.sparsity!r} is not allowed with data_bits {D} "
                             f"and op_bits {w}, must leave whole groups of {m} in an A word "
                             f"(data_bits / op_bits = {P} is not a multiple of {m})")
        self.n, self.m = n, m
        self.meta_bits = mb = m.bit_length() - 1
        e = 1
        while 2 * e * P * mb <= D:
            e *= 2
        self.meta_group_words = e              # [E] B words per metadata word
        self.meta_steps = e * g                 # [T] steps per metadata word
        if self.meta_steps % n:
            raise ValueError(f"sparsity: {self.sparsity!r} is not allowed with lanes "
                             f"{self.lanes}, op_bits {w} and data_bits {D}, must leave whole "
                             f"groups of {n} in a metadata word (it holds {self.meta_steps} "
                             f"steps of {self.lanes} {mb}-bit positions; a wider data_bits "
                             f"or fewer lanes fit more)")
        self.meta_word_layout = data.ArrayLayout(data.ArrayLayout(unsigned(mb), self.lanes),
                                                 self.meta_steps)
        self.meta_words = ceil_div(self.b_words, e)
        self.meta_base = self.b_words + self.a_words
        self.meta_reset_word = self.meta_word_layout.const(
            [[t % n] * self.lanes for t in range(self.meta_steps)]).as_bits()

    # The strides, as integers for integers and as Amaranth expressions for signals.

    def a_stride(self, k):
        """A words per row of a k-panel."""
        P = self.operands_per_word
        return (k + (P - 1)) // P

    def k_steps(self, k):
        """[ks] issue steps of a k-panel: ``k``, or ``ceil(k / M) * N`` when sparse."""
        if not self.sparse:
            return k
        return ((k + (self.m - 1)) >> (self.m.bit_length() - 1)) << (self.n.bit_length() - 1)

    def b_stride(self, k):
        """B words per lane block of a k-panel (sparse: its values, rounded up to E)."""
        g = self.rows_per_b_word
        words = (self.k_steps(k) + (g - 1)) // g
        if not self.sparse:
            return words
        shift = self.meta_group_words.bit_length() - 1
        return ((words + (self.meta_group_words - 1)) >> shift) << shift

    def manifest(self) -> dict:
        """What a host needs to drive this tile, as the tile derives it."""
        return {
            "acc_bits": self.acc_bits,
            "operands_per_word": self.operands_per_word,
            "rows_per_b_word": self.rows_per_b_word,
            "results_per_flit": self.results_per_flit,
            "flits_per_group": self.flits_per_group,
            "b_base": 0,
            "a_base": self.b_words,
            "sparsity": self.sparsity,
            **({"nm": [self.n, self.m], "meta_bits": self.meta_bits,
                "meta_base": self.meta_base, "meta_words": self.meta_words,
                "meta_group_words": self.meta_group_words, "meta_steps": self.meta_steps}
               if self.sparse else {}),
            "descriptor": layout_positions(self.descriptor_layout),
            "status_registers": dict(self.status_registers.addresses),
        }


def reply_layout(layout) -> data.StructLayout:
    """Where a job's results go: its tag (the EXEC's ``addr``) and the EXEC's source."""
    return data.StructLayout({"tag": layout["addr"].shape, "dst_x": layout["dst_x"].shape,
                              "dst_y": layout["dst_y"].shape})


def message_layout(layout) -> data.StructLayout:
    """An outgoing flit before the output register adds this tile as its source."""
    return data.StructLayout({name: layout[name].shape
                              for name in ("dst_x", "dst_y", "op", "addr", "data")})


_DECODER_COUNTERS = ("errors", "flits_in", "words")


class GemmDecoder(wiring.Component):
    """The front end: NoC requests in, operand loads, queued jobs and answers out.

    - ``i``: one request per cycle, except while an answer waits on ``answers`` or
      a scratchpad word arrives on ``read_data`` (then ``ready`` is low); an EXEC is
      taken no earlier than the cycle after it is first offered (its descriptor check
      is registered).
    - ``write``: a WRITE into A or B (or the metadata, sparse), in the scratchpad's
      own word addresses, on the cycle the request is taken; each counts in
      ``words`` (the operand semaphore, an output for the engine's firing compare).
      A metadata word whose positions do not increase inside a group is refused
      with an ERROR instead.
    - ``read`` / ``read_data``: a READ of A, B or the metadata; its word, due the next cycle
      (``GemmScratchpad``'s latency), becomes the data of a REPLY on ``answers``.
    - ``jobs``: a queue of ``jobs`` checked EXEC descriptors (``job_layout``, the
      reply address filled from the EXEC), in arrival order.
    - ``answers``: REPLY to READs (scratchpad and status registers) and every
      ERROR, one at a time, each held until taken.
    - ``status``: the status registers kept elsewhere (``dropped``, ``flits_out``
      and the engine's counters), read by status READs with ``errors``,
      ``flits_in`` and ``words`` kept here.
    """

    def __init__(self, params, *, layout, job_layout, counter_bits: int = COUNTER_BITS):
        self._p = params
        self._job_layout = job_layout
        self._counter_bits = counter_bits
        write, read, _, _ = scratchpad_layouts(params)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "write": Out(stream.Signature(write, always_ready=True)),
            "read": Out(stream.Signature(read, always_ready=True)),
            "read_data": In(stream.Signature(params.data_bits, always_ready=True)),
            "jobs": Out(stream.Signature(job_layout)),
            "answers": Out(stream.Signature(message_layout(layout))),
            "words": Out(counter_bits),
            "status": In(data.StructLayout({name: counter_bits for name in STATUS_REGISTERS
                                            if name not in _DECODER_COUNTERS})),
        })

    def elaborate(self, platform):
        m = Module()
        p, cb = self._p, self._counter_bits
        a_words, b_words = p.a_words, p.b_words
        desc_layout = p.descriptor_layout
        errors, flits_in = Signal(cb, name="errors"), Signal(cb, name="flits_in")
        words = self.words

        req = self.i.payload
        pending = self.answers.valid    # the answer is complete and waits for the output
        reply = self.answers.payload
        take = Signal()
        # An EXEC is taken one cycle after it is first offered: the stream rule holds the
        # flit, so its descriptor check can be registered (``desc_ok_r``) rather than sit
        # in one cycle with the answer it decides.
        seen = Signal()
        m.d.sync += seen.eq(self.i.valid & ~take)
        m.d.comb += [
            self.i.ready.eq(~pending & ~self.read_data.valid & (seen | (req.op != Op.EXEC))),
            take.eq(self.i.valid & self.i.ready),
        ]

        in_b = req.addr < b_words
        in_a = (req.addr >= b_words) & (req.addr < b_words + a_words)
        local = Mux(in_a, req.addr - b_words, req.addr)
        stored, readable = in_a | in_b, in_a | in_b
        write_error = req.op.as_value()
        if p.sparse:
            in_m = (req.addr >= p.meta_base) & (req.addr < p.meta_base + p.meta_words)
            local = Mux(in_m, req.addr - p.meta_base, local)
            meta_bad = self._metadata_bad(m, req.data)
            stored, readable = in_a | in_b | (in_m & ~meta_bad), in_a | in_b | in_m
            write_error = Mux(in_m, Cat(req.op.as_value(), C(0, 5), C(ERROR_BAD_METADATA, 2)),
                              req.op.as_value())
            m.d.comb += [self.write.payload.m.eq(in_m), self.read.payload.m.eq(in_m)]
        own = {"errors": errors, "flits_in": flits_in, "words": words}
        is_status, status_value = p.status_registers.read(
            m, req.addr, {name: own[name] if name in own else self.status[name]
                          for name in STATUS_REGISTERS})
        m.d.comb += [
            self.write.payload.a.eq(in_a), self.write.payload.addr.eq(local),
            self.write.payload.data.eq(req.data),
            self.read.payload.a.eq(in_a), self.read.payload.addr.eq(local),
        ]

        # Descriptor checks, done as the EXEC arrives so a bad one never reaches the engine.
        desc = data.View(desc_layout, req.data[:desc_layout.size])
        a_stride = p.a_stride(desc.k)
        b_stride = p.b_stride(desc.k)
        desc_ok = ((desc.k >= 1) & below(desc.k, p.max_k + 1) & (desc.rows >= 1) &
                   (desc.blocks >= 1) &
                   (desc.a_addr + desc.rows * a_stride <= a_words) &
                   (desc.b_addr + desc.blocks * b_stride <= b_words))
        if p.sparse and p.meta_group_words > 1:
            # A block's metadata starts a metadata word.
            desc_ok &= desc.b_addr[:p.meta_group_words.bit_length() - 1] == 0
        desc_ok_r = Signal()
        m.d.sync += desc_ok_r.eq(desc_ok)

        m.submodules.queue = queue = sync_fifo(self._job_layout.size, p.jobs)
        job = data.View(self._job_layout, queue.w_data)
        m.d.comb += [
            job.desc.eq(req.data[:desc_layout.size]), job.reply.tag.eq(req.addr),
            job.reply.dst_x.eq(req.src_x), job.reply.dst_y.eq(req.src_y),
            self.jobs.payload.eq(queue.r_data), self.jobs.valid.eq(queue.r_rdy),
            queue.r_en.eq(self.jobs.ready),
        ]

        with m.If(self.answers.valid & self.answers.ready):
            m.d.sync += pending.eq(0)

        answer, is_error = Signal(), Signal()
        answer_data = Signal(p.data_bits)
        with m.If(take):
            m.d.sync += flits_in.eq(flits_in + 1)
            with m.Switch(req.op):
                with m.Case(Op.WRITE):
                    with m.If(stored):
                        m.d.comb += self.write.valid.eq(1)
                        m.d.sync += words.eq(words + 1)
                    with m.Else():
                        m.d.comb += [answer.eq(1), is_error.eq(1),
                                     answer_data.eq(write_error)]
                with m.Case(Op.READ):
                    with m.If(readable):
                        m.d.comb += self.read.valid.eq(1)
                    with m.Elif(is_status):
                        m.d.comb += [answer.eq(1), answer_data.eq(status_value)]
                    with m.Else():
                        m.d.comb += [answer.eq(1), is_error.eq(1),
                                     answer_data.eq(req.op.as_value())]
                with m.Case(Op.EXEC):
                    with m.If(desc_ok_r & queue.w_rdy):
                        m.d.comb += queue.w_en.eq(1)
                    with m.Else():
                        reason = Mux(desc_ok_r, ERROR_QUEUE_FULL, ERROR_BAD_DESCRIPTOR)
                        m.d.comb += [answer.eq(1), is_error.eq(1),
                                     answer_data.eq(Cat(req.op.as_value(), C(0, 5), reason))]
                with m.Case(Op.REPLY, Op.DONE, Op.ERROR):
                    m.d.sync += errors.eq(errors + 1)
                with m.Default():
                    m.d.comb += [answer.eq(1), is_error.eq(1),
                                 answer_data.eq(req.op.as_value())]
            with m.If(answer | self.read.valid):
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
        with m.If(self.read_data.valid):
            m.d.sync += [pending.eq(1), reply.data.eq(self.read_data.payload)]
        return m

    def _metadata_bad(self, m, word):
        """High when ``word``, as a metadata word, has a group whose positions do not
        strictly increase in some lane."""
        p = self._p
        meta = data.View(p.meta_word_layout, word[:p.meta_word_layout.size])
        bad = Signal(name="metadata_bad")
        m.d.comb += bad.eq(Cat(meta[t][l] <= meta[t - 1][l]
                               for t in range(p.meta_steps) if t % p.n
                               for l in range(p.lanes)).any())
        return bad


class GemmSerializer(wiring.Component):
    """The reply path: answers and result entries out as flits from this tile.

    - ``results`` (the engine's ``result_layout``): an entry becomes ``F`` REPLY
      flits (flit ``f`` carries results ``[f*R, (f+1)*R)``), a ``done`` entry one
      DONE flit, all with ``addr = tag`` to the job's source; the entry is taken
      with its last flit.
    - ``answers``: each taken as one flit.
    - ``o``: one output register, so a flit offered is held unchanged until taken;
      ``src`` is this tile. When both inputs wait they take the output in turn, so
      status READs are answered while a job streams its results. ``flits_out``
      counts flits taken from ``o``.
    """

    def __init__(self, params, *, layout, result_layout, x: int, y: int,
                 counter_bits: int = COUNTER_BITS):
        self._p = params
        self._layout = layout
        self._x, self._y = x, y
        super().__init__({
            "answers": In(stream.Signature(message_layout(layout))),
            "results": In(stream.Signature(result_layout)),
            "o": Out(stream.Signature(layout)),
            "flits_out": Out(counter_bits),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._p
        L, acc_w, R, F = p.lanes, p.acc_bits, p.results_per_flit, p.flits_per_group
        message = message_layout(self._layout)
        results, answers = self.results, self.answers

        entry = results.payload
        flit = Signal(range(max(2, F)))
        res_flit = Signal(message)
        res_last = Signal()
        m.d.comb += [
            res_flit.dst_x.eq(entry.reply.dst_x), res_flit.dst_y.eq(entry.reply.dst_y),
            res_flit.addr.eq(entry.reply.tag),
        ]
        with m.If(entry.done):
            m.d.comb += [res_flit.op.eq(Op.DONE), res_flit.data.eq(entry.data), res_last.eq(1)]
        with m.Else():
            m.d.comb += [res_flit.op.eq(Op.REPLY), res_last.eq(flit == F - 1)]
            with m.Switch(flit):
                for f in range(F):
                    lo = f * R * acc_w
                    hi = min(L, (f + 1) * R) * acc_w
                    with m.Case(f):
                        m.d.comb += res_flit.data.eq(entry.data[lo:hi])

        out_valid = Signal()
        out = Signal(message)
        last_reply = Signal()    # the flit in `out` came from `answers`
        m.d.comb += [self.o.valid.eq(out_valid)]
        m.d.comb += [getattr(self.o.payload, name).eq(getattr(out, name))
                     for name in ("dst_x", "dst_y", "op", "addr", "data")]
        m.d.comb += [self.o.payload.src_x.eq(self._x), self.o.payload.src_y.eq(self._y)]
        load = ~out_valid | self.o.ready
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [out_valid.eq(0), self.flits_out.eq(self.flits_out + 1)]
        use_reply = answers.valid & (~results.valid | ~last_reply)
        with m.If(load):
            with m.If(use_reply):
                m.d.comb += answers.ready.eq(1)
                m.d.sync += [out.eq(answers.payload), out_valid.eq(1), last_reply.eq(1)]
            with m.Elif(results.valid):
                m.d.sync += [out.eq(res_flit), out_valid.eq(1), last_reply.eq(0)]
                with m.If(res_last):
                    m.d.comb += results.ready.eq(1)
                    m.d.sync += flit.eq(0)
                with m.Else():
                    m.d.sync += flit.eq(flit + 1)
        return m


class GemmTile(NocTile):
    """The GEMM PE on its ``TileSignature``: decoder, scratchpad, engine, serializer."""

    Params = GemmParams

    def elaborate(self, platform):
        m = Module()
        p, layout, cb = self.params, self._layout, self._counter_bits
        engine = GemmEngine(p, reply_layout=reply_layout(layout), counter_bits=cb)
        m.submodules.decoder = decoder = GemmDecoder(p, layout=layout,
                                                     job_layout=engine.job_layout,
                                                     counter_bits=cb)
        m.submodules.scratchpad = scratchpad = GemmScratchpad(p)
        m.submodules.engine = engine
        m.submodules.serializer = serializer = GemmSerializer(
            p, layout=layout, result_layout=engine.result_layout, x=self._x, y=self._y,
            counter_bits=cb)

        m.submodules.in_queue = inq = sync_fifo(Shape.cast(layout).width, 2)
        m.d.comb += [inq.w_data.eq(self.i.payload), inq.w_en.eq(self.i.valid),
                     self.i.ready.eq(inq.w_rdy),
                     decoder.i.payload.eq(inq.r_data), decoder.i.valid.eq(inq.r_rdy),
                     inq.r_en.eq(decoder.i.ready)]
        wiring.connect(m, decoder.write, scratchpad.write)
        wiring.connect(m, decoder.read, scratchpad.read)
        wiring.connect(m, scratchpad.read_data, decoder.read_data)
        wiring.connect(m, decoder.jobs, engine.jobs)
        wiring.connect(m, engine.fetch, scratchpad.fetch)
        wiring.connect(m, scratchpad.operands, engine.operands)
        wiring.connect(m, decoder.answers, serializer.answers)
        wiring.connect(m, engine.results, serializer.results)
        wiring.connect(m, serializer.o, wiring.flipped(self.o))

        m.d.comb += [
            engine.words.eq(decoder.words),
            decoder.status.dropped.eq(self.dropped),
            decoder.status.flits_out.eq(serializer.flits_out),
        ]
        m.d.comb += [decoder.status[name].eq(engine.counters[name]) for name in ENGINE_COUNTERS]
        return m
