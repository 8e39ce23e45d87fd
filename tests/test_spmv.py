"""CSR SpMV: the golden model against scipy, host-side checks, the SpMV tile on
amaranth.sim (two configurations, random stimulus and backpressure, every REPLY
against the tile model, malformed CSR answered by ERROR), and the runtime on
``examples/spmv2x2.yaml`` (Verilator) against numpy, with lint and synthesis."""

import json
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from amaranth.sim import Simulator
from tilefab.gen.config import as_config, load
from tilefab.gen.errors import ConfigError
from tilefab.gen.generate import generate
from tilefab.gen.lint import lint_file
from tilefab.gen.sparse import plan_spmv
from tilefab.golden import sparse as g
from tilefab.golden.packet import Op, Packet, PacketFormat
from tilefab.hw.noc.packet import packet_layout
from tilefab.hw.tiles.spmv import ERROR_REASONS, SpmvTile, SpmvTileParams

from tilefab import Fabric
from tilefab.bench.sparse_spmv import FILL_TARGET, SPEEDUP_TARGET, spmv_figures

EXAMPLE = Path(__file__).parent.parent / "examples" / "spmv2x2.yaml"
X, Y = 1, 0
COORD_BITS, ADDR_BITS = 2, 12


@dataclass(frozen=True)
class Cfg:
    name: str
    data_bits: int
    params: dict


CONFIGS = [
    # 4 lanes over 8 banks, window 4; 22-bit sums, one per 32-bit flit
    Cfg("l4b8", 32, {"nnz_depth": 64, "row_depth": 16, "x_depth": 40, "lanes": 4,
                     "banks": 8, "window": 4, "value_bits": 8}),
    # 2 lanes in order over 2 banks, 5-bit values; 13-bit sums, four per 64-bit flit
    Cfg("l2b2", 64, {"nnz_depth": 32, "row_depth": 8, "x_depth": 16, "lanes": 2,
                     "banks": 2, "window": 1, "ports": 1, "value_bits": 5}),
]
IDS = [c.name for c in CONFIGS]


def params_of(cfg):
    return SpmvTileParams(data_bits=cfg.data_bits, addr_bits=ADDR_BITS, **cfg.params)


def fmt_of(cfg):
    return PacketFormat(coord_bits=COORD_BITS, addr_bits=ADDR_BITS, data_bits=cfg.data_bits)


def random_csr(rng, m, n, density, bits):
    lim = 1 << (bits - 1)
    a = sp.random(m, n, density=density, format="csr", random_state=rng,
                  data_rvs=lambda k: rng.integers(-lim, lim, k))
    a.data = a.data.astype(np.int64)
    return a


def empty_row(a, r):
    keep = np.ones(a.shape[0], dtype=np.int64)
    keep[r] = 0
    a = (sp.diags(keep, dtype=np.int64) @ a).tocsr()
    a.eliminate_zeros()
    return a


# ---- golden and host ------------------------------------------------------------------

def test_golden_spmv_is_scipy():
    rng = np.random.default_rng(0)
    a = random_csr(rng, 37, 53, 0.2, 8)
    x = rng.integers(-128, 128, 53)
    np.testing.assert_array_equal(g.spmv_exact(a.indptr, a.indices, a.data, x), a @ x)
    e = sp.csr_matrix((3, 4), dtype=np.int64)
    np.testing.assert_array_equal(g.spmv_exact(e.indptr, e.indices, e.data, np.ones(4)),
                                  np.zeros(3))


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_plan_through_the_tile_model_is_exact(cfg):
    p = params_of(cfg)
    rng = np.random.default_rng(1)
    lim = 1 << (p.value_bits - 1)
    for m, n, d in ((30, 50, 0.15), (7, 3 * p.x_depth + 5, 0.9), (1, 100, 1.0), (5, 5, 0.0)):
        a = random_csr(rng, m, n, d, p.value_bits)
        if m > 2:
            a = empty_row(a, 2)
        x = rng.integers(-lim, lim, n)
        plan = plan_spmv([((0, 0), p), ((1, 0), p)], a, x)
        for job in plan.jobs:
            assert not plan.golden_job(job).bad
            assert job.rows <= p.row_depth and all(len(e) <= p.lane_depth for e in job.entries)
        np.testing.assert_array_equal(plan.assemble(plan.golden_replies()), a @ x)


def test_host_refuses_malformed_input_before_sending():
    p = params_of(CONFIGS[0])
    t = [((0, 0), p)]
    x = np.ones(4, dtype=np.int64)
    with pytest.raises(ConfigError, match="must not decrease"):
        plan_spmv(t, ([0, 2, 1, 3], [0, 1, 2], [1, 1, 1], (3, 4)), x)
    with pytest.raises(ConfigError, match="column 4"):
        plan_spmv(t, ([0, 1], [4], [1], (1, 4)), x)
    with pytest.raises(ConfigError, match="length n = 5"):
        plan_spmv(t, ([0, 1], [0], [1], (1, 5)), x)
    with pytest.raises(ConfigError, match="-128..127"):
        plan_spmv(t, ([0, 1], [0], [300], (1, 4)), x)
    with pytest.raises(ConfigError, match="integers"):
        plan_spmv(t, ([0, 1], [0], [0.5], (1, 4)), x)


def test_config_schema_derives_from_params():
    cfg = {"mesh": {"cols": 1, "rows": 1}, "packet": {"data_bits": 32, "addr_bits": 12},
           "tiles": {"default": {"kind": "spmv", "lanes": 4}}}
    assert as_config(cfg)["tile_map"][0]["kind"] == "spmv"
    cfg["tiles"]["default"]["value_bits"] = 40
    with pytest.raises(ConfigError, match="value_bits"):
        as_config(cfg)


def test_params_are_checked():
    with pytest.raises(ValueError, match="lanes: 3"):
        SpmvTileParams(data_bits=32, addr_bits=12, lanes=3, nnz_depth=63, row_depth=15)
    with pytest.raises(ValueError, match="addr_bits"):
        SpmvTileParams(data_bits=32, addr_bits=8)
    with pytest.raises(ValueError, match="data_bits"):
        SpmvTileParams(data_bits=16, addr_bits=12)


# ---- the tile on amaranth.sim ---------------------------------------------------------

def run_tile(cfg, packets, *, seed, p_in=0.7, p_out=0.6, quiet=80, max_cycles=30000):
    rng = random.Random(seed)
    fmt = fmt_of(cfg)
    dut = SpmvTile(layout=packet_layout(coord_bits=COORD_BITS, addr_bits=ADDR_BITS,
                                        data_bits=cfg.data_bits), x=X, y=Y, **cfg.params)
    out, problems = [], []

    async def bench(ctx):
        idx, cycle, offering, held, idle, gap = 0, 0, False, None, 0, 0
        while True:
            if not offering and idx < len(packets) and packets[idx] is None:
                idx, gap = idx + 1, 300         # None: let the tile finish first
            gap = max(0, gap - 1)
            if not offering and not gap and idx < len(packets) and rng.random() < p_in:
                ctx.set(dut.i.payload.as_value(), fmt.pack(packets[idx]))
                offering = True
            ctx.set(dut.i.valid, offering)
            ready = rng.random() < p_out
            ctx.set(dut.o.ready, ready)
            if offering and ctx.get(dut.i.ready):
                offering, idx, idle = False, idx + 1, 0
            if ctx.get(dut.o.valid):
                word = ctx.get(dut.o.payload.as_value())
                if held is not None and held != word:
                    problems.append(f"cycle {cycle}: an offered flit changed")
                if ready:
                    out.append(fmt.unpack(word))
                    held = None
                else:
                    held = word
                idle = 0
            else:
                idle += 1
            await ctx.tick()
            cycle += 1
            if idx == len(packets) and not offering and idle >= quiet:
                break
            if cycle >= max_cycles:
                problems.append(f"timeout: {idx} of {len(packets)} packets taken")
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not problems, problems[:5]
    return out


def pkt(op, addr, data=0, src=(0, 1)):
    return Packet(dst_x=X, dst_y=Y, src_x=src[0], src_y=src[1], op=int(op), addr=addr,
                  data=data)


def status_reads(p):
    """A pause for the last job to finish, then every status register."""
    return [None] + [pkt(Op.READ, a) for a in p.status.values()]


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_tile_is_exact_under_backpressure(cfg):
    p = params_of(cfg)
    rng = np.random.default_rng(5)
    lim = 1 << (p.value_bits - 1)
    a = random_csr(rng, 23, p.x_depth + 9, 0.3, p.value_bits)
    a = empty_row(a, 3)
    x = rng.integers(-lim, lim, a.shape[1])
    x[:3] = -lim
    plan = plan_spmv([((X, Y), p)], a, x)
    assert plan.passes >= 2                 # x in two blocks
    packets = [pkt(op, addr, d) for job in plan.jobs for op, addr, d, _ in job.requests]
    packets += status_reads(p)
    out = run_tile(cfg, packets, seed=2)
    res = [q for q in out if q.addr < p.status_base]
    assert all((q.src_x, q.src_y, q.dst_x, q.dst_y) == (X, Y, 0, 1) for q in out)
    pos, replies = 0, []
    for job, want in zip(plan.jobs, plan.golden_replies()):
        F = len(want)
        got = res[pos:pos + F + 1]
        pos += F + 1
        assert [q.op for q in got] == [Op.REPLY] * F + [Op.DONE]
        assert [q.data for q in got[:F]] == want
        assert got[F].addr == job.tag and got[F].data == F
        replies.append([q.data for q in got[:F]])
    np.testing.assert_array_equal(plan.assemble(replies), a @ x)
    status = dict(zip(p.status, [q.data for q in out if q.addr >= p.status_base]))
    assert status["errors"] == 0 and status["execs"] == len(plan.jobs)
    assert status["nonzeros"] == a.nnz
    bound = sum(plan.golden_job(j).cycle_bound for j in plan.jobs)
    assert bound <= status["busy"] <= 3 * bound + 12 * len(plan.jobs)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_tile_answers_malformed_csr_with_error_and_recovers(cfg):
    p = params_of(cfg)
    L, N = p.lanes, p.lane_depth
    def nz(v, c):
        return p.nz_layout.const({"value": v, "col": c}).as_value().value

    def ptr(r, e):
        return pkt(Op.WRITE, p.ptr_base + r, e)

    def ex(tag, rows):
        return pkt(Op.EXEC, tag, rows)
    packets = [pkt(Op.WRITE, p.x_base, 3), pkt(Op.WRITE, 0, nz(2, 0))]
    packets += [ptr(r, 1 if r == 0 else 0) for r in range(L)]
    packets += [ex(1, L)]                                  # good: y[0] = 6
    packets += [ptr(L, N + 5), ex(2, L + 1)]               # beyond nnz
    packets += [ptr(L, 1), ex(3, L + 1)]              # an empty row: fine again
    wide = p.x_depth < 1 << p.index_bits      # a column >= x_depth can be written
    if wide:
        packets += [pkt(Op.WRITE, 0, nz(1, p.x_depth)), ex(4, 1)]  # column out of range
    packets += [pkt(Op.WRITE, 0, nz(2, 0)), ptr(L, 0), ex(5, L + 1)]  # below its start
    packets += [ex(8, 1)]
    packets += [ex(6, 0), ex(7, p.row_depth + 1), pkt(Op.READ, 0), pkt(7, 0),
                pkt(Op.WRITE, p.status_base - 1, 0)]
    packets += status_reads(p)
    out = run_tile(cfg, packets, seed=3)
    errs = [q for q in out if q.op == Op.ERROR]
    reasons = [(q.addr, q.data >> 8) for q in errs]
    bad_csr, bad_exec = ERROR_REASONS["bad_csr"], ERROR_REASONS["bad_exec"]
    assert [a for a, r in reasons if r == bad_csr] == ([2, 4, 5] if wide else [2, 5])
    assert (6, bad_exec) in reasons and (7, bad_exec) in reasons
    assert reasons.count((0, ERROR_REASONS["unmapped"])) == 1
    assert (0, ERROR_REASONS["unknown_op"]) in reasons
    dones = [q.addr for q in out if q.op == Op.DONE]
    assert dones == [1, 3, 8]
    first = next(q for q in out if q.op == Op.REPLY and q.addr == 1)
    assert p.result_layout.from_bits(first.data)["y0"] == 6
    status = dict(zip(p.status, [q.data for q in out if q.addr >= p.status_base]))
    assert status["errors"] == len(errs)


# ---- the runtime on a fabric (Verilator) ----------------------------------------------

@pytest.fixture(scope="module")
def fab():
    return Fabric(EXAMPLE, seed=3)


@pytest.mark.sim
@pytest.mark.parametrize("case", ["random", "empty_and_full_rows", "beyond_one_tile",
                                  "all_zero", "tuple"])
def test_runtime_spmv_is_exact_with_backpressure(fab, case):
    rng = np.random.default_rng(len(case))
    if case == "random":
        a = random_csr(rng, 41, 67, 0.15, 8)
    elif case == "empty_and_full_rows":
        a = random_csr(rng, 20, 90, 0.1, 8).tolil()
        a[4, :] = rng.integers(1, 128, 90)          # a full row
        a = empty_row(a.tocsr(), 7)
    elif case == "beyond_one_tile":                 # 3 passes, two x blocks
        a = random_csr(rng, 60, 300, 0.12, 8)
    elif case == "all_zero":
        a = sp.csr_matrix((6, 9), dtype=np.int64)
    else:
        a = random_csr(rng, 9, 12, 0.5, 8)
    x = rng.integers(-128, 128, a.shape[1])
    want = a @ x
    if case == "tuple":
        a = (a.indptr, a.indices, a.data, a.shape)
    r = fab.spmv(a, x, seed=5, in_stall=0.2, out_stall=0.3)
    assert r.golden_ok, r.mismatch
    np.testing.assert_array_equal(r.y, want)
    if case == "beyond_one_tile":
        assert r.nnz > 2 * 512 and r.passes >= 2 and len(r.tiles) == 2
    if r.nnz:
        assert sum(c["nonzeros"] for c in r.counters.values()) == r.nnz
        assert 0 < r.slot_fill <= 1 and r.nnz_per_cycle > 0
        assert all(c["errors"] == 0 for c in r.counters.values())


@pytest.mark.sim
def test_runtime_raw_malformed_csr_gets_error_then_spmv_is_right(fab):
    t = fab.tiles[(0, 0)].params
    before = fab.status(0, 0)["errors"]
    got = fab.transact(0, 0, [(Op.WRITE, t.ptr_base, t.lane_depth + 1),    # beyond nnz
                              (Op.EXEC, 9, 1),
                              (Op.EXEC, 10, 0)], replies=2)                # no rows
    # the bad descriptor is refused at once, the bad CSR after its run
    assert sorted((q[0], q[1], q[2] >> 8) for q in got) == [
        (Op.ERROR, 9, ERROR_REASONS["bad_csr"]), (Op.ERROR, 10, ERROR_REASONS["bad_exec"])]
    assert fab.status(0, 0)["errors"] == before + 2
    rng = np.random.default_rng(2)
    a = random_csr(rng, 12, 30, 0.3, 8)
    x = rng.integers(-128, 128, 30)
    assert fab.spmv(a, x).golden_ok


@pytest.mark.sim
def test_runtime_refuses_malformed_input_and_compares_with_gemm(fab):
    with pytest.raises(ConfigError, match="must not decrease"):
        fab.spmv(([0, 3, 2], [0, 1, 2], [1, 2, 3], (2, 4)), np.ones(4, dtype=np.int64))
    with pytest.raises(ConfigError, match="length n"):
        fab.spmv(sp.csr_matrix(np.eye(3, dtype=np.int64)), np.ones(4, dtype=np.int64))
    rng = np.random.default_rng(4)
    a = random_csr(rng, 16, 32, 0.25, 8)
    x = rng.integers(-128, 128, 32)
    dense = fab.gemm(a.toarray(), x.reshape(-1, 1))
    assert dense.golden_ok and np.array_equal(dense.c[:, 0], fab.spmv(a, x).y)


def test_lint_clean():
    g = generate(load(EXAMPLE))
    proc = lint_file(g.verilog, g.module)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.synth
def test_synth_ecp5():
    proc = subprocess.run([sys.executable, "-m", "tilefab.cli", "synth", str(EXAMPLE),
                           "--family", "ecp5", "--json"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert res["lut"] > 1000 and res["ram"] >= 2


@pytest.mark.sim
def test_bench_meets_fill_and_speedup_targets(fab):
    rows = spmv_figures(fab=fab, densities=(1 / 4, 1 / 16), m=64, k=256, quiet=True)
    for r in rows:
        assert r["ok"] and r["min_tile_fill"] >= FILL_TARGET
        # against the dense peak of the mesh's GEMM PEs (as many multipliers)
        assert r["peak_speedup"] >= SPEEDUP_TARGET / r["density"]
        # and the whole run against the dense GEMM run of the same matrix
        assert r["run_speedup"] >= SPEEDUP_TARGET / r["density"]
