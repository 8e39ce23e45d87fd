"""p-bit tile (``hw.tiles.pbit``) on amaranth.sim: NoC packets in, array records out.

A harness (``Bench.run``) feeds packets into ``i`` with random gaps (valid held
with the same payload until taken), takes ``o`` with random ready, checks that
an offered output flit is never changed or withdrawn, and records every flit out
and the cycle each input was taken. Requests come from ``gen.pbit.tile`` and
every record flit is decoded and compared, record for record, with the bit-exact
model (``golden_results``); a run that samples under output backpressure may
stall, so only its cycle count (COUNT index 0) may exceed the model's.

Two tiles: a dense ``parallel`` tile of 8 p-bits and a ``lanes`` tile of 24
p-bits on 4 lanes, each with 32- and 64-bit packet data (2 and 1 chunks per ctrl
word and record).
"""

import gc
import json
import random
import warnings

import numpy as np
import pytest
from amaranth.sim import Simulator

from tilefab.gen.lint import lint_file
from tilefab.gen.emit import to_verilog
from tilefab.gen.errors import ConfigError
from tilefab.gen.pbit import driver, graph
from tilefab.gen.pbit import tile as host
from tilefab.golden import pbit as g
from tilefab.golden.packet import Op, Packet, PacketFormat
from tilefab.hw.noc.packet import packet_layout
from tilefab.hw.pbit.array import Kind, Op as ArrayOp
from tilefab.hw.pbit.lanes import LaneOp
from tilefab.hw.tiles import pbit as hwtile
from tilefab.hw.tiles.pbit import PBitTile, PBitTileParams

X, Y = 1, 2
HOST = (3, 3)
COORD, ADDR = 2, 16
TAG0 = 0x100

FMT = dict(w_bits=6, w_frac=1, h_bits=8, beta_bits=7, beta_frac=5, lut_size=32,
           lut_step_frac=2, rand_bits=14)
PARALLEL = dict(arch="parallel", n=8, n_colours=7, seed=7, sched_depth=10, word_bits=5, **FMT)
LANES = dict(arch="lanes", n=24, lanes=4, edge_depth=40, max_degree=6, n_colours=6, seed=9,
             sched_depth=6, word_bits=16, **FMT)
TILES = {"parallel": PARALLEL, "lanes": LANES}


# ---- harness --------------------------------------------------------------------------

class Gap:
    def __init__(self, n):
        self.n = n


class WaitDone:
    """Offer nothing until ``n`` DONE flits (from the start of the run) have left."""

    def __init__(self, n):
        self.n = n


class Bench:
    def __init__(self, kw, data_bits, seed=1):
        self.kw, self.D = kw, data_bits
        self.layout = packet_layout(coord_bits=COORD, addr_bits=ADDR, data_bits=data_bits)
        self.fmt = PacketFormat(coord_bits=COORD, addr_bits=ADDR, data_bits=data_bits)
        self.params = PBitTileParams(data_bits=data_bits, addr_bits=ADDR, **kw)
        self.rng = random.Random(seed)
        self.sources = [(sx, sy) for sx in range(4) for sy in range(4) if (sx, sy) != (X, Y)]

    def packet(self, op, addr=0, data=0, src=None):
        sx, sy = src if src is not None else self.rng.choice(self.sources)
        return Packet(dst_x=X, dst_y=Y, src_x=sx, src_y=sy, op=int(op), addr=addr, data=data)

    def session(self, ops, first_tag=TAG0, src=HOST):
        """Packets of ``ops``: WRITEs from random sources, EXECs from ``src``."""
        reqs, expected = host.requests_for(self.params, ops, first_tag=first_tag)
        return [self.packet(op, addr, d, src if op == Op.EXEC else None)
                for op, addr, d in reqs], expected

    def status(self, name, src=HOST):
        return self.packet(Op.READ, self.params.status[name], src=src)

    def run(self, items, *, dones=0, p_in=0.7, p_out=0.7, dropped=0, quiet=40,
            max_cycles=60000):
        """Feed ``items``; stop ``quiet`` cycles after the last flit once ``dones`` DONEs left."""
        dut = PBitTile(layout=self.layout, x=X, y=Y, **self.kw)
        rng, fmt = self.rng, self.fmt
        packets = [it for it in items if isinstance(it, Packet)]
        res = {"taken": [], "out": [], "errors": [], "cycles": 0}

        async def bench(ctx):
            ctx.set(dut.dropped, dropped)
            idx, cycle, gap, offering, held, idle, done_count = 0, 0, 0, False, None, 0, 0

            def dones_seen():
                return done_count >= dones
            while True:
                while not offering and idx < len(items) and not isinstance(items[idx], Packet):
                    it = items[idx]
                    if isinstance(it, Gap):
                        gap, idx = it.n, idx + 1
                    elif done_count >= it.n:
                        idx += 1
                    else:
                        break
                if (not offering and gap == 0 and idx < len(items)
                        and isinstance(items[idx], Packet) and rng.random() < p_in):
                    ctx.set(dut.i.payload.as_value(), fmt.pack(items[idx]))
                    offering = True
                gap = max(0, gap - 1)
                ctx.set(dut.i.valid, offering)
                ready = p_out >= 1 or rng.random() < p_out
                ctx.set(dut.o.ready, ready)
                if offering and ctx.get(dut.i.ready):
                    res["taken"].append(cycle)
                    offering, idx, idle = False, idx + 1, 0
                if ctx.get(dut.o.valid):
                    word = ctx.get(dut.o.payload.as_value())
                    if held is not None and held != word:
                        res["errors"].append(f"cycle {cycle}: offered flit changed")
                    if ready:
                        p = fmt.unpack(word)
                        res["out"].append((cycle, p))
                        done_count += p.op == Op.DONE
                        held = None
                    else:
                        held = word
                    idle = 0
                else:
                    if held is not None:
                        res["errors"].append(f"cycle {cycle}: offered flit withdrawn")
                        held = None
                    idle += 1
                await ctx.tick()
                cycle += 1
                if idx == len(items) and not offering and idle >= quiet and dones_seen():
                    break
                if cycle >= max_cycles:
                    res["errors"].append(f"timeout: {len(res['taken'])} of {len(packets)} "
                                         f"packets taken, {len(res['out'])} flits out")
                    break
            res["cycles"] = cycle

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        assert not res["errors"], res["errors"][:5]
        assert len(res["taken"]) == len(packets)
        for _, p in res["out"]:
            assert (p.src_x, p.src_y) == (X, Y), p
        res["packets"] = packets
        return res


def split(out, tags):
    """(record flits, DONEs, answers): record flits are REPLYs whose addr is a job tag."""
    recs = [p for _, p in out if p.op == Op.REPLY and p.addr in tags]
    dones = [p for _, p in out if p.op == Op.DONE]
    answers = [p for _, p in out if p.op == Op.ERROR or (p.op == Op.REPLY
                                                         and p.addr not in tags)]
    return recs, dones, answers


def jobs_of(ops):
    return [op for op in ops if isinstance(op, (driver.Run, driver.Read))]


def check_records(params, ops, recs, dones, tags, src=HOST, stalls=False):
    """Every record flit and DONE against the golden model, job by job."""
    for p in recs + dones:
        assert p.dst == src, f"{p} not sent to the EXEC's source {src}"
    assert [p.addr for p in dones] == list(tags)
    assert [p.data for p in dones] == host.done_records(params, ops)
    got = host.record_words(params, [p.data for p in recs])
    want = host.golden_records(params, ops)
    assert len(got) == len(want), f"{len(got)} records, expected {len(want)}"
    # the record flits of job k carry tag k, and the jobs' records follow one another
    sizes = [host.records_of(params, op) for op in jobs_of(ops)]
    R, start, sampling = params.record_chunks, 0, False
    for job, (op, size, tag) in enumerate(zip(jobs_of(ops), sizes, tags)):
        assert {p.addr for p in recs[start * R:(start + size) * R]} == {tag}
        if isinstance(op, driver.Run):          # a Read repeats the last run's count
            sampling = bool(op.sample_every) and stalls
        for k in range(start, start + size):
            r_got = params.out_layout.from_bits(got[k])
            r_want = params.out_layout.from_bits(want[k])
            if sampling and r_want.kind == Kind.COUNT and r_want.index == 0:
                assert (r_got.kind, r_got.index) == (r_want.kind, r_want.index)
                assert r_got.data >= r_want.data, f"job {job}: fewer cycles than the model"
            else:
                assert got[k] == want[k], (f"job {job} record {k - start}: got "
                                           f"{r_got}, expected {r_want}")
        start += size
    results = host.decode_replies(params, [p.data for p in recs])
    golden = host.golden_results(params, ops)
    assert len(results) == len(golden) == len(sizes)
    for r, w in zip(results, golden):
        assert np.array_equal(r.state, w.state) and r.energy == w.energy
        assert np.array_equal(r.best_state, w.best_state) and r.best_energy == w.best_energy
        assert r.update_cycles == w.update_cycles
        assert len(r.samples) == len(w.samples)
        for (s, e), (ws, we) in zip(r.samples, w.samples):
            assert np.array_equal(s, ws) and e == we
    return results, golden


# ---- random problems ------------------------------------------------------------------

def random_problem(params, rng, density, max_degree=None, wmax=None):
    """(J, h, colours) on a random graph, J symmetric over the tile's w_bits range."""
    n = params.n
    lo, hi = -(1 << (params.w_bits - 1)), (1 << (params.w_bits - 1)) - 1
    if wmax is not None:
        lo, hi = max(lo, -wmax), min(hi, wmax)
    J = np.zeros((n, n), dtype=np.int64)
    deg = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < density and (max_degree is None or
                                           max(deg[i], deg[j]) < max_degree):
                v = 0
                while v == 0:
                    v = int(rng.integers(lo, hi + 1))
                J[i, j] = J[j, i] = v
                deg[i] += 1
                deg[j] += 1
    hb = 1 << (params.h_bits - 1)
    h = rng.integers(-hb, hb, n)
    nb = [list(np.flatnonzero(J[i])) for i in range(n)]
    colours = graph.dsatur(nb)
    assert colours.max() < params.n_colours
    return J, h, colours


def session_ops(params, rng):
    """Program, a sampled anneal, Read, a second program with clamps, a short run."""
    n = params.n
    deg = params.max_degree if params.arch == "lanes" else None
    J, h, col = random_problem(params, rng, 0.5 if params.arch == "parallel" else 0.2, deg)
    J2, h2, col2 = random_problem(params, rng, 0.4 if params.arch == "parallel" else 0.15,
                                  deg, wmax=4)
    k, k2 = int(col.max()) + 1, int(col2.max()) + 1
    state = rng.choice([-1, 1], n)
    clamp = np.zeros(n, bool)
    clamp[[1, n - 2]] = True
    return [driver.Program(J, h, col, state=state),
            driver.Run([(3, 4), (20, 5), (90, 6)], k, sample_every=3),
            driver.Read(),
            driver.Program(J2, h2, col2, clamp=clamp, state=-state),
            driver.Run([(40, 5), (127, 3)], k2)]


def bench_for(arch, data_bits, seed=1):
    return Bench(TILES[arch], data_bits, seed)


# ---- tests ----------------------------------------------------------------------------

@pytest.mark.parametrize("data_bits", [32, 64])
@pytest.mark.parametrize("arch", ["parallel", "lanes"])
def test_random_problems_bit_exact_with_backpressure(arch, data_bits):
    b = bench_for(arch, data_bits, seed=data_bits + len(arch))
    p = b.params
    assert (p.ctrl_chunks, p.record_chunks) == ((2, 2) if data_bits == 32 else (1, 1))
    ops = session_ops(p, np.random.default_rng(data_bits))
    packets, expected = b.session(ops)
    items = []
    for pk in packets:                       # random gaps on top of the random valid
        if b.rng.random() < 0.05:
            items.append(Gap(b.rng.randrange(1, 12)))
        items.append(pk)
    run = b.run(items, dones=expected.dones, p_in=0.6, p_out=0.5)
    recs, dones, answers = split(run["out"], expected.tags)
    assert not answers, answers[:4]
    assert len(recs) == expected.reply_flits and len(dones) == expected.dones
    results, golden = check_records(p, ops, recs, dones, expected.tags, stalls=True)
    # the unsampled run stalls for nothing: its cycle count is the model's
    assert results[2].cycles == golden[2].cycles
    assert len(results[0].samples) == (4 + 5 + 6) // 3
    assert np.all(results[2].state[[1, p.n - 2]] == -ops[0].state[[1, p.n - 2]])


@pytest.mark.parametrize("arch", ["parallel", "lanes"])
def test_status_registers(arch):
    b = bench_for(arch, 32, seed=3)
    p = b.params
    ops = session_ops(p, np.random.default_rng(11))[:2]
    packets, expected = b.session(ops)
    n_program = sum(pk.op == Op.WRITE for pk in packets)
    run_idx = len(packets) - 1                               # the EXEC of the anneal
    items = packets[:run_idx] + [Gap(40), packets[run_idx], Gap(3), b.status("running"),
                                 b.status("runs"), WaitDone(1), Gap(20)]
    items += [b.status(name) for name in hwtile.STATUS_REGISTERS]
    run = b.run(items, dones=expected.dones, p_out=0.8, dropped=12345)
    recs, dones, answers = split(run["out"], expected.tags)
    results, _ = check_records(p, ops, recs, dones, expected.tags, stalls=True)
    done_cycle = next(c for c, q in run["out"] if q.op == Op.DONE)
    # the status READs sent during the run are answered before its DONE
    during = [(c, q) for c, q in run["out"] if q.op == Op.REPLY and q.addr in
              (p.status["running"], p.status["runs"])][:2]
    assert [q.data for _, q in during] == [1, 0]
    assert all(c < done_cycle for c, _ in during)
    final = answers[2:]
    assert [q.addr for q in final] == [p.status[n] for n in hwtile.STATUS_REGISTERS]
    got = {n: q.data for n, q in zip(hwtile.STATUS_REGISTERS, final)}
    first = len(run["packets"]) - len(hwtile.STATUS_REGISTERS)
    taken = run["taken"]
    sent_before = [sum(1 for c, _ in run["out"] if c < taken[first + k])
                   for k in range(len(final))]
    assert got["dropped"] == 12345
    assert got["errors"] == 0
    assert got["flits_in"] == first + 2            # this READ's predecessors
    assert got["flits_out"] == sent_before[3]
    assert got["runs"] == 1 and got["running"] == 0
    assert got["run_cycles"] == results[0].cycles
    ctrl_words = n_program // p.ctrl_chunks + 1    # the program and SCHED words, the RUN
    assert got["ctrl_words"] == ctrl_words


def error_cases(b):
    """Groups of (packet, expected ERROR data, None for a counted, unanswered one, or
    "none" for a staging WRITE); a staged word's chunks stay together in one group."""
    p = b.params
    K = p.ctrl_chunks
    lay = p.ctrl_layout
    ops = p.ops

    def staged(op, index=0, slot=0, data=0):
        word = lay.const({"op": int(op), "index": index, "slot": slot, "data": data}
                         ).as_value().value
        chunks = p.ctrl_chunks_layout.from_bits(word)
        pks = [b.packet(Op.WRITE, k, chunks[k]) for k in range(K)]
        return pks[:-1], pks[-1]

    def err(op, reason=0):
        return p.error_layout.const({"op": int(op), "reason": reason}).as_value().value

    cases = []

    def add_staged(reason, **w):
        if any(v >= 1 << lay[f].width for f, v in w.items() if f != "op"):
            return                               # not representable: nothing to check
        pre, last = staged(**w)
        cases.append([(pk, "none") for pk in pre] + [(last, err(Op.WRITE, reason))])

    for op in (ops.RUN, ops.READ, 7):
        add_staged(hwtile.ERROR_BAD_OP, op=op)
    add_staged(hwtile.ERROR_BAD_INDEX, op=ops.STATE, index=p.n)
    add_staged(hwtile.ERROR_BAD_INDEX, op=ops.SCHED, index=p.sched_depth)
    if p.arch == "parallel":
        add_staged(hwtile.ERROR_BAD_INDEX, op=ArrayOp.H, index=p.n)
        add_staged(hwtile.ERROR_BAD_INDEX, op=ArrayOp.J, index=2, slot=p.n - 1)
        add_staged(hwtile.ERROR_BAD_INDEX, op=ArrayOp.COLOUR, index=p.n + 1)
    else:
        add_staged(hwtile.ERROR_BAD_INDEX, op=LaneOp.EDGE, index=0, slot=p.lanes)
        add_staged(hwtile.ERROR_BAD_INDEX, op=LaneOp.EDGE, index=p.edge_depth, slot=1)
        add_staged(hwtile.ERROR_BAD_INDEX, op=LaneOp.NODE, index=p.slots, slot=0)
        add_staged(hwtile.ERROR_BAD_INDEX, op=LaneOp.COUNT, slot=2, data=p.slots + 1)
    desc = p.descriptor_layout
    bad = [{"colours": 0, "last": p.sched_depth}, {"colours": 7, "last": 7, "sample_every": 3}]
    if p.n_colours < 1 << p.colour_bits:        # else every colours field is allowed
        bad.append({"colours": p.n_colours, "last": 0})
    for fields in bad:
        d = desc.const(fields).as_value().value
        cases.append([(b.packet(Op.EXEC, 0x200, d), err(Op.EXEC, hwtile.ERROR_BAD_DESCRIPTOR))])
    for op in (6, 7):
        cases.append([(b.packet(op, 5, 0x1234), err(op))])
    cases.append([(b.packet(Op.WRITE, K, 1), err(Op.WRITE))])                 # past the ctrl
    cases.append([(b.packet(Op.WRITE, p.status["errors"], 1), err(Op.WRITE))])
    cases.append([(b.packet(Op.READ, 0), err(Op.READ))])                      # ctrl: write only
    cases.append([(b.packet(Op.READ, p.status_base + 15), err(Op.READ))])
    cases.append([(b.packet(Op.READ, 0x1000), err(Op.READ))])
    for op in (Op.REPLY, Op.DONE, Op.ERROR):
        cases.append([(b.packet(op, 3, 4), None)])
    return cases


@pytest.mark.parametrize("data_bits", [32, 64])
@pytest.mark.parametrize("arch", ["parallel", "lanes"])
def test_malformed_packets_answer_error_and_runs_stay_exact(arch, data_bits):
    b = bench_for(arch, data_bits, seed=5)
    p = b.params
    rng = np.random.default_rng(3)
    ops = session_ops(p, rng)
    program, rest = ops[:1], ops[1:2]
    pk1, e1 = b.session(program + rest)
    groups = error_cases(b)
    b.rng.shuffle(groups)
    cases = [c for grp in groups for c in grp]
    bad = [pk for pk, _ in cases]
    # errors before the program and its run, and after it
    cut = sum(len(grp) for grp in groups[:len(groups) // 2])
    items = bad[:cut] + pk1 + [WaitDone(1)] + bad[cut:] + [b.status("errors")]
    ops2 = [driver.Run([(60, 7)], int(ops[0].colours.max()) + 1), driver.Read()]
    pk2, e2 = b.session(ops2, first_tag=TAG0 + 2)
    items += pk2
    run = b.run(items, dones=e1.dones + e2.dones, p_in=0.8, p_out=0.6)
    tags = e1.tags + e2.tags
    recs, dones, answers = split(run["out"], tags)
    check_records(p, program + rest + ops2, recs, dones, tags, stalls=True)
    want = [(pk, d) for pk, d in cases if d is not None and d != "none"]
    errors = [q for q in answers if q.op == Op.ERROR]
    order = [pk for pk in run["packets"] if any(pk is w for w, _ in want)]
    expected = {id(pk): d for pk, d in want}
    assert len(errors) == len(order)
    for pk, q in zip(order, errors):
        assert (q.op, q.addr, q.dst, q.data) == (Op.ERROR, pk.addr, pk.src, expected[id(pk)]), \
            f"request {pk}: answered {q}"
    counted = sum(1 for _, d in cases if d != "none")
    status = [q for q in answers if q.op == Op.REPLY]
    assert [q.data for q in status] == [counted]


def test_exec_waits_for_the_running_job():
    """Two EXECs back to back: the second is held until the first's DONE, both exact."""
    b = bench_for("parallel", 32, seed=8)
    p = b.params
    ops = session_ops(p, np.random.default_rng(4))[:2] + [
        driver.Run([(50, 3)], 7, sample_every=1), driver.Read()]
    packets, expected = b.session(ops)
    run = b.run(packets, dones=expected.dones, p_in=1.0, p_out=0.3)
    recs, dones, _ = split(run["out"], expected.tags)
    check_records(p, ops, recs, dones, expected.tags, stalls=True)
    execs = [i for i, pk in enumerate(run["packets"]) if pk.op == Op.EXEC]
    # an EXEC is taken only once the previous job's last record flit has left (its DONE
    # is queued behind that flit, so the next job's flits follow the DONE)
    last_flit = [max(c for c, q in run["out"] if q.op == Op.REPLY and q.addr == t)
                 for t in expected.tags]
    for k in range(1, len(execs)):
        assert run["taken"][execs[k]] >= last_flit[k - 1]
    kinds = [q.op for _, q in run["out"] if q.op in (Op.REPLY, Op.DONE)]
    assert kinds.count(Op.DONE) == 3
    ends = [i for i, op in enumerate(kinds) if op == Op.DONE]
    assert ends[-1] == len(kinds) - 1 and all(kinds[i - 1] == Op.REPLY for i in ends)


# ---- parameters, host checks, manifest ------------------------------------------------

def params(**kw):
    return PBitTileParams(data_bits=32, addr_bits=ADDR, **kw)


@pytest.mark.parametrize("kw,msg", [
    (dict(arch="foo"), r"^arch: 'foo' is not allowed, must be one of parallel, lanes"),
    (dict(n=0), r"^n: 0 is not allowed, must be 2\.\.4096"),
    (dict(n=33), r"^n: 33 is not allowed, must be 2\.\.32 with arch parallel"),
    (dict(arch="lanes", lanes=3), r"^lanes: 3 is not allowed, must be a power of two"),
    (dict(lanes=3), r"^lanes: 3 is not allowed"),       # range-checked under parallel too
    (dict(lanes=128), r"^lanes: 128 is not allowed, must be 1\.\.64"),
    (dict(colours=3), r"^colours: unknown pbit tile parameter"),
    (dict(w_bits=6, w_frac=6), r"^w_frac: 6 is not allowed, must be 0\.\.5"),
    (dict(beta_bits=4, beta_frac=5), r"^beta_frac: 5 is not allowed, must be 0\.\.4"),
    (dict(beta_bits=16, sweep_bits=17), r"^sweep_bits: 17 is not allowed, must be 1\.\.16"),
    (dict(lut_size=48), r"^lut_size: 48 is not allowed, must be a power of two"),
    (dict(seed=0), r"^seed: 0 is not allowed, must be 1\.\.4294967295"),
    (dict(seed=True), r"^seed: True is not allowed"),
    (dict(n="8"), r"^n: '8' is not allowed"),
    (dict(n_colours=0), r"^n_colours: 0 is not allowed, must be 1\.\.256"),
    (dict(arch="lanes", n=8, max_degree=9), r"^max_degree: 9 is not allowed, must be 1\.\.8"),
    (dict(arch="lanes", n=100, lanes=2, edge_depth=40),
     r"^edge_depth: 40 is not allowed, must be at least 50"),
    (dict(edge_depth=0), r"^edge_depth: 0 is not allowed"),
])
def test_params_rejected_naming_the_field(kw, msg):
    with pytest.raises(ValueError, match=msg):
        params(**kw)


def test_params_rules_spanning_the_packet():
    with pytest.raises(ValueError, match=r"^data_bits: 16 is not allowed, must be at least "
                                         r"the 23-bit EXEC descriptor"):
        PBitTileParams(data_bits=16, addr_bits=ADDR, n_colours=8, sched_depth=8)
    with pytest.raises(ValueError, match=r"^addr_bits: 4 is not allowed, must be at least 5"):
        PBitTileParams(data_bits=8 + 24, addr_bits=4, n_colours=4, sched_depth=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # the half-built tile is never elaborated
        with pytest.raises(ValueError, match=r"^data_bits: "):
            PBitTile(layout=packet_layout(coord_bits=2, addr_bits=16, data_bits=16), x=0, y=0)
        gc.collect()


def test_params_defaults_and_lane_parameters_ignored_by_parallel():
    p = params()
    assert p.arch == "parallel" and p.n == 16
    assert all(isinstance(q, hwtile.Param) for q in PBitTileParams.PARAMS)
    names = [q.name for q in PBitTileParams.PARAMS]
    assert len(names) == len(set(names))
    for q in PBitTileParams.PARAMS:
        q.check(q.default)
    # range-checked, otherwise ignored: the same array either way
    assert params(lanes=16, edge_depth=8).config() == p.config()
    assert PBitTile.Params is PBitTileParams


@pytest.mark.parametrize("seed", [1, 7, 2**32 - 1])
def test_seeds_are_the_golden_derivation(seed):
    assert hwtile.pbit_seeds(seed, 300) == g.pbit_seeds(seed, 300)
    assert params(seed=seed, n=8).seeds() == g.pbit_seeds(seed, 8)


@pytest.mark.parametrize("arch", ["parallel", "lanes"])
def test_manifest_reads_the_layouts(arch):
    p = PBitTileParams(data_bits=32, addr_bits=ADDR, **TILES[arch])
    man = json.loads(json.dumps(p.manifest()))
    assert man["status_registers"] == {n: (1 << ADDR) - 16 + k
                                       for k, n in enumerate(hwtile.STATUS_REGISTERS)}
    assert man["address_map"]["ctrl"] == {"base": 0, "chunks": 2, "push": 1}
    d = man["exec"]["descriptor"]
    assert d["sample_every"] == {"lsb": 0, "width": 16}
    assert d["colours"]["lsb"] == 16 and d["colours"]["width"] == p.colour_bits
    assert d["read"]["lsb"] == d["last"]["lsb"] + d["last"]["width"]
    ctrl = man["layouts"]["ctrl"]
    assert list(ctrl) == ["op", "index", "slot", "data"]
    assert sum(f["width"] for f in ctrl.values()) == man["ctrl_word"]["width"]
    assert man["record"]["chunks"] == p.record_chunks
    assert man["config"] == p.config() and man["config"]["arch"] == arch
    assert man["errors"]["layout"] == {"op": {"lsb": 0, "width": 8},
                                       "reason": {"lsb": 8, "width": 8}}
    assert ("data.EDGE" in man["layouts"]) == (arch == "lanes")
    assert ("lanes" in man["params"]) == (arch == "lanes")


def test_host_refuses_problems_the_tile_cannot_hold():
    pp = PBitTileParams(data_bits=32, addr_bits=ADDR, **PARALLEL)
    pl = PBitTileParams(data_bits=32, addr_bits=ADDR, **LANES)
    col = np.arange(8) % 7

    def prog(J, h=None, n=8, c=None):
        return driver.Program(np.asarray(J), np.zeros(n, int) if h is None else h,
                              col if c is None else c)
    with pytest.raises(ConfigError, match=r"^J: the problem has 9 p-bits, above the tile's n=8"):
        host.requests_for(pp, [prog(np.zeros((9, 9), int), n=9, c=np.arange(9) % 7)])
    with pytest.raises(ConfigError, match=r"^J: the array has 8 p-bits"):
        host.requests_for(pp, [prog(np.zeros((7, 7), int), n=7, c=np.arange(7) % 7)])
    J = np.zeros((8, 8), int)
    J[0, 1] = 3
    with pytest.raises(ConfigError, match=r"^J: must be symmetric"):
        host.requests_for(pp, [prog(J)])
    J[1, 0] = 3
    J[0, 1] = J[1, 0] = 40
    with pytest.raises(ConfigError, match=r"^J: values must lie in \[-32, 31\] \(w_bits=6\)"):
        host.requests_for(pp, [prog(J)])
    with pytest.raises(ConfigError, match=r"^n_colours: must lie in \[1, 7\]"):
        host.requests_for(pp, [driver.Run([(1, 1)], 8)])
    with pytest.raises(ConfigError, match=r"^schedule: needs 1 to 10"):
        host.requests_for(pp, [driver.Run([(1, 1)] * 11, 2)])
    star = np.zeros((24, 24), int)
    star[0, 1:8] = star[1:8, 0] = 1
    cs = np.r_[0, [1] * 23]
    with pytest.raises(ConfigError, match=r"^J: p-bit 0 has 7 couplings, above the array's "
                                          r"max_degree=6"):
        host.requests_for(pl, [driver.Program(star, np.zeros(24, int), cs)])
    dense = np.zeros((24, 24), int)
    for i in range(0, 24, 4):                   # lane 0 holds p-bits 0, 4, ..., 20
        for j in range(24):
            if j % 4 and j != i:
                dense[i, j] = dense[j, i] = 1
    deg = (dense != 0).sum(axis=1)
    assert deg.max() > 6
    small = PBitTileParams(data_bits=32, addr_bits=ADDR, **{**LANES, "edge_depth": 8,
                                                            "max_degree": 24})
    with pytest.raises(ConfigError, match=r"^J: lane 0 needs \d+ edge entries, above the "
                                          r"array's edge_depth=8"):
        host.requests_for(small, [driver.Program(dense, np.zeros(24, int),
                                                 (np.arange(24) % 4 != 0).astype(int))])
    with pytest.raises(ConfigError, match=r"^first_tag: job tags must lie in \[0, 65519\]"):
        host.requests_for(pp, [driver.Read()], first_tag=(1 << ADDR) - 16)


def test_requests_chunk_the_ctrl_words():
    p = PBitTileParams(data_bits=32, addr_bits=ADDR, **PARALLEL)
    rng = np.random.default_rng(0)
    ops = session_ops(p, rng)[:2]
    reqs, expected = host.requests_for(p, ops, first_tag=9)
    words = driver.encode(p.config(), p.neighbours, ops)
    writes = [r for r in reqs if r[0] == Op.WRITE]
    assert [a for _, a, _ in writes] == [0, 1] * (len(words) - 1)
    lay = p.ctrl_chunks_layout
    assert [lay.const([writes[2 * k][2], writes[2 * k + 1][2]]).as_value().value
            for k in range(len(words) - 1)] == words[:-1]
    (_, tag, d), = [r for r in reqs if r[0] == Op.EXEC]
    desc = p.descriptor_layout.from_bits(d)
    run = ops[1]
    assert (tag, desc.sample_every, desc.colours, desc.last, desc.read) == \
        (9, run.sample_every, run.n_colours - 1, len(run.schedule) - 1, 0)
    assert expected.tags == (9,) and expected.dones == 1
    assert expected.reply_flits == len(host.golden_records(p, ops)) * p.record_chunks


# ---- Verilog --------------------------------------------------------------------------

@pytest.mark.parametrize("arch,data_bits", [("parallel", 32), ("lanes", 64)])
def test_verilator_lint_clean(tmp_path, arch, data_bits):
    layout = packet_layout(coord_bits=COORD, addr_bits=ADDR, data_bits=data_bits)
    tile = PBitTile(layout=layout, x=X, y=Y, **TILES[arch])
    text = to_verilog(tile, "pbit_tile")
    f = tmp_path / "pbit_tile.v"
    f.write_text(text)
    proc = lint_file(f, "pbit_tile")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "%Warning" not in proc.stderr, proc.stderr[-4000:]


@pytest.mark.synth
def test_synthesizes_on_ecp5():
    from tilefab.gen.synth import synthesize

    layout = packet_layout(coord_bits=COORD, addr_bits=ADDR, data_bits=32)
    tile = PBitTile(layout=layout, x=0, y=0, arch="parallel", n=4, n_colours=4, sched_depth=4)
    res = synthesize(to_verilog(tile, "pbit_tile"), "pbit_tile", "ecp5")
    assert res.lut > 0 and res.ff > 0
