"""What both mesh routers share: placement, XY routing, legal turns, output arbitration.

Directions index ports ``N, E, S, W, L`` (0..4); ``L`` is the local tile. Row 0 is
the north edge, so north is ``y - 1``.

``Place`` is a router's checked position in the mesh and where the host hangs off
it. ``route_xy`` is the dimension-ordered route of one flit. ``Place.turns(d)`` is
the set of outputs XY routing can take for a flit that entered on input ``d``: a
flit arriving from a neighbour never turns back (no U-turn) and a flit travelling
north or south never turns east or west (Y before X is never taken); only the
local port and the host's edge port inject, so only they reach every output; an
edge port facing out of the mesh (other than the host's) carries nothing.
``route_input`` routes an input's flit and drops what ``turns`` rules out.

Multicast (a layout with ``mcast``): a flit for the rectangle ``dst_x..dst_x1`` x
``dst_y..dst_y1`` spreads east and west along the row it is injected in, and from
every column of the rectangle north and south, as FlooNoC's xymask routing does.
``route_multicast`` gives the outputs any branch through this router could take
(east while the rectangle reaches further east, west likewise, and inside the
rectangle's columns north/south while it reaches further and the tile when the
router is inside); masking that with ``turns(d)`` leaves exactly the branches of
the tree that arrive on input ``d`` (a flit from the west goes on east and into
the column, one from the north only on south and to the tile), so every tile of
the rectangle is reached by exactly one path. A rectangle that is empty or leaves
the mesh is dropped on injection, like a unicast flit for a tile outside it.
``round_robin`` drives one output from its requesters with rotating priority.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import *

from ..params import check_int
from .packet import coord_bits_of, host_coord

N, E, S, W, L = range(5)
DIRECTIONS = ("N", "E", "S", "W", "L")
SIDES = {"north": N, "east": E, "south": S, "west": W}
OPPOSITE = {N: S, S: N, E: W, W: E}


@dataclass(frozen=True)
class Place:
    """Router ``(x, y)`` of a ``cols`` x ``rows`` mesh; the host port is output/input
    ``hside`` of router ``(hx, hy)``; ``hc`` is the host's coordinate value."""
    x: int
    y: int
    cols: int
    rows: int
    hx: int
    hy: int
    hside: int
    hc: int

    @classmethod
    def check(cls, *, layout, x, y, cols, rows, host) -> Place:
        """The placement if every part is allowed, else ``ValueError`` naming the part."""
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
        edge_ok = {"north": hy == 0, "south": hy == rows - 1,
                   "west": hx == 0, "east": hx == cols - 1}[side]
        if not edge_ok:
            raise ValueError(f"host: side {side!r} of router {(hx, hy)} is not on the "
                             f"edge of the {cols}x{rows} mesh")
        return cls(x, y, cols, rows, hx, hy, SIDES[side], limit)

    @property
    def host_here(self) -> bool:
        return (self.x, self.y) == (self.hx, self.hy)

    def links(self) -> set:
        """Directions with a neighbouring router."""
        out = set()
        if self.y > 0:
            out.add(N)
        if self.x < self.cols - 1:
            out.add(E)
        if self.y < self.rows - 1:
            out.add(S)
        if self.x > 0:
            out.add(W)
        return out

    def ports(self) -> set:
        """Directions in use: the links, the local port and, here, the host's port."""
        return self.links() | {L} | ({self.hside} if self.host_here else set())

    def turns(self, d: int) -> tuple:
        """Outputs a flit that entered on input ``d`` can leave by under XY routing."""
        ports = self.ports()
        if d == L or (self.host_here and d == self.hside):
            return tuple(sorted(ports))
        if d not in self.links():
            return ()
        onward = {W: {E, N, S}, E: {W, N, S}, N: {S}, S: {N}}[d]   # travelling away from d
        sinks = {L} | ({self.hside} if self.host_here else set())
        return tuple(sorted(ports & (onward | sinks)))


def route_xy(m, place: Place, flit, out, drop):
    """Drive one-hot ``out`` (5 bits) or ``drop`` for ``flit`` combinationally.

    ``dst == host``: towards router ``(hx, hy)``, there out of the host's port;
    ``dst`` outside the mesh (and not the host): ``drop``; otherwise east/west until
    ``x`` matches, then north/south, then local.
    """
    x, y = place.x, place.y
    tx = Signal.like(flit.dst_x)
    ty = Signal.like(flit.dst_y)
    to_host = Signal()
    m.d.comb += to_host.eq((flit.dst_x == place.hc) & (flit.dst_y == place.hc))
    with m.If(to_host):
        m.d.comb += [tx.eq(place.hx), ty.eq(place.hy)]
    with m.Else():
        m.d.comb += [tx.eq(flit.dst_x), ty.eq(flit.dst_y)]
    outside = (flit.dst_x >= place.cols) | (flit.dst_y >= place.rows)
    # Comparisons that cannot hold at this router (e.g. x < 0) are left out.
    steps = [(~to_host & outside, drop)]
    if x < place.cols - 1:
        steps.append((tx > x, out[E]))
    if x > 0:
        steps.append((tx < x, out[W]))
    if y < place.rows - 1:
        steps.append((ty > y, out[S]))
    if y > 0:
        steps.append((ty < y, out[N]))
    steps.append((to_host, out[place.hside]))
    with m.If(steps[0][0]):
        m.d.comb += steps[0][1].eq(1)
    for cond, target in steps[1:]:
        with m.Elif(cond):
            m.d.comb += target.eq(1)
    with m.Else():
        m.d.comb += out[L].eq(1)


def route_multicast(m, place: Place, flit, out, drop):
    """Drive ``out`` (5 bits, any number set) with every output a branch of ``flit``'s
    multicast tree may take at this router, or ``drop`` for an empty rectangle or one
    that leaves the mesh (module docstring)."""
    x, y = place.x, place.y
    x0, y0, x1, y1 = flit.dst_x, flit.dst_y, flit.dst_x1, flit.dst_y1
    bad = Signal(name="mc_bad")
    m.d.comb += bad.eq((x0 > x1) | (y0 > y1) | (x1 >= place.cols) | (y1 >= place.rows))
    in_col = Signal(name="mc_in_col")
    m.d.comb += in_col.eq((x0 <= x) & (x1 >= x))
    outs = {E: x1 > x, W: x0 < x, S: in_col & (y1 > y), N: in_col & (y0 < y),
            L: in_col & (y0 <= y) & (y1 >= y)}
    m.d.comb += drop.eq(bad)
    with m.If(~bad):
        m.d.comb += [out[o].eq(cond) for o, cond in outs.items()]


def route_input(m, place: Place, route_fn, flit, d: int):
    """``(route, drop)`` of input ``d``'s ``flit``: ``route`` is one-hot over the outputs
    ``place.turns(d)`` allows (for a multicast flit, the branches of its tree that
    leave here); a flit XY routing cannot bring to this input, like one for a
    destination outside the mesh, is dropped. ``route_fn(m, flit, out, drop)``
    computes the plain XY route."""
    name = DIRECTIONS[d]
    raw, raw_drop = Signal(5, name=f"xy_{name}"), Signal(name=f"xy_drop_{name}")
    route_fn(m, flit, raw, raw_drop)
    legal = sum(1 << o for o in place.turns(d))
    route = Signal(5, name=f"route_{name}")
    drop = Signal(name=f"drop_{name}")
    uni_drop = raw_drop | (raw & (0b11111 ^ legal)).any()
    if "mcast" not in dict(flit.shape()):
        m.d.comb += [route.eq(raw & legal), drop.eq(uni_drop)]
        return route, drop
    mc, mc_drop = Signal(5, name=f"mc_{name}"), Signal(name=f"mc_drop_{name}")
    route_multicast(m, place, flit, mc, mc_drop)
    with m.If(flit.mcast):
        # The branches the tree takes from here; none at all: no tree reaches this input.
        m.d.comb += [route.eq(mc & legal), drop.eq(mc_drop | ~(mc & legal).any())]
    with m.Else():
        m.d.comb += [route.eq(raw & legal), drop.eq(uni_drop)]
    return route, drop


def round_robin(m, req, port, payloads: dict, name: str):
    """Drive stream ``port`` from one of the requesters in ``req`` (5 bits, by input);
    ``payloads[k]`` is requester ``k``'s flit. Returns ``grant`` (5 bits): the requester
    whose flit ``port`` transfers this cycle.

    The first requester at or after the rotating priority wins; priority moves past
    a winner once served. An offered flit stays selected until taken (the stream
    rule), which holds as long as a requester keeps requesting until granted.
    """
    prio = Signal(range(5), name=f"prio_{name}")
    held = Signal(name=f"held_{name}")
    held_sel = Signal(range(5), name=f"held_sel_{name}")
    pick = Signal(range(5), name=f"pick_{name}")
    sel = Signal(range(5), name=f"sel_{name}")
    grant = Signal(5, name=f"grant_{name}")
    # Later assignments win, so candidates are visited from the lowest priority up.
    with m.Switch(prio):
        for p in range(5):
            with m.Case(p):
                for k in reversed(range(5)):
                    with m.If(req[(p + k) % 5]):
                        m.d.comb += pick.eq((p + k) % 5)
    m.d.comb += sel.eq(Mux(held, held_sel, pick))
    with m.Switch(sel):
        for k, payload in payloads.items():
            with m.Case(k):
                m.d.comb += port.payload.eq(payload)
    m.d.comb += port.valid.eq(req.any())
    with m.If(port.valid & port.ready):
        m.d.sync += [held.eq(0), prio.eq(Mux(sel == 4, 0, sel + 1))]
        for k in range(5):
            with m.If(sel == k):
                m.d.comb += grant[k].eq(1)
    with m.Elif(port.valid):
        m.d.sync += [held.eq(1), held_sel.eq(sel)]
    return grant
