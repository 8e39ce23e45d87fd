"""PBitArray RTL on Verilator (cocotb): bit-exact against the golden model, Boltzmann
sampling, the AND gate's ground states and factoring semiprimes.

Three builds: a sparse random graph (config A), a dense 6-p-bit array (config B) and
the 4x4-bit multiplier used by ``tilefab pbit factor``.
"""


import numpy as np
import pytest
from tilefab.gen.pbit import driver, graph
from tilefab.gen.pbit.factor import (
    anneal_schedule,
    factor_array,
    factor_program,
)
from tilefab.golden import pbit as g
from tilefab.hw.pbit.array import PBitArray
from pbit_checks import check, random_on

from tilefab.configs import pbit_format

FACTOR_FMT = pbit_format()      # the shipped p-bit tile's formats

pytestmark = pytest.mark.sim

FMT_A = dict(w_bits=6, w_frac=1, h_bits=8, beta_bits=7, beta_frac=5, lut_size=32,
             lut_step_frac=2, rand_bits=14)
FMT_B = dict(w_bits=5, w_frac=0, h_bits=6, beta_bits=6, beta_frac=3, lut_size=64,
             lut_step_frac=3, rand_bits=16)
AND_J = np.array([[0, -1, 2], [-1, 0, 2], [2, 2, 0]])
AND_H = np.array([1, 1, -2])


def array_a():
    gr = graph.random_sparse(20, 5, 40, np.random.default_rng(2024))
    return PBitArray(neighbours=gr.neighbours(), max_degree=5, n_colours=8,
                     seeds=g.pbit_seeds(11, 20), word_bits=8, sched_depth=4, **FMT_A), gr


def array_b():
    return PBitArray.dense(n=6, n_colours=6, seeds=g.pbit_seeds(12, 6), **FMT_B)


def test_sparse_array_bit_exact_with_backpressure():
    array, gr = array_a()
    rng = np.random.default_rng(5)
    nb = gr.neighbours()
    J, h = random_on(nb, rng, -32, 31, -40, 40)
    col = graph.dsatur(nb)
    k = int(col.max()) + 1
    state = rng.choice([-1, 1], 20)
    clamp = np.zeros(20, bool)
    clamp[[3, 17]] = True
    J2, h2 = random_on(nb, rng, -8, 8, -5, 5)
    ops = [driver.Program(J, h, col, state=state),
           driver.Run([(2, 300), (20, 300), (90, 250), (127, 200)], k, sample_every=37),
           driver.Read(),
           driver.Program(J2, h2, col, clamp=clamp, state=-state),
           driver.Run([(40, 200)], k + 1, sample_every=1),      # an empty colour class
           driver.Run([(64, 1)], k)]
    results = check(array, ops, "pbit_sparse_a", in_stall=0.3, out_stall=0.4, seed=3)
    assert results[3].update_cycles == k
    assert np.all(results[2].state[[3, 17]] == -state[[3, 17]])
    # sampling every sweep with backpressure must stall, never drop or reorder
    assert results[2].cycles > 4 + 200 * (k + 1) and len(results[2].samples) == 200


def test_dense_array_bit_exact_and_boltzmann():
    array = array_b()
    rng = np.random.default_rng(8)
    J = np.triu(rng.integers(-1, 2, (6, 6)), 1)
    J = J + J.T
    h = rng.integers(-1, 2, 6)
    beta, every, n_samples = 0.5, 3, 3000
    bq = g.PBitFormat(**FMT_B).beta_code(beta)
    # AND gate on p-bits 0..2; p-bits 3..5 uncoupled (their own colour).
    Jand = np.zeros((6, 6), dtype=np.int64)
    Jand[:3, :3] = AND_J
    hand = np.r_[AND_H, 0, 0, 0]
    ops = [driver.Program(J, h, np.arange(6), state=np.ones(6)),
           driver.Run([(bq, 50), (bq, every * n_samples)], 6, sample_every=every),
           driver.Program(Jand, hand, np.array([0, 1, 2, 3, 3, 3])),
           driver.Run([(bq, 50), (bq, every * n_samples)], 4, sample_every=every),
           driver.Run([(g.PBitFormat(**FMT_B).beta_code(1.5), 4000)], 4, sample_every=4)]
    results = check(array, ops, "pbit_dense_b", out_stall=0.2, seed=4)
    fmt = g.PBitFormat(**FMT_B)
    for res, (Jx, hx, cx, nx) in zip(results[:2], [(J, h, np.arange(6), 6),
                                                    (AND_J, AND_H, np.arange(3), 3)]):
        samples = res.samples[50 // every:]
        assert len(samples) == n_samples
        _, lam = g.stationary(np.linalg.matrix_power(g.sweep_matrix(fmt, Jx, hx, bq, cx),
                                                     every))
        idx = g.state_index(np.array([s for s, _ in samples])[:, :nx])
        emp = np.bincount(idx, minlength=1 << nx) / len(idx)
        p = g.boltzmann(Jx, hx, beta)
        tv = g.tv_distance(emp, p)
        assert tv < g.tv_bound(p, n_samples, lam, z=3.0), (tv, lam)
    # beta = 1.5: the AND gate sits in its four ground states (the truth table), all visited
    rows = {}
    for s, _ in results[2].samples:
        key = tuple((s[:3] > 0).astype(int))
        rows[key] = rows.get(key, 0) + 1
    valid = {(a, b, a & b) for a in (0, 1) for b in (0, 1)}
    assert set(rows) >= valid
    assert sum(rows[v] for v in valid) / len(results[2].samples) > 0.95
    assert results[2].update_cycles == 4000 * 4


def test_multiplier_bit_exact_and_factors_semiprimes():
    """The 4x4 multiplier array run backwards, bit-exact, on three clamped products."""
    array, _ = factor_array(4, 4, FACTOR_FMT)
    ops, mults, n_runs = [], [], 3
    for N in (143, 77, 35):
        prog, mult = factor_program(N, 4, 4)
        k = int(prog.colours.max()) + 1
        ops += [prog] + [driver.Run(anneal_schedule(FACTOR_FMT, 1000, 0.05, 1.0), k)] * n_runs
        mults.append((N, mult))
    results = check(array, ops, "pbit_mult4x4", in_stall=0.2, seed=5)
    for k, (N, mult) in enumerate(mults):
        found = set()
        for r in results[k * n_runs:(k + 1) * n_runs]:
            a, b = mult.value(r.best_state, mult.a), mult.value(r.best_state, mult.b)
            if a * b == N:
                found.add(frozenset((a, b)))
        assert found and all(a * b == N and 1 not in (a, b) for a, b in map(sorted, found)), N
