"""Time-to-target bench: targets, restart sequences on the bit-exact model, the peer's
batching, and the sweep-count search."""

import itertools
import math

import numpy as np
import pytest

from tilefab.configs import pbit_format
from tilefab.gen.pbit import graph, maxcut
from tilefab.bench import pbit_ttt as ttt
from tilefab.cli import main


def _graph(n=14, seed=3):
    gr = graph.random_sparse(n, 4, 2 * n, np.random.default_rng(seed))
    gr.name = f"rand{n}"
    return gr


def _max_cut(gr) -> int:
    best = 0
    for bits in itertools.product((0, 1), repeat=gr.n - 1):
        side = np.array((0,) + bits)
        best = max(best, int(gr.weights[side[gr.edges[:, 0]] != side[gr.edges[:, 1]]].sum()))
    return best


def test_target_cut():
    assert ttt.target_cut(564, 0.995) == 562        # 561.18 rounds up
    assert ttt.target_cut(564, 1.0) == 564
    assert ttt.target_cut(200, 0.995) == 199        # exactly 199.0


@pytest.mark.parametrize("arch", ["parallel", "lanes"])
def test_restart_sequences_replay_the_build(arch):
    """Every seed's runs are consecutive runs of one machine (spins and generators carry
    on), the last and only the last reaches the target, and each costs its cycles plus
    the records at the given clock."""
    gr = _graph()
    best = _max_cut(gr)
    prep = maxcut.prepare(gr, pbit_format(), arch=arch, lanes=4, fields="incremental")
    spc = 1 / 50e6
    pt = ttt.pbit_point(prep, 20, best, seeds=4, max_runs=6, seconds_per_cycle=spc)
    total_w = int(gr.weights.sum())
    extra = 2 * -(-gr.n // 32) + 5
    assert len(pt.seqs) == 4
    for k, seq in enumerate(pt.seqs, start=1):
        mach = prep.machine(k)
        for i, (t, cut) in enumerate(zip(seq.times, seq.cuts)):
            r = mach.run(prep.schedule(20), prep.n_colours)
            assert cut == (total_w - r.best_energy) // 2 <= best
            assert t == pytest.approx((r.cycles + extra) * spc)
            assert (cut >= best) == (seq.hit and i == len(seq.times) - 1)
        assert seq.hit or len(seq.times) == 6
        assert seq.total == (sum(seq.times) if seq.hit else math.inf)
    assert pt.hits >= 1                      # 20 sweeps find a 14-node optimum sometimes
    assert pt.median == float(np.median([s.total for s in pt.seqs]))


def test_peer_batches_only_unfinished_seeds(monkeypatch):
    calls = []
    draws = iter([[5, 9, 5], [9, 5], [9]])

    def fake(gr, sweeps, reads, seed):
        calls.append(reads)
        return np.array(next(draws)), 0.3 * reads

    monkeypatch.setattr(ttt, "peer_call", fake)
    pt = ttt.peer_point(None, 100, 9, seeds=3, max_runs=5)
    assert calls == [3, 2, 1]
    assert [s.hit for s in pt.seqs] == [True, True, True]
    assert [len(s.times) for s in pt.seqs] == [2, 1, 3]
    assert all(t == pytest.approx(0.3) for s in pt.seqs for t in s.times)
    assert pt.median == pytest.approx(0.6)


def testpeer_call_runs_dwave():
    pytest.importorskip("dwave.samplers")
    gr = _graph(12, 5)
    cuts, wall = ttt.peer_call(gr, 200, 6, 1)
    assert len(cuts) == 6 and wall > 0
    assert cuts.max() <= _max_cut(gr) and cuts.max() >= 0.9 * _max_cut(gr)


def _point(S, median):
    seq = ttt.Sequence(times=[median], cuts=[1], hit=math.isfinite(median))
    return ttt.PointResult(S, [seq])


def test_search_skips_and_stops():
    medians = {10: math.inf, 20: 5.0, 40: 3.0, 80: 4.0, 160: 6.0, 320: 1.0}
    seen = []

    def point(S, give_up):
        seen.append((S, give_up))
        return _point(S, medians[S])

    pts = ttt.search(point, sorted(medians), lambda S, p: 0.0)
    # two points in a row worse than the best (80, 160) end the search before 320
    assert [p.sweeps for p in pts] == [10, 20, 40, 80, 160]
    assert seen[0][1] == math.inf and seen[2][1] == pytest.approx(15.0)
    seen.clear()
    pts = ttt.search(point, sorted(medians), lambda S, p: S / 5)   # a run of 40 takes 8
    assert [p.sweeps for p in pts] == [10, 20]


def test_ttt_arguments_are_checked(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "pbit", "--ttt", "--ttt-target", "1.5"])
    assert e.value.code == 2
    assert "--ttt-target must be a fraction in (0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench", "pbit", "--ttt", "--ttt-mhz", "0"])
    assert e.value.code == 2
    assert "--ttt-mhz" in capsys.readouterr().err


def test_beta_range_follows_the_field_scale():
    fmt = pbit_format()
    sparse, dense = _graph(), graph.random_sparse(40, 30, 500, np.random.default_rng(1))
    b_sparse, b_dense = maxcut.beta_range(sparse), maxcut.beta_range(dense)
    assert b_sparse[1] == b_dense[1] == maxcut.BETA_COLD
    assert b_dense[0] < b_sparse[0]
    rms = np.sqrt(np.mean((dense.W() ** 2).sum(axis=1)))
    assert b_dense[0] == pytest.approx(maxcut.HOT_SPREAD / rms)
    assert fmt.beta_value(fmt.beta_code(maxcut.BETA_COLD)) == pytest.approx(
        maxcut.BETA_COLD, abs=2.0 ** -fmt.beta_frac)
    assert maxcut.beta_range(sparse, fixed=True) == (maxcut.BETA0, maxcut.BETA1)
