"""A 5-port mesh router: input FIFOs, XY routing, round-robin output arbitration.

Ports ``i[d]`` (flits in) and ``o[d]`` (flits out) are ``amaranth.lib.stream``
ports indexed by direction ``N, E, S, W, L`` (0..4); ``L`` is the local tile.
Row 0 is the north edge, so north is ``y - 1``.

Timing: a flit written into an input FIFO can leave on the next cycle, so each
hop costs one cycle at zero load; every output moves at most one flit per cycle.

Routing (dimension-ordered, X then Y):
- ``dst == host``: route towards the host's router ``(hx, hy)`` and, there, out of
  the host's edge port;
- ``dst`` outside the mesh (and not the host): the flit is dropped at once and
  counted in ``dropped``, so it can never circulate or block an input;
- otherwise east/west until ``x`` matches, then north/south, then local.

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
from .packet import coord_bits_of, host_coord

N, E, S, W, L = range(5)
DIRECTIONS = ("N", "E", "S", "W", "L")
SIDES = {"north": N, "east": E, "south": S, "west": W}
OPPOSITE = {N: S, S: N, E: W, W: E}


class Router(wiring.Component):
    """Mesh router at ``(x, y)`` of a ``cols`` x ``rows`` mesh.

    ``host`` is ``(hx, hy, side)`` with ``side`` one of ``SIDES``: where the host
    port hangs off the mesh. ``dropped`` counts flits dropped for an unroutable
    destination (wraps at ``2**counter_bits``).
    """

    def __init__(self, *, layout, x: int, y: int, cols: int, rows: int, host,
                 fifo_depth: int = 2, counter_bits: int = 32):
        check_int("cols", cols, 1)
        check_int("rows", rows, 1)
        check_int("x", x, 0, cols - 1)
        check_int("y", y, 0, rows - 1)
        limit = host_coord(layout)
        if cols > limit or rows > limit:
            raise ValueError(f"coord_bits: {coord_bits_of(layout)} bits cannot address a "
                             f"{cols}x{rows} mesh plus the host; need cols, rows < {limit + 1}")
        hx, hy, side = host
        if side not in SIDES:
            raise ValueError(f"host side: {side!r} is not allowed, must be one of "
                             f"{', '.join(SIDES)}")
        if not (0 <= hx < cols and 0 <= hy < rows):
            raise ValueError(f"host: router {(hx, hy)} is outside the {cols}x{rows} mesh")
        check_int("fifo_depth", fifo_depth, 1, 64)
        check_int("counter_bits", counter_bits, 1, 64)
        self._layout = layout
        self._x, self._y, self._cols, self._rows = x, y, cols, rows
        self._host = (hx, hy, SIDES[side])
        self._fifo_depth = fifo_depth
        super().__init__({
            "i": In(stream.Signature(layout)).array(5),
            "o": Out(stream.Signature(layout)).array(5),
            "dropped": Out(counter_bits),
        })

    def _route(self, m, flit, out, drop):
        """Drive one-hot ``out`` (5 bits) or ``drop`` for ``flit`` combinationally."""
        x, y = self._x, self._y
        hx, hy, hside = self._host
        hc = host_coord(self._layout)
        tx = Signal.like(flit.dst_x)
        ty = Signal.like(flit.dst_y)
        to_host = Signal()
        m.d.comb += to_host.eq((flit.dst_x == hc) & (flit.dst_y == hc))
        with m.If(to_host):
            m.d.comb += [tx.eq(hx), ty.eq(hy)]
        with m.Else():
            m.d.comb += [tx.eq(flit.dst_x), ty.eq(flit.dst_y)]
        outside = (flit.dst_x >= self._cols) | (flit.dst_y >= self._rows)
        # Comparisons that cannot hold at this router (e.g. x < 0) are left out.
        steps = [(~to_host & outside, drop)]
        if x < self._cols - 1:
            steps.append((tx > x, out[E]))
        if x > 0:
            steps.append((tx < x, out[W]))
        if y < self._rows - 1:
            steps.append((ty > y, out[S]))
        if y > 0:
            steps.append((ty < y, out[N]))
        steps.append((to_host, out[hside]))
        with m.If(steps[0][0]):
            m.d.comb += steps[0][1].eq(1)
        for cond, target in steps[1:]:
            with m.Elif(cond):
                m.d.comb += target.eq(1)
        with m.Else():
            m.d.comb += out[L].eq(1)

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._layout).width

        heads = []     # (valid, payload view, route one-hot, drop, read-enable)
        for d in range(5):
            q = sync_fifo(width, self._fifo_depth)
            m.submodules[f"fifo_{DIRECTIONS[d]}"] = q
            m.d.comb += [
                q.w_data.eq(self.i[d].payload),
                q.w_en.eq(self.i[d].valid),
                self.i[d].ready.eq(q.w_rdy),
            ]
            flit = self._layout(q.r_data)
            route = Signal(5, name=f"route_{DIRECTIONS[d]}")
            drop = Signal(name=f"drop_{DIRECTIONS[d]}")
            self._route(m, flit, route, drop)
            heads.append((q, route, drop))

        # Unroutable flits leave their FIFO at once; at most one per input per cycle.
        drops = Cat(q.r_rdy & drop for q, _, drop in heads)
        popcount = sum(drops[k] for k in range(5))
        m.d.sync += self.dropped.eq(self.dropped + popcount)

        read = [Signal(name=f"read_{DIRECTIONS[d]}") for d in range(5)]
        for o in range(5):
            req = Signal(5, name=f"req_{DIRECTIONS[o]}")
            m.d.comb += req.eq(Cat(q.r_rdy & route[o] for q, route, _ in heads))
            prio = Signal(range(5), name=f"prio_{DIRECTIONS[o]}")
            held = Signal(name=f"held_{DIRECTIONS[o]}")
            held_sel = Signal(range(5), name=f"held_sel_{DIRECTIONS[o]}")
            pick = Signal(range(5), name=f"pick_{DIRECTIONS[o]}")
            # Round robin: the first requester at or after `prio`; later assignments win,
            # so candidates are visited from the lowest priority to the highest.
            with m.Switch(prio):
                for p in range(5):
                    with m.Case(p):
                        for k in reversed(range(5)):
                            with m.If(req[(p + k) % 5]):
                                m.d.comb += pick.eq((p + k) % 5)
            sel = Signal(range(5), name=f"sel_{DIRECTIONS[o]}")
            m.d.comb += sel.eq(Mux(held, held_sel, pick))
            port = self.o[o]
            with m.Switch(sel):
                for k in range(5):
                    with m.Case(k):
                        m.d.comb += port.payload.eq(heads[k][0].r_data)
            m.d.comb += port.valid.eq(req.any())
            with m.If(port.valid & port.ready):
                m.d.sync += [held.eq(0), prio.eq(Mux(sel == 4, 0, sel + 1))]
                for k in range(5):
                    with m.If(sel == k):
                        m.d.comb += read[k].eq(1)
            with m.Elif(port.valid):
                # Offered but not taken: keep offering the same flit (stream rule).
                m.d.sync += [held.eq(1), held_sel.eq(sel)]

        for k, (q, _, drop) in enumerate(heads):
            m.d.comb += q.r_en.eq(read[k] | drop)
        return m
