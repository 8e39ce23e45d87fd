"""p-bit generator side: G-set reader, DSATUR, quantization, invertible logic, checks."""

from pathlib import Path

import numpy as np
import pytest

from tilefab.gen.errors import ConfigError
from tilefab.gen.pbit import driver, graph, logic, quant
from tilefab.golden import pbit as g

GSET = Path("/work/shared/data/gset")
GSET = GSET if GSET.exists() else Path(__file__).resolve().parents[2] / "shared/data/gset"


@pytest.mark.skipif(not (GSET / "G11.txt").exists(), reason="G-set data not present")
@pytest.mark.parametrize("name,max_colours", [("G11", 2), ("G14", 8), ("G22", 12)])
def test_gset_reader_and_dsatur(name, max_colours):
    gr = graph.read_rudy(GSET / f"{name}.txt")
    head = (GSET / f"{name}.txt").read_text().split()
    assert gr.n == int(head[0]) and len(gr.edges) == int(head[1])
    nb = gr.neighbours()
    col = graph.dsatur(nb)
    graph.check_colouring(nb, col)
    assert col.max() + 1 <= max_colours
    assert gr.cut(np.ones(gr.n)) == 0


def test_dsatur_on_random_and_known_graphs():
    rng = np.random.default_rng(0)
    for _ in range(5):
        gr = graph.random_sparse(60, 6, 150, rng)
        nb = gr.neighbours()
        col = graph.dsatur(nb)
        graph.check_colouring(nb, col)
        assert col.max() + 1 <= 7                       # Brooks: <= max degree + 1
    odd_cycle = [[(i - 1) % 5, (i + 1) % 5] for i in range(5)]
    assert graph.dsatur(odd_cycle).max() + 1 == 3
    even_cycle = [[(i - 1) % 6, (i + 1) % 6] for i in range(6)]
    assert graph.dsatur(even_cycle).max() + 1 == 2


def test_bad_colouring_and_too_few_colours_named():
    tri = [[1, 2], [0, 2], [0, 1]]
    with pytest.raises(ConfigError, match="colours: neighbours 0 and 1 share colour 0"):
        graph.check_colouring(tri, [0, 0, 1])
    with pytest.raises(ConfigError, match="n_colours: the graph needs 3 colours but the "
                                          "array schedules only 2"):
        graph.check_colouring(tri, graph.dsatur(tri), n_colours=2)


@pytest.mark.parametrize("text,where,what", [
    ("", ":?", "empty graph file"),
    ("3\n1 2 1\n", ":1", "first line must be 'nodes edges'"),
    ("3 2\n1 2 1\n", ":1", "announces 2 edges but the file has 1"),
    ("3 1\n1 x 1\n", ":2", "edge line must be 'i j w'"),
    ("3 1\n1 4 1\n", ":2", r"node numbers must lie in \[1, 3\]"),
    ("3 1\n2 2 1\n", ":2", "self-loop"),
    ("3 2\n1 2 1\n2 1 1\n", ":3", "duplicate edge"),
])
def test_malformed_graph_files(tmp_path, text, where, what):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(ConfigError, match=what) as exc:
        graph.read_rudy(f)
    assert str(exc.value).startswith(str(f) + (where if where != ":?" else ""))


def test_missing_graph_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read graph file"):
        graph.read_rudy(tmp_path / "nope.txt")


def test_quantization_exact_error_and_limits():
    fmt = g.PBitFormat(w_bits=6, w_frac=2, h_bits=8)
    q = quant.quantize(np.array([[0, 1.25], [1.25, 0]]), np.array([0.5, -2.0]), fmt)
    assert q.max_abs_error == 0 and q.J[0, 1] == 5 and list(q.h) == [2, -8]
    rng = np.random.default_rng(1)
    J = rng.uniform(-1, 1, (8, 8))
    J = np.triu(J, 1) + np.triu(J, 1).T
    errs = []
    for frac in (1, 2, 3, 4):
        f = g.PBitFormat(w_bits=frac + 3, w_frac=frac, h_bits=8)
        q = quant.quantize(J, np.zeros(8), f)
        assert q.max_abs_error <= 2.0 ** -(frac + 1) + 1e-12       # round to nearest
        errs.append(q.rel_rms_error)
    assert errs == sorted(errs, reverse=True) and errs[-1] < errs[0] / 4
    with pytest.raises(ConfigError, match=r"^J: value 8 quantizes to 32, outside \[-32, 31\]"):
        quant.quantize(np.array([[0, 8.0], [8.0, 0]]), np.zeros(2), fmt, scale=1.0)
    with pytest.raises(ConfigError, match=r"^h: .*h_bits=8"):
        quant.quantize(np.zeros((2, 2)), np.array([100.0, 0]), fmt, scale=1.0)
    q = quant.quantize(np.array([[0, 8.0], [8.0, 0]]), np.zeros(2), fmt, scale=1.0, clip=True)
    assert q.clipped == 2 and q.J[0, 1] == 31
    q = quant.quantize(np.array([[0, 8.0], [8.0, 0]]), np.zeros(2), fmt)   # auto scale
    assert q.scale == 0.5 and q.clipped == 0 and q.beta_code(1.0) == fmt.beta_code(2.0)


def _ground_states(c: logic.Circuit):
    J, h = c.ising()
    S = g.all_states(c.n)
    E = -(0.5 * np.einsum("si,ij,sj->s", S, J, S) + S @ h)
    pen = np.array([c.penalty((s + 1) // 2) for s in S])
    # E = 4 penalty + const: the Ising form is the penalty, exactly.
    assert np.allclose(E - 4 * pen, (E - 4 * pen)[0])
    return {tuple((S[k] > 0).astype(int)) for k in np.flatnonzero(E == E.min())}


def test_gate_hamiltonians_truth_tables():
    assert _ground_states(logic.and_circuit()) == {(a, b, a & b) for a in (0, 1) for b in (0, 1)}
    assert _ground_states(logic.or_circuit()) == {(a, b, a | b) for a in (0, 1) for b in (0, 1)}
    fa = _ground_states(logic.full_adder_circuit())
    assert fa == {(a, b, c, (a + b + c) & 1, (a + b + c) >> 1)
                  for a in (0, 1) for b in (0, 1) for c in (0, 1)}
    J, h = logic.and_circuit().ising()
    assert J.tolist() == [[0, -1, 2], [-1, 0, 2], [2, 2, 0]] and h.tolist() == [1, 1, -2]


def test_multiplier_ground_states_are_products():
    mult = logic.multiplier(2, 2)
    ground = _ground_states(mult.circuit)
    got = set()
    for s in ground:
        spins = np.array(s) * 2 - 1
        a, b, p = (mult.value(spins, mult.a), mult.value(spins, mult.b),
                   mult.value(spins, mult.p))
        assert a * b == p
        got.add((a, b))
    assert got == {(a, b) for a in range(4) for b in range(4)}


def test_factor_circuit_clamps_and_errors():
    mult = logic.factor_circuit(143)
    assert len(mult.a) == 4 and len(mult.b) == 4
    assert [mult.circuit.clamps[p] for p in mult.p] == [1, 1, 1, 1, 0, 0, 0, 1]
    with pytest.raises(ConfigError, match="N: must be an integer >= 4"):
        logic.factor_circuit(3)
    with pytest.raises(ConfigError, match="bits: 2x2-bit factors"):
        logic.factor_circuit(143, 2, 2)


def test_program_checks_name_the_field():
    from tilefab.configs import pbit_format
    from tilefab.gen.pbit.factor import factor_array, factor_program
    array, _ = factor_array(2, 2, pbit_format())
    cfg, nb = array.config(), array.neighbours
    prog, _ = factor_program(9, 2, 2)
    driver.encode(cfg, nb, [prog])
    bad = driver.Program(prog.J, prog.h, np.zeros_like(prog.colours))
    with pytest.raises(ConfigError, match="colours: p-bits .* are coupled .* share colour"):
        driver.encode(cfg, nb, [bad])
    J = prog.J.copy()
    i, j = next((i, j) for i in range(len(J)) for j in range(len(J))
                if i != j and j not in nb[i])
    J[i, j] = J[j, i] = 1
    with pytest.raises(ConfigError, match=f"J: J\\[{i}\\]\\[{j}\\] is non-zero but p-bits"):
        driver.encode(cfg, nb, [driver.Program(J, prog.h, prog.colours)])
    big = prog.J * 100
    with pytest.raises(ConfigError, match=r"J: values must lie in \[-16, 15\]"):
        driver.encode(cfg, nb, [driver.Program(big, prog.h, prog.colours)])
    with pytest.raises(ConfigError, match="schedule: needs 1 to 8"):
        driver.encode(cfg, nb, [driver.Run([(1, 1)] * 9, 4)])
    with pytest.raises(ConfigError, match=r"schedule\[0\].sweeps: must lie in \[1, 65535\]"):
        driver.encode(cfg, nb, [driver.Run([(1, 0)], 4)])
    with pytest.raises(ConfigError, match=r"n_colours: must lie in \[1, 8\]"):
        driver.encode(cfg, nb, [driver.Run([(1, 1)], 9)])
