"""Verilator lint of generated Verilog, with the waivers Amaranth's output needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import toolchain

# Warnings that Amaranth's Verilog backend produces by construction (implicit
# widening and truncation, always-blocks with constant sensitivity, unused
# intermediate nets, initialised regs, partial case statements over enums).
# Anything else Verilator reports fails the lint.
LINT_WAIVERS = ("DECLFILENAME", "PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC",
                "CASEINCOMPLETE", "ALWNEVER", "UNSIGNED")


def lint_file(path: Path, top: str | None = None) -> subprocess.CompletedProcess:
    toolchain.apply()
    cmd = [toolchain.verilator_bin(), "--lint-only", "-Wall",
           *(f"-Wno-{w}" for w in LINT_WAIVERS), str(path)]
    if top:
        cmd += ["--top-module", top]
    return subprocess.run(cmd, capture_output=True, text=True)
