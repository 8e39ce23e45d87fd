"""``tilefab pbit`` commands: factoring on the RTL, Max-Cut, and errors as one line."""

import numpy as np
import pytest
from tilefab.gen.pbit import graph, maxcut
from tilefab.golden import pbit as g

from tilefab.cli import main
from tilefab.configs import pbit_format


@pytest.mark.sim
def test_factor_143_on_rtl(capsys):
    assert main(["pbit", "factor", "143", "--runs", "4", "--sweeps", "600"]) == 0
    out = capsys.readouterr().out
    assert "143 = 11 x 13  on the lanes p-bit tile (0, 0) of pbit_lanes48  [Verilator RTL]" in out
    assert "runs" in out and "cycles" in out and "RTL = golden: yes" in out


def _ring_file(tmp_path, n=12):
    f = tmp_path / "ring.txt"
    f.write_text(f"{n} {n}\n" + "".join(f"{i + 1} {(i + 1) % n + 1} 1\n" for i in range(n)))
    return f


def test_maxcut_golden_finds_even_ring_optimum(tmp_path, capsys):
    assert main(["pbit", "maxcut", str(_ring_file(tmp_path)), "--sweeps", "200",
                 "--backend", "golden"]) == 0
    out = capsys.readouterr().out
    assert "best seen 12" in out and "2 colours" in out
    # + 4 energy/drain cycles and 2 x 1 of the energy tree's register stage
    assert "flips/cycle 5.91 (limit n/colours = 6.00)" in out
    gr = graph.read_rudy(_ring_file(tmp_path))
    res = maxcut.run(gr, 200, pbit_format(), backend="golden")
    assert res.best_cut == 12 and res.updates == 200 * 12 and res.cycles == 4 + 2 * g.energy_stages(12) + 200 * 2


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("3 1\n1 9 1\n")
    assert main(["pbit", "maxcut", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:2: node numbers must lie in [1, 3]" in err
    assert main(["pbit", "factor", "1", "--backend", "golden"]) == 2
    assert "N: 1 is not allowed, must be an integer >= 2" in capsys.readouterr().err
    assert main(["pbit", "factor", "3", "--backend", "golden"]) == 0      # no annealing
    assert "3 is prime" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["pbit", "maxcut", str(_ring_file(tmp_path)), "--sweeps", "0"])
    assert exc.value.code == 2
    assert '--sweeps must be an integer 1..1000000, not "0"' in capsys.readouterr().err


def test_bench_runs_without_peer_or_synth(tmp_path, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_dwave(name, *a, **kw):
        if name.startswith("dwave"):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    gdir = tmp_path / "gset"
    gdir.mkdir()
    rng = np.random.default_rng(0)
    gr = graph.random_sparse(40, 4, 70, rng, weights=(1,))
    (gdir / "G11.txt").write_text(f"{gr.n} {len(gr.edges)}\n" + "".join(
        f"{i + 1} {j + 1} {w}\n" for (i, j), w in zip(gr.edges, gr.weights)))
    monkeypatch.setattr(builtins, "__import__", no_dwave)
    png = tmp_path / "e.png"
    assert main(["bench", "pbit", "--graphs", "G11", "--gset", str(gdir), "--rtl", "",
                 "--sweeps", "50", "--no-synth", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "dwave-samplers is not installed" in out and png.exists()
    assert "G11" in out and "golden" in out


@pytest.mark.sim
def test_maxcut_on_a_configured_tile_and_its_limits(tmp_path, capsys):
    hetero = "examples/hetero3x3.yaml"
    ring = str(_ring_file(tmp_path))
    assert main(["pbit", "maxcut", ring, "--sweeps", "100", "--config", hetero,
                 "--stall-in", "0.3", "--stall-out", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "on the lanes p-bit tile (1, 2) of hetero3x3  [Verilator RTL]" in out
    assert "best seen 12" in out and "RTL = golden: yes" in out
    # 80 nodes do not fit its 64 p-bits: the error names the tile's limit
    assert main(["pbit", "maxcut", str(_ring_file(tmp_path, 80)), "--config", hetero,
                 "--backend", "golden"]) == 2
    assert "n = 64" in capsys.readouterr().err
    assert main(["pbit", "maxcut", ring, "--config", hetero, "--arch", "lanes"]) == 2
    assert "with --config the tile is used as configured" in capsys.readouterr().err


def test_golden_backend_runs_pbit_jobs_only():
    from tilefab import Fabric

    fab = Fabric("examples/pbit1x1.yaml", backend="golden")
    edges = [(i, (i + 1) % 10, 1) for i in range(10)]
    run = fab.maxcut(edges, sweeps=100, seed=3)
    assert run.cut == 10 and run.golden_ok and run.cycles > 100
    again = Fabric("examples/pbit1x1.yaml", backend="golden").maxcut(edges, sweeps=100, seed=3)
    assert again.cycles == run.cycles and (again.state == run.state).all()
    with pytest.raises(Exception, match="backend golden: runs the p-bit jobs"):
        fab.status(0, 0)
