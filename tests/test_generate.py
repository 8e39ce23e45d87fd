"""Generation: byte-identical output, manifest layout, lint and synthesis."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tilefab.gen.config import load, resolve
from tilefab.gen.generate import generate
from tilefab.gen.lint import lint_file
from tilefab.golden.packet import PacketFormat

EXAMPLES = Path(__file__).parent.parent / "examples"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tilefab.cli", *args],
                          capture_output=True, text=True)


def test_generate_twice_identical(tmp_path, monkeypatch):
    # A fresh cache for the second run proves the bytes come from the generator, not a copy.
    monkeypatch.setenv("TILEFAB_CACHE", str(tmp_path / "c1"))
    a = _cli("generate", str(EXAMPLES / "fabric3x2.yaml"), "-o", str(tmp_path / "a"))
    monkeypatch.setenv("TILEFAB_CACHE", str(tmp_path / "c2"))
    b = _cli("generate", str(EXAMPLES / "fabric3x2.yaml"), "-o", str(tmp_path / "b"))
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    for name in ("fabric3x2.v", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    text = (tmp_path / "a" / "manifest.json").read_text()
    assert str(tmp_path) not in text and str(Path.home()) not in text


def test_different_config_different_hash():
    cfg = load(EXAMPLES / "fabric2x2.yaml")
    h1 = generate(cfg).manifest["hash"]
    cfg["mesh"]["fifo_depth"] = 3
    assert generate(cfg).manifest["hash"] != h1


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_manifest_matches_golden_packet(example):
    g = generate(load(EXAMPLES / example))
    m = g.manifest
    p = m["config"]["packet"]
    fmt = PacketFormat(p["coord_bits"], p["addr_bits"], p["data_bits"], p["multicast"])
    assert m["packet"]["width"] == fmt.width
    assert set(m["packet"]["fields"]) == set(fmt.fields)
    for name in fmt.fields:
        assert m["packet"]["fields"][name] == {"lsb": fmt.offsets[name],
                                               "width": fmt.widths[name]}
    ports = {q["name"]: q for q in m["ports"]}
    assert ports["host_in__payload"] == {"name": "host_in__payload", "direction": "in",
                                         "width": fmt.width}
    assert ports["host_out__valid"]["direction"] == "out"


@pytest.mark.parametrize("top", ["fabric", "mesh"])
def test_lint_clean(top):
    g = generate(load(EXAMPLES / "fabric3x2.yaml"), top)
    proc = lint_file(g.verilog, g.module)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_lint_clean_at_every_fifo_depth(depth):
    cfg = load(EXAMPLES / "fabric2x2.yaml")
    cfg["mesh"]["fifo_depth"] = depth
    g = generate(cfg, "mesh")
    proc = lint_file(g.verilog, g.module)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_lint_catches_a_real_problem(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input clk, output reg [3:0] q);\n"
                   "  always @(posedge clk) q <= undeclared_signal;\nendmodule\n")
    assert lint_file(bad, "bad").returncode != 0


@pytest.mark.synth
def test_synth_2x2_ecp5():
    proc = _cli("synth", str(EXAMPLES / "fabric2x2.yaml"), "--family", "ecp5", "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout[proc.stdout.index("{"):])
    # Four routers of five FIFOs and four memory tiles: real logic, and the 256-word
    # scratchpads mapped to block RAM.
    assert res["lut"] > 500 and res["ff"] > 200
    assert res["ram"] >= 4


def test_lint_clean_at_the_smallest_gemm_tile():
    """jobs 1 (a one-entry descriptor queue) and max_k 1 (a one-step k counter)."""
    cfg = resolve({"name": "gemm_min", "mesh": {"cols": 1, "rows": 1},
                   "packet": {"data_bits": 64},
                   "tiles": {"default": {"kind": "gemm", "jobs": 1, "max_k": 1}}})
    g = generate(cfg)
    proc = lint_file(g.verilog, g.module)
    assert proc.returncode == 0, proc.stderr[-3000:]
