"""Crossbar tile unit tests on amaranth.sim: the RTL against the golden ``CrossbarModel``.

The harness (``run``) feeds packets into ``i`` with random gaps (valid held with
the same payload until taken), takes ``o`` with random ready, records every flit
out with its cycle and the cycle each input was taken, and checks that an offered
output flit is never changed or withdrawn before it is taken. Requests come from
``gen.imc.tile.plan_mvm``; every REPLY of a vector is compared with
``golden_replies`` of the plan (CrossbarModel, same seeds and programming order).
Front-end answers (status REPLYs at the status window, ERRORs) are told from
results by their address: EXEC tags are small, status registers at the top.
"""

import json
import random
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.sim import Simulator

from tilefab.gen.imc.tile import golden_params
from tilefab.gen.errors import ConfigError
from tilefab.gen.imc import tile as host
from tilefab.gen.imc.energy import energy_per_mvm
from tilefab.golden import imc as g
from tilefab.golden.packet import Op, Packet, PacketFormat
from tilefab.hw.noc.packet import packet_layout
from tilefab.hw.tiles.crossbar import (ERROR_REASONS, PROG_ADDR, SEED_ADDR, STATUS_REGISTERS,
                                       X_BASE, CrossbarTile, CrossbarTileParams)

X, Y = 1, 2
COORD_BITS, ADDR_BITS = 2, 16


@dataclass(frozen=True)
class Cfg:
    name: str
    data_bits: int
    params: dict


NOISY = {"rows": 10, "cols": 6, "levels": 4, "slices": 2, "frac_bits": 4,
         "input_bits": 5, "adc_bits": 6, "adc_min": -8, "adc_max": 12.5,
         "prog_sigma": 0.3, "read_sigma": 0.5, "prog_noise": "independent"}
CONFIGS = [
    # Noise on, a clipping 6-bit ADC, two slices; P = 6 inputs per word over 2 X words,
    # 15-bit results, R = 2 per flit, F = 3 flits per vector.
    Cfg("noisy", 32, NOISY),
    # Exact: no noise, ideal ADC, 3 levels on one slice, 64-bit packets; P = 5 in one X
    # word, 22-bit results, R = 2, F = 4 (a half-filled last flit).
    Cfg("exact", 64, dict(rows=5, cols=7, levels=3, slices=1, frac_bits=3, input_bits=12,
                          adc_bits=0, prog_noise="proportional")),
    # "noisy" with one ADC per 3 columns: two phases of 5 planes per vector.
    Cfg("shared", 32, {**NOISY, "adc_share": 3}),
]
CFG_IDS = [c.name for c in CONFIGS]


def layout_of(cfg):
    return packet_layout(coord_bits=COORD_BITS, addr_bits=ADDR_BITS, data_bits=cfg.data_bits)


def params_of(cfg):
    return CrossbarTileParams(data_bits=cfg.data_bits, addr_bits=ADDR_BITS, **cfg.params)


def fmt_of(cfg):
    return PacketFormat(coord_bits=COORD_BITS, addr_bits=ADDR_BITS, data_bits=cfg.data_bits)


SOURCES = [(sx, sy) for sx in range(4) for sy in range(4) if (sx, sy) != (X, Y)]


@dataclass(frozen=True)
class Gap:
    """Offer nothing for ``n`` cycles before the next packet."""
    n: int


@dataclass
class Run:
    packets: list
    taken: list            # cycle each packet was taken
    out: list              # (cycle, Packet) of every flit taken from the output
    cycles: int


def run(cfg, items, *, seed, p_in=0.6, p_out=0.6, dropped=0, quiet=60, max_cycles=40000):
    rng = random.Random(seed)
    fmt = fmt_of(cfg)
    dut = CrossbarTile(layout=layout_of(cfg), x=X, y=Y, **cfg.params)
    packets = [it for it in items if isinstance(it, Packet)]
    taken, out, problems = [], [], []
    state = {}

    async def bench(ctx):
        ctx.set(dut.dropped, dropped)
        idx, cycle, gap, offering, held, idle = 0, 0, 0, False, None, 0
        while True:
            while not offering and idx < len(items) and isinstance(items[idx], Gap):
                gap, idx = items[idx].n, idx + 1
            if (not offering and gap == 0 and idx < len(items)
                    and (p_in >= 1 or rng.random() < p_in)):
                ctx.set(dut.i.payload.as_value(), fmt.pack(items[idx]))
                offering = True
            gap = max(0, gap - 1)
            ctx.set(dut.i.valid, offering)
            ready = p_out >= 1 or rng.random() < p_out
            ctx.set(dut.o.ready, ready)
            if offering and ctx.get(dut.i.ready):
                taken.append(cycle)
                offering, idx, idle = False, idx + 1, 0
            if ctx.get(dut.o.valid):
                word = ctx.get(dut.o.payload.as_value())
                if held is not None and held != word:
                    problems.append(f"cycle {cycle}: an offered flit changed")
                if ready:
                    out.append((cycle, fmt.unpack(word)))
                    held = None
                else:
                    held = word
                idle = 0
            else:
                if held is not None:
                    problems.append(f"cycle {cycle}: an offered flit was withdrawn")
                    held = None
                idle += 1
            await ctx.tick()
            cycle += 1
            if idx == len(items) and not offering and idle >= quiet:
                break
            if cycle >= max_cycles:
                problems.append(f"timeout: {len(taken)} of {len(packets)} packets taken")
                break
        state["cycles"] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not problems, problems[:5]
    assert len(taken) == len(packets)
    return Run(packets, taken, out, state["cycles"])


def packet(op, addr=0, data=0, src=None, rng=None):
    sx, sy = src if src is not None else rng.choice(SOURCES)
    return Packet(dst_x=X, dst_y=Y, src_x=sx, src_y=sy, op=int(op), addr=addr, data=data)


def job_packets(job, rng):
    """The job's requests as packets, each EXEC from a random source."""
    return [packet(op, addr, data, rng=rng) for op, addr, data in job.requests]


def is_answer(p, params):
    return p.op == Op.ERROR or (p.op == Op.REPLY and p.addr >= params.status_base)


def check_results(run_, params, jobs_packets, want_words):
    """Every result flit against the golden words; DONE tags, data and destinations."""
    results = [p for _, p in run_.out if not is_answer(p, params)]
    for p in results:
        assert (p.src_x, p.src_y) == (X, Y)
    F = params.flits_per_vector
    pos = 0
    for packets, words in zip(jobs_packets, want_words):
        execs = [q for q in packets if q.op == Op.EXEC]
        assert len(words) == len(execs) * F
        for v, ex in enumerate(execs):
            flits = results[pos:pos + F + 1]
            pos += F + 1
            assert len(flits) == F + 1, f"vector {v}: only {len(flits)} flits"
            for f, q in enumerate(flits[:F]):
                assert (q.op, q.addr, q.dst) == (Op.REPLY, ex.addr, ex.src), q
                assert q.data == words[v * F + f], (
                    f"vector {v} flit {f}: got {q.data:#x}, expected {words[v * F + f]:#x}: "
                    f"{params.result_layout.from_bits(q.data)} vs "
                    f"{params.result_layout.from_bits(words[v * F + f])}")
            done = flits[F]
            assert (done.op, done.addr, done.dst, done.data) == (Op.DONE, ex.addr, ex.src, F)
    assert pos == len(results), f"{len(results) - pos} unexpected result flits"
    return [q.data for q in results if q.op == Op.REPLY]


def random_problem(params, rng, m, k, batch):
    cb = golden_params(params)
    w = rng.integers(-cb.w_max, cb.w_max + 1, (m, k))
    lo, hi = cb.x_range
    x = rng.integers(lo, hi + 1, (batch, k))
    # Extremes, so clipping and the sign plane are exercised.
    w[rng.random(w.shape) < 0.25] = rng.choice([-cb.w_max, cb.w_max])
    x[rng.random(x.shape) < 0.25] = rng.choice([lo, hi])
    return w, x


# ---- 1. MVMs, bit-exact, under backpressure ------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_mvm_bit_exact_with_backpressure(cfg):
    params = params_of(cfg)
    rng = np.random.default_rng(3)
    prng = random.Random(4)
    tiles = [((X, Y), params)]
    # Two jobs one after the other (the second reprograms and reseeds), several
    # vectors each, offered back to back with random gaps and a random output ready.
    plans = []
    for s in (11, 12345):
        w, x = random_problem(params, rng, params.cols, params.rows, 9)
        plans.append(host.plan_mvm(tiles, w, x, seed=s))
    jobs_packets = [job_packets(job, prng) for plan in plans for job in plan.jobs]
    items = []
    for packets in jobs_packets:
        items += packets
        items.append(Gap(prng.randrange(0, 30)))
    r = run(cfg, items, seed=5, p_in=0.7, p_out=0.5)
    want = [w for plan in plans for w in host.golden_replies(plan)]
    got = check_results(r, params, jobs_packets, want)
    # And the host assembles what the golden model predicts.
    F = params.flits_per_vector
    start = 0
    for plan in plans:
        n = sum(len(j.inputs) for j in plan.jobs) * F
        res = plan.assemble([got[start:start + n]])
        start += n
        np.testing.assert_array_equal(res.y, host.golden_outputs(plan))
    if cfg.name != "exact":
        # Noise really changed the results (otherwise "noise on" is vacuous).
        quiet = g.CrossbarModel(golden_params(params).with_(prog_gain=0, read_gain=0))
        job = plans[0].jobs[0]
        quiet.program(job.weights)
        clean = host.encode_results(params, np.stack([quiet.mvm(v) for v in job.inputs]))
        assert clean != want[0]
    else:
        # Exact config: the estimate is the integer MVM.
        for plan in plans:
            res = plan.assemble(host.golden_replies(plan))
            np.testing.assert_array_equal(res.estimate, plan.x_int @ plan.w_int.T)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_back_to_back_vectors_keep_the_array_busy(cfg):
    """No gaps, output always ready: a vector every max(B * adc_share, F + 1, X + 1)
    cycles."""
    params = params_of(cfg)
    rng = np.random.default_rng(8)
    n = 12
    w, x = random_problem(params, rng, params.cols, params.rows, n)
    plan = host.plan_mvm([((X, Y), params)], w, x, seed=99)
    packets = job_packets(plan.jobs[0], random.Random(1))
    r = run(cfg, packets + [Gap(40), packet(Op.READ, params.status["busy"], src=(0, 0))],
            seed=2, p_in=1, p_out=1)
    check_results(r, params, [packets], host.golden_replies(plan))
    first_exec = next(i for i, q in enumerate(packets) if q.op == Op.EXEC)
    dones = [c for c, q in r.out if q.op == Op.DONE]
    cb = golden_params(params)
    assert params.cycles_per_vector == cb.cycles_per_mvm == cb.in_bits * cb.adc_share
    period = max(params.cycles_per_vector, params.flits_per_vector + 1, params.x_words + 1)
    span = dones[-1] - r.taken[first_exec]
    latency = cb.latency + params.flits_per_vector + 4
    assert span <= (n - 1) * period + latency, (span, period)
    if params.cycles_per_vector > params.flits_per_vector + 1:
        # The array is the bottleneck: the steady DONE spacing is the cycle model's.
        assert np.all(np.diff(dones[1:]) == params.cycles_per_vector), np.diff(dones)
    busy = [q for _, q in r.out if q.op == Op.REPLY and q.addr == params.status["busy"]]
    assert busy[0].data == n * params.cycles_per_vector


# ---- 2. malformed packets and status registers -----------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_errors_are_answered_and_mvm_stays_exact(cfg):
    params = params_of(cfg)
    D, S = cfg.data_bits, params.status_base
    rng = np.random.default_rng(21)
    prng = random.Random(22)
    w, x = random_problem(params, rng, params.cols, params.rows, 6)
    plan = host.plan_mvm([((X, Y), params)], w, x, seed=7)
    packets = job_packets(plan.jobs[0], prng)
    n_prog = 1 + params.rows * params.cols
    mask = (1 << D) - 1
    wmax = params.w_max
    host_src = (3, 3)
    bad = [
        (packet(6, 5, 1, src=host_src), 6, ERROR_REASONS["unknown_op"]),
        (packet(7, S, 2, src=host_src), 7, ERROR_REASONS["unknown_op"]),
        (packet(Op.WRITE, PROG_ADDR, wmax + 1, src=host_src), Op.WRITE,
         ERROR_REASONS["weight_range"]),
        (packet(Op.WRITE, PROG_ADDR, -(wmax + 1) & mask, src=host_src), Op.WRITE,
         ERROR_REASONS["weight_range"]),
        (packet(Op.WRITE, PROG_ADDR, 1 << (D - 2), src=host_src), Op.WRITE,
         ERROR_REASONS["weight_range"]),
        (packet(Op.WRITE, X_BASE + params.x_words, mask, src=host_src), Op.WRITE,
         ERROR_REASONS["unmapped"]),
        (packet(Op.WRITE, S + 1, 3, src=host_src), Op.WRITE, ERROR_REASONS["unmapped"]),
        (packet(Op.READ, SEED_ADDR, src=host_src), Op.READ, ERROR_REASONS["unmapped"]),
        (packet(Op.READ, X_BASE, src=host_src), Op.READ, ERROR_REASONS["unmapped"]),
        (packet(Op.READ, S + len(STATUS_REGISTERS), src=host_src), Op.READ,
         ERROR_REASONS["unmapped"]),
        (packet(Op.READ, S - 1, src=host_src), Op.READ, ERROR_REASONS["unmapped"]),
    ]
    stray = [packet(Op.REPLY, 1, 2, src=host_src), packet(Op.DONE, 0, 1, src=host_src),
             packet(Op.ERROR, S, 3, src=host_src)]
    # Malformed packets after programming and inside the vectors (between X words
    # and their EXEC, so a bad X write that landed would change the result).
    noise = [q for q, *_ in bad] + stray
    prng.shuffle(noise)
    items = list(packets[:n_prog])
    rest = packets[n_prog:]
    slots = sorted(prng.choices(range(len(rest) + 1), k=len(noise)))
    j = 0
    for i, q in enumerate(rest + [None]):
        while j < len(noise) and slots[j] == i:
            items.append(noise[j])
            j += 1
        if q is not None:
            items.append(q)
    reads = [packet(Op.READ, params.status[name], src=host_src) for name in STATUS_REGISTERS]
    items += [Gap(80)] + reads
    dropped = 0x1234_5678
    r = run(cfg, items, seed=23, p_in=0.8, p_out=0.6, dropped=dropped)
    check_results(r, params, [packets], host.golden_replies(plan))

    answers = [(c, q) for c, q in r.out if is_answer(q, params)]
    errs = [q for _, q in answers if q.op == Op.ERROR]
    order = [q for q in r.packets if any(q is b for b, *_ in bad)]
    assert len(errs) == len(bad)
    expect = {id(b): (op, reason) for b, op, reason in bad}
    for req, e in zip(order, errs):
        op, reason = expect[id(req)]
        fields = params.error_layout.from_bits(e.data)
        assert (e.dst, e.src, e.addr) == (req.src, (X, Y), req.addr)
        assert e.data == int(op) | reason << 8
        assert (fields.op, fields.reason) == (int(op), reason)
    values = {name: q.data for name, (_, q) in zip(
        STATUS_REGISTERS, [a for a in answers if a[1].op == Op.REPLY])}
    at = len(r.packets) - len(reads)
    want = {"dropped": dropped, "errors": len(bad) + len(stray),
            "flits_in": at + STATUS_REGISTERS.index("flits_in"),
            "mvms": len(plan.jobs[0].inputs),
            "busy": len(plan.jobs[0].inputs) * params.cycles_per_vector}
    for name, v in want.items():
        assert values[name] == v, f"status {name}: read {values[name]}, expected {v}"
    i_out = at + STATUS_REGISTERS.index("flits_out")
    lo = sum(1 for c, _ in r.out if c <= r.taken[i_out])
    reply_cycle = [c for c, q in answers if q.addr == params.status["flits_out"]][0]
    hi = sum(1 for c, _ in r.out if c < reply_cycle)
    assert lo <= values["flits_out"] <= hi


@pytest.mark.parametrize("cfg", CONFIGS[:1], ids=CFG_IDS[:1])
def test_status_reads_at_reset(cfg):
    params = params_of(cfg)
    reads = [packet(Op.READ, params.status[n], src=(0, 1)) for n in STATUS_REGISTERS]
    r = run(cfg, reads * 2, seed=1, p_in=1, p_out=0.5, dropped=5)
    got = [q.data for _, q in r.out]
    assert all(q.op == Op.REPLY and q.dst == (0, 1) for _, q in r.out)
    n = len(STATUS_REGISTERS)
    # flits_in counts the requests served before this one; flits_out what has left.
    assert got[:3] == [5, 0, 2] and 0 <= got[3] <= 3 and got[4:n] == [0, 0]
    assert got[n:n + 3] == [5, 0, n + 2]
    assert got[3] <= got[n + 3] <= n + 3 and got[n + 4:] == [0, 0]


# ---- 3. parameters ------------------------------------------------------------------

@pytest.mark.parametrize("values,field", [
    (dict(rows=0), "rows"),
    (dict(rows="8"), "rows"),
    (dict(cols=65), "cols"),
    (dict(adc_min=-12.03), "adc_min"),
    (dict(adc_max=0.1, frac_bits=2), "adc_max"),
    (dict(adc_min=3, adc_max=3), "adc_min"),
    (dict(adc_min=5, adc_max=-5), "adc_min"),
    (dict(adc_max=1000), "adc_max"),
    (dict(levels=3, slices=2), "levels"),
    (dict(depth=4), "depth"),
    (dict(prog_noise="foo"), "prog_noise"),
    (dict(read_sigma=-1.0), "read_sigma"),
    (dict(prog_sigma=float("nan")), "prog_sigma"),
    (dict(rows=64, cols=64, slices=2), "rows"),
    ({"rows": 64, "cols": 64, "slices": 2, "adc_share": 2}, "rows"),
    ({"rows": 64, "cols": 64, "slices": 4, "adc_share": 8}, "rows"),
    ({"cols": 12, "adc_share": 5}, "adc_share"),
    ({"adc_share": 0}, "adc_share"),
    ({"adc_share": 65}, "adc_share"),
])
def test_params_reject_bad_values_naming_the_field(values, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        CrossbarTileParams(data_bits=32, addr_bits=16, **values)


def test_params_adc_share_rules():
    with pytest.raises(ValueError, match=r"^adc_share: 5 is not allowed, must be a divisor of "
                                         r"cols \(12\): one of 1, 2, 3, 4, 6, 12$"):
        CrossbarTileParams(data_bits=32, addr_bits=16, cols=12, adc_share=5)
    with pytest.raises(ValueError, match=r"^rows: .*adc_share 2.*\(or adc_share 4 or more\)"):
        CrossbarTileParams(data_bits=32, addr_bits=16, rows=64, cols=64, slices=2,
                           adc_share=2)
    p = CrossbarTileParams(data_bits=32, addr_bits=16, rows=64, cols=64, slices=2,
                           adc_share=4)
    assert p.block["adc_share"] == 4 and p.cycles_per_vector == 4 * p.input_bits
    assert golden_params(p).adcs == 32 and p.manifest()["crossbar"]["adc_share"] == 4


def test_params_packet_width_rules():
    with pytest.raises(ValueError, match=r"^data_bits: "):
        CrossbarTileParams(data_bits=16, addr_bits=16)          # 20-bit results
    with pytest.raises(ValueError, match=r"^data_bits: "):
        CrossbarTileParams(data_bits=32, addr_bits=16, levels=256, slices=4)
    with pytest.raises(ValueError, match=r"^addr_bits: "):
        CrossbarTileParams(data_bits=32, addr_bits=4, rows=64, input_bits=16, slices=1)
    # The ADC range is ignored for the ideal ADC.
    CrossbarTileParams(data_bits=32, addr_bits=16, adc_bits=0, adc_min=0.01, adc_max=-3)


def test_params_derive_the_golden_params_and_manifest():
    p = CrossbarTileParams(data_bits=64, addr_bits=12, adc_min=-8.25, adc_max=12,
                           prog_sigma=0.2, read_sigma=0.1)
    cb = golden_params(p)
    assert (cb.adc_lo, cb.adc_hi) == (-132, 192)
    assert cb.prog_gain == g.noise_gain(0.2, 4) and cb.read_gain == g.noise_gain(0.1, 4)
    assert p.result_bits == g.output_bound(cb).bit_length() + 1
    man = json.loads(json.dumps(p.manifest()))
    assert man["status_registers"] == {n: (1 << 12) - 16 + k
                                       for k, n in enumerate(STATUS_REGISTERS)}
    assert man["address_map"]["x_base"] == X_BASE
    assert man["inputs_per_word"] == 8 and man["x_words"] == 2
    R = man["results_per_flit"]
    assert R == 64 // p.result_bits and man["flits_per_vector"] == -(-16 // R)
    assert man["layouts"]["x_word"]["x3"] == {"lsb": 24, "width": 8}
    assert man["layouts"]["result_word"]["r1"] == {"lsb": p.result_bits,
                                                   "width": p.result_bits}
    assert man["errors"]["layout"]["reason"]["lsb"] == 8
    assert {q.name for q in CrossbarTileParams.PARAMS} == set(man["params"])


# ---- 4. the host side: tiling, mapping, energy, argument errors ----------------------

EXACT_SMALL = dict(rows=8, cols=6, levels=4, slices=2, frac_bits=2, input_bits=6, adc_bits=0)


def test_plan_tiles_a_large_matrix_over_two_tiles_on_rtl():
    cfg = Cfg("small", 32, EXACT_SMALL)
    params = params_of(cfg)
    tiles = [((1, 2), params), ((0, 1), params)]
    rng = np.random.default_rng(31)
    w, x = random_problem(params, rng, 20, 13, 3)
    plan = host.plan_mvm(tiles, w, x, seed=3)
    # k = 13 over 8 rows: 2 input blocks; m = 20 over 6 cols: 4 output blocks.
    assert len(plan.jobs) == 8 and plan.passes == 4
    assert [j.tile for j in plan.jobs] == [(1, 2), (0, 1)] * 4
    assert all(j.expected == (3 * params.flits_per_vector, 3) for j in plan.jobs)
    # Run the jobs of the tile at (X, Y) on the RTL, back to back (it is reprogrammed
    # between passes), and the other tile's from the golden model.
    prng = random.Random(32)
    mine = [j for j in plan.jobs if j.tile == (X, Y)]
    jobs_packets = [job_packets(j, prng) for j in mine]
    r = run(cfg, [q for ps in jobs_packets for q in ps], seed=33, p_in=0.8, p_out=0.7)
    golden = host.golden_replies(plan)
    got = check_results(r, params, jobs_packets,
                        [golden[i] for i, j in enumerate(plan.jobs) if j.tile == (X, Y)])
    F = params.flits_per_vector
    replies, pos = [], 0
    for j, gw in zip(plan.jobs, golden):
        if j.tile == (X, Y):
            replies.append(got[pos:pos + 3 * F])
            pos += 3 * F
        else:
            replies.append(gw)
    res = plan.assemble(replies)
    np.testing.assert_array_equal(res.y, host.golden_outputs(plan))
    np.testing.assert_array_equal(res.estimate, x @ w.T)   # exact config, integers as is
    # Floats are mapped over the whole matrix and come back close to the mathematics.
    wf = rng.standard_normal((20, 13))
    xf = rng.standard_normal(13)
    fplan = host.plan_mvm(tiles, wf, xf)
    est = fplan.assemble(host.golden_replies(fplan)).estimate
    assert est.shape == (20,)
    # Exact arithmetic on the mapped integers; only the mapping's quantization remains
    # (31 weight levels, 6-bit inputs).
    mapped = (fplan.w_int * fplan.w_scale) @ (fplan.x_int * fplan.x_scale)
    np.testing.assert_allclose(est, mapped, rtol=1e-12, atol=1e-12)
    err = g.error_vs_ideal(est, wf @ xf)
    assert err["rel_rms"] < 0.1, err


def test_plan_energy_is_per_block_per_vector():
    params = CrossbarTileParams(data_bits=32, addr_bits=16, **EXACT_SMALL)
    rng = np.random.default_rng(41)
    w, x = random_problem(params, rng, 7, 10, 4)
    plan = host.plan_mvm([((0, 0), params)], w, x)
    want = sum(4 * energy_per_mvm(golden_params(params), None, j.weights).total_pj
               for j in plan.jobs)
    assert len(plan.jobs) == 4 and host.energy_pj(plan) == pytest.approx(want) and want > 0


@pytest.mark.parametrize("w,x,field", [
    (np.ones(5), np.ones(5), "w"),
    (np.ones((2, 5)), np.ones(4), "x"),
    (np.ones((2, 5)), np.ones((3, 2, 5)), "x"),
    (np.array([[1.0, np.nan]]), np.ones(2), "w"),
    (np.ones((2, 2)), np.array([np.inf, 1.0]), "x"),
    (np.array([["a", "b"]]), np.ones(2), "w"),
    (np.zeros((0, 3)), np.ones(3), "w"),
])
def test_plan_rejects_bad_shapes_naming_the_argument(w, x, field):
    params = CrossbarTileParams(data_bits=32, addr_bits=16, **EXACT_SMALL)
    with pytest.raises(ConfigError) as exc:
        host.plan_mvm([((0, 0), params)], w, x)
    assert exc.value.path == field


def test_plan_rejects_mixed_tiles():
    a = CrossbarTileParams(data_bits=32, addr_bits=16, **EXACT_SMALL)
    b = CrossbarTileParams(data_bits=32, addr_bits=16, **{**EXACT_SMALL, "cols": 5})
    with pytest.raises(ConfigError) as exc:
        host.plan_mvm([((0, 0), a), ((1, 0), b)], np.ones((2, 2), int), np.ones(2, int))
    assert exc.value.path == "tiles[1]"
    with pytest.raises(ConfigError) as exc:
        host.plan_mvm([], np.ones((2, 2), int), np.ones(2, int))
    assert exc.value.path == "tiles"


# ---- 5. Verilog: lint and synthesis ---------------------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_tile_verilog_passes_verilator_lint(cfg, tmp_path):
    from tilefab.gen.lint import lint_file
    from tilefab.gen.emit import to_verilog

    tile = CrossbarTile(layout=layout_of(cfg), x=X, y=Y, **cfg.params)
    src = tmp_path / "xbar_tile.v"
    src.write_text(to_verilog(tile, "xbar_tile"))
    proc = lint_file(src, "xbar_tile")
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.synth
def test_small_tile_synthesizes_on_ecp5():
    from tilefab.gen.emit import to_verilog
    from tilefab.gen.synth import synthesize

    cfg = Cfg("tiny", 32, dict(rows=2, cols=3, levels=4, slices=1, frac_bits=2,
                               input_bits=4, adc_bits=4, adc_min=-4, adc_max=4,
                               read_sigma=0.5))
    tile = CrossbarTile(layout=layout_of(cfg), x=X, y=Y, **cfg.params)
    res = synthesize(to_verilog(tile, "xbar_tile"), "xbar_tile", "ecp5")
    cb = golden_params(tile.params)
    assert res.lut > 100 and res.ff > cb.rows * cb.cols * (cb.gbits + 1) + 32
