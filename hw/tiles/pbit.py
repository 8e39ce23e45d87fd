"""p-bit tile: NoC packets in, a ``PBitArray`` (``arch: parallel``) or ``PBitLanes``
(``arch: lanes``) inside, its ``out`` records back as packets.

Ports: ``i`` (flits from the NoC), ``o`` (flits to the NoC), ``dropped`` (its
router's drop counter, readable as a status register).

Geometry (``D`` = packet data bits): an array ``ctrl`` word (``ctrl_layout``) is
``K = ceil(ctrl width / D)`` chunks, an ``out`` record (``out_layout``) ``R =
ceil(record width / D)`` chunks; chunk ``k`` is bits ``[k*D, (k+1)*D)``
(``ctrl_chunks_layout``, ``record_chunks_layout``).

Address map: ctrl staging at ``CTRL + k = k`` for ``k < K``; status registers at
``2**addr_bits - 16 + k`` (``STATUS_REGISTERS``: dropped, errors, flits_in,
flits_out, runs, running, run_cycles, ctrl_words). Nothing else is mapped.

Ops, per request from ``(src_x, src_y)``:
- ``WRITE CTRL + k`` (``k < K - 1``) stages chunk ``k``; ``WRITE CTRL + K - 1``
  completes the word (its data is the last chunk) and pushes it into the array's
  ``ctrl`` stream. Posted, no reply. Only programming ops are pushed (parallel:
  J, H, COLOUR, STATE, SCHED; lanes: EDGE, NODE, COUNT, STATE, SCHED); the pushed
  word waits in a one-word register while the array is busy, and a further
  completing WRITE or an EXEC behind it waits too (backpressure, never dropped).
  A word with op RUN, READ or 7 is answered ``ERROR`` reason 2; one whose index
  is out of range for its op is answered ``ERROR`` reason 3 (parallel: index >= n,
  J slot >= n - 1, SCHED index >= sched_depth; lanes: lane (``slot``) >= lanes,
  EDGE index >= edge_depth, NODE index >= slots, COUNT data > slots, STATE index
  >= n, SCHED index >= sched_depth; with ``fields: incremental`` COUNT index 1
  (the rows) data > edge_depth, COUNT index above 1); neither is pushed. Staged
  chunks stay until overwritten.
- ``EXEC addr = tag, data = descriptor`` (``descriptor_layout``, LSB first:
  ``sample_every`` 16, ``colours`` = colours - 1, ``last`` = last schedule entry,
  ``read``) starts a run of schedule entries ``0..last`` over colours
  ``0..colours`` sampling every ``sample_every`` sweeps (0: never), or with
  ``read`` set a read-out (the other fields are ignored). ``colours >= n_colours``
  or ``last >= sched_depth`` on a run is answered ``ERROR`` reason 1. An EXEC is
  held (with everything behind it) until the previous job's DONE has been sent
  and no pushed word waits.
- Every ``out`` record of the job goes to the EXEC's source as ``R`` ``REPLY``
  flits, chunk 0 first, all with ``addr = tag``; after the final record (COUNT
  index 1) one ``DONE`` with ``addr = tag`` and ``data`` = the job's record count.
  Choose tags outside the status window to tell record flits from status REPLYs.
- ``READ`` of a status register replies ``REPLY`` with its value before this
  request (``running`` is 1 from EXEC acceptance until that job's DONE is queued,
  ``runs`` counts finished runs and read-outs, ``run_cycles`` is the COUNT index 0
  of the last job, ``ctrl_words`` the words pushed into the array, RUN/READ
  included). Status READs are answered while a job runs: records and answers share
  the output in turn.
- ``READ``/``WRITE`` of an unmapped address or an unknown op: ``ERROR``. ``REPLY``,
  ``DONE`` and ``ERROR`` arriving here are counted as errors and not answered.

Every ERROR goes to the request's source with ``addr`` echoed and ``data = op |
reason << 8`` (``error_layout``; reason 0 unless stated) and is counted in
``errors``. Replies carry this tile's coordinates as source. A reply that cannot
leave holds the input (backpressure); nothing is dropped.

Structure: ``PBitTile`` serves the requests (staging, checks, the ctrl push register,
answers) around the array; a ``RecordSender`` turns the array's records into the job's
flits, and ``tile.TileOutput`` sends answers and job flits in turn.

Parameters (``PBitTileParams.PARAMS``, flat): ``arch: parallel`` builds
``PBitArray.dense`` (n <= 32, max_degree n - 1) and ignores ``lanes``,
``edge_depth``, ``max_degree`` and ``fields``, which are still checked (a config
filled with defaults carries them); ``arch: lanes`` uses every parameter.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arith import below, bits_for, ceil_div
from ..noc.packet import Op
from ..pbit.array import Z_BITS_MAX, Kind, PBitArray
from ..pbit.array import Op as ArrayOp
from ..pbit.control import SAMPLE_EVERY_BITS, word_layouts
from ..pbit.lanes import FIELDS, LaneOp, PBitLanes
from ..tile import (
    STATUS_WINDOW,
    NocTile,
    Param,
    StatusRegisters,
    TileOutput,
    check_params,
    layout_positions,
    message_layout,
    reply_to,
    status_base,
)

STATUS_REGISTERS = ("dropped", "errors", "flits_in", "flits_out", "runs", "running",
                    "run_cycles", "ctrl_words")

ERROR_BAD_DESCRIPTOR = 1
ERROR_BAD_OP = 2
ERROR_BAD_INDEX = 3

ARCHS = ("parallel", "lanes")
PARALLEL_MAX_N = 32        # all-to-all J: n (n - 1) registers and n adder trees of n inputs
LANES_MAX_N = 4096


def pbit_seeds(seed: int, n: int) -> list[int]:
    """Distinct non-zero 32-bit xorshift32 seeds for ``n`` p-bits: splitmix64 of ``seed``.

    The derivation DESIGN.md gives the golden model (``golden.pbit.pbit_seeds``);
    restated here because ``hw`` imports amaranth only. The tests check they agree.
    """
    mask = (1 << 64) - 1
    out, seen = [], set()
    state = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & mask
    while len(out) < n:
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        s = (z ^ (z >> 31)) & 0xFFFFFFFF
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out


class PBitTileParams:
    """A p-bit tile's parameters, checked, with the widths and address map derived."""

    PARAMS = (
        Param("arch", "parallel", "string", choices=ARCHS,
              doc="parallel: all-to-all PBitArray.dense (n <= 32, any J); lanes: PBitLanes, "
                  "J in block RAM, topology programmed at run time"),
        Param("n", 16, lo=2, hi=LANES_MAX_N,
              doc=f"p-bits (parallel: at most {PARALLEL_MAX_N})"),
        Param("n_colours", 4, lo=1, hi=256, doc="colour classes a run may use"),
        Param("seed", 1, lo=1, hi=2**32 - 1,
              doc="seeds the per-p-bit xorshift32 generators (splitmix64, pbit_seeds)"),
        Param("w_bits", 8, lo=2, hi=16, doc="J width (signed)"),
        Param("w_frac", 0, lo=0, hi=15, doc="fraction bits of J and h; below w_bits"),
        Param("h_bits", 10, lo=2, hi=24, doc="h width (signed)"),
        Param("beta_bits", 8, lo=1, hi=16, doc="beta code width (unsigned)"),
        Param("beta_frac", 4, lo=0, hi=16, doc="fraction bits of beta; at most beta_bits"),
        Param("lut_size", 64, lo=2, hi=65536, doc="tanh table entries, a power of two"),
        Param("lut_step_frac", 3, lo=0, hi=16, doc="tanh table step 2^-lut_step_frac"),
        Param("rand_bits", 16, lo=2, hi=32, doc="bits of each uniform draw"),
        Param("z_bits", 0, lo=0, hi=Z_BITS_MAX,
              doc="parallel arch: 0 = tanh-table decisions; k = the quantile rule "
                  "(beta F >= Z[top k bits of the draw], a block-RAM table read a cycle "
                  "ahead), at most rand_bits"),
        Param("sched_depth", 8, lo=1, hi=1024, doc="beta schedule entries"),
        Param("sweep_bits", 16, lo=1, hi=31,
              doc="sweeps-per-entry width; at most 32 - beta_bits"),
        Param("word_bits", 32, lo=1, hi=64, doc="spins per SAMPLE/BEST record chunk"),
        Param("lanes", 4, lo=1, hi=64, doc="lanes arch: update engines, a power of two"),
        Param("edge_depth", 256, lo=1, hi=1 << 20,
              doc="lanes arch: edge-memory entries per lane"),
        Param("max_degree", 8, lo=1, hi=LANES_MAX_N,
              doc="lanes arch: largest degree (sizes the field); at most n"),
        Param("fields", "recompute", "string", choices=FIELDS,
              doc="lanes arch: recompute every field every sweep (one edge per lane per "
                  "cycle), or keep them and walk only the flipped p-bits' edge rows"),
    )
    LANE_ONLY = ("lanes", "edge_depth", "max_degree", "fields")

    def __init__(self, *, data_bits: int, addr_bits: int, **values):
        v = check_params(self.PARAMS, values, "pbit tile")
        self._check_rules(v)
        self.values = v
        for name, value in v.items():
            setattr(self, name, value)
        self.data_bits, self.addr_bits = data_bits, addr_bits
        D = data_bits

        probe = self.array()
        probe._MustUse__silence = True     # built for its widths only, never elaborated
        self.neighbours = probe.neighbours       # None for lanes: programmed at run time
        self.ctrl_layout = probe.ctrl_layout
        self.out_layout = probe.out_layout
        self.sched_layout = probe.sched_layout
        self.colour_bits = probe.colour_bits
        self._config = {"arch": self.arch, **probe.config()}
        if self.arch == "lanes":
            self.slots = probe.slots
        # The data of every op, as the array decodes it and the host encodes it.
        self.data_layouts = {k: v for k, v in word_layouts(self._config).items()
                             if k not in ("ctrl", "out")}
        self.run_layout = self.data_layouts["RUN"]
        self.ops = LaneOp if self.arch == "lanes" else ArrayOp
        self.program_ops = tuple(op for op in self.ops if op not in (self.ops.RUN,
                                                                     self.ops.READ))

        self.ctrl_chunks = K = ceil_div(self.ctrl_layout.size, D)
        self.record_chunks = R = ceil_div(self.out_layout.size, D)
        self.ctrl_chunks_layout = data.ArrayLayout(D, K)
        self.record_chunks_layout = data.ArrayLayout(D, R)
        self.descriptor_layout = data.StructLayout({
            "sample_every": SAMPLE_EVERY_BITS, "colours": self.colour_bits,
            "last": bits_for(self.sched_depth), "read": 1})
        self.error_layout = data.StructLayout({"op": 8, "reason": 8})
        need = max(self.descriptor_layout.size, self.error_layout.size)
        if D < need:
            raise ValueError(f"data_bits: {D} is not allowed, must be at least the {need}-bit "
                             f"EXEC descriptor (n_colours {self.n_colours}, sched_depth "
                             f"{self.sched_depth})")

        self.ctrl_base = 0
        self.ctrl_push = self.ctrl_base + K - 1
        self.status_base = status_base(addr_bits)
        if K > self.status_base:
            need = (K + STATUS_WINDOW - 1).bit_length()
            raise ValueError(f"addr_bits: {addr_bits} is not allowed, must be at least {need} "
                             f"to map {K} ctrl chunks and {STATUS_WINDOW} status registers")
        self.status_registers = StatusRegisters(STATUS_REGISTERS, self.status_base)
        self.status = self.status_registers.addresses

    @classmethod
    def _check_rules(cls, v: dict):
        """Rules that span parameters, each naming the field it refuses."""
        def refuse(name, allowed):
            raise ValueError(f"{name}: {v[name]!r} is not allowed, must be {allowed}")
        if v["arch"] == "parallel" and v["n"] > PARALLEL_MAX_N:
            refuse("n", f"2..{PARALLEL_MAX_N} with arch parallel (all-to-all J registers; "
                        f"arch lanes takes up to {LANES_MAX_N})")
        if v["w_frac"] >= v["w_bits"]:
            refuse("w_frac", f"0..{v['w_bits'] - 1} (below w_bits {v['w_bits']})")
        if v["beta_frac"] > v["beta_bits"]:
            refuse("beta_frac", f"0..{v['beta_bits']} (at most beta_bits)")
        if v["sweep_bits"] > 32 - v["beta_bits"]:
            refuse("sweep_bits", f"1..{32 - v['beta_bits']} (32 - beta_bits "
                                 f"{v['beta_bits']})")
        if v["lut_size"] & (v["lut_size"] - 1):
            refuse("lut_size", "a power of two 2..65536")
        if v["lanes"] & (v["lanes"] - 1):
            refuse("lanes", "a power of two 1..64")
        if v["z_bits"] > v["rand_bits"]:
            refuse("z_bits", f"0..{v['rand_bits']} (at most rand_bits)")
        if v["arch"] == "lanes" and v["z_bits"]:
            refuse("z_bits", "0 with arch lanes (the quantile rule is the parallel array's)")
        if v["arch"] == "lanes":
            if v["max_degree"] > v["n"]:
                refuse("max_degree", f"1..{v['n']} (at most n)")
            slots = ceil_div(v["n"], v["lanes"])
            if v["edge_depth"] < slots:
                refuse("edge_depth", f"at least {slots} (every p-bit of a lane needs an "
                                     f"edge entry: ceil(n / lanes))")

    # -- what the host and the generator need ------------------------------------------

    def seeds(self) -> list[int]:
        return pbit_seeds(self.seed, self.n)

    def formats(self) -> dict:
        """The number formats and sizes both arrays take."""
        return {k: self.values[k] for k in (
            "n_colours", "w_bits", "w_frac", "h_bits", "beta_bits", "beta_frac", "lut_size",
            "lut_step_frac", "rand_bits", "z_bits", "sched_depth", "sweep_bits", "word_bits")}

    def array(self):
        """A new array component of this tile (one per elaboration)."""
        if self.arch == "lanes":
            return PBitLanes(n=self.n, lanes=self.lanes, edge_depth=self.edge_depth,
                             max_degree=self.max_degree, seeds=self.seeds(),
                             fields=self.fields, **self.formats())
        return PBitArray.dense(n=self.n, seeds=self.seeds(), **self.formats())

    def config(self) -> dict:
        """The array's ``config()`` plus ``arch``: what ``gen.pbit.driver`` takes."""
        return dict(self._config)

    def manifest(self) -> dict:
        """Everything a host needs to drive this tile, read from the layouts (JSON-able)."""
        K, R = self.ctrl_chunks, self.record_chunks
        return {
            "kind": "pbit",
            "arch": self.arch,
            "params": {k: v for k, v in self.values.items()
                       if self.arch == "lanes" or k not in self.LANE_ONLY},
            "config": self.config(),
            "address_map": {
                "ctrl": {"base": self.ctrl_base, "chunks": K, "push": self.ctrl_push},
                "status": {"base": self.status_base, "window": STATUS_WINDOW},
            },
            "status_registers": dict(self.status),
            "ctrl_word": {"width": self.ctrl_layout.size, "chunks": K,
                          "chunk_bits": self.data_bits},
            "record": {"width": self.out_layout.size, "chunks": R,
                       "chunk_bits": self.data_bits},
            "exec": {"addr": "tag", "descriptor": layout_positions(self.descriptor_layout)},
            "replies": {"record": "REPLY x record chunks, addr = tag",
                        "done": "DONE addr = tag, data = records of the job"},
            "errors": {"layout": layout_positions(self.error_layout),
                       "reasons": {"other": 0, "bad_descriptor": ERROR_BAD_DESCRIPTOR,
                                   "bad_op": ERROR_BAD_OP, "bad_index": ERROR_BAD_INDEX}},
            "ctrl_ops": {op.name: int(op) for op in self.ops},
            "program_ops": [op.name for op in self.program_ops],
            "record_kinds": {k.name: int(k) for k in Kind},
            "layouts": {
                "ctrl": layout_positions(self.ctrl_layout),
                "out": layout_positions(self.out_layout),
                "descriptor": layout_positions(self.descriptor_layout),
                **{f"data.{name}": layout_positions(lay)
                   for name, lay in self.data_layouts.items()},
            },
        }


class RecordSender(wiring.Component):
    """A job's records as flits: every ``records`` record as ``R`` REPLY chunks, chunk 0
    first, then after the final record (COUNT index 1) one DONE with the record count,
    all to the job's owner with ``addr`` = its tag.

    ``start`` (with ``dst_x``, ``dst_y``, ``tag``) begins a job; ``running`` is high from
    then until the DONE leaves on ``flits``, and ``done`` is high in that cycle.
    ``run_cycles`` holds the COUNT index 0 record of the last job. A record is taken
    while the previous one's last chunk leaves, so records stream back to back.
    """

    def __init__(self, *, params, layout, counter_bits: int):
        self._params, self._counter_bits = params, counter_bits
        super().__init__({
            "records": In(stream.Signature(params.out_layout)),
            "flits": Out(stream.Signature(message_layout(layout))),
            "start": In(1), "dst_x": In(layout["dst_x"].shape),
            "dst_y": In(layout["dst_y"].shape), "tag": In(layout["addr"].shape),
            "running": Out(1), "done": Out(1), "run_cycles": Out(counter_bits),
        })

    def elaborate(self, platform):
        m = Module()
        p, R = self._params, self._params.record_chunks
        job = Signal(data.StructLayout({"dst_x": len(self.dst_x), "dst_y": len(self.dst_y),
                                        "tag": len(self.tag)}))
        job_records = Signal(self._counter_bits)
        with m.If(self.start):
            m.d.sync += [self.running.eq(1), job.dst_x.eq(self.dst_x),
                         job.dst_y.eq(self.dst_y), job.tag.eq(self.tag), job_records.eq(0)]

        # One record in a register, sent as R chunks; DONE after the final one.
        rec = Signal(p.record_chunks_layout)
        rec_valid = Signal()
        chunk = Signal(range(max(2, R)))
        rec_view = data.View(p.out_layout, rec.as_value()[:p.out_layout.size])
        rec_final = (rec_view.kind == int(Kind.COUNT)) & (rec_view.index == 1)
        done_pending = Signal()
        rec_sent = Signal()          # the record's last chunk leaves this cycle
        records = self.records
        m.d.comb += records.ready.eq(~done_pending & (~rec_valid | (rec_sent & ~rec_final)))
        with m.If(records.valid & records.ready):
            m.d.sync += [rec.as_value().eq(records.payload.as_value()), rec_valid.eq(1),
                         job_records.eq(job_records + 1)]
            with m.If((records.payload.kind == int(Kind.COUNT)) &
                      (records.payload.index == 0)):
                m.d.sync += self.run_cycles.eq(records.payload.data)

        flit = self.flits.payload
        m.d.comb += [self.flits.valid.eq(rec_valid | done_pending),
                     flit.dst_x.eq(job.dst_x), flit.dst_y.eq(job.dst_y), flit.addr.eq(job.tag),
                     flit.op.eq(Mux(done_pending, Op.DONE, Op.REPLY)),
                     flit.data.eq(Mux(done_pending, job_records, rec[chunk]))]
        with m.If(self.flits.valid & self.flits.ready):
            with m.If(done_pending):
                m.d.comb += self.done.eq(1)
                m.d.sync += [done_pending.eq(0), self.running.eq(0)]
            with m.Elif(chunk == R - 1):
                m.d.comb += rec_sent.eq(1)
                m.d.sync += [chunk.eq(0), rec_valid.eq(0), done_pending.eq(rec_final)]
            with m.Else():
                m.d.sync += chunk.eq(chunk + 1)
        # A record taken this cycle refills the register the last chunk just left.
        with m.If(records.valid & records.ready):
            m.d.sync += rec_valid.eq(1)
        return m


class PBitTile(NocTile):
    Params = PBitTileParams

    # -- checks of a completed ctrl word ---------------------------------------------

    def _word_checks(self, m, word):
        """(op is a programming op, index in range for it) of a ctrl-word view."""
        p = self.params
        op_ok, index_ok = Signal(), Signal()
        m.d.comb += op_ok.eq(word.op < int(p.ops.RUN))
        if p.arch == "lanes":
            lane_ok = below(word.slot, p.lanes)
            count_ok = lane_ok & below(word.data, p.slots + 1)
            if p.fields == "incremental":      # index 1: the rows of every lane
                count_ok = Mux(word.index == 1, below(word.data, p.edge_depth + 1),
                               count_ok & (word.index == 0))
            bounds = {LaneOp.EDGE: lane_ok & below(word.index, p.edge_depth),
                      LaneOp.NODE: lane_ok & below(word.index, p.slots),
                      LaneOp.COUNT: count_ok,
                      LaneOp.STATE: below(word.index, p.n),
                      LaneOp.SCHED: below(word.index, p.sched_depth)}
        else:
            bounds = {ArrayOp.J: below(word.index, p.n) & below(word.slot, p.n - 1),
                      ArrayOp.H: below(word.index, p.n),
                      ArrayOp.COLOUR: below(word.index, p.n),
                      ArrayOp.STATE: below(word.index, p.n),
                      ArrayOp.SCHED: below(word.index, p.sched_depth)}
        with m.Switch(word.op):
            for op, ok in bounds.items():
                with m.Case(int(op)):
                    m.d.comb += index_ok.eq(ok)
        return op_ok, index_ok

    def elaborate(self, platform):
        m = Module()
        p, layout = self.params, self._layout
        D, K, cb = p.data_bits, p.ctrl_chunks, self._counter_bits
        m.submodules.array = array = p.array()
        m.submodules.sender = sender = RecordSender(params=p, layout=layout, counter_bits=cb)
        m.submodules.output = output = TileOutput(layout, x=self._x, y=self._y)
        wiring.connect(m, array.out, sender.records)
        wiring.connect(m, sender.flits, output.flits)
        wiring.connect(m, output.o, wiring.flipped(self.o))

        running = sender.running       # a job is accepted and its DONE not yet queued
        counters = {name: Signal(cb, name=name) for name in STATUS_REGISTERS
                    if name not in ("dropped", "running", "run_cycles")}
        errors = counters["errors"]
        req = self.i.payload
        is_status, status_value = p.status_registers.read(
            m, req.addr, {"dropped": self.dropped, "running": running,
                          "run_cycles": sender.run_cycles, **counters})
        m.d.comb += [sender.dst_x.eq(req.src_x), sender.dst_y.eq(req.src_y),
                     sender.tag.eq(req.addr)]

        # ---- Ctrl staging: chunks 0..K-2 in registers, the last one is the request's data.
        word = Signal(p.ctrl_layout)
        if K > 1:
            stage = Signal(data.ArrayLayout(D, K - 1))
            m.d.comb += word.as_value().eq(Cat(stage.as_value(), req.data))
        else:
            m.d.comb += word.as_value().eq(req.data)
        op_ok, index_ok = self._word_checks(m, word)

        # The word waiting for the array's ctrl stream (a program word, RUN or READ).
        push_valid = Signal()
        push_word = Signal(p.ctrl_layout)
        m.d.comb += [array.ctrl.valid.eq(push_valid), array.ctrl.payload.eq(push_word)]
        with m.If(array.ctrl.valid & array.ctrl.ready):
            m.d.sync += [push_valid.eq(0), counters["ctrl_words"].eq(counters["ctrl_words"] + 1)]

        # ---- EXEC descriptor and the RUN/READ word it becomes.
        desc = data.View(p.descriptor_layout, req.data[:p.descriptor_layout.size])
        desc_ok = desc.read | (below(desc.colours, p.n_colours) &
                               below(desc.last, p.sched_depth))
        exec_word = Signal(p.ctrl_layout)
        run_data = data.View(p.run_layout, exec_word.data[:p.run_layout.size])
        m.d.comb += [exec_word.op.eq(Mux(desc.read, int(p.ops.READ), int(p.ops.RUN))),
                     exec_word.index.eq(desc.last),
                     run_data.sample_every.eq(desc.sample_every),
                     run_data.colours.eq(desc.colours)]

        # ---- Front end: one request per cycle unless an answer waits for the output.
        pending = Signal()
        reply = Signal(message_layout(layout))
        m.d.comb += [output.answer.valid.eq(pending), output.answer.payload.eq(reply)]
        in_ctrl = below(req.addr, K)
        is_push = req.addr == p.ctrl_push
        wants_push = (req.op == Op.WRITE) & is_push & op_ok & index_ok
        wants_job = (req.op == Op.EXEC) & desc_ok
        hold = (wants_push & push_valid) | (wants_job & (push_valid | running))
        take = Signal()
        m.d.comb += [self.i.ready.eq(~pending & ~hold), take.eq(self.i.valid & self.i.ready)]

        answer, reason = Signal(), Signal(2)
        is_error = Signal()
        answer_data = Signal(D)
        with m.If(take):
            m.d.sync += counters["flits_in"].eq(counters["flits_in"] + 1)
            with m.Switch(req.op):
                with m.Case(Op.WRITE):
                    with m.If(~in_ctrl):
                        m.d.comb += is_error.eq(1)
                    with m.Elif(~is_push), m.Switch(req.addr):
                        for k in range(K - 1):
                            with m.Case(p.ctrl_base + k):
                                m.d.sync += stage[k].eq(req.data)
                    with m.Elif(~op_ok):
                        m.d.comb += [is_error.eq(1), reason.eq(ERROR_BAD_OP)]
                    with m.Elif(~index_ok):
                        m.d.comb += [is_error.eq(1), reason.eq(ERROR_BAD_INDEX)]
                    with m.Else():
                        m.d.sync += [push_valid.eq(1), push_word.eq(word)]
                with m.Case(Op.READ):
                    with m.If(is_status):
                        m.d.comb += [answer.eq(1), answer_data.eq(status_value)]
                    with m.Else():
                        m.d.comb += is_error.eq(1)
                with m.Case(Op.EXEC):
                    with m.If(desc_ok):
                        m.d.comb += sender.start.eq(1)
                        m.d.sync += [push_valid.eq(1), push_word.eq(exec_word)]
                    with m.Else():
                        m.d.comb += [is_error.eq(1), reason.eq(ERROR_BAD_DESCRIPTOR)]
                with m.Case(Op.REPLY, Op.DONE, Op.ERROR):
                    m.d.sync += errors.eq(errors + 1)
                with m.Default():
                    m.d.comb += is_error.eq(1)
            with m.If(is_error):
                error = data.View(p.error_layout, answer_data[:p.error_layout.size])
                m.d.comb += [answer.eq(1), error.op.eq(req.op), error.reason.eq(reason)]
                m.d.sync += errors.eq(errors + 1)
            with m.If(answer):
                m.d.sync += [pending.eq(1),
                             *reply_to(reply, req, error=is_error, data=answer_data)]
        with m.If(output.answer.valid & output.answer.ready):
            m.d.sync += pending.eq(0)

        with m.If(sender.done):
            m.d.sync += counters["runs"].eq(counters["runs"] + 1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += counters["flits_out"].eq(counters["flits_out"] + 1)
        return m
