"""PBitLanes (J in block RAM, pipelined lanes): parameters, host checks, cycle model,
lane balancing, lint, and bit-exact agreement with the golden model on Verilator.

Two configs are simulated, each with recomputed and with incremental fields: config A
(4 lanes, 40 p-bits of degree up to 9, random backpressure on both streams, clamps,
samples, a second program, READ) and config B (8 lanes over 37 p-bits, so the last slot
row is partly empty; degree up to 24; a different fixed-point format; the event-driven
host without backpressure).
"""

import re
import subprocess

import numpy as np
import pytest
from tilefab.gen import toolchain
from tilefab.gen.emit import to_verilog
from tilefab.gen.errors import ConfigError
from tilefab.gen.pbit import driver, graph, maxcut
from tilefab.golden import pbit as g
from tilefab.hw.pbit.lanes import EDGE_BLOCK, PBitLanes, edge_depth_for
from tilefab.verif.tb_pbit import run_rtl

from tilefab.configs import pbit_format

SHIPPED_FMT = pbit_format()      # the shipped p-bit tile's formats

FMT_A = dict(w_bits=6, w_frac=1, h_bits=8, beta_bits=7, beta_frac=5, lut_size=32,
             lut_step_frac=2, rand_bits=14)
FMT_B = dict(w_bits=4, w_frac=0, h_bits=5, beta_bits=8, beta_frac=6, lut_size=64,
             lut_step_frac=3, rand_bits=16)


def lanes_array(**kw):
    args = dict(n=10, lanes=2, edge_depth=16, max_degree=4, n_colours=4,
                seeds=g.pbit_seeds(1, 10))
    args.update(kw)
    return PBitLanes(**args)


def random_on(nbrs, rng, wlo, whi, hlo, hhi):
    n = len(nbrs)
    J = np.zeros((n, n), dtype=np.int64)
    for i, row in enumerate(nbrs):
        for j in row:
            if i < j:
                J[i, j] = J[j, i] = rng.choice([v for v in range(wlo, whi + 1) if v])
    return J, rng.integers(hlo, hhi + 1, n)


@pytest.mark.parametrize("kw,msg", [
    (dict(lanes=3), r"^lanes: 3 is not allowed, must be a power of two 1\.\.64$"),
    (dict(lanes=128), r"^lanes: 128 is not allowed, must be a power of two 1\.\.64$"),
    (dict(edge_depth=0), r"^edge_depth: 0 is not allowed, must be 1\.\.1048576$"),
    (dict(max_degree=11), r"^max_degree: 11 is not allowed, must be 1\.\.10$"),
    (dict(seeds=[1] * 10), "seeds must be distinct"),
    (dict(seeds=[0] + list(range(1, 10))), "seeds must be 10 non-zero 32-bit integers"),
    (dict(lut_size=24), r"^lut_size: 24 is not allowed, must be a power of two >= 2$"),
])
def test_parameters_validated(kw, msg):
    with pytest.raises(ValueError, match=msg):
        lanes_array(**kw)


def test_program_checks_name_the_field():
    arr = lanes_array()
    cfg = arr.config()
    ring = [[(i - 1) % 10, (i + 1) % 10] for i in range(10)]
    J, h = random_on(ring, np.random.default_rng(0), -8, 7, -5, 5)
    col = np.arange(10) % 2
    driver.encode(cfg, None, [driver.Program(J, h, col)])        # fits
    star = np.zeros((10, 10), dtype=np.int64)
    star[0, 1:6] = star[1:6, 0] = 1
    with pytest.raises(ConfigError, match=r"p-bit 0 has 5 couplings, above the array's "
                                          r"max_degree=4"):
        driver.encode(cfg, None, [driver.Program(star, np.zeros(10), np.r_[0, [1] * 9])])
    small = lanes_array(edge_depth=8).config()
    with pytest.raises(ConfigError, match=r"lane 0 needs 10 edge entries, above the "
                                          r"array's edge_depth=8"):
        driver.encode(small, None, [driver.Program(J, h, col)])
    with pytest.raises(ConfigError, match="coupled .* share colour"):
        driver.encode(cfg, None, [driver.Program(J, h, np.zeros(10, int))])


def test_cycle_model_and_spins_independent_of_lanes():
    """Hand count of the lane timing; the trajectory is the parallel array's."""
    fmt = g.PBitFormat(**FMT_B)
    # path 0-1-2-3-4 plus isolated p-bit 5: entries per p-bit 1,2,2,2,1,1
    J = np.zeros((6, 6), dtype=np.int64)
    for i, w in enumerate([-3, -2, -1, 2]):
        J[i, i + 1] = J[i + 1, i] = w
    col = np.array([0, 1, 0, 1, 0, 1])
    seeds = g.pbit_seeds(4, 6)
    par = g.PBitMachine(fmt, J, np.zeros(6), col, seeds)
    lan = g.PBitMachine(fmt, J, np.zeros(6), col, seeds, lanes=2)
    sched = [(30, 7), (90, 5)]
    rp, rl = par.run(sched, 2, sample_every=3), lan.run(sched, 2, sample_every=3)
    assert np.array_equal(rp.state, rl.state) and rp.best_energy == rl.best_energy
    assert [e for _, e in rp.samples] == [e for _, e in rl.samples]
    # lanes: 0 -> p-bits 0,2,4 (entries 1,2,1), 1 -> p-bits 1,3,5 (2,2,1)
    # colour 0 = {0,2,4}: lane0 4, lane1 0 -> 4 + 6; colour 1 = {1,3,5}: lane1 5 -> 5 + 6
    assert rl.energy_cycles == max(4, 5) + g.LANE_PASS_OVERHEAD
    assert rl.update_cycles == 12 * (10 + 11)
    assert rp.cycles == g.PARALLEL_RUN_OVERHEAD + 2 * g.energy_stages(6) + 12 * 2


def test_edge_depth_whole_block_rams():
    """Powers of two up to one block RAM (1024 x 18), then whole blocks: G1's 5,023 rows
    take 5 blocks, not the 8 of 2^13."""
    assert [edge_depth_for(e) for e in (0, 1, 3, 600, 1024)] == [1, 1, 4, 1024, 1024]
    assert edge_depth_for(1025) == 2 * EDGE_BLOCK
    assert edge_depth_for(5023) == 5 * EDGE_BLOCK
    assert edge_depth_for(7013) == 7 * EDGE_BLOCK
    gr = graph.random_sparse(300, 12, 1800, np.random.default_rng(3))
    a = maxcut.lane_array(gr, 8, pbit_format(), lanes=4, fields="incremental")
    need = int(g.lane_rows(gr.W(), 4).sum())
    assert need <= a.config()["edge_depth"] == edge_depth_for(need)


def test_balance_lanes_is_a_relabelling_that_helps():
    gr = graph.random_sparse(101, 30, 900, np.random.default_rng(3))
    col = graph.dsatur(gr.neighbours())
    ent = driver.lane_entries(gr.W())
    order = maxcut.balance_lanes(ent, col, 8)
    assert sorted(order) == list(range(101))

    def sweep(labels_to_node):
        e, c = ent[labels_to_node], col[labels_to_node]
        lane = np.arange(101) % 8
        return sum(np.bincount(lane[c == k], weights=e[c == k], minlength=8).max()
                   for k in range(int(col.max()) + 1))

    assert sweep(order) < sweep(np.arange(101))
    # every lane keeps its slot count, so the relabelled graph fits the same array
    assert sweep(order) >= ent.sum() / 8 / 1.0 - 1e-9


def test_maxcut_lane_golden_counts_and_limit():
    gr = graph.random_sparse(64, 20, 400, np.random.default_rng(9), weights=(1,))
    res = maxcut.run(gr, 20, SHIPPED_FMT, backend="golden", arch="lanes", lanes=4)
    par = maxcut.run(gr, 20, SHIPPED_FMT, backend="golden", arch="parallel")
    edges = int(driver.lane_entries(gr.W()).sum())
    assert res.arch == "lanes" and res.flips_limit == pytest.approx(4 * 64 / edges)
    assert res.flips_per_cycle <= res.flips_limit
    assert res.cycles > 20 * edges / 4
    assert par.flips_limit == 64 / par.colours
    with pytest.raises(ConfigError, match="--arch: must be one of auto, parallel, lanes"):
        maxcut.run(gr, 20, SHIPPED_FMT, backend="golden", arch="tree")


@pytest.mark.parametrize("kw", [dict(), dict(lanes=1, n=7, seeds=g.pbit_seeds(2, 7),
                                             word_bits=4, **FMT_A)])
def test_verilator_lint_clean(tmp_path, kw):
    v = to_verilog(lanes_array(**kw), "pbit_lanes")
    assert to_verilog(lanes_array(**kw), "pbit_lanes") == v
    f = tmp_path / "pbit_lanes.v"
    f.write_text(v)
    toolchain.apply()
    r = subprocess.run([toolchain.verilator_bin(), "--lint-only", "-Wno-fatal", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    kinds = set(re.findall(r"%Warning-(\w+)", r.stderr))
    assert kinds <= {"WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE"}, r.stderr
    assert "%Error" not in r.stderr


def check(array, ops, name, **kw):
    expected = driver.golden_records(array.config(), array._seeds, ops)
    results, raw = run_rtl(array, ops, name=name, expected=expected,
                                  test_module="tilefab.verif.tb_pbit_check", **kw)
    if not kw.get("out_stall"):
        assert raw["records"] == expected
    return results, expected


FIELDS = pytest.mark.parametrize("fields", ["recompute", "incremental"])


def build_name(name, fields):
    return name if fields == "recompute" else f"{name}_inc"


@pytest.mark.sim
@FIELDS
def test_lanes_a_bit_exact_with_backpressure(fields):
    n = 40
    gr = graph.random_sparse(n, 9, 130, np.random.default_rng(77))
    nb = gr.neighbours()
    array = PBitLanes(n=n, lanes=4, edge_depth=128, max_degree=9, n_colours=8,
                      seeds=g.pbit_seeds(21, n), word_bits=16, sched_depth=4, fields=fields,
                      **FMT_A)
    rng = np.random.default_rng(6)
    J, h = random_on(nb, rng, -32, 31, -60, 60)
    col = graph.dsatur(nb)
    k = int(col.max()) + 1
    state = rng.choice([-1, 1], n)
    clamp = np.zeros(n, bool)
    clamp[[0, 5, 22]] = True
    J2, h2 = random_on(nb, rng, -6, 6, -4, 4)
    ops = [driver.Program(J, h, col, state=state),
           driver.Run([(3, 300), (25, 300), (80, 250), (127, 250)], k, sample_every=41),
           driver.Read(),
           driver.Program(J2, h2, col, clamp=clamp, state=-state),
           driver.Run([(50, 200)], k + 1, sample_every=1),      # an empty colour class
           driver.Run([(64, 1)], k)]
    results, _ = check(array, ops, build_name("pbit_lanes_a", fields), in_stall=0.3,
                       out_stall=0.4, seed=7)
    assert len(results) == 4 and len(results[0].samples) == 1100 // 41
    assert np.all(results[2].state[[0, 5, 22]] == -state[[0, 5, 22]])
    assert len(results[2].samples) == 200


@pytest.mark.sim
@FIELDS
def test_lanes_b_bit_exact_high_degree_event_host(fields):
    n = 37
    gr = graph.random_sparse(n, 24, 300, np.random.default_rng(5))
    nb = gr.neighbours()
    deg = max(map(len, nb))
    # incremental: every lane holds all 140 rows (golden.pbit.lane_rows)
    array = PBitLanes(n=n, lanes=8, edge_depth=128 if fields == "recompute" else 256,
                      max_degree=deg, n_colours=16, seeds=g.pbit_seeds(22, n), word_bits=32,
                      sched_depth=8, fields=fields, **FMT_B)
    rng = np.random.default_rng(8)
    J, h = random_on(nb, rng, -8, 7, -16, 15)
    col = graph.dsatur(nb)
    k = int(col.max()) + 1
    fmt = g.PBitFormat(**FMT_B)
    ops = [driver.Program(J, h, col, state=rng.choice([-1, 1], n)),
           driver.Run(maxcut.anneal_schedule(fmt, 1200, 0.05, 2.0), k, sample_every=100),
           driver.Read()]
    results, _ = check(array, ops, build_name("pbit_lanes_b", fields))
    r = results[0]
    overhead = g.LANE_PASS_OVERHEAD if fields == "recompute" else g.FIELD_PASS_OVERHEAD
    assert r.update_cycles > 1200 * k * overhead
    assert r.best_energy <= min(e for _, e in r.samples)


def test_cli_maxcut_on_the_lane_array(tmp_path, capsys):
    from tilefab.cli import main

    f = tmp_path / "ring.txt"
    f.write_text("12 12\n" + "".join(f"{i + 1} {(i + 1) % 12 + 1} 1\n" for i in range(12)))
    assert main(["pbit", "maxcut", str(f), "--sweeps", "100", "--backend", "golden",
                 "--arch", "lanes", "--lanes", "2"]) == 0
    out = capsys.readouterr().out
    assert "lanes p-bit tile (0, 0) of pbit_lanes12" in out and "best seen 12" in out
    # 24 edge entries over 2 lanes: at most one decision per cycle
    assert "(limit lanes*n/edge entries (2 edges/cycle) = 1.00)" in out
    with pytest.raises(SystemExit) as exc:
        main(["pbit", "maxcut", str(f), "--lanes", "3"])
    assert exc.value.code == 2
    assert "--lanes must be a power of two in [1, 64], got '3'" in capsys.readouterr().err
