"""The runtime on the heterogeneous example: every kind's job, with host backpressure,
bit-exact against its golden model; malformed requests get ERROR and are counted."""

from pathlib import Path

import numpy as np
import pytest

from tilefab import Fabric
from tilefab.cli import main
from tilefab.gen.errors import ConfigError, TilefabError
from tilefab.golden.packet import Op

HETERO = Path(__file__).parent.parent / "examples" / "hetero3x3.yaml"
pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def fab():
    return Fabric(HETERO, seed=4, in_stall=0.2, out_stall=0.3)


def test_every_kind_matches_golden_with_backpressure(fab):
    rng = np.random.default_rng(7)
    a, b = rng.integers(-128, 128, (9, 21)), rng.integers(-128, 128, (21, 11))
    g = fab.gemm(a, b)
    assert g.golden_ok and np.array_equal(g.c, a @ b)
    w, x = rng.integers(-15, 16, (11, 19)), rng.integers(-8, 8, (3, 19))
    mv = fab.mvm(w, x, seed=3)
    assert mv.golden_ok, mv.mismatch
    assert len(mv.tiles) == 2 and mv.y.shape == (3, 11) and mv.energy_pj > 0
    n = 16
    j = rng.integers(-3, 4, (n, n)) * (rng.random((n, n)) < 0.25)
    j = np.triu(j, 1) + np.triu(j, 1).T
    an = fab.anneal(j, rng.integers(-3, 4, n), sweeps=50, seed=5)
    assert an.golden_ok, an.mismatch
    assert an.state.shape == (n,) and an.best_energy <= an.energy
    cut = fab.maxcut([(i, (i + 1) % 10, 1) for i in range(10)], sweeps=100, seed=2)
    assert cut.golden_ok and cut.cut <= 10 and cut.assignment.shape == (10,)
    fab.write(2, 2, 7, 12345)
    assert fab.read(2, 2, 7) == 12345


@pytest.mark.parametrize("xy,requests", [
    ((0, 0), [(Op.READ, 300, 0)]),                 # memory: out of range
    ((1, 0), [(Op.EXEC, 0, 0)]),                   # gemm: bad descriptor
    ((2, 1), [(Op.WRITE, 1000, 0)]),               # crossbar: unmapped address
    ((1, 2), [(Op.READ, 1000, 0)]),                # p-bit: unmapped address
    ((1, 2), [(7, 0, 0)]),                         # p-bit: unknown op
])
def test_malformed_requests_get_error_counted_and_next_job_is_right(fab, xy, requests):
    before = fab.status(*xy)["errors"]
    got = fab.transact(*xy, requests, replies=len(requests))
    assert [p[0] for p in got] == [Op.ERROR] * len(requests)
    assert fab.status(*xy)["errors"] == before + len(requests)
    rng = np.random.default_rng(1)
    w, x = rng.integers(-15, 16, (5, 7)), rng.integers(-8, 8, 7)
    assert fab.mvm(w, x).golden_ok


def test_problems_that_do_not_fit_name_the_limit(fab):
    with pytest.raises(ConfigError, match="n = 64"):
        fab.anneal(np.zeros((65, 65), int))
    with pytest.raises(TilefabError, match="not in the 3x3 mesh"):
        fab.read(5, 0, 0)
    with pytest.raises(TilefabError, match="in_stall"):
        fab.status(0, 0, in_stall=1.5)


@pytest.mark.parametrize("config,extra", [
    (HETERO, []),
    # 32-bit data, K <= 16, a 28-p-bit parallel tile: 143 (48 p-bits) does not fit
    (HETERO.with_name("hetero3x2.yaml"), ["--factor", "35"]),
], ids=["hetero3x3", "hetero3x2"])
def test_cli_sim_runs_every_kind(capsys, config, extra):
    assert main(["sim", str(config), "--m", "8", "--k", "16", "--n", "8", "--sweeps", "50",
                 "--stall-in", "0.1", "--stall-out", "0.1", *extra]) == 0
    out = capsys.readouterr().out
    for job in ("memory", "gemm", "mvm", "anneal", "factor"):
        assert job in out
    assert "FAIL" not in out and out.count("PASS") >= 6
