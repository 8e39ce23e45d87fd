"""Crossbar RTL on Verilator (cocotb): bit-exact against the golden model with noise on
and random backpressure, exact integer MVM, noise statistics, ADC clipping, throughput."""

import math
from pathlib import Path

import numpy as np
import pytest
from tilefab.gen.imc.tile import golden_params
from tilefab.golden import imc as g
from tilefab.verif.tb_crossbar import run_on_verilator

pytestmark = pytest.mark.sim

# Two noisy configurations that differ in every dimension the RTL is generated over:
# sliced power-of-two levels vs one slice of 3 levels, independent vs proportional
# programming noise, symmetric vs asymmetric fractional ADC range.
CONFIGS = {
    "sliced": g.CrossbarParams(rows=8, cols=6, levels=4, slices=2, in_bits=4, adc_bits=6,
                               adc_lo=-8 * 16, adc_hi=12 * 16, frac_bits=4,
                               prog_gain=g.noise_gain(0.3, 4), prog_noise="independent",
                               read_gain=g.noise_gain(0.5, 4)),
    "ternary": g.CrossbarParams(rows=5, cols=7, levels=3, slices=1, in_bits=3, adc_bits=5,
                                adc_lo=-52, adc_hi=34, frac_bits=3,
                                prog_gain=g.noise_gain(0.1, 3), prog_noise="proportional",
                                read_gain=g.noise_gain(0.25, 3)),
}
# The same two with one ADC per group of columns: "sliced" with one ADC per 3 of its 6
# columns, and "ternary" widened to 8 columns with one ADC per 4.
SHARED = {
    "sliced_share3": CONFIGS["sliced"].with_(adc_share=3),
    "ternary_share4": CONFIGS["ternary"].with_(cols=8, adc_share=4),
}


def random_sessions(p, rng, n_sessions, n_vectors):
    lo, hi = p.x_range
    return [{"noise_seed": int(rng.integers(1 << 32)),
             "weights": rng.integers(-p.w_max, p.w_max + 1, (p.rows, p.cols)),
             "inputs": rng.integers(lo, hi + 1, (n_vectors, p.rows))}
            for _ in range(n_sessions)]


def run(p, sessions, **kw):
    return run_on_verilator(p, sessions, test_module="tilefab.verif.tb_crossbar_check", **kw)


@pytest.mark.parametrize("name", sorted(CONFIGS) + sorted(SHARED))
def test_bit_exact_with_noise_and_backpressure(name):
    p = {**CONFIGS, **SHARED}[name]
    rng = np.random.default_rng(len(name))
    sessions = random_sessions(p, rng, 3, 25)
    # The testbench asserts every output against CrossbarModel; check it saw them all
    # and that the noise really changed the results (otherwise "noise on" is vacuous).
    rec = run(p, sessions, stall_in=0.3, stall_out=0.4, stim_seed=7)
    assert [len(r["outputs"]) for r in rec] == [25, 25, 25]
    quiet = g.CrossbarModel(p.with_(prog_gain=0, read_gain=0), 0)
    quiet.program(sessions[0]["weights"])
    clean = [quiet.mvm(x).tolist() for x in sessions[0]["inputs"]]
    assert clean != rec[0]["outputs"]


def test_noise_off_enough_adc_bits_gives_exact_integer_mvm():
    from tilefab.gen.config import load, tile_params

    # No noise, one ADC step per level over a column's whole range [-18, 18].
    cfg = load(Path(__file__).parent.parent / "examples" / "imc" / "crossbar_exact.yaml")
    p = golden_params(tile_params(cfg["tile_map"][0], cfg["packet"]))
    assert p.prog_gain == p.read_gain == 0 and p.adc_hi - p.adc_lo == 63 << p.frac_bits
    rng = np.random.default_rng(3)
    sessions = random_sessions(p, rng, 1, 30)
    rec = run(p, sessions, stall_in=0.2, stall_out=0.2)
    est = g.estimate(p, np.array(rec[0]["outputs"]))
    np.testing.assert_array_equal(est, sessions[0]["inputs"] @ sessions[0]["weights"])


# Noise statistics through the RTL: an ADC of 2**-6-level steps wide enough that the
# codes are the analog values, and inputs that isolate the noise terms.
STATS = g.CrossbarParams(rows=8, cols=16, levels=8, slices=1, in_bits=2, adc_bits=12,
                         adc_lo=-2048, adc_hi=2047, frac_bits=6,
                         prog_gain=g.noise_gain(0.05, 6), prog_noise="proportional",
                         read_gain=g.noise_gain(0.1, 6))


def _sigma_bound(n):
    return 5 * math.sqrt(1.7 / (4 * n))   # 5 standard errors, Irwin-Hall kurtosis


def test_noise_statistics_match_configured_sigma():
    p, rng = STATS, np.random.default_rng(11)
    n_zero, repeats, n_prog = 48, 16, 4
    sessions = [{"noise_seed": 99, "weights": np.zeros((p.rows, p.cols), dtype=int),
                 "inputs": np.zeros((n_zero, p.rows), dtype=int)}]
    onehot = np.repeat(-np.eye(p.rows, dtype=int), repeats, axis=0)
    for _ in range(n_prog):
        sessions.append({"noise_seed": int(rng.integers(1 << 32)),
                         "weights": np.full((p.rows, p.cols), 7), "inputs": onehot})
    rec = run(p, sessions)
    two = 1 << p.frac_bits
    plane_w2 = sum(w * w for _, w in g.CrossbarModel(p).planes())   # 1 + 4
    read_sd = g.noise_std(p.read_gain)

    # Read noise: zero weights and inputs leave Y = sum_p w_p n_p + adc_lo.
    y = np.array(rec[0]["outputs"]).ravel() - p.adc_lo
    sd = y.std() / math.sqrt(plane_w2)
    assert abs(read_sd / two - 0.1) < 0.002
    assert abs(sd / read_sd - 1) < _sigma_bound(y.size), (sd, read_sd)
    assert abs(y.mean()) < 5 * read_sd * math.sqrt(plane_w2 / y.size)

    # Programming noise: x = -e_i reads row i; Y = -gd + read noise + adc_lo. Averaging
    # the repeats leaves gd plus a known read-noise variance, which is subtracted.
    dev = []
    for r in rec[1:]:
        y = -(np.array(r["outputs"]) - p.adc_lo).reshape(p.rows, repeats, p.cols)
        dev.append(y.mean(axis=1) - 7 * two)
    dev = np.concatenate(dev).ravel()
    var = dev.var() - read_sd ** 2 * plane_w2 / repeats
    want = g.noise_std(p.prog_gain, 7)
    assert abs(want / two - 0.05 * 7) < 0.005
    assert abs(math.sqrt(var) / want - 1) < _sigma_bound(dev.size), (math.sqrt(var), want)
    assert abs(dev.mean()) < 5 * want / math.sqrt(dev.size)


def test_adc_clipping_in_rtl():
    # The "sliced" ADC range, [-8, 12] levels, is narrower than a column of 8 rows
    # of 3 levels: all-ones planes on all-max weights clip at the top code.
    p = CONFIGS["sliced"]
    rng = np.random.default_rng(5)
    sessions = random_sessions(p, rng, 1, 20)
    sessions[0]["weights"] = np.full((p.rows, p.cols), p.w_max)
    sessions[0]["inputs"][:4] = -1      # every bit-plane all ones
    sessions[0]["inputs"][4:8] = 0      # every column sum is noise only: mid-range
    rec = run(p, sessions, stall_in=0.2, stall_out=0.3)
    y = np.array(rec[0]["outputs"])
    top = (1 << p.adc_bits) - 1
    assert np.all(y[:4] == -top * (1 + p.levels))
    assert np.all(np.abs(y[4:8]) < top * (1 + p.levels))


@pytest.mark.parametrize("share", [1, 2, 6])
def test_throughput_is_one_bit_plane_per_cycle(share):
    p = CONFIGS["sliced"].with_(adc_share=share)
    rng = np.random.default_rng(9)
    sessions = random_sessions(p, rng, 1, 32)
    rec = run(p, sessions)
    xs, ys = rec[0]["cycles"]["x"], rec[0]["cycles"]["y"]
    gaps = np.diff(ys)
    assert np.all(gaps == p.cycles_per_mvm), gaps
    assert p.cycles_per_mvm == p.in_bits * share
    macs_per_cycle = p.rows * p.cols * (len(ys) - 1) / (ys[-1] - ys[0])
    assert macs_per_cycle == p.macs_per_cycle
    # The first vector meets an idle array: its result comes after the stated latency.
    assert ys[0] - xs[0] == p.latency, (xs[0], ys[0])


def test_rtl_outputs_do_not_depend_on_adc_share():
    # The same sessions (noise on) on three builds of one array: one ADC per column,
    # per 2 columns and per slice; each is checked against the golden model in the
    # testbench, and the three agree bit for bit.
    base = CONFIGS["sliced"]
    rng = np.random.default_rng(17)
    sessions = random_sessions(base, rng, 2, 12)
    outs = {share: [r["outputs"] for r in run(base.with_(adc_share=share), sessions,
                                              stall_in=0.2, stall_out=0.3, stim_seed=share)]
            for share in (1, 2, 6)}
    assert outs[1] == outs[2] == outs[6]
    assert [len(o) for o in outs[1]] == [12, 12]


EXAMPLES = Path(__file__).parent.parent / "examples" / "imc"


def test_cli_mvm_runs_rtl_and_agrees_with_golden(capsys):
    from tilefab.gen.config import load, tile_params

    from tilefab.cli import main

    cfg = load(EXAMPLES / "crossbar_8x6.yaml")
    assert golden_params(tile_params(cfg["tile_map"][0], cfg["packet"])) == CONFIGS["sliced"]
    assert main(["imc", "mvm", str(EXAMPLES / "crossbar_8x6.yaml"), "--seed", "4",
                 "--vectors", "6", "--stall-in", "0.2", "--stall-out", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "RTL = golden: yes, 6 vectors x 6 outputs bit-exact" in out
    assert ("error vs ideal" in out
            and "limit 1 x rows*cols/(input_bits*adc_share) = 12.00" in out)


def test_cli_mvm_tiles_a_large_w_over_two_tiles(capsys):
    from tilefab.cli import main

    cfg = Path(__file__).parent.parent / "examples" / "crossbar2x1.yaml"
    assert main(["imc", "mvm", str(cfg), "--inputs", "13", "--outputs", "11",
                 "--vectors", "3", "--stall-in", "0.3", "--stall-out", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "3 vectors x 11 outputs bit-exact, 4 block(s) over tiles (0, 0) (1, 0)" in out
    with pytest.raises(SystemExit) as exc:
        main(["imc", "mvm", str(cfg), "--vectors", "0"])
    assert exc.value.code == 2
    assert "--vectors must be an integer 1..65536" in capsys.readouterr().err


def test_cli_mvm_on_a_shared_adc_tile(tmp_path, capsys):
    # The whole path (runtime, NoC, tile, pyverilator) with one ADC per 3 columns.
    from tilefab.cli import main

    text = (EXAMPLES / "crossbar_8x6.yaml").read_text()
    assert "read_sigma: 0.5}" in text
    cfg = tmp_path / "crossbar_8x6_share3.yaml"
    cfg.write_text(text.replace("name: crossbar_8x6", "name: crossbar_8x6_share3")
                   .replace("read_sigma: 0.5}", "read_sigma: 0.5, adc_share: 3}"))
    assert main(["imc", "mvm", str(cfg), "--seed", "4", "--vectors", "6",
                 "--stall-in", "0.2", "--stall-out", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "ADC 6 bit [-8, 12] shared by 3 columns" in out
    assert "RTL = golden: yes, 6 vectors x 6 outputs bit-exact" in out
    assert "limit 1 x rows*cols/(input_bits*adc_share) = 4.00" in out
