"""Crossbar tile: NoC packets in, the in-memory-compute ``Crossbar`` block inside.

Ports: ``i`` (flits from the NoC), ``o`` (flits to the NoC), ``dropped`` (its
router's drop counter, readable as a status register).

Geometry (``D`` = packet data bits, ``B`` = ``input_bits``): an X word holds
``P = D // B`` signed inputs, slot ``j`` at bits ``[j*B, (j+1)*B)``
(``x_layout``); a vector of ``rows`` inputs takes ``X = ceil(rows / P)`` words,
row ``i`` in word ``i // P``, slot ``i % P``. A result is ``result_bits`` wide
(enough for every output the array can produce, sign-extended); a REPLY flit
holds ``R = D // result_bits`` of them, field ``r`` at bits ``[r*result_bits,
(r+1)*result_bits)`` (``result_layout``), so a vector's ``cols`` results take
``F = ceil(cols / R)`` flits, column ``j`` in flit ``j // R``, field ``j % R``;
unused fields of the last flit are 0.

Address map: ``SEED = 0``, ``PROG = 1``, X words at ``X_BASE + k = 2 + k`` for
``k < X``; status registers at ``2**addr_bits - 16 + k`` (``STATUS_REGISTERS``:
dropped, errors, flits_in, flits_out, mvms, busy). Nothing else is mapped.

Ops, per request from ``(src_x, src_y)``:
- ``WRITE SEED, data = s``: restarts every noise generator from ``s`` (the low 32
  bits). Posted. Held while a vector is being applied, so it follows every EXEC
  before it.
- ``WRITE PROG, data = w``: ``w``, the whole data word as a two's complement
  number (``prog_layout``), enters the programming shift chain: ``rows * cols``
  writes in row-major order (row = input ``i``, column = output ``j``) define the
  array. Posted. Held while a vector is being applied. ``|w| > levels**slices - 1``
  is answered ``ERROR`` reason 2 and not programmed.
- ``WRITE X_BASE + k``: stores word ``k`` of the input vector buffer. Posted.
- ``EXEC addr = tag``: applies the buffered vector; the buffer may be rewritten
  at once for the next one. The vector's ``F`` results go to the EXEC's source as
  ``F`` ``REPLY`` flits (``addr = tag``, flit 0 first), then one ``DONE`` (``addr
  = tag``, ``data = F``). Up to ``VECTORS_IN_FLIGHT`` EXECs wait for their results
  (a queue of tag and source), so back-to-back EXECs keep the array busy; an EXEC
  at a full queue, or while the array cannot take a vector yet, is held.
- ``READ`` of a status register replies ``REPLY`` with its value before this
  request: ``flits_in`` flits served, ``flits_out`` flits sent, ``mvms`` DONEs
  sent, ``busy`` cycles the array applied a bit-plane (``B`` per vector),
  ``errors`` ERRORs answered plus REPLY/DONE/ERROR received.
- Any other READ or WRITE (unmapped address, X word ``k >= X``, READ of SEED,
  PROG or X, WRITE of a status register): ``ERROR`` reason 1; an unknown op:
  ``ERROR`` reason 3. ``REPLY``, ``DONE`` and ``ERROR`` arriving here are counted
  as errors and not answered.

Every ERROR goes to the request's source with ``addr`` echoed and ``data = op |
reason << 8`` (``error_layout``) and is counted in ``errors``. Replies carry this
tile's coordinates as source. Requests are served in order, one per cycle; one
that cannot be served yet (a reply that cannot leave, the array busy) holds the
input, nothing is dropped. Results share the output with answers in turn, and
backpressure on the output never changes results (the block freezes whole).

Structure: ``CrossbarTile`` serves the requests (input register, dispatch, answers)
around the ``Crossbar`` block; a ``ResultSender`` turns the block's results into flits,
and ``tile.TileOutput`` sends answers and result flits in turn.
"""

from __future__ import annotations

from fractions import Fraction

from amaranth import *
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arith import ceil_div
from ..imc.crossbar import NOISE_MODES, Crossbar, divisors
from ..imc.noise import noise_gain
from ..noc.packet import OP_BITS, Op
from ..tile import (
    STATUS_WINDOW,
    NocTile,
    Param,
    StatusRegisters,
    TileOutput,
    check_params,
    field_width,
    layout_positions,
    message_layout,
    reply_to,
    status_base,
)

STATUS_REGISTERS = ("dropped", "errors", "flits_in", "flits_out", "mvms", "busy")

SEED_ADDR = 0
PROG_ADDR = 1
X_BASE = 2

ERROR_UNMAPPED = 1
ERROR_WEIGHT_RANGE = 2
ERROR_UNKNOWN_OP = 3
ERROR_REASONS = {"unmapped": ERROR_UNMAPPED, "weight_range": ERROR_WEIGHT_RANGE,
                 "unknown_op": ERROR_UNKNOWN_OP}

VECTORS_IN_FLIGHT = 4      # one in the serializer, one in the output register of the
                           # block, one in its pipeline and one being applied
MIN_DATA_BITS = 16         # an ERROR's data holds op | reason << 8
SEED_BITS = 32


class CrossbarTileParams:
    """A crossbar tile's parameters, checked, with the widths and address map derived.

    YAML values are in level units (``adc_min``/``adc_max``, sigmas); ``block`` holds
    the same array in the fixed-point units of the ``Crossbar`` block (and of the golden
    model's ``CrossbarParams``: the same fields).

    Ranges, sized so that the largest tile still fits an ECP5-85F: ``rows`` and
    ``cols`` 1..64, ``adc_share`` a divisor of ``cols``, with at most 2048 cells
    summed per cycle (``rows * cols * slices / adc_share``: every one is a term of a
    column adder tree; yosys ``synth_ecp5`` of 8x8x2 and 16x16x2 tiles at levels 4,
    frac_bits 4 gives about 27 LUT4 and 11 FF per cell over a 3.6k LUT4 base, so
    2048 cells is about 60k of its 84k LUT4) and 8192 cells held (``rows * cols *
    slices``, ``gbits + 1`` flip-flops each; with sharing a group's cells turn as a
    ring, one LUT4 per bit of each group). A 64x64x2 tile at adc_share 4
    (examples/imc/crossbar64_shared.yaml) synthesizes to 67.9k LUT4 and 74.8k FF of
    the 85F's 83.6k each; adc_share 2 doubles the adder trees and rings. Larger
    levels and frac_bits widen every cell. ``levels``
    2..256, ``slices`` 1..4 (``levels`` a power of two when ``slices > 1``),
    ``frac_bits`` 0..8, ``input_bits`` 2..16, ``adc_bits`` 0..16 (0: ideal ADC,
    the range is then ignored), ``adc_min < adc_max`` multiples of the conductance
    LSB ``2**-frac_bits`` level within ``+-(4 rows (levels - 1) + 1)`` levels,
    sigmas 0..64 levels. The packet must carry a result (``result_bits <=
    data_bits``), a weight and an ERROR's data (``data_bits >= 16``), and the
    address space SEED, PROG, the X words and the status window.
    """

    PARAMS = (
        Param("rows", 16, lo=1, hi=64, doc="inputs (word lines)"),
        Param("cols", 16, lo=1, hi=64, doc="outputs (bit lines)"),
        Param("levels", 4, lo=2, hi=256, doc="conductance levels per device"),
        Param("slices", 2, lo=1, hi=4,
              doc="arrays for weight bit slicing; levels a power of two when > 1"),
        Param("frac_bits", 4, lo=0, hi=8, doc="conductance fixed point: 2**-frac_bits level"),
        Param("input_bits", 8, lo=2, hi=16, doc="bit-serial input planes (two's complement)"),
        Param("adc_bits", 8, lo=0, hi=16, doc="ADC resolution; 0 = ideal ADC"),
        Param("adc_min", -12, "number", lo=-65281, hi=65281,
              doc="ADC clip minimum, levels, a multiple of 2**-frac_bits"),
        Param("adc_max", 12, "number", lo=-65281, hi=65281,
              doc="ADC clip maximum, levels, a multiple of 2**-frac_bits"),
        Param("prog_sigma", 0.0, "number", lo=0, hi=64,
              doc="programming noise sigma, levels (per level if proportional)"),
        Param("read_sigma", 0.0, "number", lo=0, hi=64,
              doc="read noise sigma of a column read, levels"),
        Param("prog_noise", "independent", "string", choices=NOISE_MODES,
              doc="programming noise independent of, or proportional to, the level"),
        Param("adc_share", 1, lo=1, hi=64,
              doc="columns per ADC, a divisor of cols: each group of adc_share columns "
                  "shares one column adder, read-noise datapath and ADC, digitized over "
                  "adc_share passes of the bit-planes"),
    )
    MAX_CELLS = 2048            # cells summed per cycle: rows * cols * slices / adc_share
    MAX_STORED_CELLS = 8192     # cells held: rows * cols * slices

    def __init__(self, *, data_bits: int, addr_bits: int, **values):
        v = check_params(self.PARAMS, values, "crossbar tile")
        adc_lo, adc_hi = self._check_rules(v)
        self.values = v
        for name, value in v.items():
            setattr(self, name, value)
        self.data_bits, self.addr_bits = data_bits, addr_bits
        D, F = data_bits, v["frac_bits"]

        self.block = {
            "rows": v["rows"], "cols": v["cols"], "levels": v["levels"],
            "slices": v["slices"], "in_bits": v["input_bits"], "adc_bits": v["adc_bits"],
            "adc_lo": adc_lo, "adc_hi": adc_hi, "frac_bits": F,
            "prog_gain": noise_gain(v["prog_sigma"], F), "prog_noise": v["prog_noise"],
            "read_gain": noise_gain(v["read_sigma"], F), "adc_share": v["adc_share"]}
        probe = Crossbar(**self.block)
        probe._MustUse__silence = True     # built for its widths only, never elaborated
        self.w_max = probe.w_max
        self.cycles_per_vector = probe.cycles_per_vector
        self.w_bits = self.w_max.bit_length() + 1
        self.result_bits = probe.out_bits

        def refuse(name, value, allowed):
            raise ValueError(f"{name}: {value!r} is not allowed, must be {allowed}")
        need = max(MIN_DATA_BITS, self.w_bits, self.result_bits)
        if D < need:
            refuse("data_bits", D, f"at least {need}: a result is {self.result_bits} bits, "
                   f"a weight {self.w_bits} bits (levels {self.levels}, slices "
                   f"{self.slices}, input_bits {self.input_bits}, adc_bits {self.adc_bits}) "
                   f"and an ERROR's data {MIN_DATA_BITS}")

        self.inputs_per_word = P = D // self.input_bits
        self.x_words = ceil_div(self.rows, P)
        self.results_per_flit = R = D // self.result_bits
        self.flits_per_vector = ceil_div(self.cols, R)
        self.status_base = status_base(addr_bits)
        if X_BASE + self.x_words > self.status_base:
            need = (X_BASE + self.x_words + STATUS_WINDOW - 1).bit_length()
            refuse("addr_bits", addr_bits, f"at least {need} to map SEED, PROG, "
                   f"{self.x_words} X words and {STATUS_WINDOW} status registers")
        self.status_registers = StatusRegisters(STATUS_REGISTERS, self.status_base)
        self.status = self.status_registers.addresses
        self.address_map = {"seed": SEED_ADDR, "prog": PROG_ADDR, "x_base": X_BASE,
                            "x_words": self.x_words, "status_base": self.status_base,
                            "status_window": STATUS_WINDOW}

        B, rb = self.input_bits, self.result_bits
        self.x_layout = data.FlexibleLayout(D, {
            f"x{j}": data.Field(signed(B), j * B) for j in range(P)})
        self.result_layout = data.FlexibleLayout(D, {
            f"r{r}": data.Field(signed(rb), r * rb) for r in range(R)})
        self.prog_layout = data.FlexibleLayout(D, {"weight": data.Field(signed(D), 0)})
        self.seed_layout = data.FlexibleLayout(D, {
            "seed": data.Field(unsigned(min(SEED_BITS, D)), 0)})
        self.error_layout = data.FlexibleLayout(D, {
            "op": data.Field(unsigned(OP_BITS), 0), "reason": data.Field(unsigned(8), 8)})
        self.done_layout = data.FlexibleLayout(D, {
            "flits": data.Field(unsigned(D), 0)})

    @classmethod
    def _check_rules(cls, v: dict) -> tuple[int, int]:
        """Rules that span parameters, each naming the field it refuses; the ADC range
        in fixed-point units."""
        def refuse(name, allowed):
            raise ValueError(f"{name}: {v[name]!r} is not allowed, must be {allowed}")
        levels, slices, frac = v["levels"], v["slices"], v["frac_bits"]
        if slices > 1 and levels & (levels - 1):
            refuse("levels", "a power of two (2, 4, 8, ...) when slices > 1, so slices "
                             "combine by shifts")
        rows, cols, share = v["rows"], v["cols"], v["adc_share"]
        if cols % share:
            refuse("adc_share", f"a divisor of cols ({cols}): one of "
                                f"{', '.join(map(str, divisors(cols)))}")
        cells = rows * cols * slices
        if cells > cls.MAX_STORED_CELLS:
            refuse("rows", f"at most {cls.MAX_STORED_CELLS // (cols * slices)} with cols "
                           f"{cols} and slices {slices}: rows * cols * slices <= "
                           f"{cls.MAX_STORED_CELLS} cells")
        if cells > cls.MAX_CELLS * share:
            fit = [d for d in divisors(cols) if cells <= cls.MAX_CELLS * d]
            refuse("rows", f"at most {cls.MAX_CELLS * share // (cols * slices)} with cols "
                           f"{cols}, slices {slices} and adc_share {share}: rows * cols * "
                           f"slices / adc_share <= {cls.MAX_CELLS} cells summed per cycle"
                           + (f" (or adc_share {fit[0]} or more)" if fit else ""))
        if v["adc_bits"] == 0:
            return 0, 0
        lsb = Fraction(1, 1 << frac)
        bound = 4 * v["rows"] * (levels - 1) + 1
        fixed = {}
        for name in ("adc_min", "adc_max"):
            value = Fraction(v[name]).limit_denominator(1 << 20)
            if abs(value) > bound:
                refuse(name, f"within +-{bound} levels (4 rows (levels - 1) + 1, four times "
                             f"the largest column sum)")
            if value % lsb:
                refuse(name, f"a multiple of {lsb} level (the conductance LSB at frac_bits "
                             f"{frac})")
            fixed[name] = int(value / lsb)
        if fixed["adc_min"] >= fixed["adc_max"]:
            refuse("adc_min", f"less than adc_max ({v['adc_max']!r})")
        return fixed["adc_min"], fixed["adc_max"]

    def __eq__(self, other):
        return (isinstance(other, CrossbarTileParams) and self.values == other.values
                and (self.data_bits, self.addr_bits) == (other.data_bits, other.addr_bits))

    def __hash__(self):
        return hash((tuple(sorted(self.values.items())), self.data_bits, self.addr_bits))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return (f"CrossbarTileParams(data_bits={self.data_bits}, addr_bits={self.addr_bits}, "
                f"{args})")

    def manifest(self) -> dict:
        """Everything a host needs to drive this tile, read from the layouts (JSON-able)."""
        half = 1 << (self.input_bits - 1)
        return {
            "kind": "crossbar",
            "params": dict(self.values),
            "crossbar": dict(self.block),
            "w_max": self.w_max,
            "x_range": [-half, half - 1],
            "address_map": dict(self.address_map),
            "status_registers": dict(self.status),
            "inputs_per_word": self.inputs_per_word,
            "x_words": self.x_words,
            "results_per_flit": self.results_per_flit,
            "result_bits": self.result_bits,
            "flits_per_vector": self.flits_per_vector,
            "vectors_in_flight": VECTORS_IN_FLIGHT,
            "exec": {"addr": "tag",
                     "replies": "flits_per_vector REPLY (result words), addr = tag",
                     "done": "DONE addr = tag, data = flits_per_vector"},
            "errors": {"layout": layout_positions(self.error_layout),
                       "reasons": dict(ERROR_REASONS)},
            "layouts": {
                "x_word": layout_positions(self.x_layout),
                "result_word": layout_positions(self.result_layout),
                "prog_word": layout_positions(self.prog_layout),
                "seed_word": layout_positions(self.seed_layout),
                "error_data": layout_positions(self.error_layout),
                "done_data": layout_positions(self.done_layout),
            },
        }


class ResultSender(wiring.Component):
    """A vector's results as flits: ``results`` (the block's ``y``) waits in a register
    while it leaves on ``flits`` as ``F`` REPLY flits (``result_layout``, flit 0 first)
    and one DONE (``data = F``), to the owner and with the tag of ``head`` (the oldest
    waiting EXEC); ``pop`` is high when the DONE leaves. The next vector is taken in that
    cycle, so the block goes on with it meanwhile.
    """

    def __init__(self, *, params, layout, tag_layout, y_layout):
        self._params, self._tag_layout = params, tag_layout
        super().__init__({
            "results": In(stream.Signature(y_layout)),
            "head": In(tag_layout), "pop": Out(1),
            "flits": Out(stream.Signature(message_layout(layout))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self._params
        R, F = p.results_per_flit, p.flits_per_vector
        res_valid = Signal()
        res = [Signal(signed(p.result_bits), name=f"result{j}") for j in range(p.cols)]
        flit = Signal(range(F + 1))
        results, flits = self.results, self.flits
        m.d.comb += results.ready.eq(~res_valid | self.pop)
        with m.If(results.valid & results.ready):
            m.d.sync += [res[j].eq(results.payload[f"c{j}"]) for j in range(p.cols)]
            m.d.sync += res_valid.eq(1)
        with m.Elif(self.pop):
            m.d.sync += res_valid.eq(0)

        out = flits.payload
        m.d.comb += [flits.valid.eq(res_valid), out.dst_x.eq(self.head.dst_x),
                     out.dst_y.eq(self.head.dst_y), out.addr.eq(self.head.tag)]
        words = []
        for f in range(F):
            word = Signal(p.result_layout, name=f"result_word{f}")
            m.d.comb += [word[f"r{r}"].eq(res[f * R + r])
                         for r in range(min(R, p.cols - f * R))]
            words.append(word)
        done = Signal(p.done_layout)
        m.d.comb += done.flits.eq(F)
        with m.Switch(flit):
            for f, word in enumerate(words):
                with m.Case(f):
                    m.d.comb += [out.op.eq(Op.REPLY), out.data.eq(word)]
            with m.Default():
                m.d.comb += [out.op.eq(Op.DONE), out.data.eq(done)]
        with m.If(flits.valid & flits.ready):
            with m.If(flit == F):
                m.d.comb += self.pop.eq(1)
                m.d.sync += flit.eq(0)
            with m.Else():
                m.d.sync += flit.eq(flit + 1)
        return m


class CrossbarTile(NocTile):
    Params = CrossbarTileParams

    def elaborate(self, platform):
        m = Module()
        p, layout = self.params, self._layout
        P, B, A = p.inputs_per_word, p.input_bits, p.addr_bits
        coord = field_width(layout, "dst_x")
        m.submodules.crossbar = xb = Crossbar(**p.block)
        m.submodules.output = output = TileOutput(layout, x=self._x, y=self._y)
        wiring.connect(m, output.o, wiring.flipped(self.o))

        counters = {name: Signal(self._counter_bits, name=name)
                    for name in STATUS_REGISTERS[1:]}
        errors = counters["errors"]
        message = message_layout(layout)

        # ---- Input register: the request being served.
        req = Signal(layout)
        req_valid = Signal()
        retire = Signal()            # the request is served this cycle
        m.d.comb += self.i.ready.eq(~req_valid | retire)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [req.eq(self.i.payload), req_valid.eq(1)]
        with m.Elif(retire):
            m.d.sync += req_valid.eq(0)
        with m.If(retire):
            m.d.sync += counters["flits_in"].eq(counters["flits_in"] + 1)

        at_seed = req.addr == SEED_ADDR
        at_prog = req.addr == PROG_ADDR
        at_x = (req.addr >= X_BASE) & (req.addr < X_BASE + p.x_words)
        at_status, status_value = p.status_registers.read(
            m, req.addr, {"dropped": self.dropped, **counters})
        weight = req.data.as_signed()
        weight_ok = (weight >= -p.w_max) & (weight <= p.w_max)

        # ---- Answers (status REPLYs and ERRORs): one waits in `reply` for the output.
        pending = Signal()
        reply = Signal(message)
        reply_loaded = Signal()      # `reply` enters the output register this cycle
        m.d.comb += [output.answer.valid.eq(pending), output.answer.payload.eq(reply),
                     reply_loaded.eq(output.answer.valid & output.answer.ready)]
        answer, error = Signal(), Signal()
        reason = Signal(8)
        err = Signal(p.error_layout)
        m.d.comb += [err.op.eq(req.op.as_value()), err.reason.eq(reason)]
        with m.If(reply_loaded):
            m.d.sync += pending.eq(0)

        # ---- The vector buffer and the queue of EXECs waiting for their results.
        xbuf = [Signal(signed(B), name=f"xbuf{i}") for i in range(p.rows)]
        xword = data.View(p.x_layout, req.data)
        m.d.comb += [xb.x.payload[f"r{i}"].eq(xbuf[i]) for i in range(p.rows)]
        tag_layout = data.StructLayout({"tag": A, "dst_x": coord, "dst_y": coord})
        m.submodules.tags = tags = fifo.SyncFIFO(width=tag_layout.size,
                                                 depth=VECTORS_IN_FLIGHT)
        m.submodules.sender = sender = ResultSender(
            params=p, layout=layout, tag_layout=tag_layout, y_layout=xb.y.payload.shape())
        wiring.connect(m, xb.y, sender.results)
        wiring.connect(m, sender.flits, output.flits)
        m.d.comb += [sender.head.eq(tags.r_data), tags.r_en.eq(sender.pop)]
        entry = Signal(tag_layout)
        m.d.comb += [entry.tag.eq(req.addr), entry.dst_x.eq(req.src_x),
                     entry.dst_y.eq(req.src_y), tags.w_data.eq(entry)]
        m.d.comb += [xb.seed.payload.eq(req.data[:min(SEED_BITS, p.data_bits)]),
                     xb.prog.payload.eq(weight)]

        # ---- Dispatch: each request waits for what it needs, then retires.
        with m.If(req_valid):
            with m.Switch(req.op):
                with m.Case(Op.WRITE):
                    with m.If(at_seed):
                        m.d.comb += [xb.seed.valid.eq(1), retire.eq(xb.seed.ready)]
                    with m.Elif(at_prog & weight_ok):
                        m.d.comb += [xb.prog.valid.eq(1), retire.eq(xb.prog.ready)]
                    with m.Elif(at_x):
                        m.d.comb += retire.eq(1)
                        with m.Switch(req.addr - X_BASE):
                            for k in range(p.x_words):
                                with m.Case(k):
                                    m.d.sync += [xbuf[k * P + j].eq(xword[f"x{j}"])
                                                 for j in range(min(P, p.rows - k * P))]
                    with m.Else():
                        m.d.comb += [error.eq(1), reason.eq(Mux(at_prog, ERROR_WEIGHT_RANGE,
                                                                ERROR_UNMAPPED))]
                with m.Case(Op.READ):
                    with m.If(at_status):
                        m.d.comb += answer.eq(1)
                    with m.Else():
                        m.d.comb += [error.eq(1), reason.eq(ERROR_UNMAPPED)]
                with m.Case(Op.EXEC):
                    m.d.comb += [xb.x.valid.eq(tags.w_rdy),
                                 retire.eq(tags.w_rdy & xb.x.ready),
                                 tags.w_en.eq(tags.w_rdy & xb.x.ready)]
                with m.Case(Op.REPLY, Op.DONE, Op.ERROR):
                    m.d.comb += retire.eq(1)
                    m.d.sync += errors.eq(errors + 1)
                with m.Default():
                    m.d.comb += [error.eq(1), reason.eq(ERROR_UNKNOWN_OP)]
            with m.If(answer | error):
                m.d.comb += retire.eq(~pending | reply_loaded)
                with m.If(retire):
                    m.d.sync += [pending.eq(1), *reply_to(
                        reply, req, error=error, data=Mux(error, err.as_value(), status_value))]
                    with m.If(error):
                        m.d.sync += errors.eq(errors + 1)

        # ---- busy: the block applies one bit-plane per cycle of a vector (B per phase,
        # adc_share phases) while its pipeline advances; this mirrors its plane and
        # phase counters from the stream handshakes.
        planes_left = Signal(range(p.cycles_per_vector + 1))
        plane_issue = (planes_left != 0) & (~xb.y.valid | xb.y.ready)
        with m.If(xb.x.valid & xb.x.ready):
            m.d.sync += planes_left.eq(p.cycles_per_vector)
        with m.Elif(plane_issue):
            m.d.sync += planes_left.eq(planes_left - 1)
        with m.If(plane_issue):
            m.d.sync += counters["busy"].eq(counters["busy"] + 1)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += counters["flits_out"].eq(counters["flits_out"] + 1)
            with m.If(self.o.payload.op == Op.DONE):
                m.d.sync += counters["mvms"].eq(counters["mvms"] + 1)
        return m


__all__ = ["ERROR_REASONS", "PROG_ADDR", "SEED_ADDR", "STATUS_REGISTERS", "VECTORS_IN_FLIGHT",
           "X_BASE", "CrossbarTile", "CrossbarTileParams"]
