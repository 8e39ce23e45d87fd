"""Property-based fuzzing of every input path (hypothesis): the loader, the config
schema, rudy files and CLI argument vectors.

Properties: a run exits 0, or exits 1/2 with one ``tilefab...: error:`` line; it
never prints a traceback; alias bombs and huge inputs are refused before they grow
(checked in a subprocess under an address-space limit); messages never echo more
than about 80 characters of a value. No Verilator build runs here: commands that
would simulate always carry a hostile argument, and valid configs stop at loading.
"""

from __future__ import annotations

import math
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tilefab.gen.config import load, resolve
from tilefab.gen.errors import ConfigError, TilefabError
from tilefab.gen.loader import ECHO, clip, parse_yaml
from tilefab.gen.names import KEYWORDS, check_name, safe_name
from tilefab.gen.pbit.graph import read_rudy

from tilefab.bench import fuzz as fz
from tilefab.cli import main

EXAMPLES = fz.examples()
FAST = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=200), st.sampled_from(fz.HOSTILE[:14] + fz.HOSTILE[15:]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4)
                      | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=12)


def _one_clean_line(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("tilefab") and "error:" in lines[0]


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:                  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@FAST
@given(ex=st.sampled_from(EXAMPLES), data=st.data())
def test_mutated_examples_load_or_name_the_field(ex, data, tmp_path_factory):
    """Every example, damaged at random: loads, or raises one clean line naming the file."""
    rng = fz.random.Random(data.draw(st.integers(0, 2 ** 32)))
    text, _ = fz.mutate_yaml(rng, ex)
    path = tmp_path_factory.mktemp("m") / "c.yaml"
    path.write_bytes(text)
    try:
        load(path)
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(path) in msg
        assert len(msg) < 600


@FAST
@given(raw=st.dictionaries(st.sampled_from(["name", "mesh", "packet", "host", "tiles", "x"]),
                           values, max_size=5))
def test_generated_configs_never_crash(raw):
    try:
        resolve(raw)
    except ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600


@FAST
@given(mesh=st.fixed_dictionaries({"cols": values, "rows": values}),
       tile=st.dictionaries(st.sampled_from(["kind", "depth", "rows", "cols", "prog_sigma",
                                             "adc_min", "adc_max", "n", "lanes"]),
                            values, max_size=4))
def test_tile_fields_never_crash(mesh, tile):
    try:
        cfg = resolve({"mesh": mesh, "tiles": {"default": tile}})
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    for t in cfg["tile_map"]:                  # accepted: every number finite and typed
        for v in t.values():
            assert not isinstance(v, float) or math.isfinite(v)


@FAST
@given(text=st.text(max_size=300))
def test_any_text_parses_or_refuses(text):
    try:
        parse_yaml(text, "f.yaml")
    except TilefabError as exc:
        assert str(exc).startswith("f.yaml") and "\n" not in str(exc)


@FAST
@given(v=values)
def test_clip_never_fails_and_is_short(v):
    assert len(clip(v)) <= ECHO


def test_loader_refusals_name_line_and_field(tmp_path):
    cases = {
        "mesh:\n  cols: 2\n  rows: 2\n  cols: 3\n": ":4: mesh: duplicate key \"cols\" (first "
                                                    "given at line 2)",
        "a: &a [1]\nmesh: {cols: *a, rows: 1}\n": ":2: YAML aliases",
        "name: 2020-01-01\nmesh: {cols: 1, rows: 1}\n": ":1: name: \"2020-01-01\" is a date",
        "name: !!binary aGk=\nmesh: {cols: 1, rows: 1}\n": ":1: name: YAML tag !!binary",
        "mesh: {cols: 1, rows: 1}\n1: a\nb: c\n": ":2: mapping keys must be plain names",
        "x: " + "[" * 500 + "]" * 500 + "\n": ":1: nesting deeper than",
        "mesh: {cols: 2.0, rows: 1.5}\n": ":1: mesh.rows: 1.5 is not allowed, must be of type "
                                          "integer",
        "name: wire\nmesh: {cols: 1, rows: 1}\n": ":1: name: \"wire\" is not allowed, is a "
                                                  "Verilog/SystemVerilog keyword",
        "mesh: {cols: 1, rows: 1}\ntiles: {default: {kind: crossbar, read_sigma: .nan}}\n":
            ":2: tiles.default.read_sigma: nan is not allowed",
        "mesh: {cols: 1, rows: 1}\ntiles: {default: {kind: [memory]}}\n":
            "tiles.default.kind: [\"memory\"] is not a tile kind",
    }
    for k, (text, want) in enumerate(cases.items()):
        p = tmp_path / f"c{k}.yaml"
        p.write_text(text)
        with pytest.raises(ConfigError) as err:
            load(p)
        assert want in str(err.value), (text[:40], str(err.value))
    p = tmp_path / "u.yaml"
    p.write_bytes(b"mesh: {cols: 1, rows: 1}\nname: \xff\n")
    with pytest.raises(ConfigError, match=r"u.yaml:2: not UTF-8: byte 0xff at offset 31"):
        load(p)
    p.write_text("name: " + "x" * 10 ** 6 + "\nmesh: {cols: 1, rows: 1}\n")
    with pytest.raises(ConfigError) as err:
        load(p)
    assert len(str(err.value)) < 300


def test_integral_floats_are_integers(tmp_path):
    p = tmp_path / "f.yaml"
    p.write_text("mesh: {cols: 2.0, rows: 1.0, fifo_depth: 2.0}\n")
    cfg = load(p)
    assert cfg["mesh"] == {"cols": 2, "rows": 1, "fifo_depth": 2, "router": "fifo",
                           "voq_depth": 4}
    assert all(type(v) is int for k, v in cfg["mesh"].items() if k != "router")


def test_alias_bomb_refused_in_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    levels = ["a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(levels) + "\nmesh: {cols: *a8, rows: 1}\n")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))

    proc = subprocess.run([sys.executable, "-m", "tilefab.cli", "generate", str(bomb), "-o",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=60,
                          preexec_fn=limit, check=False)
    assert proc.returncode == 2, proc.stderr[-500:]
    assert _one_clean_line(proc.stderr) and "YAML aliases" in proc.stderr


rudy_lines = st.lists(st.tuples(st.integers(-2, 9), st.integers(-2, 9),
                                st.one_of(st.integers(-2 ** 70, 2 ** 70),
                                          st.sampled_from(["x", "1.5", "٣", "²"]))),
                      max_size=8)


@FAST
@given(n=st.one_of(st.integers(-1, 10), st.sampled_from([30_000, 10 ** 8, 10 ** 30])),
       m=st.integers(0, 10), edges=rudy_lines, tail=st.sampled_from(["", "\xff", "² 0", "\0"]))
def test_rudy_files(n, m, edges, tail, tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "g 1-x.rudy"
    body = "\n".join(f"{i} {j} {w}" for i, j, w in edges)
    path.write_bytes(f"{n} {m}\n{body}\n{tail}".encode("utf-8", "surrogatepass")
                     if tail != "\xff" else f"{n} {m}\n{body}\n".encode() + b"\xff")
    try:
        g = read_rudy(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and "g 1-x.rudy" in str(exc)
        return
    assert g.n <= 4096 and check_name(g.name) is None


@FAST
@given(data=st.data())
def test_cli_argument_vectors(data, capsys, tmp_path_factory):
    """Hostile argument vectors never start a run: one clean line, exit 2."""
    rng = fz.random.Random(data.draw(st.integers(0, 2 ** 32)))
    case = fz.make_case(rng, 0, tmp_path_factory.mktemp("a"))
    if not case.invalid or case.target in ("lint", "synth", "generate", "output", "imc report"):
        case = fz.Case("argv", ["sim", str(EXAMPLES[0]), "--requests",
                                rng.choice(fz.COUNT_ARGS)], invalid=True)
    for path, blob in case.files.items():
        Path(path).write_bytes(blob)
    code, out, err = _run(case.argv, capsys)
    assert code == 2, (case.argv, out[-300:], err[-300:])
    assert _one_clean_line(err), err


@pytest.mark.parametrize("argv", [
    ["sim", "examples/fabric2x2.yaml", "--requests", "-5"],
    ["sim", "examples/fabric2x2.yaml", "--requests", "0"],
    ["sim", "examples/fabric2x2.yaml", "--bad", "2.0"],
    ["sim", "examples/fabric2x2.yaml", "--bad", "nan"],
    ["sim", "examples/gemm2x2.yaml", "gemm", "--m", "1000000"],
    ["sim", "examples/gemm2x2.yaml", "gemm", "--seed", "-1"],
    ["imc", "mvm", "examples/crossbar1x1.yaml", "--vectors", "10000000"],
    ["imc", "mvm", "examples/crossbar1x1.yaml", "--seed", "-1"],
    ["imc", "report", "examples/crossbar1x1.yaml", "--figure", "adc=nan"],
    ["imc", "report", "examples/crossbar1x1.yaml", "--figure", "adc=inf"],
    ["pbit", "maxcut", "x.rudy", "--seed", "-2"],
    ["pbit", "maxcut", "x.rudy", "--stall-in", "1"],
    ["generate", "examples/fabric2x2.yaml", "-o", "README.md"],
    ["generate", "examples/fabric2x2.yaml", "-o", "/proc/no/such"],
    ["generate", "examples/fabric2x2.yaml", "-o", ""],
])
def test_cli_refuses_what_it_cannot_honour(argv, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2 and _one_clean_line(err) and "PASS" not in out, err


def test_lint_broken_manifest(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("{")
    (tmp_path / "a.v").write_text("module a; endmodule\n")
    code, _, err = _run(["lint", str(tmp_path)], capsys)
    assert code == 2 and _one_clean_line(err) and "manifest.json" in err


def test_names():
    for bad in ["logic", "wire", "module", "a-b", "a b", "1x", "", "x" * 65]:
        assert check_name(bad), bad
    assert check_name("fabric2x2") is None
    for stem in ["g 1-x", "logic", "1abc", "名前", "G14"]:
        name = safe_name(stem, "g")
        assert check_name(name) is None and name not in KEYWORDS


def test_bench_fuzz_counts(capsys):
    """The benchmark itself, briefly: every outcome counted, none of the bad ones."""
    r = fz.run_fuzz(60, seed=5, progress=False)
    assert sum(r["counts"].values()) == 60
    assert not r["failures"], r["failures"][:3]


def test_examples_still_load():
    from tilefab.sweep import load_spec

    for ex in EXAMPLES:
        assert yaml.safe_load(ex.read_text()) is not None
        # sweep specs name a fabric config; the rest are fabric configs
        load_spec(ex) if ex.parent.name == "sweeps" else load(ex)
