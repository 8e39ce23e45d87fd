"""Incremental local fields in the lane array (``PBitLanes(fields="incremental")``):
parameters and field width, the host's row layout and checks, the golden cycle model
against a hand count, the stored fields against recomputed ones, Boltzmann sampling,
the tile parameter, lint and synthesis. The Verilator runs are in test_pbit_lanes.py
(configs A and B, parametrized over ``fields``).
"""

import numpy as np
import pytest
from tilefab.gen.config import tile_kinds
from tilefab.gen.emit import to_verilog
from tilefab.gen.errors import ConfigError
from tilefab.gen.lint import lint_file
from tilefab.gen.pbit import driver, graph
from tilefab.golden import pbit as g
from tilefab.hw.pbit.control import word_layouts
from tilefab.hw.pbit.lanes import LaneOp, PBitLanes
from tilefab.hw.tiles.pbit import PBitTileParams

FMT = g.PBitFormat(w_bits=5, w_frac=0, h_bits=6, beta_bits=6, beta_frac=3,
                   lut_size=64, lut_step_frac=3, rand_bits=16)
AND_J = np.array([[0, -1, 2], [-1, 0, 2], [2, 2, 0]])
AND_H = np.array([1, 1, -2])


def inc_array(**kw):
    args = {"n": 10, "lanes": 2, "edge_depth": 32, "max_degree": 4, "n_colours": 4,
            "seeds": g.pbit_seeds(1, 10), "fields": "incremental"}
    args.update(kw)
    return PBitLanes(**args)


def path6():
    """Path 0-1-2-3-4 and an isolated p-bit 5, two colours."""
    J = np.zeros((6, 6), dtype=np.int64)
    for i, w in enumerate([-3, -2, -1, 2]):
        J[i, i + 1] = J[i + 1, i] = w
    return J, np.array([0, 1, 0, 1, 0, 1])


def test_field_width_holds_every_reachable_field():
    a = inc_array(w_bits=8, h_bits=10, max_degree=4)
    # |F| <= 4 * 128 + 512 = 1024 needs 12 signed bits
    assert a.config()["field_bits"] == 12 == (4 * 128 + 512).bit_length() + 1
    b = inc_array(w_bits=6, h_bits=5, max_degree=9)
    assert b.config()["field_bits"] == (9 * 32 + 16).bit_length() + 1
    with pytest.raises(ValueError, match=r"^fields: 'lazy' is not allowed, must be one of "
                                         r"recompute, incremental$"):
        inc_array(fields="lazy")
    assert PBitLanes(n=10, lanes=2, edge_depth=32, max_degree=4, n_colours=4,
                     seeds=g.pbit_seeds(1, 10)).config()["fields"] == "recompute"
    with pytest.raises(ValueError, match="fields: incremental is a mode of the lane array"):
        g.PBitMachine(FMT, AND_J, AND_H, [0, 1, 2], g.pbit_seeds(1, 3), fields="incremental")


def test_rows_layout_and_host_checks():
    J, col = path6()
    assert list(g.lane_rows(J, 2)) == [1, 2, 2, 2, 1, 0]
    assert list(g.lane_rows(J, 4)) == [1, 1, 1, 1, 1, 0]
    a = inc_array(n=6, seeds=g.pbit_seeds(1, 6), edge_depth=8)
    cfg = a.config()
    lay = word_layouts(cfg)
    words = driver.encode(cfg, None, [driver.Program(J, np.zeros(6), col)])
    edges = {}
    for w in words:
        c = lay["ctrl"].from_bits(w)
        if c["op"] == LaneOp.EDGE:
            e = lay["EDGE"].from_bits(c["data"])
            edges[c["slot"], c["index"]] = (e["src"], e["dst"], e["j"])
        if c["op"] == LaneOp.COUNT and c["index"] == 1:
            assert lay["COUNT"].from_bits(c["data"])["count"] == 8
    # p-bit 1 (rows 1..2) has both neighbours in lane 0: slots 0 and 1; lane 1 pads
    assert edges[0, 1] == (1, 0, -3) and edges[0, 2] == (1, 1, -2)
    assert edges[1, 1][2] == 0 and edges[1, 2][2] == 0
    assert len(edges) == 2 * 8
    small = inc_array(n=6, seeds=g.pbit_seeds(1, 6), edge_depth=7).config()
    with pytest.raises(ConfigError, match=r"the edge rows need 8 entries in every lane, "
                                          r"above the array's edge_depth=7"):
        driver.encode(small, None, [driver.Program(J, np.zeros(6), col)])


def test_cycle_model_hand_count_and_same_trajectory():
    """Hand count of the incremental timing; the spins are the recomputing array's."""
    fmt = g.PBitFormat(w_bits=4, w_frac=0, h_bits=5, beta_bits=8, beta_frac=6, lut_size=64,
                       lut_step_frac=3, rand_bits=16)
    J, col = path6()
    seeds = g.pbit_seeds(4, 6)
    state = np.array([1, -1, 1, 1, -1, 1])
    rec = g.PBitMachine(fmt, J, np.zeros(6), col, seeds, state=state, lanes=2)
    inc = g.PBitMachine(fmt, J, np.zeros(6), col, seeds, state=state, lanes=2,
                        fields="incremental")
    sched = [(30, 7), (90, 5)]
    rr, ri = rec.run(sched, 2, sample_every=1), inc.run(sched, 2, sample_every=1)
    assert np.array_equal(rr.state, ri.state) and rr.best_energy == ri.best_energy
    assert [e for _, e in rr.samples] == [e for _, e in ri.samples]
    assert rr.flips == ri.flips > 0
    # every p-bit decides once a sweep, so a sweep's flips are its changed spins
    spins = np.array([state] + [s for s, _ in rr.samples])
    rows = np.array([1, 2, 2, 2, 1, 0])
    walked = int((rows * (spins[1:] != spins[:-1])).sum())
    assert int((spins[1:] != spins[:-1]).sum()) == ri.flips
    # N = 3 node entries per lane, R = 8 rows; each colour has 3 p-bits in one lane
    assert ri.energy_cycles == 2 * 3 + 8 + g.FIELD_INIT_OVERHEAD
    assert ri.update_cycles == 12 * 2 * (3 + g.FIELD_PASS_OVERHEAD) + walked


def test_stored_fields_equal_recomputed_fields():
    gr = graph.random_sparse(50, 7, 150, np.random.default_rng(2))
    nb = gr.neighbours()
    rng = np.random.default_rng(3)
    J = -gr.W().astype(np.int64) * rng.integers(1, 4, (50, 50))
    J = np.triu(J, 1) + np.triu(J, 1).T
    h = rng.integers(-5, 6, 50)
    col = graph.dsatur(nb)
    frozen = np.zeros(50, bool)
    frozen[[3, 9]] = True
    m = g.PBitMachine(FMT, J, h, col, g.pbit_seeds(5, 50), lanes=4, fields="incremental",
                      frozen=frozen)
    for beta_q in (2, 9, 30):
        res = m.run([(beta_q, 40)], int(col.max()) + 1)
        assert np.array_equal(m.F, m.fields())
        assert res.energy == g.energy_int(J, h, m.m)


@pytest.mark.parametrize("case", ["and", "ring4"])
def test_incremental_model_samples_boltzmann(case):
    """At fixed beta the incremental variant's states follow exp(-beta E)/Z: TV distance
    of the empirical law from Boltzmann below the bound for the chain's mixing."""
    beta, every, n_samples = 0.5, 3, 8000
    if case == "and":
        J, h, colours = AND_J, AND_H, np.arange(3)
    else:
        J = np.zeros((4, 4), dtype=np.int64)
        for i, w in enumerate([2, -1, 3, -2]):
            J[i, (i + 1) % 4] = J[(i + 1) % 4, i] = w
        h, colours = np.array([1, -1, 0, 2]), np.array([0, 1, 0, 1])
    bq = FMT.beta_code(beta)
    _, lam = g.stationary(np.linalg.matrix_power(g.sweep_matrix(FMT, J, h, bq, colours),
                                                 every))
    m = g.PBitMachine(FMT, J, h, colours, g.pbit_seeds(2, len(h)), lanes=2,
                      fields="incremental")
    m.run([(bq, 50)])                                    # burn-in
    res = m.run([(bq, every * n_samples)], sample_every=every)
    for s, e in res.samples[:50]:
        assert e == g.energy_int(J, h, s)
    idx = g.state_index(np.array([s for s, _ in res.samples]))
    emp = np.bincount(idx, minlength=1 << len(h)) / len(idx)
    p = g.boltzmann(J, h, beta)
    tv, bound = g.tv_distance(emp, p), g.tv_bound(p, n_samples, lam, z=3.0)
    print(f"{case}: TV {tv:.4f} < bound {bound:.4f} (lambda {lam:.3f}, {n_samples} samples)")
    assert tv < bound, (tv, bound, lam)
    # and the test can fail: a sampler at the wrong temperature is rejected
    assert g.tv_distance(emp, g.boltzmann(J, h, 2 * beta)) > bound


def tile_params(**kw):
    v = {"arch": "lanes", "n": 12, "lanes": 2, "edge_depth": 32, "max_degree": 4,
         "fields": "incremental"}
    v.update(kw)
    return PBitTileParams(data_bits=32, addr_bits=12, **v)


def test_tile_parameter_and_schema():
    schema = tile_kinds()["pbit"]["fields"]
    assert schema["enum"] == ["recompute", "incremental"] and schema["default"] == "recompute"
    p = tile_params()
    assert p.config()["fields"] == "incremental"
    assert p.manifest()["params"]["fields"] == "incremental"
    assert "fields" not in tile_params(arch="parallel").manifest()["params"]
    assert tile_params(fields="recompute").config()["fields"] == "recompute"
    with pytest.raises(ValueError, match="fields"):
        tile_params(fields="sometimes")


def test_tile_runs_incremental_on_golden_backend():
    from tilefab.gen.pbit import tile
    p = tile_params()
    gr = graph.random_sparse(12, 4, 20, np.random.default_rng(7))
    J = -gr.W().astype(np.int64)
    col = graph.dsatur(gr.neighbours())
    k = int(col.max()) + 1
    ops = [driver.Program(J, np.zeros(12), col, state=np.ones(12)),
           driver.Run([(20, 30)], k, sample_every=10), driver.Read()]
    _, exp = tile.requests_for(p, ops)
    got = tile.golden_results(p, ops)
    ref = tile.golden_results(tile_params(fields="recompute"), ops)
    assert len(got) == 2 and exp.dones == 2
    assert np.array_equal(got[0].state, ref[0].state) and got[0].energy == ref[0].energy
    assert got[0].cycles != ref[0].cycles
    sized = tile.sized_for({"lanes": 4, "fields": "incremental"}, J, k, "lanes")
    assert sized["edge_depth"] >= int(g.lane_rows(J, 4).sum())
    tile_params(**sized)


@pytest.mark.parametrize("kw", [{}, {"lanes": 1, "n": 7, "seeds": g.pbit_seeds(2, 7),
                                     "word_bits": 4, "w_bits": 6, "w_frac": 1, "h_bits": 8}])
def test_lint_clean(tmp_path, kw):
    v = to_verilog(inc_array(**kw), "pbit_lanes_inc")
    assert to_verilog(inc_array(**kw), "pbit_lanes_inc") == v
    f = tmp_path / "pbit_lanes_inc.v"
    f.write_text(v)
    r = lint_file(f, "pbit_lanes_inc")
    assert r.returncode == 0, r.stderr


@pytest.mark.synth
def test_incremental_build_synthesizes_for_ecp5():
    from tilefab.gen.synth import synthesize

    a = inc_array(n=256, lanes=8, edge_depth=1024, max_degree=16, n_colours=8,
                  seeds=g.pbit_seeds(1, 256))
    res = synthesize(to_verilog(a, "pbit_lanes_inc256"), "pbit_lanes_inc256", "ecp5")
    # per lane: edge rows (1024 x {dst, J}) in block RAM, one beta multiplier; src once
    assert res.ram >= 8 and res.dsp == 8, res.line()
    assert res.ff >= 256, res.line()                     # the spins at least
