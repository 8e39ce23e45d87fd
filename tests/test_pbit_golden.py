"""The p-bit golden model against the mathematics: PRNG, table, energies, Boltzmann."""

import numpy as np
import pytest

from tilefab.golden import pbit as g

AND_J = np.array([[0, -1, 2], [-1, 0, 2], [2, 2, 0]])
AND_H = np.array([1, 1, -2])
FMT = g.PBitFormat(w_bits=5, w_frac=0, h_bits=6, beta_bits=6, beta_frac=3,
                   lut_size=64, lut_step_frac=3, rand_bits=16)


def random_ising(n, rng, jmax=2, hmax=2):
    J = np.triu(rng.integers(-jmax, jmax + 1, (n, n)), 1)
    return J + J.T, rng.integers(-hmax, hmax + 1, n)


def test_xorshift32_matches_marsaglia():
    # Marsaglia (2003): x=1 -> 270369 -> 67634689 under (13, 17, 5).
    x = g.xorshift32(1)
    assert int(x) == 270369
    assert int(g.xorshift32(x)) == 67634689


def test_seeds_distinct_nonzero_and_streams_uncorrelated():
    s = g.pbit_seeds(7, 500)
    assert len(set(s)) == 500 and 0 not in s
    assert g.pbit_seeds(7, 10) == s[:10] and g.pbit_seeds(8, 10) != s[:10]
    x = np.array(s[:4], dtype=np.uint32)
    u = []
    for _ in range(20000):
        x = g.xorshift32(x)
        u.append(x >> np.uint32(16))
    u = np.array(u, dtype=np.float64)
    lag1 = np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]
    cross = np.corrcoef(u[:, 0], u[:, 1])[0, 1]
    # 20000 draws: standard error 0.007; a 1-bit-shift LFSR gives 0.5 at lag 1.
    assert abs(lag1) < 0.04 and abs(cross) < 0.04


def test_threshold_table_is_tanh_and_symmetric():
    lut = FMT.lut()
    assert lut[0] == 0 and np.all(np.diff(lut) >= 0)
    k = np.arange(FMT.lut_size)
    assert np.abs(lut / 2 ** 15 - np.tanh(k / 8)).max() <= 2 ** -16
    F = np.arange(-40, 41)
    for beta_q in (0, 3, 8, 21, 63):
        p = FMT.p_up(beta_q, F)
        assert np.allclose(p + p[::-1], 1.0)            # P(+1 | F) = P(-1 | -F)
        ideal = (1 + np.tanh(FMT.beta_value(beta_q) * F)) / 2
        # beta F lands on the table grid here (beta_frac = lut_step_frac, w_frac = 0),
        # so only the table rounding and the tanh = 1 saturation beyond 8 remain.
        assert np.abs(p - ideal).max() <= 2 ** -17 + (1 - np.tanh(8.0)) / 2


def test_energy_int_matches_float_and_flip_rule():
    rng = np.random.default_rng(3)
    J, h = random_ising(7, rng)
    m = rng.choice([-1, 1], 7)
    assert g.energy_int(J, h, m) == g.energy(J, h, m)
    for i in range(7):
        m2 = m.copy()
        m2[i] = -m2[i]
        F = J[i] @ m + h[i]
        assert g.energy_int(J, h, m2) - g.energy_int(J, h, m) == 2 * m[i] * F


def test_and_gate_ground_states_are_truth_table():
    S = g.all_states(3)
    E = np.array([g.energy(AND_J, AND_H, s) for s in S])
    ground = {tuple((S[k] > 0).astype(int)) for k in np.flatnonzero(E == E.min())}
    assert E.min() == -3
    assert ground == {(a, b, a & b) for a in (0, 1) for b in (0, 1)}


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_fixed_point_chain_stationary_is_boltzmann(beta):
    """The exact stationary law of the fixed-point sweep chain equals Boltzmann."""
    bq = FMT.beta_code(beta)
    pi, _ = g.stationary(g.sweep_matrix(FMT, AND_J, AND_H, bq, [0, 1, 2]))
    assert g.tv_distance(pi, g.boltzmann(AND_J, AND_H, beta)) < 1e-4
    rng = np.random.default_rng(11)
    J, h = random_ising(5, rng)
    pi, _ = g.stationary(g.sweep_matrix(FMT, J, h, bq, np.arange(5)))
    assert g.tv_distance(pi, g.boltzmann(J, h, beta)) < 1e-4


def test_simultaneous_neighbour_updates_are_not_boltzmann():
    """Negative control: one colour for coupled p-bits breaks detailed balance."""
    bq = FMT.beta_code(1.0)
    pi, _ = g.stationary(g.sweep_matrix(FMT, AND_J, AND_H, bq, [0, 0, 0]))
    assert g.tv_distance(pi, g.boltzmann(AND_J, AND_H, 1.0)) > 0.1


def _empirical(samples, n):
    idx = g.state_index(np.array([s for s, _ in samples])[:, :n])
    return np.bincount(idx, minlength=1 << n) / len(idx)


@pytest.mark.parametrize("case", ["and", "random5"])
def test_bit_exact_model_samples_boltzmann(case):
    beta, every, n_samples = 0.5, 3, 4000
    if case == "and":
        J, h, colours = AND_J, AND_H, np.arange(3)
    else:
        J, h = random_ising(5, np.random.default_rng(5), jmax=1, hmax=1)
        colours = np.arange(5)
    bq = FMT.beta_code(beta)
    P = g.sweep_matrix(FMT, J, h, bq, colours)
    _, lam = g.stationary(np.linalg.matrix_power(P, every))
    m = g.PBitMachine(FMT, J, h, colours, g.pbit_seeds(2, len(h)))
    m.run([(bq, 50)])                                    # burn-in
    res = m.run([(bq, every * n_samples)], sample_every=every)
    for s, e in res.samples[:50]:
        assert e == g.energy_int(J, h, s)                # tracked energy is exact
    p = g.boltzmann(J, h, beta)
    tv = g.tv_distance(_empirical(res.samples, len(h)), p)
    assert tv < g.tv_bound(p, n_samples, lam, z=3.0), (tv, lam)


def test_ideal_gibbs_samples_boltzmann():
    rng = np.random.default_rng(9)
    J, h = random_ising(4, rng, jmax=1, hmax=1)
    samples, _ = g.gibbs_ideal(J, h, 0.7, 20000, np.arange(4), rng, sample_every=2)
    emp = np.bincount(g.state_index(samples), minlength=16) / len(samples)
    p = g.boltzmann(J, h, 0.7)
    # Float chain: estimate lam from the quantized chain on the same problem (grid-exact).
    fmt = g.PBitFormat(w_bits=4, h_bits=4, beta_bits=8, beta_frac=7, lut_size=1024,
                       lut_step_frac=7, rand_bits=24)
    P = g.sweep_matrix(fmt, J, h, fmt.beta_code(0.7), np.arange(4))
    _, lam = g.stationary(P @ P)
    assert g.tv_distance(emp, p) < g.tv_bound(p, len(samples), lam, z=3.0)


def test_machine_best_state_and_clamps():
    rng = np.random.default_rng(4)
    J, h = random_ising(6, rng)
    colours = np.arange(6)
    frozen = np.array([1, 0, 0, 0, 0, 1], bool)
    state = np.array([1, -1, 1, -1, 1, -1])
    m = g.PBitMachine(FMT, J, h, colours, g.pbit_seeds(1, 6), state=state, frozen=frozen)
    res = m.run([(4, 30), (40, 30)], sample_every=1)
    assert res.state[0] == 1 and res.state[5] == -1
    assert all(s[0] == 1 and s[5] == -1 for s, _ in res.samples)
    energies = [e for _, e in res.samples]
    assert res.best_energy <= min(energies)
    assert res.best_energy == g.energy_int(J, h, res.best_state)
    assert res.update_cycles == 60 * 6 and res.updates == 60 * 4
