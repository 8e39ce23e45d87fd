"""Crossbar emulator: golden model maths, noise source, ADC, config, energy, lint, synth."""

import math

import numpy as np
import pytest
from amaranth.sim import Simulator
from tilefab.gen.imc.tile import golden_params
from tilefab.gen.errors import ConfigError
from tilefab.gen.imc.energy import adc_energy_pj, energy_per_mvm
from tilefab.golden import imc as g
from tilefab.hw.imc import Crossbar, GaussianNoise, magic_divider


def params(**kw):
    base = dict(rows=8, cols=6, levels=4, slices=2, in_bits=4, adc_bits=6, adc_lo=-128,
                adc_hi=192, frac_bits=4, prog_gain=g.noise_gain(0.3, 4), read_gain=g.noise_gain(0.5, 4))
    base.update(kw)
    return g.CrossbarParams(**base)


def random_problem(p, rng, n):
    w = rng.integers(-p.w_max, p.w_max + 1, (p.rows, p.cols))
    lo, hi = p.x_range
    return w, rng.integers(lo, hi + 1, (n, p.rows))


# --- golden: exactness, noise, ADC, error vs ideal ---------------------------

@pytest.mark.parametrize("levels,slices,in_bits", [(4, 2, 5), (3, 1, 4), (2, 3, 3), (16, 1, 8)])
def test_noise_off_enough_adc_bits_is_exact_integer_mvm(levels, slices, in_bits):
    rows, cols, frac = 7, 5, 3
    col = rows * (levels - 1)
    bits = (2 * col).bit_length()
    # One ADC step per level: code = column sum - min exactly.
    p = g.CrossbarParams(rows=rows, cols=cols, levels=levels, slices=slices, in_bits=in_bits,
                         adc_bits=bits, adc_lo=-col << frac,
                         adc_hi=(-col + (1 << bits) - 1) << frac, frac_bits=frac)
    rng = np.random.default_rng(levels * 10 + slices)
    w, xs = random_problem(p, rng, 20)
    model = g.CrossbarModel(p, seed=5)
    model.program(w)
    for x in xs:
        est = model.estimate(model.mvm(x))
        np.testing.assert_array_equal(est, x @ w)
    ideal = g.CrossbarModel(p.with_(adc_bits=0), seed=5)
    ideal.program(w)
    np.testing.assert_array_equal(ideal.estimate(ideal.mvm(xs[0])), xs[0] @ w)


def test_noise_source_matches_a_gaussian():
    z, pmf = g.irwin_hall_pmf()
    assert abs(np.sum(pmf * z)) < 1e-9
    assert math.isclose(np.sum(pmf * z ** 2), g.IRWIN_HALL_VAR, rel_tol=1e-12)
    sd = math.sqrt(g.IRWIN_HALL_VAR)
    for k, normal_tail in ((1, 0.3173), (2, 0.0455), (3, 0.0027)):
        tail = float(np.sum(pmf[np.abs(z) > k * sd]))
        # Four uniforms: variance exact, tails within 1.5 points of the normal's
        # (0.332 / 0.045 / 0.0011 against 0.317 / 0.046 / 0.0027).
        assert abs(tail - normal_tail) < 0.015, (k, tail)
    # The realized sigma of the scaled integer sample is the configured one.
    for sigma, frac in ((0.05, 6), (0.3, 4), (2.0, 2)):
        got = g.noise_std(g.noise_gain(sigma, frac)) / (1 << frac)
        assert abs(got - sigma) < 0.01 * sigma + 0.3 / (1 << frac), (sigma, got)


def _bound(n):
    # 5 standard errors of a sample sigma (Irwin-Hall excess kurtosis -0.3).
    return 5 * math.sqrt(1.7 / (4 * n))


def test_programming_noise_statistics_independent_and_proportional():
    rows, cols = 32, 32
    for mode, sigma in (("independent", 0.25), ("proportional", 0.04)):
        p = params(rows=rows, cols=cols, levels=8, slices=1, frac_bits=5, prog_noise=mode,
                   prog_gain=g.noise_gain(sigma, 5), read_gain=0)
        model = g.CrossbarModel(p, seed=11)
        w = np.full((rows, cols), 7)
        w[::2] = -7
        model.program(w)
        dev = np.concatenate([model.g[0, 0][w > 0], model.g[0, 1][w < 0]]) - (7 << 5)
        want = g.noise_std(p.prog_gain, 7 if mode == "proportional" else 1)
        expected = sigma * (7 if mode == "proportional" else 1) * 32
        assert abs(want - expected) < 0.01 * expected
        assert abs(dev.std() / want - 1) < _bound(dev.size), (mode, dev.std(), want)
        assert abs(dev.mean()) < 5 * want / math.sqrt(dev.size)
        # The idle device of a pair: level 0, clipped at 0 (independent) or exact 0.
        idle = np.concatenate([model.g[0, 1][w > 0], model.g[0, 0][w < 0]])
        assert idle.min() == 0
        if mode == "proportional":
            assert idle.max() == 0
        else:
            assert abs(idle.mean() - want / math.sqrt(2 * math.pi)) < 0.1 * want


def test_read_noise_statistics_per_column_read():
    p = params(rows=4, cols=64, slices=1, levels=4, prog_gain=0, read_gain=g.noise_gain(0.5, 4))
    model = g.CrossbarModel(p, seed=3)
    model.program(np.zeros((4, 64), dtype=int))
    samples = np.concatenate([model.column_values(np.zeros(4, dtype=int), 0).ravel()
                              for _ in range(40)])
    want = g.noise_std(p.read_gain)
    assert abs(samples.std() / want - 1) < _bound(samples.size)
    assert abs(samples.mean()) < 5 * want / math.sqrt(samples.size)
    # Independent generators: neighbouring columns are uncorrelated.
    block = np.stack([model.column_values(np.zeros(4, dtype=int), 0)[0] for _ in range(400)])
    r = np.corrcoef(block[:, 0], block[:, 1])[0, 1]
    assert abs(r) < 5 / math.sqrt(400)


def test_adc_is_crosssim_quantizer_with_ties_up_and_clips():
    p = params(adc_bits=3, adc_lo=-20, adc_hi=50)
    a = np.arange(-60, 100)
    k = g.adc_code(a, p)
    assert k.min() == 0 and k.max() == 7
    assert np.all(k[a <= -20] == 0) and np.all(k[a >= 50] == 7)
    q = 7 / 70
    exact = (np.clip(a, -20, 50) + 20) * q
    # CrossSim's rint((y - min) * q), ties resolved upward.
    np.testing.assert_array_equal(k, np.floor(exact + 0.5).astype(int))
    assert np.all(np.diff(k) >= 0)


def test_adc_clipping_saturates_mvm():
    # Narrow ADC range: every plane of an all-max MVM saturates at the top code.
    p = params(prog_gain=0, read_gain=0, adc_bits=4, adc_lo=-16, adc_hi=16)
    model = g.CrossbarModel(p)
    w = np.full((p.rows, p.cols), p.w_max)
    model.program(w)
    x = np.full(p.rows, -1)      # every bit-plane is all ones
    y = model.mvm(x)
    slice_sum = 1 + p.levels
    assert np.all(y == -15 * slice_sum)
    est = model.estimate(y)
    assert np.all(est > -10) and np.all(x @ w < -100)   # clipped far short of the truth


def _adc_error(bits, levels, seeds, rows=32, cols=16):
    """Mean relative error against the float MVM, and the floor that weight and
    input quantization alone leave (no noise, ideal ADC)."""
    errs, floors = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        col = rows * (levels - 1)
        lo, hi = -(col // 4), col // 4
        p = g.CrossbarParams(rows=rows, cols=cols, levels=levels, slices=1, in_bits=6,
                             adc_bits=bits, adc_lo=lo << 4, adc_hi=hi << 4, frac_bits=4,
                             prog_gain=g.noise_gain(0.02, 4), read_gain=g.noise_gain(0.05, 4))
        wf = rng.uniform(-1, 1, (rows, cols))
        xf = rng.uniform(-1, 1, (8, rows))
        w, w_unit = g.map_weights(wf, p, 1.0)
        xs, x_unit = g.map_inputs(xf, p, 1.0)
        model = g.CrossbarModel(p, seed=seed)
        model.program(w)
        est = np.stack([model.estimate(model.mvm(x)) for x in xs]) * w_unit * x_unit
        ideal = g.ideal_mvm(wf, xf)
        errs.append(g.error_vs_ideal(est, ideal)["rel_rms"])
        floors.append(g.error_vs_ideal(xs @ w * w_unit * x_unit, ideal)["rel_rms"])
    return float(np.mean(errs)), float(np.mean(floors))


def test_error_vs_ideal_falls_as_adc_bits_rise():
    results = [_adc_error(b, 4, seeds=range(3)) for b in (2, 3, 4, 6, 8)]
    errs = [e for e, _ in results]
    floor = results[0][1]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    # Coarse ADCs dominate; at 8 bits only the weight-level quantization is left.
    assert errs[0] > 3 * floor and errs[-1] < 1.1 * floor, (errs, floor)


def test_error_function_and_mapping():
    e = g.error_vs_ideal([1.0, 2.0, 5.0], [1.0, 2.0, 3.0])
    assert e["max_abs"] == 2.0 and math.isclose(e["rms"], math.sqrt(4 / 3))
    p = params()
    w, unit = g.map_weights(np.array([[-1.0, 0.5], [0.25, 1.0]]), p.with_(rows=2, cols=2))
    assert w.max() == p.w_max and w.min() == -p.w_max and math.isclose(unit, 1 / p.w_max)


def test_golden_rejects_bad_inputs():
    p = params()
    model = g.CrossbarModel(p)
    with pytest.raises(ValueError, match=r"\[-15, 15\]"):
        model.program(np.full((p.rows, p.cols), 16))
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        model.mvm(np.full(p.rows, 8))
    with pytest.raises(ValueError, match="levels"):
        params(levels=1)
    with pytest.raises(ValueError, match="adc"):
        params(adc_lo=10, adc_hi=10)


# --- hardware pieces -----------------------------------------------------------

def test_magic_divider_is_exact():
    for d in list(range(1, 200)) + [1000, 4095 * 2, 12345]:
        n_max = 40 * d
        m, sh = magic_divider(d, n_max)
        n = np.arange(n_max + 1, dtype=object)
        assert all((v * m) >> sh == v // d for v in n[:: max(1, n_max // 5000)]), d
        assert ((n_max * m) >> sh) == n_max // d


def test_gaussian_noise_block_matches_golden_draws():
    gain, index, seed = g.noise_gain(0.7, 4), 5, 0xDEADBEEF
    dut = GaussianNoise(index=index, gain=gain, level_bits=3)
    golden_state = g.seed_states(seed, index, 1)
    want, got = [], []
    levels = [7, 3, 0, 5, 1, 6, 2, 4] * 4
    for lv in levels:
        golden_state = g.xorshift32(golden_state)
        want.append(int(g.scale_noise(g.irwin_hall(golden_state), gain, lv)[0]))

    async def bench(ctx):
        ctx.set(dut.seed, seed)
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        assert not ctx.get(dut.ready)      # the cycle after a load: no draw yet
        await ctx.tick()
        for lv in levels:
            assert ctx.get(dut.ready)
            ctx.set(dut.level, lv)
            ctx.set(dut.next, 1)
            got.append(ctx.get(dut.sample))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want


@pytest.mark.parametrize("kw,name", [
    (dict(rows=0), "rows"), (dict(levels=1), "levels"), (dict(levels=3), "levels"),
    (dict(adc_lo=5, adc_hi=5), "adc_hi"), (dict(prog_noise="gaussian"), "prog_noise"),
    (dict(in_bits=1), "in_bits"), (dict(read_gain=-1), "read_gain"),
])
def test_crossbar_rejects_bad_parameters(kw, name):
    with pytest.raises(ValueError, match=name):
        Crossbar(**(params().hw_kwargs() | kw))


def _verilog(p):
    from tilefab.verif.tb_crossbar import verilog_for
    return verilog_for(p)


def test_verilog_passes_verilator_lint(tmp_path):
    from tilefab.gen.lint import lint_file

    for n, p in enumerate([params(), params(levels=3, slices=1, prog_noise="proportional",
                                            adc_bits=0)]):
        src = tmp_path / f"xb{n}.v"
        src.write_text(_verilog(p))
        proc = lint_file(src, "crossbar")
        assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.synth
def test_synthesizes_on_ecp5():
    from tilefab.gen.synth import synthesize

    p = params(rows=2, cols=3)
    res = synthesize(_verilog(p), "crossbar", "ecp5")
    # At least the cells (slices x rows x cols of gbits + 1 bits) must be flip-flops.
    assert res.lut > 100 and res.ff > p.slices * p.rows * p.cols * (p.gbits + 1)


# --- config and energy -------------------------------------------------------------

GOOD = {"name": "xb", "mesh": {"cols": 1, "rows": 1},
        "packet": {"data_bits": 32, "addr_bits": 12},
        "tiles": {"default": {"kind": "crossbar", "rows": 8, "cols": 6, "levels": 4,
                              "slices": 2, "frac_bits": 4, "input_bits": 4, "adc_bits": 6,
                              "adc_min": -8, "adc_max": 12, "prog_sigma": 0.3,
                              "read_sigma": 0.5}}}


def _crossbar(doc=GOOD):
    from tilefab.gen.config import resolve, tile_params

    cfg = resolve(doc)
    return tile_params(cfg["tile_map"][0], cfg["packet"])


def _with(field, value, doc=GOOD):
    import copy
    doc = copy.deepcopy(doc)
    doc["tiles"]["default"][field] = value
    return doc


def test_config_parses_to_params():
    p = golden_params(_crossbar())
    assert p.adc_lo == -128 and p.adc_hi == 192
    assert p.prog_gain == g.noise_gain(0.3, 4) and p.w_max == 15


@pytest.mark.parametrize("field,value,allowed", [
    ("adc_min", 20, "less than adc_max (12)"),
    ("levels", 1, "2..256"),
    ("levels", 3, "power of two"),
    ("adc_max", 12.1, "multiple of 1/16"),
    ("prog_noise", "drift", "independent, proportional"),
    ("read_sigma", -1, "0..64"),
    ("rows", "8", "integer"),
    ("adc_bit", 3, "unknown field"),
])
def test_config_errors_name_field_and_allowed_values(field, value, allowed):
    with pytest.raises(ConfigError) as exc:
        _crossbar(_with(field, value))
    msg = str(exc.value)
    assert msg.startswith("tiles.default") and field in msg and allowed in msg, msg


def test_energy_model_breakdown():
    p = golden_params(_crossbar())
    rep = energy_per_mvm(p)
    assert set(rep.per_mvm_pj) == {"adc", "dac", "cell_read", "shift_add"}
    assert math.isclose(sum(rep.shares().values()), 1.0)
    assert all(v > 0 for v in rep.per_mvm_pj.values())
    assert adc_energy_pj(8) > adc_energy_pj(4) > adc_energy_pj(1) > 0 == adc_energy_pj(0)
    # ADC energy per conversion = NeuroSim power x (bits + 1) SAR cycles of 1 ns.
    assert math.isclose(adc_energy_pj(8), (0.7213 * 8 + 3.3041) * 9e-3)
    more_bits = energy_per_mvm(p.with_(adc_bits=10))
    assert more_bits.per_mvm_pj["adc"] > rep.per_mvm_pj["adc"]
    assert energy_per_mvm(p, {"v_read": 0.4}).per_mvm_pj["cell_read"] == pytest.approx(
        4 * rep.per_mvm_pj["cell_read"])


EXAMPLES = __import__("pathlib").Path(__file__).parent.parent / "examples" / "imc"


@pytest.mark.parametrize("name", ["crossbar_8x6", "crossbar_16x16_8bit", "crossbar_exact",
                                  "crossbar_pcm_weights"])
def test_cli_report_on_examples(name, capsys):
    from tilefab.cli import main

    assert main(["imc", "report", str(EXAMPLES / f"{name}.yaml")]) == 0
    out = capsys.readouterr().out
    for part in ("adc", "dac", "cell_read", "shift_add", "energy per MAC"):
        assert part in out


def test_cli_report_weights_and_figures(capsys):
    from tilefab.cli import main

    cfg = EXAMPLES / "crossbar_pcm_weights.yaml"
    assert main(["imc", "report", str(cfg)]) == 0
    base = capsys.readouterr().out
    assert main(["imc", "report", str(cfg), "--weights",
                 str(EXAMPLES / "crossbar_pcm_weights.csv"), "--figure", "v_read=0.3"]) == 0
    out = capsys.readouterr().out
    assert "weights from" in out and "figures overridden: v_read=0.3" in out
    cell = [float(line.split()[1]) for text in (base, out) for line in text.splitlines()
            if line.strip().startswith("cell_read")]
    assert cell[1] > cell[0]          # v_read 0.2 -> 0.3 and non-uniform weights
    bad = EXAMPLES / "crossbar_8x6.yaml"
    assert main(["imc", "report", str(bad), "--weights",
                 str(EXAMPLES / "crossbar_pcm_weights.csv")]) == 2
    assert "must be 8x6" in capsys.readouterr().err


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    from tilefab.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("mesh: {cols: 1, rows: 1}\n"
                   "tiles: {default: {kind: crossbar, rows: 4, cols: 4, adc_bits: 4,\n"
                   "                  adc_min: 3, adc_max: -3}}\n")
    assert main(["imc", "report", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tiles.default.adc_min" in err, err


def test_exact_example_is_exact_on_the_golden_model():
    from tilefab.gen.config import load, tile_params

    cfg = load(EXAMPLES / "crossbar_exact.yaml")
    p = golden_params(tile_params(cfg["tile_map"][0], cfg["packet"]))
    rng = np.random.default_rng(0)
    w, xs = random_problem(p, rng, 10)
    model = g.CrossbarModel(p, 1)
    model.program(w)
    np.testing.assert_array_equal(model.estimate(model.mvm_batch(xs)), xs @ w)


def test_bench_accuracy_sweep_and_plot(tmp_path):
    from tilefab.bench import imc as bench

    grid, floor = bench.accuracy_grid(seeds=1)
    for levels in bench.ACC_LEVELS:
        errs = [grid[(levels, b)] for b in bench.ACC_ADC_BITS]
        assert errs[0] > 2 * errs[-1] and errs[-1] < 1.2 * floor[levels] + 0.01, levels
    # More levels map the weights more finely: the floor falls.
    floors = [floor[lv] for lv in bench.ACC_LEVELS]
    assert all(a > b for a, b in zip(floors, floors[1:]))
    png = tmp_path / "err.png"
    bench.plot(grid, str(png))
    assert png.stat().st_size > 1000


# --- ADC sharing: adc_share columns per ADC, digitized over adc_share phases ----------

SHARE_CASES = [{}, {"levels": 3, "slices": 1, "prog_noise": "proportional", "adc_bits": 0},
               {"cols": 8, "in_bits": 3, "adc_lo": -300, "adc_hi": 100}]


@pytest.mark.parametrize("kw", SHARE_CASES)
def test_golden_outputs_and_draws_do_not_depend_on_adc_share(kw):
    base = params(**kw)
    rng = np.random.default_rng(base.cols + base.slices)
    w, xs = random_problem(base, rng, 12)
    runs = {}
    for share in [d for d in range(1, base.cols + 1) if base.cols % d == 0]:
        model = g.CrossbarModel(base.with_(adc_share=share), seed=0xC0FFEE)
        model.program(w)
        runs[share] = (model.mvm_batch(xs), model.read_state.copy())
    y1, state1 = runs[1]
    for share, (y, state) in runs.items():
        np.testing.assert_array_equal(y, y1, err_msg=f"adc_share {share}")
        np.testing.assert_array_equal(state, state1, err_msg=f"adc_share {share}")
    # Every column's generator drew once per plane and vector.
    fresh = g.CrossbarModel(base, seed=0xC0FFEE).read_state
    for _ in range(len(xs) * base.in_bits):
        fresh = g.xorshift32(fresh)
    np.testing.assert_array_equal(state1, fresh)
    # Read noise is on: a model without it differs, so the draws matter.
    quiet = g.CrossbarModel(base.with_(read_gain=0, adc_share=2), seed=0xC0FFEE)
    quiet.program(w)
    assert not np.array_equal(quiet.mvm_batch(xs), y1)


def test_golden_phases_digitize_one_column_per_group():
    p = params(cols=6, adc_share=3, prog_gain=0, read_gain=0)
    assert [p.phase_columns(k).tolist() for k in range(3)] == [[0, 3], [1, 4], [2, 5]]
    model = g.CrossbarModel(p)
    model.program(np.ones((p.rows, p.cols), dtype=int))
    before = model.read_state.copy()
    vals = model.column_values(np.full(p.rows, -1), 2, p.phase_columns(1))
    assert vals.shape == (p.slices, 2)
    # Only the generators of the digitized columns stepped.
    stepped = before.copy()
    stepped[:, [1, 4]] = g.xorshift32(before[:, [1, 4]])
    np.testing.assert_array_equal(model.read_state, stepped)


@pytest.mark.parametrize("share", [1, 2, 3, 6])
def test_cycle_model_and_adc_count(share):
    p = params(adc_share=share)
    block = Crossbar(**p.hw_kwargs())
    block._MustUse__silence = True
    assert p.cycles_per_mvm == block.cycles_per_vector == p.in_bits * share
    assert p.latency == block.latency == p.in_bits * share + 3
    assert p.adcs == block.adcs == p.slices * p.cols // share
    assert p.macs_per_cycle == block.macs_per_cycle_limit == p.rows * p.cols / (
        p.in_bits * share)


@pytest.mark.parametrize("share", [0, 4, 7])
def test_adc_share_must_divide_cols(share):
    with pytest.raises(ValueError, match="adc_share"):
        params(adc_share=share)
    with pytest.raises(ValueError, match=r"^adc_share: .*(divide cols \(6\): one of 1, 2, 3, 6"
                                         r"|must be 1\.\.6)"):
        Crossbar(**(params().hw_kwargs() | {"adc_share": share}))


def test_config_adc_share_errors_name_the_field():
    with pytest.raises(ConfigError) as exc:
        _crossbar(_with("adc_share", 4))
    msg = str(exc.value)
    assert "tiles.default.adc_share" in msg and "a divisor of cols (6): one of 1, 2, 3, 6" in msg
    assert golden_params(_crossbar(_with("adc_share", 3))).adc_share == 3


def test_energy_model_accounts_for_adc_sharing():
    p = golden_params(_crossbar())
    one, shared = energy_per_mvm(p), energy_per_mvm(p.with_(adc_share=3))
    # Same conversions (and ADC, cell and shift-add energy) on a third of the ADCs;
    # the word lines are driven once per phase; the MVM takes three times as long.
    assert shared.conversions == one.conversions == p.in_bits * p.slices * p.cols
    assert (one.adcs, shared.adcs) == (p.slices * p.cols, p.slices * p.cols // 3)
    assert shared.conversions_per_adc == 3 * one.conversions_per_adc == 3 * p.in_bits
    for part in ("adc", "cell_read", "shift_add"):
        assert shared.per_mvm_pj[part] == pytest.approx(one.per_mvm_pj[part])
    assert shared.per_mvm_pj["dac"] == pytest.approx(3 * one.per_mvm_pj["dac"])
    assert shared.mvm_ns == pytest.approx(3 * one.mvm_ns)
    assert one.mvm_ns == pytest.approx(p.in_bits * (p.adc_bits + 1) * 1.0)


def test_shared_noise_ring_matches_golden_draws():
    # A ring of 3 generators, draws as a shared-ADC group makes them: B planes of the
    # head, then the ring turns; every generator's sequence is its golden sequence.
    gain, index, seed, planes, ring = g.noise_gain(0.4, 4), 9, 0x1234_5678, 4, 3
    dut = GaussianNoise(index=index, gain=gain, ring=ring)
    state = g.seed_states(seed, index, ring)
    want, got = [], []
    for _ in range(2):                       # two vectors
        for k in range(ring):
            for _ in range(planes):
                state[k] = g.xorshift32(state[k:k + 1])[0]
                want.append(int(g.scale_noise(g.irwin_hall(state[k:k + 1]), gain)[0]))

    async def bench(ctx):
        ctx.set(dut.seed, seed)
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        for _ in range(2):
            for _ in range(ring):
                for q in range(planes):
                    ctx.set(dut.next, 1)
                    ctx.set(dut.rotate, q == planes - 1)
                    got.append(ctx.get(dut.sample))
                    await ctx.tick()
                ctx.set(dut.next, 0)         # an idle cycle changes nothing
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want


def test_noise_seed_equal_to_a_salt_starts_from_the_salt():
    # seed ^ salt(g) == 0 is the one seed the linear start-state shortcut must catch.
    index, ring = 4, 2
    seed = int(g.salt(index + 1))
    dut = GaussianNoise(index=index, gain=g.noise_gain(1.0, 4), ring=ring)
    want = g.seed_states(seed, index, ring)
    assert want[1] == seed                   # the zero case: the salt itself
    want = g.xorshift32(want)
    got = []

    async def bench(ctx):
        ctx.set(dut.seed, seed)
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        for _ in range(ring):
            got.append(ctx.get(dut.sample))
            ctx.set(dut.next, 1)
            ctx.set(dut.rotate, 1)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    gain = g.noise_gain(1.0, 4)
    assert got == [int(v) for v in g.scale_noise(g.irwin_hall(want), gain)]
