"""The fabric top: a mesh NoC with one tile on every router and a host port.

Ports: ``host_in`` (packets from the host) and ``host_out`` (packets to it).

Every tile kind implements the tile contract (``tile.TileSignature``: the
NoC-facing stream pair ``i``/``o`` and its router's drop counter ``dropped``);
the fabric refuses a tile whose signature is anything else. ``TILE_KINDS`` maps a
kind name to its component class, constructed with ``layout``, ``x``, ``y`` and
the kind's own parameters as keywords; ``cls.Params`` declares and checks them.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .noc.mesh import Mesh
from .tile import COUNTER_BITS, TileSignature
from .tiles.crossbar import CrossbarTile
from .tiles.gemm import GemmTile
from .tiles.memory import MemoryTile
from .tiles.pbit import PBitTile
from .tiles.spmv import SpmvTile

TILE_KINDS = {
    "memory": MemoryTile,
    "gemm": GemmTile,
    "crossbar": CrossbarTile,
    "pbit": PBitTile,
    "spmv": SpmvTile,
}


class Fabric(wiring.Component):
    def __init__(self, *, layout, cols: int, rows: int, host=(0, 0, "west"),
                 router: str = "fifo", fifo_depth: int = 2, voq_depth: int = 4,
                 tiles: dict, counter_bits: int = COUNTER_BITS):
        self._mesh = Mesh(layout=layout, cols=cols, rows=rows, host=host, router=router,
                          fifo_depth=fifo_depth, voq_depth=voq_depth,
                          counter_bits=counter_bits)
        self._cols = cols
        self._tiles = {}
        for y in range(rows):
            for x in range(cols):
                if (x, y) not in tiles:
                    raise ValueError(f"tiles: no tile at {(x, y)}; every router needs one")
                kind, params = tiles[(x, y)]
                if kind not in TILE_KINDS:
                    raise ValueError(f"tiles[{x},{y}].kind: {kind!r} is not a tile kind, must "
                                     f"be one of {', '.join(sorted(TILE_KINDS))}")
                tile = TILE_KINDS[kind](layout=layout, x=x, y=y, counter_bits=counter_bits,
                                        **params)
                if tile.signature != TileSignature(layout, counter_bits):
                    raise TypeError(f"tiles[{x},{y}]: a {kind} tile must implement "
                                    f"TileSignature({layout!r}, {counter_bits}), not "
                                    f"{tile.signature!r}")
                self._tiles[(x, y)] = tile
        super().__init__({
            "host_in": In(stream.Signature(layout)),
            "host_out": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mesh = mesh = self._mesh
        wiring.connect(m, wiring.flipped(self.host_in), mesh.host_in)
        wiring.connect(m, mesh.host_out, wiring.flipped(self.host_out))
        for (x, y), tile in self._tiles.items():
            i = y * self._cols + x
            m.submodules[f"tile_{x}_{y}"] = tile
            wiring.connect(m, mesh.tile_out[i], tile.i)
            wiring.connect(m, tile.o, mesh.tile_in[i])
            m.d.comb += tile.dropped.eq(mesh.dropped[i])
        return m
