"""cocotb testbench for ``SparseGather``: random stimulus, random backpressure on every
stream, every record scoreboarded against the golden model, cycle for cycle.

Parameters (``tilefab.verif.params``): ``hw`` (``SparseGather`` parameters), ``seed``,
and ``runs``, a list of gathers, each a dict of ``pattern`` (one of ``PATTERNS``),
``n`` (indices per lane), ``oob`` (fraction of indices out of range), ``stall_in`` /
``stall_out`` (per-cycle pause probability of every index source / result sink),
``stall_write`` (of the write source), ``rewrite`` (fraction of the words written
again before the run; the first run writes every word) and optionally ``hold``
(``[lane, first, last]``: that lane's sink not ready in those cycles) and ``fault``
(``"value"`` or ``"window"``: a deliberately wrong golden record or cycle model, which
the checks must catch).

Before each run the testbench writes the banks through ``write`` (with out-of-range
writes mixed in), then offers every lane's indices from a common cycle 0 with the
run's pause patterns. Every record is compared as it arrives with
``golden.sparse.gather`` (value, error, tag, order); after the run every transfer
cycle and the increments of ``conflicts``, ``stalls`` and ``dropped_writes`` are
compared with ``golden.sparse.simulate`` on the same pause patterns. The figures of
each run go to ``outputs.json`` for the caller (``run_on_verilator``).
"""

from __future__ import annotations

import json
import random

import cocotb
import numpy as np
from tilefab.gen.emit import to_verilog
from tilefab.golden import sparse as g
from tilefab.hw.sparse import SparseGather, check_gather_params
from tilefab.verif import tb
from tilefab.verif.params import params
from tilefab.verif.runner import run_cocotb
from tilefab.verif.stream import Clocked, StreamSink, StreamSource, random_pause

TOP = "sparse_gather"
MODULE = "tilefab.verif.tb_gather"
PATTERNS = ("uniform", "one_bank", "stride", "sequential")


def index_streams(pattern: str, lanes: int, n: int, *, banks: int, depth: int,
                  index_bits: int, rng: np.random.Generator, oob: float = 0.0) -> np.ndarray:
    """``lanes x n`` indices.

    ``uniform``: independent, uniform over ``0..depth-1``. ``one_bank``: every index
    of every lane in one bank (random rows). ``stride``: lane ``l`` walks a stride of
    ``banks`` from a random start, so it stays in one bank and lanes that start in the
    same bank collide for the whole run. ``sequential``: lane ``l`` reads a contiguous
    block from ``l * n`` (wrapping at ``depth``), as CSR rows read x.
    ``oob`` of the indices are then replaced by indices ``>= depth``.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern: {pattern!r} is not allowed, must be one of "
                         f"{', '.join(PATTERNS)}")
    rows = max(1, depth // banks)        # complete rows: every bank has them
    if pattern == "uniform":
        idx = rng.integers(0, depth, (lanes, n))
    elif pattern == "one_bank":
        bank = int(rng.integers(0, min(banks, depth)))
        idx = rng.integers(0, rows, (lanes, n)) * banks + bank
    elif pattern == "stride":
        start_bank = rng.integers(0, min(banks, depth), (lanes, 1))
        start_row = rng.integers(0, rows, (lanes, 1))
        idx = ((start_row + np.arange(n)) % rows) * banks + start_bank
    else:
        idx = (np.arange(lanes)[:, None] * n + np.arange(n)) % depth
    idx = np.where(idx < depth, idx, idx % depth)
    if oob > 0 and depth < 1 << index_bits:
        bad = rng.random((lanes, n)) < oob
        idx = np.where(bad, rng.integers(depth, 1 << index_bits, (lanes, n)), idx)
    return idx.astype(np.int64)


def random_words(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
    lo = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    hi = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    return ((hi << np.uint64(32)) | lo) & np.uint64((1 << bits) - 1)


class Field:
    """Packs and unpacks the fields of an Amaranth ``StructLayout`` payload."""

    def __init__(self, layout):
        self.fields = {name: (f.offset, f.width) for name, f in layout}

    def pack(self, **values) -> int:
        """The payload of ``values``; a field the layout lacks (a zero-width tag) must be 0."""
        word = 0
        for name, v in values.items():
            if name not in self.fields:
                if v:
                    raise ValueError(f"{name}: not a field of this payload")
                continue
            off, width = self.fields[name]
            word |= (int(v) & ((1 << width) - 1)) << off
        return word

    def unpack(self, word: int) -> dict:
        return {name: (word >> off) & ((1 << width) - 1)
                for name, (off, width) in self.fields.items()}


class Schedule:
    """A pause pattern keyed to a cycle: ``bits[cycle - start]``, False outside it."""

    def __init__(self, clocked):
        self.clocked, self.start, self.bits = clocked, 0, np.zeros(0, dtype=bool)

    def arm(self, start: int, bits):
        self.start, self.bits = start, np.asarray(bits, dtype=bool)

    def __iter__(self):
        return self

    def __next__(self) -> bool:
        k = self.clocked.cycle - self.start
        return bool(self.bits[k]) if 0 <= k < len(self.bits) else False


class GatherTB:
    """Drives every stream of a ``SparseGather`` top and reads its counters."""

    def __init__(self, dut, hw: dict, seed: int = 1):
        self.dut, self.hw = dut, hw
        self.lanes, self.banks = hw["lanes"], hw["banks"]
        unit = SparseGather(**hw)
        self.index_f = Field(unit.index_layout)
        self.result_f = Field(unit.result_layout)
        self.write_f = Field(unit.write_layout)
        self.clocked = Clocked(dut.clk)
        self.in_sched = [Schedule(self.clocked) for _ in range(self.lanes)]
        self.out_sched = [Schedule(self.clocked) for _ in range(self.lanes)]
        self.sources = [StreamSource(dut, f"index__{k}", pause=self.in_sched[k])
                        for k in range(self.lanes)]
        self.expect = [[] for _ in range(self.lanes)]
        self.mismatches = []
        self.sinks = [StreamSink(dut, f"result__{k}", pause=self.out_sched[k],
                                 on_word=self._scoreboard(k)) for k in range(self.lanes)]
        self.write_rng = random.Random(seed)
        self.writer = StreamSource(dut, "write", pause=random_pause(0.0, self.write_rng))
        self.clocked.add(*self.sources, *self.sinks, self.writer)
        self.counter_mask = (1 << hw["counter_bits"]) - 1

    def _scoreboard(self, lane):
        def check(cycle, word):
            got = self.result_f.unpack(word)
            pos = len(self.sinks[lane].received) - 1
            want = self.expect[lane][pos] if pos < len(self.expect[lane]) else None
            if got != want:
                self.mismatches.append(f"lane {lane} record {pos} (cycle {cycle}): RTL {got} "
                                       f"!= golden {want}")
        return check

    async def start(self):
        await tb.start(self.dut)
        self.clocked.start()

    def counters(self) -> dict:
        d = self.dut
        return {"conflicts": [int(getattr(d, f"conflicts__{b}").value)
                              for b in range(self.banks)],
                "stalls": [int(getattr(d, f"stalls__{k}").value) for k in range(self.lanes)],
                "dropped_writes": int(d.dropped_writes.value)}

    def delta(self, before: dict, after: dict) -> dict:
        m = self.counter_mask
        return {"conflicts": [(a - b) & m for a, b in zip(after["conflicts"],
                                                           before["conflicts"])],
                "stalls": [(a - b) & m for a, b in zip(after["stalls"], before["stalls"])],
                "dropped_writes": (after["dropped_writes"] - before["dropped_writes"]) & m}

    async def load(self, pairs, stall: float):
        """Write ``(index, value)`` pairs, with a pause probability on the source."""
        self.writer.pause = random_pause(stall, self.write_rng)
        for i, v in pairs:
            self.writer.send(self.write_f.pack(index=i, value=v))
        await self.clocked.wait_until(lambda: self.writer.idle, 4 * len(pairs) + 100,
                                      "writes")

    async def gather(self, indices, tags, expect, in_pause, out_pause, timeout: int) -> dict:
        """Offer ``indices[l]`` (with ``tags[l]``) on every lane from a common cycle 0
        under the pause patterns; returns each lane's transfer cycles from cycle 0."""
        start = self.clocked.cycle + 2
        first_in = [len(s.sent) for s in self.sources]
        first_out = [len(s.received) for s in self.sinks]
        for lane in range(self.lanes):
            self.in_sched[lane].arm(start, in_pause[lane])
            self.out_sched[lane].arm(start, out_pause[lane])
            self.expect[lane] = [None] * first_out[lane] + list(expect[lane])
            for i, t in zip(indices[lane], tags[lane]):
                self.sources[lane].send(self.index_f.pack(index=i, tag=t), at=start)
        total = sum(len(x) for x in indices)

        def finished():
            return self.mismatches or sum(len(s.received) - f for s, f in
                                          zip(self.sinks, first_out)) >= total
        await self.clocked.wait_until(finished, timeout + 10, "every record of the run")
        # a few quiet cycles: no record beyond the run's (no duplicate, no stray record)
        end = self.clocked.cycle + 8
        await self.clocked.wait_until(lambda: self.clocked.cycle >= end, 20, "quiet cycles")
        assert not self.mismatches, self.mismatches[:5]
        extra = sum(len(s.received) - f for s, f in zip(self.sinks, first_out)) - total
        assert extra == 0, f"{extra} records more than requests"
        return {"in": [[c - start for c, *_ in s.sent[f:]] for s, f in
                       zip(self.sources, first_in)],
                "out": [[c - start for c, _ in s.received[f:]] for s, f in
                        zip(self.sinks, first_out)]}

    def finish(self):
        errors = self.clocked.protocol_errors
        self.clocked.stop()
        assert not errors, errors[:5]


def _pauses(rng, lanes, horizon, p):
    return rng.random((lanes, horizon)) < p if p > 0 else np.zeros((lanes, horizon), bool)


def _same_cycles(what, got, want):
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                  min(len(got), len(want)))
        raise AssertionError(f"{what}: transfer {at} in cycle "
                             f"{got[at] if at < len(got) else None}, the cycle model says "
                             f"{want[at] if at < len(want) else None} "
                             f"({len(got)} vs {len(want)} transfers)")


@cocotb.test()
async def gather_matches_golden(dut):
    """Every run of the parameters, scoreboarded against the golden model."""
    cfg = params()
    hw = check_gather_params(cfg["hw"])
    lanes, banks, depth = hw["lanes"], hw["banks"], hw["depth"]
    bench = GatherTB(dut, hw, cfg.get("seed", 1))
    await bench.start()
    mem = g.GatherMemory(depth, hw["value_bits"], banks)
    record, pointers = [], None
    for k, run in enumerate(cfg["runs"]):
        rng = np.random.default_rng([cfg.get("seed", 1), k])
        n = run.get("n", 64)
        # (re)load: every word first, then a fraction; out-of-range writes mixed in
        if k == 0:
            order = rng.permutation(depth)
        else:
            order = rng.choice(depth, int(run.get("rewrite", 0.25) * depth), replace=False)
        values = random_words(rng, len(order), hw["value_bits"])
        pairs = [(int(i), int(v)) for i, v in zip(order, values)]
        if depth < 1 << hw["index_bits"]:
            for _ in range(3):
                at = int(rng.integers(0, len(pairs) + 1))
                pairs.insert(at, (int(rng.integers(depth, 1 << hw["index_bits"])),
                                  int(random_words(rng, 1, hw["value_bits"])[0])))
        before = bench.counters()
        await bench.load(pairs, run.get("stall_write", 0.0))
        dropped = mem.dropped_writes
        mem.load([i for i, _ in pairs], [v for _, v in pairs])

        idx = index_streams(run["pattern"], lanes, n, banks=banks, depth=depth,
                            index_bits=hw["index_bits"], rng=rng, oob=run.get("oob", 0.0))
        tags = rng.integers(0, 1 << hw["tag_bits"], (lanes, n))
        horizon = 4 * n + 64
        hold = run.get("hold")
        in_pause = _pauses(rng, lanes, horizon, run.get("stall_in", 0.0))
        out_pause = _pauses(rng, lanes, horizon, run.get("stall_out", 0.0))
        if hold is not None:
            out_pause = np.pad(out_pause, ((0, 0), (0, max(0, hold[2] + 1 - horizon))))
            out_pause[hold[0], hold[1]:hold[2] + 1] = True
        expect = []
        for lane in range(lanes):
            vals, errs = g.gather(mem.words, idx[lane], depth)
            expect.append([{"value": int(v), "error": int(e),
                            **({"tag": int(t)} if hw["tag_bits"] else {})}
                           for v, e, t in zip(vals, errs, tags[lane])])
        fault = run.get("fault")      # a deliberately wrong golden, to test the checks
        if fault == "value":
            expect[0][n // 2]["value"] ^= 1
        model = g.simulate(idx, banks=banks, window=hw["window"] + (fault == "window"),
                           ports=hw["ports"], depth=depth, words=mem.words,
                           in_pause=in_pause, out_pause=out_pause, pointers=pointers)
        pointers = model.pointers     # the arbiters keep their pointers between runs
        if fault is None:
            assert [[r["value"] for r in x] for x in expect] == model.values, \
                "golden: the cycle model's values differ from gather()"
        got = await bench.gather(idx.tolist(), tags.tolist(), expect, in_pause, out_pause,
                                 model.cycles)
        delta = bench.delta(before, bench.counters())
        for lane in range(lanes):
            for what in ("in", "out"):
                _same_cycles(f"run {k} lane {lane} {what}", got[what][lane],
                             getattr(model, f"{what}_cycles")[lane])
        assert delta["conflicts"] == model.conflicts.tolist(), (delta, model.conflicts)
        assert delta["stalls"] == model.stalls.tolist(), (delta, model.stalls)
        assert delta["dropped_writes"] == mem.dropped_writes - dropped, delta
        span = max(max(c) for c in got["out"] if c) - min(min(c) for c in got["in"] if c) + 1
        record.append({"run": run, "accesses": lanes * n, "span": span,
                       "per_lane_per_cycle": lanes * n / (lanes * span),
                       "model_per_lane_per_cycle": model.per_lane_per_cycle(),
                       "bound": g.pattern_bound(idx, banks, depth),
                       "conflicts": delta["conflicts"], "stalls": delta["stalls"],
                       "errors": int(sum(sum(r["error"] for r in x) for x in expect)),
                       "out_cycles": got["out"], "in_cycles": got["in"]})
    bench.finish()
    _write_outputs(record)


def _write_outputs(record):
    with open("outputs.json", "w") as fh:
        json.dump(record, fh)


def verilog_for(hw: dict) -> str:
    return to_verilog(SparseGather(**hw), TOP)


def run_on_verilator(hw: dict, runs: list, *, seed: int = 1) -> list:
    """Build ``SparseGather(**hw)`` once (cached by hash) and run ``runs`` on it (see the
    module docstring); raises if any record or cycle differs from the golden model.
    Returns one dict of figures per run."""
    hw = check_gather_params(hw)
    run_dir = run_cocotb(verilog_for(hw), TOP, MODULE,
                         params={"hw": hw, "runs": runs, "seed": seed})
    return json.loads((run_dir / "outputs.json").read_text())
