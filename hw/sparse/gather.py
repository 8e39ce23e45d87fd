"""SparseGather: ``lanes`` index streams in, ``lanes`` value streams out, from banked SRAM.

Storage: ``depth`` words of ``value_bits`` in ``banks`` SRAM banks (a power of two);
index ``i`` lives in bank ``i % banks`` at row ``i // banks``. Each bank has one read
port, serving one request per cycle, and one write port of its own.

Ports (``amaranth.lib.stream``; ``lanes`` of ``index`` and ``result``):
  ``index[l]`` (in, ``{index, tag}``): one request of lane ``l``; ``tag`` (``tag_bits``,
  absent when 0) is carried to its record.
  ``result[l]`` (out, ``{value, error, tag}``, ``value`` at the low bits): one record
  per request of lane ``l``, in the order the requests were taken, with the request's
  ``tag``. An index ``>= depth`` gives ``error = 1, value = 0`` and reads no bank.
  ``write`` (in, ``{index, value}``): stores ``value`` at ``index``; always ready, one
  write per cycle. With ``write_words = W > 1``, ``value`` is an array of ``W`` words
  stored at ``index .. index + W - 1`` in the same cycle (``W <= banks``, so they fall
  in distinct banks). A word whose index is ``>= depth`` is ignored and counted.
  ``conflicts[b]``, ``stalls[l]``, ``dropped_writes`` (out, ``counter_bits``, wrap):
    ``conflicts[b]`` grows each cycle by the number of lanes that requested bank ``b``
    and were not granted it (a lane requests ``b`` when it presents a request for ``b``,
    below);
    ``stalls[l]`` counts the cycles in which ``index[l]`` offered a word and the unit
    did not take it (``valid & ~ready``): cycles the lane's producer lost;
    ``dropped_writes`` counts the words written to indices ``>= depth``.

The reorder window. Each lane holds up to ``window + 3`` requests, taken and not yet
delivered, in a circular buffer in request order. Of its requests not yet granted,
the ``window`` oldest are *eligible*. Each cycle a lane presents up to ``ports``
eligible requests to distinct banks: going oldest first, each eligible request whose
bank the lane does not yet request. So a lane blocked at one bank issues its next
requests to other banks, and it may be granted up to ``ports`` banks in one cycle, to
catch up after a conflict (``ports`` read-data buses per lane, not one per entry).
``window = 1`` is an in-order unit (each lane issues in request order). The 3 further
entries hold requests whose reads are in flight or whose records wait to be delivered,
so that ``window = 1`` still takes one index per cycle when nothing conflicts.

Arbitration. Each bank has its own arbiter with rotating priority over lanes: of the
lanes requesting bank ``b`` it grants the first at or after its pointer (lane 0 after
reset), in cyclic order, and moves the pointer to the lane after the one granted; the
request that lane presented to ``b`` is served. Losers present again the next cycle;
nothing else waits for them. A lane presents its oldest waiting request every cycle,
so that request is granted within ``lanes`` cycles: no request waits forever and no
lane starves another.

Timing. An index taken in cycle ``t`` is a request from cycle ``t + 1``. A request
granted in cycle ``c`` reads its bank at the end of ``c`` and holds its value from
cycle ``c + 2``; a lane offers its oldest request's record as soon as that record is
complete, so with no conflict a value is offered in cycle ``t + 3`` (an error record in
``t + 1``), never before the records of older requests. ``index[l].ready`` is high in
every cycle in which lane ``l`` holds fewer than ``window + 3`` requests; it depends on
no input in that cycle. A request granted in cycle ``c`` sees every write taken before
cycle ``c``, not one taken in ``c``. ``result[l]`` is driven from registers and obeys
the stream rule (valid held until ready, payload stable); a lane whose ``result`` is
stalled stops taking indices once full and holds no bank, so other lanes run on.

Limit: ``lanes`` accesses per cycle (one index in and one record out per lane).

Parameters (``PARAMS``, checked by ``check_gather_params``): ``lanes`` 1..32, ``banks``
a power of two 1..64, ``window`` 1..16, ``ports`` 1..16 (at most ``min(window, banks)``
are built), ``write_words`` 1..``banks``, ``depth`` 1..2**20, ``value_bits`` 1..64, ``index_bits`` 1..32 and able to
address ``depth - 1``, ``tag_bits`` 0..32, ``counter_bits`` 8..64.
"""

from __future__ import annotations

from functools import reduce

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arith import onehot_select
from ..tile import Param, check_params

# Entries a lane needs beyond the window so that one index per cycle flows when no
# request conflicts: the request being arbitrated, the read in flight, the record
# being delivered.
PIPELINE_ENTRIES = 3

PARAMS = (
    Param("lanes", 8, lo=1, hi=32, doc="index streams in and result streams out"),
    Param("banks", 16, lo=1, hi=64, doc="SRAM banks, a power of two; bank = index mod banks"),
    Param("window", 4, lo=1, hi=16,
          doc="requests per lane not yet granted that compete for banks (1 = in order)"),
    Param("ports", 2, lo=1, hi=16,
          doc="requests a lane presents to the banks per cycle, at most (to distinct banks)"),
    Param("depth", 4096, lo=1, hi=1 << 20, doc="words in all banks together"),
    Param("value_bits", 32, lo=1, hi=64, doc="bits per word"),
    Param("index_bits", 16, lo=1, hi=32,
          doc="bits of an index; must address depth - 1 (wider indices reach the error path)"),
    Param("tag_bits", 0, lo=0, hi=32, doc="bits of a tag carried from each index to its result"),
    Param("counter_bits", 32, lo=8, hi=64, doc="bits of each event counter (wraps)"),
    Param("write_words", 1, lo=1, hi=64,
          doc="words stored by one write, at consecutive indices (at most banks)"),
)


def check_gather_params(values: dict) -> dict:
    """Every parameter of ``SparseGather`` with defaults filled, checked; ``ValueError``
    naming the field and what it allows otherwise."""
    p = check_params(PARAMS, values, owner="sparse gather")
    if p["banks"] & (p["banks"] - 1):
        raise ValueError(f"banks: {p['banks']!r} is not allowed, must be a power of two 1..64")
    if p["write_words"] > p["banks"]:
        raise ValueError(f"write_words: {p['write_words']!r} is not allowed, must be "
                         f"1..banks ({p['banks']}): one write stores one word per bank")
    need = max(1, (p["depth"] - 1).bit_length())
    if p["index_bits"] < need:
        raise ValueError(f"index_bits: {p['index_bits']!r} is not allowed, must be >= {need} "
                         f"to address depth {p['depth']}")
    return p


def _lowest(bits):
    """One-hot of the lowest set bit of ``bits`` (0 when none is set)."""
    n = len(bits)
    return (bits & (~bits + 1))[:n]


def _above(onehot, n):
    """Bits strictly above the set bit of a one-hot vector (a thermometer mask)."""
    out, seen = [], Const(0, 1)
    for k in range(n):
        out.append(seen)
        seen = seen | onehot[k]
    return Cat(*out)


class SparseGather(wiring.Component):
    """Banked gather unit; see the module docstring for the contract."""

    PARAMS = PARAMS

    def __init__(self, **params):
        p = check_gather_params(params)
        self.params = p
        self._lanes, self._banks, self._window = p["lanes"], p["banks"], p["window"]
        self._depth, self._value_bits = p["depth"], p["value_bits"]
        self._index_bits, self._tag_bits = p["index_bits"], p["tag_bits"]
        self._entries = self._window + PIPELINE_ENTRIES
        # more ports than eligible requests or than banks would never be used
        self._ports = min(p["ports"], self._window, self._banks)
        self._bank_bits = (self._banks - 1).bit_length()
        self._rows = -(-self._depth // self._banks)
        self._row_bits = max(1, (self._rows - 1).bit_length())
        # no zero-width fields: Verilog has no empty vectors
        tag = {"tag": self._tag_bits} if self._tag_bits else {}
        self.index_layout = data.StructLayout({"index": self._index_bits, **tag})
        self.result_layout = data.StructLayout({"value": self._value_bits, "error": 1, **tag})
        self._write_words = p["write_words"]
        value = (self._value_bits if self._write_words == 1 else
                 data.ArrayLayout(self._value_bits, self._write_words))
        self.write_layout = data.StructLayout({"index": self._index_bits, "value": value})
        cb = p["counter_bits"]
        super().__init__({
            "index": In(stream.Signature(self.index_layout)).array(self._lanes),
            "result": Out(stream.Signature(self.result_layout)).array(self._lanes),
            "write": In(stream.Signature(self.write_layout)),
            "conflicts": Out(cb).array(self._banks),
            "stalls": Out(cb).array(self._lanes),
            "dropped_writes": Out(cb),
        })

    @property
    def entries(self) -> int:
        """Requests a lane holds at most: ``window + 3``."""
        return self._entries

    def _split(self, m, index, name):
        """(in range, bank, row) of an index value, as wires."""
        ok = Signal(name=f"{name}_in_range")
        bank = Signal(max(1, self._bank_bits), name=f"{name}_bank")
        row = Signal(self._row_bits, name=f"{name}_row")
        m.d.comb += [ok.eq(1 if self._depth >= 1 << len(index) else index < self._depth),
                     row.eq(index[self._bank_bits:])]
        if self._bank_bits:
            m.d.comb += bank.eq(index[:self._bank_bits])
        return ok, bank, row

    def _lane(self, m, lane):
        """A lane's registers, and its requests to the banks this cycle: up to ``ports``
        eligible requests with distinct banks, the oldest first (per port ``port_valid``,
        ``port_bank``, ``port_row``, ``port_entry`` one-hot over the entries;
        ``port_granted`` is driven by the arbiters)."""
        R, W, P = self._entries, self._window, self._ports

        def regs(name, width=1):
            return [Signal(width, name=f"l{lane}_{name}{e}") for e in range(R)]

        st = {"pending": regs("pending"), "waiting": regs("waiting"), "done": regs("done"),
              "error": regs("error"), "bank": regs("bank", max(1, self._bank_bits)),
              "row": regs("row", self._row_bits), "value": regs("value", self._value_bits),
              "tag": regs("tag", self._tag_bits) if self._tag_bits else [],
              "head": Signal(range(R), name=f"l{lane}_head"),
              "count": Signal(range(R + 1), name=f"l{lane}_count")}
        head = st["head"]
        # the entries in age order (slot k = the k-th oldest), each a wire once
        pend_age, bank_age = [], []
        for k in range(R):
            slot = Signal(range(R), name=f"l{lane}_slot{k}")
            m.d.comb += slot.eq(Mux(head + k >= R, head + k - R, head + k))
            for name, dst in (("pending", pend_age), ("bank", bank_age)):
                v = Signal.like(st[name][0], name=f"l{lane}_{name}_age{k}")
                m.d.comb += v.eq(Array(st[name])[slot])
                dst.append(v)
        # eligible: the W oldest pending requests
        elig = Signal(R, name=f"l{lane}_eligible_age")
        older = Const(0, 1)
        for k in range(R):
            m.d.comb += elig[k].eq(pend_age[k] & (older < W))
            older = older + pend_age[k]
        # back from age order to entry order: entry e is slot (e - head) mod R
        back = Signal(range(R + 1), name=f"l{lane}_back")
        m.d.comb += back.eq(R - head)
        st.update(port_valid=[], port_bank=[], port_row=[], port_entry=[],
                  port_granted=[Signal(name=f"l{lane}_port{j}_granted") for j in range(P)])
        cand = elig
        for j in range(P):
            # port j: the oldest eligible request whose bank no earlier port took
            if j:
                rest = Signal(R, name=f"l{lane}_port{j}_candidates")
                m.d.comb += rest.eq(Cat(*[cand[k] & (bank_age[k] != st["port_bank"][-1])
                                          for k in range(R)]) if self._bank_bits else 0)
                cand = rest
            onehot = Signal(R, name=f"l{lane}_port{j}_age")
            m.d.comb += onehot.eq(_lowest(cand))
            entry = Signal(R, name=f"l{lane}_port{j}_entry")
            m.d.comb += entry.eq(Cat(onehot, onehot).bit_select(back, R))
            bank = Signal.like(st["bank"][0], name=f"l{lane}_port{j}_bank")
            row = Signal(self._row_bits, name=f"l{lane}_port{j}_row")
            m.d.comb += [bank.eq(onehot_select(onehot, bank_age)),
                         row.eq(onehot_select(entry, st["row"]))]
            st["port_valid"].append(cand.any())
            st["port_bank"].append(bank)
            st["port_row"].append(row)
            st["port_entry"].append(entry)
        return st

    def _lane_update(self, m, lane, st, rd_data):
        """Grants, read data, allocation and delivery of one lane."""
        R, P = self._entries, self._ports
        head, count = st["head"], st["count"]
        inp, out = self.index[lane], self.result[lane]
        # a granted port's read returns next cycle on that port's bus
        buses, capture = [], []
        for j in range(P):
            was = Signal(name=f"l{lane}_port{j}_was_granted")
            bank_q = Signal.like(st["port_bank"][j], name=f"l{lane}_port{j}_bank_q")
            entry_q = Signal(R, name=f"l{lane}_port{j}_entry_q")
            m.d.sync += [was.eq(st["port_granted"][j]), bank_q.eq(st["port_bank"][j]),
                         entry_q.eq(st["port_entry"][j])]
            bus = Signal(self._value_bits, name=f"l{lane}_bus{j}")
            m.d.comb += bus.eq(rd_data[bank_q])
            buses.append(bus)
            capture.append(entry_q & Cat(*[was] * R))

        tail = Signal(range(R), name=f"l{lane}_tail")
        m.d.comb += tail.eq(Mux(head + count >= R, head + count - R, head + count))
        m.d.comb += inp.ready.eq(count < R)
        take = inp.valid & inp.ready
        ok, bank, row = self._split(m, inp.payload.index, f"l{lane}_index")

        m.d.comb += [out.valid.eq(Array(st["done"])[head]),
                     out.payload.value.eq(Array(st["value"])[head]),
                     out.payload.error.eq(Array(st["error"])[head])]
        if self._tag_bits:
            m.d.comb += out.payload.tag.eq(Array(st["tag"])[head])
        give = out.valid & out.ready

        for e in range(R):
            with m.If(reduce(lambda a, c: a | c,
                             [st["port_granted"][j] & st["port_entry"][j][e]
                              for j in range(P)])):
                m.d.sync += [st["pending"][e].eq(0), st["waiting"][e].eq(1)]
            with m.If(st["waiting"][e]):
                value = buses[0]
                for j in range(1, P):
                    value = Mux(capture[j][e], buses[j], value)
                m.d.sync += [st["waiting"][e].eq(0), st["done"][e].eq(1),
                             st["value"][e].eq(value)]
            with m.If(give & (head == e)):
                m.d.sync += st["done"][e].eq(0)
            with m.If(take & (tail == e)):
                m.d.sync += [st["pending"][e].eq(ok), st["done"][e].eq(~ok),
                             st["error"][e].eq(~ok), st["value"][e].eq(0),
                             st["row"][e].eq(row)]
                if self._bank_bits:
                    m.d.sync += st["bank"][e].eq(bank)
                if self._tag_bits:
                    m.d.sync += st["tag"][e].eq(inp.payload.tag)
        with m.If(give):
            m.d.sync += head.eq(Mux(head == R - 1, 0, head + 1))
        m.d.sync += count.eq(count + take - give)

        stalls = Signal.like(self.stalls[lane])
        m.d.comb += self.stalls[lane].eq(stalls)
        with m.If(inp.valid & ~inp.ready):
            m.d.sync += stalls.eq(stalls + 1)

    def elaborate(self, platform):
        m = Module()
        L, B = self._lanes, self._banks

        # -- banks: one write port and one (non-transparent) read port each ---------
        # Word j of a write goes to bank (index + j) mod banks: bank b takes word
        # j = (b - index) mod banks when j < write_words, at row (index + j) // banks.
        Wn, bb = self._write_words, self._bank_bits
        index_w = self.write.payload.index
        words_w = [self.write.payload.value] if Wn == 1 else list(self.write.payload.value)
        m.d.comb += self.write.ready.eq(1)
        rd_en, rd_addr, rd_data = [], [], []
        out_of_range = []
        for j in range(Wn):
            ok, _, _ = self._split(m, index_w + j, f"write{j}")
            out_of_range.append(~ok)
        for b in range(B):
            # at least two rows, so that the address is never zero bits wide
            mem = memory.Memory(shape=self._value_bits, depth=max(2, self._rows), init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=())
            j = Signal(max(1, bb), name=f"b{b}_write_word")
            m.d.comb += j.eq((b - index_w)[:bb] if bb else 0)
            ok, _, row = self._split(m, index_w + j, f"b{b}_write")
            m.d.comb += [wp.addr.eq(row), wp.en.eq(self.write.valid & ok & (j < Wn))]
            with m.Switch(j):
                for w in range(Wn):
                    with m.Case(w):
                        m.d.comb += wp.data.eq(words_w[w])
            rd_en.append(rp.en)
            rd_addr.append(rp.addr)
            rd_data.append(rp.data)
        dropped = Signal.like(self.dropped_writes)
        m.d.comb += self.dropped_writes.eq(dropped)
        with m.If(self.write.valid):
            m.d.sync += dropped.eq(dropped + sum(out_of_range))
        rd_data = Array(rd_data)

        # -- lanes: the reorder window, per lane a circular buffer of R entries -----
        lanes = [self._lane(m, lane) for lane in range(L)]
        hits = [[[] for _ in range(self._ports)] for _ in range(L)]

        # -- one rotating-priority arbiter per bank --------------------------------
        for b in range(B):
            # lane l requests bank b when one of its ports does (its ports' banks differ)
            match = [[lane["port_valid"][j] & (lane["port_bank"][j] == b) if self._bank_bits
                      else lane["port_valid"][j] for j in range(self._ports)] for lane in lanes]
            req = Signal(L, name=f"b{b}_req")
            m.d.comb += req.eq(Cat(*[reduce(lambda a, c: a | c, mj) for mj in match]))
            mask = Signal(L, name=f"b{b}_mask")     # lanes at or after the pointer
            hi = req & mask
            grant = Signal(L, name=f"b{b}_grant")
            m.d.comb += grant.eq(_lowest(Mux(hi.any(), hi, req)))
            with m.If(req.any()):
                m.d.sync += mask.eq(_above(grant, L))
            rows = []
            for k, lane in enumerate(lanes):
                for j in range(self._ports):
                    hit = grant[k] & match[k][j]
                    hits[k][j].append(hit)
                    rows.append(Mux(hit, lane["port_row"][j], 0))
            m.d.comb += [rd_en[b].eq(req.any()),
                         rd_addr[b].eq(reduce(lambda a, c: a | c, rows))]
            conflicts = Signal.like(self.conflicts[b])
            m.d.comb += self.conflicts[b].eq(conflicts)
            losers = sum(req[k] for k in range(L)) - req.any()
            m.d.sync += conflicts.eq(conflicts + losers)

        # -- per lane: grants, read data, allocation, delivery ----------------------
        for k, lane in enumerate(lanes):
            for j in range(self._ports):
                m.d.comb += lane["port_granted"][j].eq(reduce(lambda a, c: a | c, hits[k][j]))
            self._lane_update(m, k, lane, rd_data)
        return m
