"""argparse types for the CLI: each refuses what tilefab cannot honour and names the
argument (``--seed must be an integer 0..4294967295, not '-1'``).

Counts have an upper bound as well as a lower one, so that a run's memory stays
bounded: a size beyond the bound is refused rather than allocated.
"""

from __future__ import annotations

import argparse
import math

from ..gen.errors import TilefabError
from ..gen.loader import clip

SEED_MAX = (1 << 32) - 1


def integer(name: str, lo: int, hi: int, why: str = ""):
    """An integer in ``lo..hi``; the error names ``name`` and, for ``hi``, ``why``."""
    def parse(text: str) -> int:
        try:
            v = int(text.strip()) if len(text) < 40 else None
        except ValueError:
            v = None
        if v is None or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(
                f"{name} must be an integer {lo}..{hi}{f' ({why})' if why else ''}, "
                f"not {clip(text)}")
        return v
    parse.__name__ = name
    return parse


def fraction(name: str):
    """A probability in [0, 1): a stall or malformed-request rate (1 would never end)."""
    def parse(text: str) -> float:
        try:
            v = float(text) if len(text) < 40 else math.nan
        except ValueError:
            v = math.nan
        if not 0 <= v < 1:
            raise argparse.ArgumentTypeError(f"{name} must be a number in [0, 1), "
                                             f"not {clip(text)}")
        return v
    parse.__name__ = name
    return parse


seed = integer("--seed", 0, SEED_MAX)


def number(name: str, ok, allowed: str):
    """A float for which ``ok(v)`` holds; the error names ``name`` and ``allowed``."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, got {text!r}")
        return v
    parse.__name__ = name
    return parse


def tile_xy(text: str) -> tuple[int, int]:
    """``--tile X,Y``: a tile's coordinates (the fabric checks they are in the mesh)."""
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tile must be X,Y, not {text!r}") from None
    return x, y


MAX_ELEMENTS = 1 << 24      # a matrix of int64: 128 MB


def check_elements(what: str, *dims: int) -> None:
    """Refuse a matrix ``dims`` whose elements exceed ``MAX_ELEMENTS``, naming ``what``."""
    n = 1
    for d in dims:
        n *= max(1, int(d))
    if n > MAX_ELEMENTS:
        raise TilefabError(f"{what}: {' x '.join(map(str, dims))} = {n} elements is not "
                           f"allowed, must be at most {MAX_ELEMENTS} (the memory of this run)")
