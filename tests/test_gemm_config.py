"""GEMM tile configs: validation errors name the field, the manifest agrees with golden."""

import pytest

from tilefab.gen.config import resolve
from tilefab.gen.errors import ConfigError
from tilefab.gen.generate import manifest_for
from tilefab.golden.gemm import GemmGeometry, acc_bits


def _cfg(tile=None, packet=None):
    return {"name": "g", "mesh": {"cols": 2, "rows": 1},
            "packet": {"data_bits": 64, "addr_bits": 12, **(packet or {})},
            "tiles": {"default": {"kind": "gemm", "lanes": 4, "op_bits": 8, "max_k": 256,
                                  "a_words": 256, "b_words": 256, **(tile or {})}}}


@pytest.mark.parametrize("tile,packet,message", [
    ({"lanes": 0}, None, "tiles.default.lanes: 0 is not allowed, must be 1..32"),
    ({"op_bits": 3}, None, "tiles.default.op_bits: 3 is not allowed, must be 4..16"),
    ({"lanes": 3}, None, "packet.data_bits: 64 is not allowed, must be a multiple of "
                         "lanes*op_bits = 24"),
    ({"lanes": 2, "op_bits": 16}, {"data_bits": 32}, "packet.data_bits: 32 is not allowed, "
                                                    "must be at least acc_bits = 40"),
    ({"a_words": 2048, "b_words": 2048}, {"data_bits": 128},
     "tiles.default.a_words: 2048 is not allowed with b_words 2048"),
    ({"max_k": 1024, "b_words": 256}, None, "tiles.default.b_words: 256 is not allowed, must "
                                            "hold one B block of max_k: at least 512"),
    ({"jobs": 65}, None, "tiles.default.jobs: 65 is not allowed, must be 1..64"),
    ({"depth": 4}, None, "unknown field 'depth'"),
    (None, {"data_bits": 32}, "packet.data_bits: 32 is not allowed"),
    ({"sparsity": "3:4"}, None, 'tiles.default.sparsity: "3:4" is not allowed, must be one of '
                                'dense, 2:4, 4:8'),
    ({"sparsity": True}, None, "tiles.default.sparsity: true is not allowed, must be of type "
                               "string"),
    ({"sparsity": "4:8", "lanes": 4, "op_bits": 16}, None,
     "tiles.default.sparsity: '4:8' is not allowed with data_bits 64 and op_bits 16, must "
     "leave whole groups of 8 in an A word"),
    ({"sparsity": "4:8", "lanes": 8}, None,
     "tiles.default.sparsity: '4:8' is not allowed with lanes 8, op_bits 8 and data_bits 64, "
     "must leave whole groups of 4 in a metadata word"),
    ({"sparsity": "2:4", "a_words": 1536, "b_words": 2048}, {"data_bits": 128},
     "tiles.default.a_words: 1536 is not allowed with b_words 2048, a_words + b_words + 512 "
     "metadata words must be at most 4080"),
])
def test_gemm_config_errors(tile, packet, message):
    with pytest.raises(ConfigError) as err:
        resolve(_cfg(tile, packet))
    assert message in str(err.value)


@pytest.mark.parametrize("tile,packet", [
    ({}, {}),
    ({"sparsity": "2:4"}, {}),
    ({"sparsity": "4:8", "lanes": 8, "op_bits": 16, "max_k": 200}, {"data_bits": 128}),
    ({"sparsity": "2:4", "lanes": 2, "op_bits": 12, "max_k": 37, "jobs": 1}, {"data_bits": 96}),
    ({"lanes": 8, "op_bits": 16, "max_k": 200}, {"data_bits": 128}),
    ({"lanes": 8, "op_bits": 8, "max_k": 1024, "a_words": 512, "b_words": 512},
     {"data_bits": 256}),
    ({"lanes": 2, "op_bits": 12, "max_k": 37, "jobs": 1}, {"data_bits": 96}),
])
def test_manifest_geometry_matches_golden(tile, packet):
    cfg = resolve(_cfg(tile, packet))
    m = manifest_for(cfg, "fabric", "module g(\n);\nendmodule\n", "0")["gemm"]
    p = cfg["packet"]
    g = GemmGeometry(data_bits=p["data_bits"], addr_bits=p["addr_bits"], **m["params"])
    assert m["acc_bits"] == g.acc_bits == acc_bits(g.op_bits, g.max_k)
    assert m["operands_per_word"] == g.operands_per_word
    assert m["rows_per_b_word"] == g.k_per_b_word
    assert m["results_per_flit"] == g.results_per_flit
    assert m["flits_per_group"] == g.flits_per_group
    assert m["a_base"] == g.a_base
    assert m["sparsity"] == g.sparsity
    if g.nm:
        assert m["nm"] == list(g.nm) and m["meta_bits"] == g.meta_bits
        assert (m["meta_base"], m["meta_words"]) == (g.meta_base, g.meta_words)
        assert (m["meta_group_words"], m["meta_steps"]) == (g.meta_group_words, g.meta_steps)
    lsb = 0
    for name, width in g.descriptor_fields:
        assert m["descriptor"][name] == {"lsb": lsb, "width": width}, name
        lsb += width
    for name, addr in m["status_registers"].items():
        assert addr == g.status_addr(name), name
    assert m["pes"] == [[0, 0], [1, 0]]
