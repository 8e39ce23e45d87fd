"""``tilefab bench sparse --sections synth``: yosys ``synth_ecp5`` resources of each
sparse unit: the ``SparseGather`` of the gather bench, and one tile of each sparse kind
on a 1x1 fabric (router and host port included) beside its dense GEMM twin, with the
tiles' Fmax from nextpnr-ecp5 (85F, seed 1; ``gen.pnr``) unless ``--quick``. The
gather unit alone has more ports than the package has pins, so its Fmax is the spmv
tile's, which holds one.
"""

from __future__ import annotations

from ..gen import pnr
from ..gen.config import as_config
from ..gen.errors import TilefabError
from ..gen.generate import generate
from ..gen.synth import synthesize
from ..verif.tb_gather import TOP as GATHER_TOP
from ..verif.tb_gather import verilog_for

PACKET = {"data_bits": 64, "addr_bits": 12}
GEMM = {"kind": "gemm", "lanes": 4, "op_bits": 8, "max_k": 256, "a_words": 256,
        "b_words": 256, "jobs": 4}
TILES = {
    "gemm dense": dict(GEMM),
    "gemm 2:4": dict(GEMM, sparsity="2:4"),
    "gemm 4:8": dict(GEMM, sparsity="4:8"),
    "spmv": {"kind": "spmv", "nnz_depth": 512, "row_depth": 64, "x_depth": 256,
             "lanes": 4, "banks": 8, "window": 4, "value_bits": 8},
}


def _one_tile(name: str, tile: dict) -> dict:
    return as_config({"name": "t_" + name.replace(" ", "_").replace(":", "of"),
                      "mesh": {"cols": 1, "rows": 1}, "packet": dict(PACKET),
                      "tiles": {"default": dict(tile)}})


FIELDS = ("lut", "ff", "ram", "dsp", "lutram")


def _row(unit: str, res, fmax=None) -> dict:
    return {"unit": unit, **{k: getattr(res, k) for k in FIELDS}, "fmax_mhz": fmax}


def _fmax(verilog: str, top: str):
    try:
        return pnr.fmax(verilog, top, "ecp5").fmax_mhz
    except TilefabError as e:
        print(f"  (no Fmax for {top}: {e})")
        return None


def synth_rows(gather_units=(), quick: bool = False) -> list:
    rows = []
    for unit in gather_units:
        rows.append(_row(f"gather {unit['lanes']}x{unit['banks']} w{unit['window']}",
                         synthesize(verilog_for(unit), GATHER_TOP, "ecp5")))
    for name, tile in TILES.items():
        if quick and name == "gemm 4:8":
            continue
        g = generate(_one_tile(name, tile))
        rows.append(_row(f"{name} tile (1x1)", synthesize(g.text(), g.module, "ecp5"),
                         None if quick else _fmax(g.text(), g.module)))
    return rows


def synth_section(args, gather_units=()) -> tuple[dict, bool, list]:
    """(figures, True, no plot): resources are not checked against a model. The
    gather units are synthesized unless ``--quick``."""
    quick = getattr(args, "quick", False)
    print("== synth: yosys synth_ecp5 resources (a 1x1 tile includes its router and the "
          "host port)")
    rows = synth_rows(() if quick else gather_units, quick)
    print(f"{'unit':24s} {'LUT4':>7s} {'FF':>7s} {'DP16KD':>7s} {'MULT18':>7s} {'LUTRAM':>7s} "
          f"{'Fmax MHz':>8s}")
    for r in rows:
        fmax = f"{r['fmax_mhz']:8.1f}" if r["fmax_mhz"] else f"{'-':>8s}"
        print(f"{r['unit']:24s} " + " ".join(f"{r[k]:7d}" for k in FIELDS) + f" {fmax}")
    return {"rows": rows}, True, []
