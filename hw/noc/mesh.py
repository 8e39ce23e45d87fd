"""A ``cols`` x ``rows`` mesh of routers with a host port on one edge.

Ports:
- ``tile_in[i]`` / ``tile_out[i]``: the local port of router ``i = y * cols + x``,
  flits from the tile into the mesh and from the mesh to the tile;
- ``host_in`` / ``host_out``: the host port, attached to the ``side`` edge port of
  router ``(hx, hy)``; the host's address is the all-ones coordinate pair;
- ``dropped[i]``: router ``i``'s count of flits dropped for an unroutable destination.

``router`` picks the router kind (``ROUTERS``): ``fifo`` (``Router``, input FIFOs of
``fifo_depth``) or ``voq`` (``VoqRouter``, virtual output queues of ``voq_depth``).

Edge ports that face out of the mesh (other than the host's) are tied off: XY
routing never selects them for a routable destination.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .router import OPPOSITE, SIDES, E, L, N, Router, S, W
from .router_voq import VoqRouter

ROUTERS = {"fifo": Router, "voq": VoqRouter}


class Mesh(wiring.Component):
    def __init__(self, *, layout, cols: int, rows: int, host=(0, 0, "west"),
                 router: str = "fifo", fifo_depth: int = 2, voq_depth: int = 4,
                 counter_bits: int = 32):
        if router not in ROUTERS:
            raise ValueError(f"router: {router!r} is not allowed, must be one of "
                             f"{', '.join(ROUTERS)}")
        depth = {"fifo": {"fifo_depth": fifo_depth}, "voq": {"depth": voq_depth}}[router]
        self._layout = layout
        self._cols, self._rows = cols, rows
        self._host = host
        # The routers validate the placement and depth; build them now so errors
        # surface at construction.
        self._routers = [ROUTERS[router](layout=layout, x=x, y=y, cols=cols, rows=rows,
                                         host=host, counter_bits=counter_bits, **depth)
                         for y in range(rows) for x in range(cols)]
        n = cols * rows
        super().__init__({
            "tile_in": In(stream.Signature(layout)).array(n),
            "tile_out": Out(stream.Signature(layout)).array(n),
            "host_in": In(stream.Signature(layout)),
            "host_out": Out(stream.Signature(layout)),
            "dropped": Out(counter_bits).array(n),
        })

    def router(self, x, y):
        return self._routers[y * self._cols + x]

    def elaborate(self, platform):
        m = Module()
        cols, rows = self._cols, self._rows
        for y in range(rows):
            for x in range(cols):
                r = self.router(x, y)
                m.submodules[f"router_{x}_{y}"] = r
                i = y * cols + x
                wiring.connect(m, wiring.flipped(self.tile_in[i]), r.i[L])
                wiring.connect(m, r.o[L], wiring.flipped(self.tile_out[i]))
                m.d.comb += self.dropped[i].eq(r.dropped)
                # Links to the east and south neighbours, both directions.
                if x + 1 < cols:
                    nb = self.router(x + 1, y)
                    wiring.connect(m, r.o[E], nb.i[OPPOSITE[E]])
                    wiring.connect(m, nb.o[W], r.i[OPPOSITE[W]])
                if y + 1 < rows:
                    nb = self.router(x, y + 1)
                    wiring.connect(m, r.o[S], nb.i[OPPOSITE[S]])
                    wiring.connect(m, nb.o[N], r.i[OPPOSITE[N]])
        hx, hy, side = self._host
        hr = self.router(hx, hy)
        d = SIDES[side]
        wiring.connect(m, wiring.flipped(self.host_in), hr.i[d])
        wiring.connect(m, hr.o[d], wiring.flipped(self.host_out))
        return m
