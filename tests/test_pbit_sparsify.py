"""Exact sparsification: split high-degree nodes into ferromagnetically chained copies so
the graph runs on a bounded-degree array, and read the cut back on the original nodes."""

import itertools

import numpy as np
import pytest
from tilefab.gen.errors import ConfigError
from tilefab.gen.pbit import graph, maxcut
from tilefab.gen.pbit.sparsify import sparsify

from tilefab import Fabric
from tilefab.cli import main
from tilefab.configs import pbit_format

HETERO = "examples/hetero3x3.yaml"      # its lanes tile has max_degree 16


def _hub(d: int, weights=(1,), seed=0) -> graph.Graph:
    """Node 0 joined to 1..d, and a path 1 - 2 - ... - d."""
    rng = np.random.default_rng(seed)
    e = [(0, j, int(rng.choice(weights))) for j in range(1, d + 1)]
    e += [(i, i + 1, int(rng.choice(weights))) for i in range(1, d)]
    return graph.from_edges(e, name=f"hub{d}")


def _max_cut(gr: graph.Graph) -> int:
    return max(gr.cut(np.array((0,) + s)) for s in itertools.product((0, 1),
                                                                   repeat=gr.n - 1))


def test_split_has_bounded_degree_and_keeps_every_edge():
    gr = _hub(24)
    s = sparsify(gr, 4)
    assert int(s.graph.degrees().max()) <= 4 < int(gr.degrees().max())
    assert len(s.copies[0]) == 11 and all(len(c) == 1 for c in s.copies[1:])
    assert len(s.graph.edges) == len(gr.edges) + len(s.j_copy)
    # every original edge survives between copies of its two ends, with its weight
    orig = sorted((int(a), int(b), int(w)) for (a, b), w in zip(gr.edges, gr.weights))
    moved = sorted((int(min(s.owner[a], s.owner[b])), int(max(s.owner[a], s.owner[b])),
                    int(w)) for (a, b), w in zip(s.graph.edges, s.graph.weights)
                   if s.owner[a] != s.owner[b])
    assert moved == orig
    # chain links: J_copy = min(|w| held before the link, after it) + 1, as weight -J
    assert list(s.j_copy) == [4, 6, 8, 10, 12, 12, 10, 8, 6, 4]
    assert (s.graph.weights[len(gr.edges):] == -s.j_copy).all()
    assert sparsify(gr, 30).graph.n == gr.n            # nothing above the bound
    with pytest.raises(ConfigError, match="max_degree: 2 is not allowed, must be an "
                                          "integer >= 3"):
        sparsify(gr, 2)


@pytest.mark.parametrize("seed", range(4))
def test_split_ground_states_are_the_original_ones(seed):
    # weights of both signs and sizes: every maximum cut of the split graph has its
    # copies agreeing, and its value is the original graph's maximum cut
    gr = _hub(7, weights=(-2, -1, 1, 3), seed=seed)
    s = sparsify(gr, 3)
    assert s.graph.n > gr.n and s.graph.n <= 16
    best, argbest = None, []
    for bits in itertools.product((-1, 1), repeat=s.graph.n):
        c = s.graph.cut(np.array(bits))
        if best is None or c > best:
            best, argbest = c, [bits]
        elif c == best:
            argbest.append(bits)
    for bits in argbest:
        assert s.disagreements(bits) == 0
    assert s.cut(argbest[0]) == _max_cut(gr)


def test_fabric_maxcut_sparsified_on_a_bounded_degree_tile():
    gr = _hub(28)                      # degree 28 on a tile of max_degree 16
    fab = Fabric(HETERO, backend="golden")
    with pytest.raises(ConfigError, match="max_degree=16"):
        fab.maxcut(gr, sweeps=10)
    run = fab.maxcut(gr, sweeps=3000, sparsify=True, seed=2)
    s = run.split
    assert s.max_degree == 16 and int(s.graph.degrees().max()) <= 16 and s.graph.n == 30
    side = np.where(run.assignment > 0, 1, -1)
    assert run.cut == gr.cut(side) and run.cut == s.cut(run.best_state)
    assert run.disagreements == 0 and s.disagreements(run.state) == 0
    assert run.cut == _max_cut_hub(28)
    run6 = Fabric(HETERO, backend="golden").maxcut(gr, sweeps=3000, max_degree=6, seed=2)
    assert int(run6.split.graph.degrees().max()) <= 6 and run6.cut == run.cut
    with pytest.raises(ConfigError, match="copy couplings up to 16, above the tile's "
                                          "largest J 15"):
        fab.maxcut(_hub(30), sparsify=True)


def _max_cut_hub(d):
    # the path alternates (d - 1 edges cut), the hub cuts the half of it on the other side
    return (d - 1) + d // 2


def test_copies_agree_after_a_long_anneal_on_the_parallel_array():
    gr = _hub(24)
    s = sparsify(gr, 4)
    # the parallel array over the split graph: one adder tree of <= 4 inputs per p-bit
    array = maxcut.maxcut_array(s.graph, 8, pbit_format())
    assert array._max_degree == 4
    res = maxcut.run(s.graph, 4000, pbit_format(), backend="golden", arch="parallel", seed=3)
    # a copy disagreement costs >= 4 in the split cut, so reaching the original optimum
    # means the copies agree
    assert res.arch == "parallel" and res.best_cut == _max_cut_hub(24)
    fab = Fabric({"name": "pbit_sp", "mesh": {"cols": 1, "rows": 1},
                  "packet": {"data_bits": 64, "addr_bits": 12},
                  "tiles": {"default": {"kind": "pbit", "arch": "lanes", "n": 40, "lanes": 4,
                                        "edge_depth": 64, "max_degree": 4, "n_colours": 8,
                                        "w_bits": 5, "h_bits": 7, "beta_frac": 6}}},
                 backend="golden")
    run = fab.maxcut(gr, sweeps=4000, sparsify=True, seed=3)
    assert s.disagreements(run.state) == 0 and run.disagreements == 0
    assert run.cut == _max_cut_hub(24) and run.final_cut >= run.cut - 2


def test_cli_sparsify(tmp_path, capsys):
    gr = _hub(24)
    f = tmp_path / "hub.txt"
    f.write_text(f"{gr.n} {len(gr.edges)}\n" + "".join(
        f"{i + 1} {j + 1} {w}\n" for (i, j), w in zip(gr.edges, gr.weights)))
    assert main(["pbit", "maxcut", str(f), "--sparsify", "4", "--sweeps", "3000",
                 "--backend", "golden"]) == 0
    out = capsys.readouterr().out
    assert "sparsified to degree <= 4: 1 nodes split into 11 copies, 35 p-bits, max " \
           "degree 4, copy couplings J_copy 4..12" in out
    assert f"best seen {_max_cut_hub(24)})" in out
    with pytest.raises(SystemExit):
        main(["pbit", "maxcut", str(f), "--sparsify", "2"])
    assert "--sparsify must be an integer 3..4096" in capsys.readouterr().err
