"""Configs shipped with tilefab: the fabrics the CLI falls back on when none is given.

``pbit.yaml`` is the p-bit tile of ``tilefab pbit maxcut`` and ``tilefab pbit
factor`` (and of ``tilefab bench pbit``): its number formats are the ones those
commands use, and the commands size its ``n``, ``n_colours`` and lane memories to
the problem.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ..gen.config import load, tile_params
from ..gen.pbit.tile import tile_format

HERE = Path(__file__).parent


def path(name: str) -> Path:
    """The shipped config ``name`` (without ``.yaml``)."""
    return HERE / f"{name}.yaml"


@cache
def pbit_format(name: str = "pbit"):
    """The number formats (``PBitFormat``, frozen) of the first p-bit tile of config
    ``name``, read once."""
    cfg = load(path(name))
    tile = next(t for t in cfg["tile_map"] if t["kind"] == "pbit")
    return tile_format(tile_params(tile, cfg["packet"]))
