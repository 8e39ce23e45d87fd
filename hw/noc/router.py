"""A 5-port mesh router: input FIFOs, XY routing, round-robin output arbitration.

Ports ``i[d]`` (flits in) and ``o[d]`` (flits out) are ``amaranth.lib.stream``
ports indexed by direction ``N, E, S, W, L`` (0..4); ``L`` is the local tile.
Row 0 is the north edge, so north is ``y - 1``.

Timing: a flit written into an input FIFO can leave on the next cycle, so each
hop costs one cycle at zero load; every output moves at most one flit per cycle.

Routing (dimension-ordered, X then Y; ``routing.route_xy``):
- ``dst == host``: route towards the host's router ``(hx, hy)`` and, there, out of
  the host's edge port;
- ``dst`` outside the mesh (and not the host): the flit is dropped at once and
  counted in ``dropped``, so it can never circulate or block an input;
- otherwise east/west until ``x`` matches, then north/south, then local.
Only the turns XY routing takes are built (``routing.Place.turns``): an input from
N or S never requests E or W, and no input requests the port it came in by. A
flit that no XY route could bring to its input is dropped and counted like an
unroutable one.

Guarantees: no loss and no duplication of routable flits; flits of one input
leave in order; an output that has offered a flit keeps offering the same flit
until it is taken (the stream rule), and round-robin priority moves past an
input once it has been served, so no input starves. XY routing on a mesh has no
cyclic channel dependency, hence no deadlock.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..fifo import sync_fifo
from ..params import check_int
from .packet import has_multicast
from .routing import (
    DIRECTIONS,
    OPPOSITE,
    SIDES,
    E,
    L,
    N,
    Place,
    S,
    W,
    round_robin,
    route_input,
    route_xy,
)

__all__ = ["DIRECTIONS", "OPPOSITE", "SIDES", "E", "L", "N", "Router", "S", "W"]


class Router(wiring.Component):
    """Mesh router at ``(x, y)`` of a ``cols`` x ``rows`` mesh.

    ``host`` is ``(hx, hy, side)`` with ``side`` one of ``SIDES``: where the host
    port hangs off the mesh. ``dropped`` counts flits dropped for an unroutable
    destination (wraps at ``2**counter_bits``).
    """

    def __init__(self, *, layout, x: int, y: int, cols: int, rows: int, host,
                 fifo_depth: int = 2, counter_bits: int = 32):
        self._place = Place.check(layout=layout, x=x, y=y, cols=cols, rows=rows, host=host)
        check_int("fifo_depth", fifo_depth, 1, 64)
        check_int("counter_bits", counter_bits, 1, 64)
        self._layout = layout
        self._x, self._y, self._cols, self._rows = x, y, cols, rows
        self._host = (host[0], host[1], SIDES[host[2]])
        self._fifo_depth = fifo_depth
        super().__init__({
            "i": In(stream.Signature(layout)).array(5),
            "o": Out(stream.Signature(layout)).array(5),
            "dropped": Out(counter_bits),
        })

    def _route(self, m, flit, out, drop):
        """Drive one-hot ``out`` (5 bits) or ``drop`` for ``flit`` combinationally."""
        route_xy(m, self._place, flit, out, drop)

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._layout).width
        place = self._place

        heads = []     # (queue, route one-hot over legal turns, drop)
        for d in range(5):
            q = sync_fifo(width, self._fifo_depth)
            m.submodules[f"fifo_{DIRECTIONS[d]}"] = q
            m.d.comb += [
                q.w_data.eq(self.i[d].payload),
                q.w_en.eq(self.i[d].valid),
                self.i[d].ready.eq(q.w_rdy),
            ]
            route, drop = route_input(m, place, self._route, self._layout(q.r_data), d)
            heads.append((q, route, drop))

        # Unroutable flits leave their FIFO at once; at most one per input per cycle.
        drops = Cat(q.r_rdy & drop for q, _, drop in heads)
        popcount = sum(drops[k] for k in range(5))
        m.d.sync += self.dropped.eq(self.dropped + popcount)

        # A multicast head is offered on every output of its route and leaves its FIFO
        # once each has taken it; `served` remembers the outputs that already have.
        multicast = has_multicast(self._layout)
        served = [Signal(5, name=f"served_{DIRECTIONS[d]}") if multicast else C(0, 5)
                  for d in range(5)]
        read = [Signal(name=f"read_{DIRECTIONS[d]}") for d in range(5)]
        grants = []
        for o in range(5):
            # Requests only from the inputs XY routing can turn into `o`; the rest are 0.
            takers = [k for k in range(5) if o in place.turns(k)]
            req = Signal(5, name=f"req_{DIRECTIONS[o]}")
            m.d.comb += req.eq(Cat(heads[k][0].r_rdy & heads[k][1][o] & ~served[k][o]
                                   if k in takers else C(0, 1) for k in range(5)))
            grants.append(round_robin(m, req, self.o[o],
                                      {k: heads[k][0].r_data for k in takers},
                                      DIRECTIONS[o]))

        for k, (q, route, drop) in enumerate(heads):
            taken = Cat(g[k] for g in grants)
            if multicast:
                complete = ((served[k] | taken) & route) == route
                m.d.comb += read[k].eq(taken.any() & complete)
                with m.If(read[k] | drop):
                    m.d.sync += served[k].eq(0)
                with m.Elif(taken.any()):
                    m.d.sync += served[k].eq(served[k] | taken)
            else:
                m.d.comb += read[k].eq(taken.any())
            m.d.comb += q.r_en.eq(read[k] | drop)
        return m
