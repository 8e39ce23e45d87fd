"""Factoring: widths and cases that cover every factorization, trivial N answered without
annealing, restarts until found or a budget runs out, errors for bad N (golden backend)."""

from math import isqrt

import numpy as np
import pytest
from tilefab.gen.errors import ConfigError
from tilefab.gen.pbit import factor
from tilefab.gen.pbit import tile as pbit_tile
from tilefab.verif.runtime import _GoldenTile

from tilefab import Fabric
from tilefab.cli import main

HETERO = "examples/hetero3x3.yaml"      # a 64-p-bit lanes tile
LANES128 = {"name": "pbit_f128", "mesh": {"cols": 1, "rows": 1},
            "packet": {"data_bits": 64, "addr_bits": 12},
            "tiles": {"default": {"kind": "pbit", "arch": "lanes", "n": 128, "lanes": 16,
                                  "edge_depth": 512, "max_degree": 16, "n_colours": 8,
                                  "w_bits": 5, "h_bits": 7, "beta_frac": 6}}}


def _factorizations(N):
    return [(p, N // p) for p in range(2, isqrt(N) + 1) if N % p == 0]


def test_default_widths_hold_every_factorization():
    for N in range(4, 4097):
        L = N.bit_length()
        na, nb = factor.factor_widths(N)
        assert na <= (L + 1) // 2 and nb <= L - 1, N
        for p, q in _factorizations(N):
            assert p < 1 << na and q < 1 << nb, (N, p, q, na, nb)
    # the old near-equal widths could not hold 17 x 59 or 31 x 37
    assert factor.factor_widths(1003) == (5, 9) and factor.factor_widths(1147) == (6, 9)


def test_cases_cover_every_factorization_with_their_clamps():
    for N in range(9, 5001, 2):
        if factor.trivial(N) is not None:
            continue
        cases = factor.factor_cases(N)
        for p, q in _factorizations(N):
            hits = [c for c in cases if c.p_range[0] <= p <= c.p_range[1]
                    and c.q_range[0] <= q <= c.q_range[1]]
            assert len(hits) == 1, (N, p, q, cases)
            c = hits[0]
            assert p < 1 << c.na and q < 1 << c.nb
            for reg, bit, v in c.fixed:
                assert ((p if reg == "a" else q) >> bit) & 1 == v, (N, p, q, c)


def test_trivial_N_answered_without_annealing():
    fab = Fabric(HETERO, backend="golden")
    for N, status, a, b in [(2, "prime", None, None), (3, "prime", None, None),
                            (97, "prime", None, None), (65521, "prime", None, None),
                            (4, "even", 2, 2), (1000, "even", 2, 500),
                            (49, "square", 7, 7), (1 << 30, "even", 2, 1 << 29),
                            (10403 ** 2, "square", 10403, 10403)]:
        r = fab.factor(N)
        assert (r.status, r.a, r.b, r.runs, r.sweeps) == (status, a, b, 0, 0), N
        assert not r.annealed
    assert fab._pbit_history == {}
    assert factor.is_prime(2 ** 31 - 1) and not factor.is_prime(3215031751)


@pytest.mark.parametrize("N", [1, 0, -7, 3.0, True, "15", None])
def test_bad_N_is_a_clear_error(N):
    with pytest.raises(ConfigError, match=r"N: .* is not allowed, must be an integer >= 2"):
        Fabric(HETERO, backend="golden").factor(N)


def test_cli_trivial_and_bad_N(capsys):
    assert main(["pbit", "factor", "65521"]) == 0
    assert "65521 is prime (no annealing)" in capsys.readouterr().out
    assert main(["pbit", "factor", "1024", "--backend", "golden"]) == 0
    assert "1024 = 2 x 512  (even, no annealing)" in capsys.readouterr().out
    assert main(["pbit", "factor", "1", "--backend", "golden"]) == 2
    assert "N: 1 is not allowed, must be an integer >= 2" in capsys.readouterr().err


@pytest.mark.parametrize("N,p,q", [(1003, 17, 59), (3 * 4099, 3, 4099), (437, 19, 23)])
def test_defaults_factor_unbalanced_semiprimes(N, p, q, capsys):
    assert main(["pbit", "factor", str(N), "--backend", "golden"]) == 0
    out = capsys.readouterr().out
    assert f"{N} = {p} x {q}  on the lanes p-bit tile (0, 0)" in out
    assert "multipliers run backwards: runs" in out


def test_1147_factors_with_the_defaults_on_the_runtime():
    # 31 x 37: the smaller factor's case is 5x7 bits; 6x6 holds no factor pair
    fab = Fabric(LANES128, backend="golden")
    r = fab.factor(1147, seed=3)
    assert r.found and (r.a, r.b) == (31, 37) and r.status == "factored"
    assert r.cases == ("3x8", "4x7", "5x7") and r.sweeps == r.runs * 1000
    assert r.seconds > 0 and r.cycles > 0


def test_budget_exhaustion_is_reported(capsys):
    fab = Fabric(LANES128, backend="golden")
    r = fab.factor(437, sweeps=5, budget_sweeps=10)
    assert (r.found, r.status, r.runs, r.sweeps) == (False, "not found", 2, 10)
    assert r.stopped == "budget_sweeps=10" and r.a is None
    r = fab.factor(437, sweeps=5, budget_seconds=1e-9)
    assert (r.found, r.runs, r.stopped) == (False, 1, "budget_seconds=1e-09")
    r = fab.factor(437, sweeps=5, runs=3)
    assert (r.found, r.runs, r.stopped) == (False, 3, "runs=3 restarts")
    assert main(["pbit", "factor", "437", "--backend", "golden", "--sweeps", "5",
                 "--budget-sweeps", "15"]) == 1
    out = capsys.readouterr().out
    assert "437: no factorization found, budget budget_sweeps=15 ran out" in out
    assert "runs 3 (restarts of 5 sweeps), sweeps 15" in out
    with pytest.raises(ConfigError, match="budget_sweeps: 4 is not allowed, must be an "
                                          "integer >= 5"):
        fab.factor(437, sweeps=5, budget_sweeps=4)
    with pytest.raises(ConfigError, match="budget_seconds: 0 is not allowed"):
        fab.factor(437, budget_seconds=0)


def test_restarts_on_the_golden_tile_equal_a_replay_of_the_history():
    fab = Fabric(LANES128, backend="golden")
    fab.anneal(np.array([[0, 1], [1, 0]]), sweeps=20, seed=2)      # earlier job on the tile
    fab.factor(437, sweeps=30, runs=3, seed=5)
    t = fab.tiles_of("pbit")[0]
    history = fab._pbit_history[t.xy]
    want = pbit_tile.golden_results(t.params, history)
    gold = _GoldenTile(t.params, history[:2])
    for k in range(3):
        got = gold.feed(history[2 + 2 * k: 4 + 2 * k])
        w = want[1 + k]
        assert (got.state == w.state).all() and (got.best_state == w.best_state).all()
        assert (got.energy, got.best_energy, got.cycles) == (w.energy, w.best_energy,
                                                            w.cycles)


def test_semiprimes_are_seeded_and_unbalanced_too():
    a = factor.semiprimes(12, 30, np.random.default_rng(4))
    assert a == factor.semiprimes(12, 30, np.random.default_rng(4)) and len(set(a)) == 30
    for N, p, q in a:
        assert N.bit_length() == 12 and p * q == N and p <= q
        assert factor.is_prime(p) and factor.is_prime(q)
    assert any(4 * p < q for _, p, q in a) and any(2 * p > q for _, p, q in a)


@pytest.mark.sim
def test_factor_on_the_rtl_equals_the_golden_model():
    r = Fabric(LANES128).factor(437, seed=2)
    assert r.found and (r.a, r.b) == (19, 23) and r.golden_ok


def test_a_multiplier_too_big_for_the_tile_names_the_limit():
    with pytest.raises(ConfigError, match=r"N: factoring 437 needs a 4x6 multiplier of 70 "
                                          r"p-bits; the p-bit tile at \(1, 2\) has n = 64"):
        Fabric(HETERO, backend="golden").factor(437)
