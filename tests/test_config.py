"""Config validation: every error names the YAML path, the value and what is allowed."""

import subprocess
import sys
from pathlib import Path

import pytest
from tilefab.gen.config import load, resolve
from tilefab.gen.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
BASE = {"mesh": {"cols": 2, "rows": 2}}


def _with(path, value):
    import copy
    cfg = copy.deepcopy(BASE)
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return cfg


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_resolve(example):
    cfg = load(example)
    assert len(cfg["tile_map"]) == cfg["mesh"]["cols"] * cfg["mesh"]["rows"]


def test_defaults_filled():
    cfg = resolve(BASE)
    assert cfg["mesh"]["fifo_depth"] == 2
    assert cfg["packet"] == {"data_bits": 32, "addr_bits": 16, "coord_bits": 2,
                             "multicast": False}
    assert cfg["host"] == {"x": 0, "y": 0, "side": "west"}
    assert cfg["counter_bits"] == 32
    assert {t["kind"] for t in cfg["tile_map"]} == {"memory"}


@pytest.mark.parametrize("path,value,message", [
    (("mesh", "cols"), 0, "mesh.cols: 0 is not allowed, must be 1..16"),
    (("mesh", "rows"), 17, "mesh.rows: 17 is not allowed, must be 1..16"),
    (("mesh", "cols"), "four", 'mesh.cols: "four" is not allowed, must be of type integer'),
    (("mesh", "fifo_depth"), 0, "mesh.fifo_depth: 0 is not allowed, must be 1..64"),
    (("counter_bits",), 7, "counter_bits: 7 is not allowed, must be 8..64"),
    (("packet", "data_bits"), 0, "packet.data_bits: 0 is not allowed, must be 1..256"),
    (("packet", "coord_bits"), 1, "packet.coord_bits: 1 is not allowed, must be 2..8"),
    (("host", "side"), "up", 'host.side: "up" is not allowed, must be one of west, north'),
    (("host", "x"), 1, "host.x: 1 is not allowed with side west, must be 0"),
    (("host", "y"), 5, "host.y: 5 is not allowed, must be 0..1"),
    (("mesh", "colour"), 1, "mesh: unknown field 'colour'"),
    (("name",), "1bad", 'name: "1bad" is not allowed, must match'),
    (("tiles", "default"), {"kind": "gpu"}, 'tiles.default.kind: "gpu" is not a tile kind'),
    (("tiles", "default"), {"kind": "memory", "depth": 0},
     "tiles.default.depth: 0 is not allowed, must be 1..65532"),
    (("tiles", "at"), [{"x": 2, "y": 0, "kind": "memory"}],
     "tiles.at[0].x: 2 is not allowed, must be 0..1"),
    (("tiles", "at"), [{"x": 1, "y": 0, "kind": "memory"}, {"x": 1, "y": 0, "kind": "memory"}],
     "tiles.at[1]: (1, 0) is already given by tiles.at[0]"),
    (("tiles", "at"), [{"x": 1, "y": 1, "kind": "memory", "size": 3}],
     "tiles.at[0]: unknown field 'size'"),
])
def test_errors_name_field(path, value, message):
    with pytest.raises(ConfigError) as err:
        resolve(_with(path, value))
    assert message in str(err.value)


def test_depth_limited_by_address_width():
    cfg = _with(("packet", "addr_bits"), 8)
    cfg["tiles"] = {"default": {"kind": "memory", "depth": 253}}
    with pytest.raises(ConfigError, match=r"tiles.default.depth: 253 is not allowed, must be "
                                          r"1..252 with packet.addr_bits 8"):
        resolve(cfg)


def test_cli_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mesh:\n  cols: 0\n  rows: 2\n")
    proc = subprocess.run([sys.executable, "-m", "tilefab.cli", "generate", str(bad),
                           "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "mesh.cols: 0 is not allowed, must be 1..16" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_not_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mesh: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)
