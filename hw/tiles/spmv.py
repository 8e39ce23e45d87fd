"""CSR SpMV tile: ``y = A x`` over the rows it holds, ``lanes`` nonzeros per cycle.

Ports: ``i`` (flits from the NoC), ``o`` (flits to the NoC), ``dropped`` (its
router's drop counter, readable as a status register).

Storage (``L = lanes``, a power of two; ``N = nnz_depth / L`` entries per lane):

- nonzeros: ``nnz_depth`` words of ``nz_layout`` (``value`` signed ``value_bits``,
  ``col`` of ``index_bits`` bits, the fewest that address ``x_depth - 1``; a column
  ``>= x_depth`` fits when ``x_depth`` is not a power of two), slot ``k`` is entry ``k // L`` of lane ``k % L``;
- row pointers: ``row_depth`` words; local row ``r`` is computed by lane ``r % L``,
  and ``ptr[r]`` is the *end* of its nonzeros in that lane's entries (lane-local CSR:
  row ``r`` holds lane entries ``[ptr[r - L], ptr[r])``, ``ptr[r - L] = 0`` for
  ``r < L``). A value above ``N`` is stored as ``N + 1`` (so it stays out of range);
- x: ``x_depth`` words in a ``SparseGather`` of ``lanes`` lanes, ``banks`` banks and a
  reorder window of ``window``, written through its ``write`` stream.

Address map: nonzero slot ``k`` at ``k``, row pointer ``r`` at ``PTR_BASE = nnz_depth
+ r``, x word ``i`` at ``X_BASE = nnz_depth + row_depth + i``, status registers at
``2**addr_bits - 16 + k`` (``STATUS_REGISTERS``).

Ops, per request from ``(src_x, src_y)``, served in order, one per cycle:

- ``WRITE`` of nonzeros, row pointers or x words: stored; posted. Held while an EXEC
  runs (so a WRITE after an EXEC never changes its result). One WRITE stores as many
  consecutive words as its data holds: at nonzero slot ``k``, the ``nz_per_word =
  min(L, data_bits // nonzero bits)`` fields ``nz0, nz1, ...`` of ``nz_word_layout``
  at slots ``k, k + 1, ...`` (one per lane, in one cycle); at row pointer ``r``, the
  ``ptr_per_word = min(L, data_bits // ptr_bits)`` fields ``end0, ...`` of
  ``ptr_layout`` at ``r, r + 1, ...``; at x word ``i``, the ``x_per_word =
  min(banks, data_bits // value_bits)`` fields ``x0, ...`` of ``x_layout`` at ``i, i +
  1, ...``. Fields that fall beyond the storage are ignored.
- ``EXEC addr = tag, data = rows`` (``exec_layout``), ``1 <= rows <= row_depth``:
  computes ``y[r] = sum value * x[col]`` over the lane entries of each local row
  ``r < rows``, exactly (``acc_bits = 2 value_bits - 1 + N.bit_length()`` bits hold
  any row of up to ``N`` products). Each lane walks its rows' entries in order, one
  per cycle, each a gather request of ``x[col]`` tagged with its value; each record
  is multiplied and added to the lane's accumulator (one add per cycle per lane, so
  no accumulator hazard), and the row's sum is stored when its last record arrives;
  an empty row costs one slot. Then ``ceil(rows / R)`` ``REPLY`` flits (``R = data_bits
  // acc_bits`` results each, ``result_layout``, row ``r`` in flit ``r // R`` field
  ``r % R``, unused fields 0; ``addr = tag``) and one ``DONE`` (``addr = tag, data =
  flits``) go to the EXEC's source. A malformed CSR (a row pointer below the row's
  start or above ``N``, a column ``>= x_depth``) is answered, after the run, by one
  ``ERROR`` (``addr = tag``, reason ``bad_csr``) instead of any REPLY. An EXEC with
  ``rows`` out of range is answered at once by ``ERROR`` reason ``bad_exec``; a valid
  EXEC waits for the one running to finish.
- ``READ`` of a status register: ``REPLY`` with its value before this request.
- Anything else: ``ERROR`` reason ``unmapped`` (a READ of storage, an address outside
  the map) or ``unknown_op``; ``REPLY``/``DONE``/``ERROR`` received are counted as
  errors and not answered. Every ERROR has ``data = op | reason << 8``.

Status: ``nonzeros`` gather records of nonzeros consumed, ``busy`` cycles an EXEC
ran (start to the last row stored), ``slots`` gather requests issued (nonzeros and
empty rows), ``conflicts``/``stalls`` the gather's bank conflicts and lane stalls.
Limit: ``lanes`` nonzeros per cycle; the host balances rows over the lanes.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, memory, wiring

from ..arith import bits_for, ceil_div, tree_sum
from ..noc.packet import OP_BITS, Op
from ..sparse import SparseGather, check_gather_params
from ..tile import (
    COUNTER_BITS,
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

STATUS_REGISTERS = ("dropped", "errors", "flits_in", "flits_out", "execs", "nonzeros",
                    "slots", "busy", "conflicts", "stalls")

ERROR_UNMAPPED = 1
ERROR_UNKNOWN_OP = 3
ERROR_BAD_EXEC = 4
ERROR_BAD_CSR = 5
ERROR_REASONS = {"unmapped": ERROR_UNMAPPED, "unknown_op": ERROR_UNKNOWN_OP,
                 "bad_exec": ERROR_BAD_EXEC, "bad_csr": ERROR_BAD_CSR}
MIN_DATA_BITS = 16         # an ERROR's data holds op | reason << 8


class SpmvTileParams:
    """An SpMV tile's parameters, checked, with its widths, layouts and address map."""

    PARAMS = (
        Param("nnz_depth", 256, lo=1, hi=1 << 16,
              doc="nonzeros held (values and columns), a multiple of lanes"),
        Param("row_depth", 64, lo=1, hi=1 << 14,
              doc="rows held (row pointers and results), a multiple of lanes"),
        Param("x_depth", 256, lo=1, hi=1 << 16, doc="words of the gathered vector x"),
        Param("lanes", 4, lo=1, hi=16, doc="nonzeros per cycle, a power of two"),
        Param("banks", 8, lo=1, hi=64, doc="gather SRAM banks, a power of two"),
        Param("window", 4, lo=1, hi=16, doc="gather reorder window (1 = in order)"),
        Param("ports", 2, lo=1, hi=16, doc="gather requests per lane per cycle, at most"),
        Param("value_bits", 8, lo=2, hi=16, doc="bits of a value of A and of x (signed)"),
    )

    def __init__(self, *, data_bits: int, addr_bits: int, **values):
        v = check_params(self.PARAMS, values, "spmv tile")
        self.values = v
        for name, value in v.items():
            setattr(self, name, value)
        self.data_bits, self.addr_bits = data_bits, addr_bits
        L = v["lanes"]

        def refuse(name, value, allowed):
            raise ValueError(f"{name}: {value!r} is not allowed, must be {allowed}")
        if L & (L - 1):
            refuse("lanes", L, "a power of two 1..16")
        for name in ("nnz_depth", "row_depth"):
            if v[name] % L:
                refuse(name, v[name], f"a multiple of lanes ({L})")
        self.lane_bits = (L - 1).bit_length()
        self.lane_depth = N = v["nnz_depth"] // L
        self.lane_rows = v["row_depth"] // L
        self.index_bits = max(1, (v["x_depth"] - 1).bit_length())
        self.ptr_bits = (N + 1).bit_length()
        vb = v["value_bits"]
        self.acc_bits = 2 * vb - 1 + N.bit_length()
        self.nz_layout = data.StructLayout({"value": signed(vb),
                                            "col": unsigned(self.index_bits)})
        need = max(MIN_DATA_BITS, self.acc_bits, self.nz_layout.size)
        if data_bits < need:
            refuse("data_bits", data_bits, f"at least {need}: a result is {self.acc_bits} "
                   f"bits (value_bits {vb}, {N} nonzeros per lane), a nonzero "
                   f"{self.nz_layout.size} bits and an ERROR's data {MIN_DATA_BITS}")
        self.ptr_base = v["nnz_depth"]
        self.x_base = self.ptr_base + v["row_depth"]
        self.status_base = status_base(addr_bits)
        if self.x_base + v["x_depth"] > self.status_base:
            need = (self.x_base + v["x_depth"] + STATUS_WINDOW - 1).bit_length()
            refuse("addr_bits", addr_bits, f"at least {need} to map {v['nnz_depth']} "
                   f"nonzeros, {v['row_depth']} row pointers, {v['x_depth']} x words and "
                   f"{STATUS_WINDOW} status registers")
        self.status_registers = StatusRegisters(STATUS_REGISTERS, self.status_base)
        self.status = self.status_registers.addresses
        self.results_per_flit = R = data_bits // self.acc_bits
        D = data_bits
        # A WRITE stores as many consecutive words as its data holds (at most one per
        # lane, or per gather bank for x), so the host sends fewer flits than words.
        self.nz_per_word = Pn = min(L, D // self.nz_layout.size)
        self.ptr_per_word = Pp = min(L, D // self.ptr_bits)
        self.x_per_word = Px = min(v["banks"], D // vb)
        self.gather = check_gather_params({
            "lanes": L, "banks": v["banks"], "window": v["window"], "ports": v["ports"],
            "depth": v["x_depth"], "value_bits": vb, "index_bits": self.index_bits,
            "tag_bits": vb + 2, "counter_bits": COUNTER_BITS, "write_words": Px})
        size = self.nz_layout.size
        self.nz_word_layout = data.FlexibleLayout(D, {
            f"nz{i}": data.Field(self.nz_layout, i * size) for i in range(Pn)})
        # Each pointer takes D // Pp bits, so a value far beyond N stays out of range.
        self.ptr_layout = data.FlexibleLayout(D, {
            f"end{i}": data.Field(unsigned(D // Pp), i * (D // Pp)) for i in range(Pp)})
        self.x_layout = data.FlexibleLayout(D, {
            f"x{i}": data.Field(signed(vb), i * vb) for i in range(Px)})
        self.result_layout = data.FlexibleLayout(D, {
            f"y{r}": data.Field(signed(self.acc_bits), r * self.acc_bits) for r in range(R)})
        self.exec_layout = data.FlexibleLayout(D, {
            "rows": data.Field(unsigned(min(D, bits_for(v["row_depth"] + 1) + 1)), 0)})
        self.done_layout = data.FlexibleLayout(D, {"flits": data.Field(unsigned(D), 0)})
        self.error_layout = data.FlexibleLayout(D, {
            "op": data.Field(unsigned(OP_BITS), 0), "reason": data.Field(unsigned(8), 8)})
        self.tag_layout = data.StructLayout({"value": signed(vb), "last": 1, "dummy": 1})
        self.address_map = {"nz_base": 0, "ptr_base": self.ptr_base, "x_base": self.x_base,
                            "status_base": self.status_base, "status_window": STATUS_WINDOW}

    def flits_for(self, rows: int) -> int:
        return ceil_div(rows, self.results_per_flit)

    def __eq__(self, other):
        return (isinstance(other, SpmvTileParams) and self.values == other.values
                and (self.data_bits, self.addr_bits) == (other.data_bits, other.addr_bits))

    def __hash__(self):
        return hash((tuple(sorted(self.values.items())), self.data_bits, self.addr_bits))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"SpmvTileParams(data_bits={self.data_bits}, addr_bits={self.addr_bits}, {args})"

    def manifest(self) -> dict:
        return {
            "kind": "spmv", "params": dict(self.values),
            "lane_depth": self.lane_depth, "acc_bits": self.acc_bits,
            "results_per_flit": self.results_per_flit,
            "address_map": dict(self.address_map), "status_registers": dict(self.status),
            "errors": {"layout": layout_positions(self.error_layout),
                       "reasons": dict(ERROR_REASONS)},
            "per_word": {"nz": self.nz_per_word, "ptr": self.ptr_per_word,
                         "x": self.x_per_word},
            "layouts": {"nonzero": layout_positions(self.nz_layout),
                        "nz_word": layout_positions(self.nz_word_layout),
                        "ptr_word": layout_positions(self.ptr_layout),
                        "x_word": layout_positions(self.x_layout),
                        "result_word": layout_positions(self.result_layout),
                        "exec_data": layout_positions(self.exec_layout),
                        "done_data": layout_positions(self.done_layout),
                        "error_data": layout_positions(self.error_layout)},
        }


class SpmvTile(NocTile):
    Params = SpmvTileParams

    def elaborate(self, platform):
        m = Module()
        p, layout = self.params, self._layout
        L, lb, N = p.lanes, p.lane_bits, p.lane_depth
        m.submodules.gather = gather = SparseGather(**p.gather)
        m.submodules.output = output = TileOutput(layout, x=self._x, y=self._y)
        wiring.connect(m, output.o, wiring.flipped(self.o))
        cb = self._counter_bits
        counters = {name: Signal(cb, name=name) for name in STATUS_REGISTERS[1:8]}
        message = message_layout(layout)

        # ---- storage, one bank per lane
        nz_w, nz_r, ptr_w, ptr_r, y_w, y_r = [], [], [], [], [], []
        for lane in range(L):
            nzm = memory.Memory(shape=p.nz_layout, depth=max(2, N), init=[])
            ptrm = memory.Memory(shape=p.ptr_bits, depth=max(2, p.lane_rows), init=[])
            ym = memory.Memory(shape=signed(p.acc_bits), depth=max(2, p.lane_rows), init=[])
            m.submodules[f"nz{lane}"], m.submodules[f"ptr{lane}"] = nzm, ptrm
            m.submodules[f"y{lane}"] = ym
            nz_w.append(nzm.write_port())
            nz_r.append(nzm.read_port(transparent_for=()))
            ptr_w.append(ptrm.write_port())
            ptr_r.append(ptrm.read_port(transparent_for=()))
            y_w.append(ym.write_port())
            y_r.append(ym.read_port(transparent_for=()))

        # ---- input register: the request being served
        req = Signal(layout)
        req_valid = Signal()
        retire = Signal()
        m.d.comb += self.i.ready.eq(~req_valid | retire)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [req.eq(self.i.payload), req_valid.eq(1)]
        with m.Elif(retire):
            m.d.sync += req_valid.eq(0)
        with m.If(retire):
            m.d.sync += counters["flits_in"].eq(counters["flits_in"] + 1)

        addr = req.addr
        at_nz = addr < p.nnz_depth
        at_ptr = (addr >= p.ptr_base) & (addr < p.x_base)
        at_x = (addr >= p.x_base) & (addr < p.x_base + p.x_depth)
        conflicts = tree_sum(list(gather.conflicts))[:cb]
        stalls = tree_sum(list(gather.stalls))[:cb]
        at_status, status_value = p.status_registers.read(
            m, addr, {"dropped": self.dropped, **counters, "conflicts": conflicts,
                      "stalls": stalls})

        # ---- answers (status REPLYs and request ERRORs) wait in `reply`
        pending = Signal()
        reply = Signal(message)
        reply_loaded = Signal()
        m.d.comb += [output.answer.valid.eq(pending), output.answer.payload.eq(reply),
                     reply_loaded.eq(output.answer.valid & output.answer.ready)]
        with m.If(reply_loaded):
            m.d.sync += pending.eq(0)
        answer, error = Signal(), Signal()
        reason = Signal(8)
        err = Signal(p.error_layout)
        m.d.comb += [err.op.eq(req.op.as_value()), err.reason.eq(reason)]
        error_inc = Signal(2)       # errors counted this cycle (requests + engine)

        # ---- engine state
        idle = Signal(init=1)
        running = Signal()
        sending = Signal()
        start = Signal()
        rows = Signal(range(p.row_depth + 1))
        tag = Signal(p.addr_bits)
        owner_x = Signal.like(req.src_x)
        owner_y = Signal.like(req.src_y)
        exec_rows = data.View(p.exec_layout, req.data).rows

        # writes into storage: a word's field i is slot (or row) start + i, which lives
        # in lane (start + i) mod L; so lane l takes field (l - start) mod L, if any.
        k = addr[:16]
        pr = (addr - p.ptr_base)[:16]
        nz_word = data.View(p.nz_word_layout, req.data)
        ptr_word = data.View(p.ptr_layout, req.data)
        x_word = data.View(p.x_layout, req.data)
        nz_en, ptr_en = [], []
        for lane in range(L):
            for first, w, fields, limit, en, field in (
                    (k, nz_w[lane], p.nz_per_word, p.nnz_depth, nz_en, "nz"),
                    (pr, ptr_w[lane], p.ptr_per_word, p.row_depth, ptr_en, "end")):
                i = Signal(max(1, lb), name=f"l{lane}_{field}_field")
                m.d.comb += i.eq((lane - first)[:lb] if lb else 0)
                slot = first + i
                en.append((i < fields) & (slot < limit))
                m.d.comb += w.addr.eq(slot >> lb)
                with m.Switch(i):
                    for f in range(fields):
                        with m.Case(f):
                            value = getattr(ptr_word if field == "end" else nz_word,
                                            f"{field}{f}")
                            if field == "end":
                                value = Mux(value > N, N + 1, value)
                            m.d.comb += w.data.eq(value)
        m.d.comb += gather.write.payload.index.eq(addr - p.x_base)
        if p.x_per_word == 1:
            m.d.comb += gather.write.payload.value.eq(x_word.x0)
        else:
            for f in range(p.x_per_word):
                m.d.comb += gather.write.payload.value[f].eq(getattr(x_word, f"x{f}"))

        with m.If(req_valid):
            with m.Switch(req.op):
                with m.Case(Op.WRITE):
                    with m.If(at_nz | at_ptr | at_x):
                        m.d.comb += retire.eq(idle)
                        with m.If(idle):
                            with m.If(at_nz):
                                for lane in range(L):
                                    m.d.comb += nz_w[lane].en.eq(nz_en[lane])
                            with m.Elif(at_ptr):
                                for lane in range(L):
                                    m.d.comb += ptr_w[lane].en.eq(ptr_en[lane])
                            with m.Else():
                                m.d.comb += gather.write.valid.eq(1)
                    with m.Else():
                        m.d.comb += [error.eq(1), reason.eq(ERROR_UNMAPPED)]
                with m.Case(Op.READ):
                    with m.If(at_status):
                        m.d.comb += answer.eq(1)
                    with m.Else():
                        m.d.comb += [error.eq(1), reason.eq(ERROR_UNMAPPED)]
                with m.Case(Op.EXEC):
                    with m.If((exec_rows == 0) | (exec_rows > p.row_depth) |
                              (req.data >> len(exec_rows) != 0)):
                        m.d.comb += [error.eq(1), reason.eq(ERROR_BAD_EXEC)]
                    with m.Elif(idle):
                        m.d.comb += [retire.eq(1), start.eq(1)]
                with m.Case(Op.REPLY, Op.DONE, Op.ERROR):
                    m.d.comb += [retire.eq(1), error_inc[0].eq(1)]
                with m.Default():
                    m.d.comb += [error.eq(1), reason.eq(ERROR_UNKNOWN_OP)]
            with m.If(answer | error):
                m.d.comb += retire.eq(~pending | reply_loaded)
                with m.If(retire):
                    m.d.sync += [pending.eq(1), *reply_to(
                        reply, req, error=error, data=Mux(error, err.as_value(), status_value))]
                    with m.If(error):
                        m.d.comb += error_inc[0].eq(1)

        with m.If(start):
            m.d.sync += [idle.eq(0), running.eq(1), rows.eq(exec_rows), tag.eq(req.addr),
                         owner_x.eq(req.src_x), owner_y.eq(req.src_y)]

        # ---- lanes: fetch a lane's entries in order, gather x[col], accumulate
        bad = Signal()               # a malformed CSR seen in this run
        lane_done = []
        n_nonzeros, n_slots = [], []
        for lane in range(L):
            lrows = Signal(range(p.lane_rows + 1), name=f"l{lane}_rows")
            m.d.comb += lrows.eq((rows + (L - 1 - lane)) >> lb)
            jp = Signal(range(p.lane_rows + 1), name=f"l{lane}_jp")   # pointers read
            pp = Signal(name=f"l{lane}_ptr_valid")                   # ptr_r data is one
            pos = Signal(range(N + 2), name=f"l{lane}_pos")           # next entry
            end = Signal(range(N + 2), name=f"l{lane}_end")           # its row's end
            o_valid = Signal(name=f"l{lane}_valid")
            o_dummy = Signal(name=f"l{lane}_dummy")
            o_last = Signal(name=f"l{lane}_last")
            idx = gather.index[lane]
            pr_, nr = ptr_r[lane], nz_r[lane]
            take_ptr = Signal(name=f"l{lane}_take_ptr")
            advance = ~o_valid | idx.ready
            m.d.comb += [pr_.addr.eq(jp), pr_.en.eq(running & (~pp | take_ptr)),
                         nr.addr.eq(pos), nr.en.eq(advance)]
            with m.If(pr_.en):
                m.d.sync += pp.eq(jp < lrows)
                with m.If(jp < lrows):
                    m.d.sync += jp.eq(jp + 1)
            new_end = pr_.data
            with m.If(advance):
                with m.If(running & (pos != end)):
                    m.d.sync += [o_valid.eq(1), o_dummy.eq(0), o_last.eq(pos + 1 == end),
                                 pos.eq(pos + 1)]
                with m.Elif(running & pp):
                    m.d.comb += take_ptr.eq(1)
                    with m.If((new_end > N) | (new_end <= pos)):
                        m.d.sync += [o_valid.eq(1), o_dummy.eq(1), o_last.eq(1)]
                        with m.If(new_end != pos):
                            m.d.sync += bad.eq(1)
                    with m.Else():
                        m.d.sync += [o_valid.eq(1), o_dummy.eq(0),
                                     o_last.eq(pos + 1 == new_end), pos.eq(pos + 1),
                                     end.eq(new_end)]
                with m.Else():
                    m.d.sync += o_valid.eq(0)
            t = Signal(p.tag_layout, name=f"l{lane}_tag")
            m.d.comb += [t.value.eq(Mux(o_dummy, 0, nr.data.value)), t.last.eq(o_last),
                         t.dummy.eq(o_dummy),
                         idx.valid.eq(o_valid), idx.payload.tag.eq(t),
                         idx.payload.index.eq(Mux(o_dummy, 0, nr.data.col))]

            res = gather.result[lane]
            rt = data.View(p.tag_layout, res.payload.tag)
            acc = Signal(signed(p.acc_bits), name=f"l{lane}_acc")
            total = Signal(signed(p.acc_bits), name=f"l{lane}_sum")
            yr = Signal(range(p.lane_rows + 1), name=f"l{lane}_yr")
            m.d.comb += [res.ready.eq(1),
                         total.eq(acc + rt.value * res.payload.value.as_signed()),
                         y_w[lane].addr.eq(yr), y_w[lane].data.eq(total)]
            with m.If(res.valid):
                with m.If(res.payload.error):
                    m.d.sync += bad.eq(1)
                with m.If(rt.last):
                    m.d.comb += y_w[lane].en.eq(1)
                    m.d.sync += [acc.eq(0), yr.eq(yr + 1)]
                with m.Else():
                    m.d.sync += acc.eq(total)
            n_nonzeros.append(res.valid & ~rt.dummy)
            n_slots.append(idx.valid & idx.ready)
            with m.If(start):
                m.d.sync += [jp.eq(0), pp.eq(0), pos.eq(0), end.eq(0), o_valid.eq(0),
                             acc.eq(0), yr.eq(0)]
            lane_done.append(yr == lrows)
        with m.If(start):
            m.d.sync += bad.eq(0)
        m.d.sync += [counters["nonzeros"].eq(counters["nonzeros"] + tree_sum(n_nonzeros)),
                     counters["slots"].eq(counters["slots"] + tree_sum(n_slots))]
        all_done = Cat(*lane_done).all()
        with m.If(running):
            m.d.sync += counters["busy"].eq(counters["busy"] + 1)
            with m.If(all_done):
                m.d.sync += [running.eq(0), sending.eq(1)]

        # ---- sender: rows in order, R per REPLY flit, then DONE (or one ERROR instead).
        # One row per cycle through three stages: read row `sr` from its lane's y
        # memory, place its value in the REPLY being built, offer the REPLY built
        # before it. A stage moves only when the next one can take its word.
        R = p.results_per_flit
        sr = Signal(range(p.row_depth + 1))       # next row to read
        have = Signal()                           # a row read waits on its lane's port
        have_lane = Signal(max(1, lb))
        placed = Signal(range(p.row_depth + 1))   # rows placed in REPLYs
        q = Signal(range(R + 1))                  # values in the REPLY being built
        flit = Signal(p.result_layout)
        full = Signal()                           # the REPLY being built is complete
        out_flit = Signal(p.result_layout)
        out_valid = Signal()
        nflits = Signal(range(p.row_depth + 2))
        value = Signal(signed(p.acc_bits))
        for lane in range(L):
            m.d.comb += y_r[lane].addr.eq(sr >> lb)
        with m.Switch(have_lane):
            for lane in range(L):
                with m.Case(lane):
                    m.d.comb += value.eq(y_r[lane].data)
        fl = output.flits
        out = fl.payload
        done = Signal(p.done_layout)
        eng_err = Signal(p.error_layout)
        m.d.comb += [out.dst_x.eq(owner_x), out.dst_y.eq(owner_y), out.addr.eq(tag),
                     done.flits.eq(nflits), eng_err.op.eq(Op.EXEC.value),
                     eng_err.reason.eq(ERROR_BAD_CSR)]
        final = Signal()                          # the DONE (or ERROR) is offered
        issue, place, move, taken = Signal(), Signal(), Signal(), Signal()
        q0 = Signal.like(q)                       # the place the next value goes to
        m.d.comb += [
            final.eq(sending & (bad | ((placed == rows) & ~full & ~out_valid))),
            fl.valid.eq(out_valid | final),
            taken.eq(out_valid & fl.ready),
            move.eq(full & (~out_valid | taken)),
            place.eq(have & (~full | move)),
            issue.eq(sending & ~bad & (sr < rows) & (~have | place)),
            q0.eq(Mux(move, 0, q)),
        ]
        with m.If(out_valid):
            m.d.comb += [out.op.eq(Op.REPLY), out.data.eq(out_flit)]
        with m.Else():
            m.d.comb += [out.op.eq(Mux(bad, Op.ERROR, Op.DONE)),
                         out.data.eq(Mux(bad, eng_err.as_value(), done.as_value()))]
        for lane in range(L):
            m.d.comb += y_r[lane].en.eq(issue & ((sr[:lb] == lane) if lb else 1))
        with m.If(issue):
            m.d.sync += [sr.eq(sr + 1), have.eq(1), have_lane.eq(sr[:lb] if lb else 0)]
        with m.Elif(place):
            m.d.sync += have.eq(0)
        with m.If(move):
            m.d.sync += [out_flit.eq(flit), out_valid.eq(1), flit.eq(0), q.eq(0), full.eq(0)]
        with m.Elif(taken):
            m.d.sync += out_valid.eq(0)
        with m.If(taken):
            m.d.sync += nflits.eq(nflits + 1)
        with m.If(place):
            # after the clear of a moved REPLY, so the new value lands in the fresh one
            with m.Switch(q0):
                for r in range(R):
                    with m.Case(r):
                        m.d.sync += flit[f"y{r}"].eq(value)
            m.d.sync += [placed.eq(placed + 1), q.eq(q0 + 1),
                         full.eq((q0 == R - 1) | (placed + 1 == rows))]
        with m.If(final & fl.ready):
            m.d.sync += [sending.eq(0), idle.eq(1), sr.eq(0), have.eq(0), placed.eq(0),
                         q.eq(0), flit.eq(0), full.eq(0), nflits.eq(0)]
            with m.If(bad):
                m.d.comb += error_inc[1].eq(1)
            with m.Else():
                m.d.sync += counters["execs"].eq(counters["execs"] + 1)
        m.d.sync += counters["errors"].eq(counters["errors"] + error_inc[0] + error_inc[1])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += counters["flits_out"].eq(counters["flits_out"] + 1)
        return m


__all__ = ["ERROR_REASONS", "STATUS_REGISTERS", "SpmvTile", "SpmvTileParams"]
