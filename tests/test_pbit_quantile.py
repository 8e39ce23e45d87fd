"""The quantile rule (``z_bits`` > 0) of the parallel p-bit array: its golden model
against the Gibbs probability, the RTL bit-exact against it with backpressure on two
builds (p-bits with datapaths of their own, and colour groups sharing them), a
Boltzmann check of the RTL's samples, and the parameter errors.
"""

import math

import numpy as np
import pytest

from tilefab.gen.pbit import driver, graph
from tilefab.golden import pbit as g
from tilefab.hw.pbit.array import PBitArray
from tilefab.hw.pbit.lanes import PBitLanes
from pbit_checks import check, random_on

FMT_A = dict(w_bits=6, w_frac=1, h_bits=8, beta_bits=7, beta_frac=5, lut_size=32,
             lut_step_frac=2, rand_bits=14, z_bits=10)
FMT_B = dict(w_bits=5, w_frac=0, h_bits=6, beta_bits=6, beta_frac=3, lut_size=64,
             lut_step_frac=3, rand_bits=16, z_bits=6)


@pytest.mark.parametrize("z_bits,beta_frac,w_frac", [(6, 3, 0), (10, 6, 0), (12, 5, 1),
                                                     (8, 8, 3)])
def test_quantile_rule_is_gibbs_rounded_to_its_bins(z_bits, beta_frac, w_frac):
    fmt = g.PBitFormat(w_bits=8, w_frac=w_frac, h_bits=10, beta_bits=8, beta_frac=beta_frac,
                       z_bits=z_bits)
    q = fmt.quantiles()
    assert np.all(np.diff(q) >= 0) and np.array_equal(q, -q[::-1])   # odd, increasing
    F = np.arange(-600, 601)
    for beta_q in (1, 3, 17, 64, 200, 255):
        t = fmt.field_threshold(beta_q, np.arange(1 << z_bits))
        assert np.all(np.diff(t) >= 0)
        ideal = (1 + np.tanh(beta_q * 2.0 ** -beta_frac * F * 2.0 ** -w_frac)) / 2
        p = fmt.p_up(beta_q, F)
        # the bins (2^-(z+1)) and the table's 2^-10 steps in beta F (slope <= 1/2)
        assert np.abs(p - ideal).max() <= 2.0 ** -(z_bits + 1) + 2.0 ** -11 + 1e-12
        # p_up is the count of bins the machine's comparison takes
        assert np.array_equal(p * 2 ** z_bits, (t[None, :] < F[:, None]).sum(axis=1))


def test_quantile_rule_golden_draws_follow_p_up():
    fmt = g.PBitFormat(**FMT_B)
    rng = np.random.default_rng(3)
    n = 4000
    J = np.zeros((n, n))
    h = rng.integers(-8, 8, n)
    m = g.PBitMachine(fmt, J, h, np.zeros(n, int), g.pbit_seeds(5, n))
    beta_q = 6
    ups = np.zeros(n)
    for _ in range(50):
        m.run([(beta_q, 1)], 1)
        ups += m.m > 0
    p = fmt.p_up(beta_q, h)
    # 50 x 4000 decisions: the mean error is well inside 4 standard errors
    err = ups / 50 - p
    assert abs(err.mean()) < 4 * math.sqrt(0.25 / (50 * n))
    assert np.abs(err).max() < 0.3


@pytest.mark.sim
def test_quantile_array_bit_exact_with_backpressure():
    gr = graph.random_sparse(20, 5, 40, np.random.default_rng(2024))
    nb = gr.neighbours()
    array = PBitArray(neighbours=nb, max_degree=5, n_colours=8, seeds=g.pbit_seeds(11, 20),
                      word_bits=8, sched_depth=4, **FMT_A)
    rng = np.random.default_rng(5)
    J, h = random_on(nb, rng, -32, 31, -40, 40)
    col = graph.dsatur(nb)
    k = int(col.max()) + 1
    state = rng.choice([-1, 1], 20)
    clamp = np.zeros(20, bool)
    clamp[[3, 17]] = True
    ops = [driver.Program(J, h, col, state=state),
           driver.Run([(2, 200), (20, 200), (90, 150), (127, 100)], k, sample_every=37),
           driver.Read(),
           driver.Program(J, h, col, clamp=clamp, state=-state),
           driver.Run([(40, 100)], k + 1, sample_every=1),      # an empty colour class
           driver.Run([(64, 1)], k),
           # one colour class: a cycle between sweeps while the thresholds are made
           driver.Program(np.zeros_like(J), h, np.zeros(20, int)),
           driver.Run([(30, 7), (60, 5)], 1)]
    results = check(array, ops, "pbit_quantile_a", in_stall=0.3, out_stall=0.4, seed=3)
    assert results[3].update_cycles == k
    L = g.energy_stages(20)
    assert results[3].cycles == g.PARALLEL_RUN_OVERHEAD + 2 * L + max(0, k - 2 - L) + k
    assert results[4].cycles == g.PARALLEL_RUN_OVERHEAD + 2 * L + 12 + 11
    assert np.all(results[2].state[[3, 17]] == -state[[3, 17]])
    assert len(results[2].samples) == 100


@pytest.mark.sim
def test_quantile_shared_groups_bit_exact_and_boltzmann():
    # a 3 x 3 torus: DSATUR colours, one table and product per colour group
    side = 3
    nbrs = [sorted({((r + dr) % side) * side + (c + dc) % side
                    for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0))})
            for r in range(side) for c in range(side)]
    n = side * side
    col = graph.dsatur(nbrs)
    k = int(col.max()) + 1
    array = PBitArray(neighbours=nbrs, max_degree=4, n_colours=4, seeds=g.pbit_seeds(21, n),
                      word_bits=16, sched_depth=2, share=graph.colour_groups(col), **FMT_B)
    rng = np.random.default_rng(9)
    J, h = random_on(nbrs, rng, -2, 2, -1, 1)
    fmt = g.PBitFormat(**FMT_B)
    beta = 0.75
    bq = fmt.beta_code(beta)
    every, n_samples, burn = 2, 6000, 40
    ops = [driver.Program(J, h, col, state=np.ones(n)),
           driver.Run([(bq, burn), (bq, every * n_samples)], k, sample_every=every),
           driver.Run([(3, 30), (40, 40)], k)]
    results = check(array, ops, "pbit_quantile_b", in_stall=0.2, out_stall=0.3, seed=4)
    L = g.energy_stages(n)
    assert results[1].cycles == g.PARALLEL_RUN_OVERHEAD + 2 * L + max(0, k - 2 - L) + 70 * k
    samples = results[0].samples[burn // every:]
    assert len(samples) == n_samples
    _, lam = g.stationary(np.linalg.matrix_power(g.sweep_matrix(fmt, J, h, bq, col), every))
    idx = g.state_index(np.array([s for s, _ in samples]))
    emp = np.bincount(idx, minlength=1 << n) / len(idx)
    # the samples follow Boltzmann at beta (the rule's rounding is far below the bound)
    p = g.boltzmann(J, h, beta)
    assert g.tv_distance(emp, p) < g.tv_bound(p, n_samples, lam, z=3.0)


def test_quantile_rule_parameter_errors():
    nb = [[1], [0]]
    with pytest.raises(ValueError, match="z_bits"):
        PBitArray(neighbours=nb, max_degree=1, n_colours=2, seeds=[1, 2], rand_bits=8,
                  z_bits=9)
    with pytest.raises(ValueError, match="beta_bits"):
        PBitArray(neighbours=nb, max_degree=1, n_colours=2, seeds=[1, 2], beta_bits=12,
                  z_bits=6)
    with pytest.raises(ValueError, match="z_bits.*lane array"):
        PBitLanes(n=4, lanes=2, edge_depth=4, max_degree=2, n_colours=2,
                  seeds=[1, 2, 3, 4], z_bits=6)


def test_tile_z_bits_rules_name_the_field():
    from tilefab.hw.tiles.pbit import PBitTileParams
    with pytest.raises(ValueError, match="z_bits: 6 is not allowed, must be 0 with arch lanes"):
        PBitTileParams(data_bits=32, addr_bits=12, arch="lanes", n=8, z_bits=6)
    with pytest.raises(ValueError, match="z_bits: 12 is not allowed, must be 0..10"):
        PBitTileParams(data_bits=32, addr_bits=12, arch="parallel", n=8, rand_bits=10,
                       z_bits=12)
    p = PBitTileParams(data_bits=32, addr_bits=12, arch="parallel", n=8, z_bits=8)
    assert p.array().config()["z_bits"] == 8
