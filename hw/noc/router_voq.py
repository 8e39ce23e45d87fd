"""A 5-port mesh router with virtual output queues and crossbar input speedup.

Ports, directions, routing and the ``dropped`` counter are ``Router``'s: ``i[d]``
(flits in) and ``o[d]`` (flits out) are ``amaranth.lib.stream`` ports indexed by
``N, E, S, W, L`` (0..4), routing is dimension-ordered X then Y
(``routing.route_xy``), a flit for a destination outside the mesh, or one no XY
route could bring to its input, is dropped on arrival and counted.

Queues: input ``d`` has one queue of ``depth`` flits per output it can turn to
(``routing.Place.turns``: no U-turns, no Y-to-X turns, nothing toward an edge
facing out of the mesh except the host's port), so up to 17 queues at an
interior router instead of 25. The incoming flit is routed combinationally from
``i[d].payload`` and written straight into the queue of its output; ``i[d].ready``
is that queue's room (or 1 for a flit to drop). ``ready`` thus depends on the
payload offered, never on a neighbour's ``ready``: a neighbour's ``valid`` and
``payload`` come from its queue heads and arbiter state, so meshes of these
routers have no combinational loop.

Timing: a flit written into a queue can leave on the next cycle (one cycle per
hop at zero load, as ``Router``); every output moves one flit per cycle and an
input may feed several outputs in the same cycle, one from each of its queues.
Each output picks among the queues aimed at it by round robin.

Guarantees: no loss and no duplication of routable flits; flits of one input for
one output leave in order (with XY routing, that keeps every source-destination
pair in order); an output that has offered a flit keeps offering it until taken
(a queue head leaves only by its own output), and round-robin priority moves
past a queue once served, so none starves. A queue holds flits for one output
only, so no flit waits behind one for another output (no head-of-line
blocking), and the channel dependencies of XY routing stay acyclic: no deadlock.

Multicast (a layout with ``mcast``): a rectangle's flit is routed to every branch
``routing.route_multicast`` gives (along the row first, then within each column)
and written into all of those queues in the same cycle, once all have room; so
each branch holds one copy and no branch gets two. The tree the branches form is
XY's, so no deadlock is added.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..fifo import sync_fifo
from ..params import check_int
from .routing import DIRECTIONS, Place, round_robin, route_input, route_xy


class VoqRouter(wiring.Component):
    """Mesh router at ``(x, y)`` of a ``cols`` x ``rows`` mesh with virtual output queues
    of ``depth`` flits; ``host`` and ``counter_bits`` as for ``Router``."""

    def __init__(self, *, layout, x: int, y: int, cols: int, rows: int, host,
                 depth: int = 8, counter_bits: int = 32):
        self._place = Place.check(layout=layout, x=x, y=y, cols=cols, rows=rows, host=host)
        check_int("depth", depth, 1, 64)
        check_int("counter_bits", counter_bits, 1, 64)
        self._layout = layout
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(layout)).array(5),
            "o": Out(stream.Signature(layout)).array(5),
            "dropped": Out(counter_bits),
        })

    @property
    def queues(self) -> list:
        """``(input, output)`` of every virtual output queue this router builds."""
        return [(d, o) for d in range(5) for o in self._place.turns(d)]

    def _route(self, m, flit, out, drop):
        """Drive one-hot ``out`` (5 bits) or ``drop`` for ``flit`` combinationally."""
        route_xy(m, self._place, flit, out, drop)

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._layout).width
        place = self._place

        voq = {}
        drops = []
        for d in range(5):
            port = self.i[d]
            route, drop = route_input(m, place, self._route, port.payload, d)
            # A flit goes into the queue of every output of its route (one for a unicast
            # flit, a multicast's branches) in one cycle, once all of them have room.
            fits = Signal(name=f"fits_{DIRECTIONS[d]}")
            room = []
            for o in place.turns(d):
                q = voq[(d, o)] = sync_fifo(width, self._depth)
                m.submodules[f"voq_{DIRECTIONS[d]}_{DIRECTIONS[o]}"] = q
                m.d.comb += [q.w_data.eq(port.payload),
                             q.w_en.eq(port.valid & route[o] & fits)]
                room.append(~route[o] | q.w_rdy)
            m.d.comb += [fits.eq(~drop & Cat(room).all()), port.ready.eq(drop | fits)]
            drops.append(port.valid & drop)

        m.d.sync += self.dropped.eq(self.dropped + sum(drops))

        for o in range(5):
            takers = [d for d in range(5) if (d, o) in voq]
            req = Signal(5, name=f"req_{DIRECTIONS[o]}")
            m.d.comb += req.eq(Cat(voq[(d, o)].r_rdy if d in takers else C(0, 1)
                                   for d in range(5)))
            grant = round_robin(m, req, self.o[o], {d: voq[(d, o)].r_data for d in takers},
                                DIRECTIONS[o])
            for d in takers:
                m.d.comb += voq[(d, o)].r_en.eq(grant[d])
        return m
