"""What the mesh NoC must do, and the figures it is measured against.

Delivery (from DESIGN.md): every packet whose destination is a tile of the mesh
or the host arrives there exactly once; packets from one source to one
destination arrive in the order they were sent; a packet for a destination
outside the mesh is dropped by the first router that sees it and counted there.

Routing is dimension-ordered (X, then Y) on a ``cols`` x ``rows`` mesh whose
row 0 is the north edge; the host hangs off an edge port of router ``(hx, hy)``
and is addressed by the all-ones coordinate pair.

Multicast (DESIGN.md): a packet for a rectangle of tiles spreads along the row of
the router it enters by, then north and south down every column of the
rectangle; every tile of the rectangle receives it exactly once, in order with
everything else that source sends that tile (a multicast branch to a tile
takes the very path a unicast packet to it takes). A rectangle that is empty or
leaves the mesh is dropped by the first router, like a unicast packet for a tile
outside the mesh.

Analytical figures (Dally & Towles 2004): under uniform random traffic the
bisection limits the accepted rate per node to ``4/k`` for an even dimension
``k`` and ``4k/(k**2 - 1)`` for an odd one; the single injection and ejection
port caps it at 1 flit/node/cycle. Mean XY hop count between distinct uniform
nodes of a ``k``-ary dimension is ``(k**2 - 1) / (3k)`` per dimension.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque

import numpy as np

from .packet import Op, Packet, PacketFormat

ROUTER_DELAY = 1   # cycles a flit spends in one router at zero load (its input FIFO)


SIDE_PORT = {"north": "N", "east": "E", "south": "S", "west": "W"}
_STEP = {(0, -1): "N", (1, 0): "E", (0, 1): "S", (-1, 0): "W"}


class MeshModel:
    """XY routing on the mesh. Router ports are named ``N, E, S, W`` (links, or the
    host's edge port at the host router, on side ``host_side``) and ``L`` (the tile)."""

    def __init__(self, cols: int, rows: int, host: tuple, fmt: PacketFormat,
                 host_side: str = "west"):
        self.cols, self.rows = cols, rows
        self.host_router = (host[0], host[1])
        self.host_port = SIDE_PORT[host_side]
        self.fmt = fmt
        self.host = fmt.host

    def nodes(self):
        return [(x, y) for y in range(self.rows) for x in range(self.cols)]

    def routable(self, dst) -> bool:
        return tuple(dst) == self.host or (0 <= dst[0] < self.cols and 0 <= dst[1] < self.rows)

    def destinations(self, p: Packet) -> list:
        """Where ``p`` is delivered: its tile or the host, every tile of its multicast
        rectangle, or nowhere (unroutable)."""
        if p.mcast:
            return p.targets(self.cols, self.rows)
        return [p.dst] if self.routable(p.dst) else []

    def multicast_traversals(self, src, rect) -> list:
        """``(router, input, outputs)`` of every router a multicast from ``src`` to
        ``rect`` crosses, ``outputs`` the set of ports its branches leave by there
        (each a link or ``L``); the tree the routers build."""
        x0, y0, x1, y1 = rect
        start = self.host_router if tuple(src) == self.host else tuple(src)
        first = self.host_port if tuple(src) == self.host else "L"
        out = []
        stack = [(start, first, None)]          # along the row: heading E, W or both
        while stack:
            (x, y), came, heading = stack.pop()
            outs = set()
            if heading != "W" and x < x1:
                outs.add("E")
            if heading != "E" and x > x0:
                outs.add("W")
            if x0 <= x <= x1:
                outs |= {o for o, hit in (("S", y < y1), ("N", y > y0), ("L", y0 <= y <= y1))
                         if hit}
            out.append(((x, y), came, outs))
            if "E" in outs:
                stack.append(((x + 1, y), "W", "E"))
            if "W" in outs:
                stack.append(((x - 1, y), "E", "W"))
            for step, dy, back in (("S", 1, "N"), ("N", -1, "S")):
                ny, going = y, step in outs
                while going:                    # along the column, one router at a time
                    ny += dy
                    col = {"L"} if y0 <= ny <= y1 else set()
                    going = ny < y1 if step == "S" else ny > y0
                    if going:
                        col.add(step)
                    out.append(((x, ny), back, col))
        return out

    def route(self, src, dst) -> list:
        """Routers visited from ``src`` (a node or the host) to ``dst``, XY order."""
        src = self.host_router if tuple(src) == self.host else tuple(src)
        target = self.host_router if tuple(dst) == self.host else tuple(dst)
        path = [src]
        x, y = src
        while x != target[0]:
            x += 1 if target[0] > x else -1
            path.append((x, y))
        while y != target[1]:
            y += 1 if target[1] > y else -1
            path.append((x, y))
        return path

    def traversals(self, src, dst) -> list:
        """``(router, input port, output port)`` for every router the packet crosses."""
        path = self.route(src, dst)
        ports = [self.host_port if tuple(src) == self.host else "L"]
        for a, b in itertools.pairwise(path):
            ports.append(_STEP[(b[0] - a[0], b[1] - a[1])])
        ports.append(self.host_port if tuple(dst) == self.host else "L")
        out = []
        for k, router in enumerate(path):
            # The input is named from the receiving router: the side its sender is on.
            came = ports[k] if k == 0 else _STEP[(path[k - 1][0] - router[0],
                                                   path[k - 1][1] - router[1])]
            out.append((router, came, ports[k + 1]))
        return out

    def turns(self) -> dict:
        """``(router, input) -> {output: destinations}`` over every source and
        destination pair (tiles and the host): the turns XY routing takes."""
        ends = self.nodes() + [self.host]
        out = defaultdict(lambda: defaultdict(set))
        for src in ends:
            for dst in ends:
                for router, came, leaves in self.traversals(src, dst):
                    out[(router, came)][leaves].add(tuple(dst))
        return out

    def hops(self, src, dst) -> int:
        """Router-to-router links crossed."""
        return len(self.route(src, dst)) - 1

    def zero_load_latency(self, src, dst) -> int:
        """Cycles from the source port's transfer to the destination port's transfer."""
        return (self.hops(src, dst) + 1) * ROUTER_DELAY

    def drop_router(self, src):
        """The router that drops an unroutable packet injected at ``src``."""
        return self.host_router if tuple(src) == self.host else tuple(src)


def bisection_bound_1d(k: int) -> float:
    if k <= 1:
        return float("inf")
    return 4.0 / k if k % 2 == 0 else 4.0 * k / (k * k - 1)


def saturation_bound(cols: int, rows: int) -> float:
    """Uniform-random accepted-throughput bound in flits/node/cycle: min(1, bisection)."""
    return min(1.0, bisection_bound_1d(cols), bisection_bound_1d(rows))


def mean_hops_uniform(cols: int, rows: int) -> float:
    """Mean XY hop count, uniform over all source/destination pairs (self included)."""
    return (cols * cols - 1) / (3 * cols) + (rows * rows - 1) / (3 * rows)


class DeliveryChecker:
    """Checks delivered packets against what was sent: exactly once, in order per pair.

    ``sent(src, packet)`` records an injection at port ``src``; ``received(port,
    packet)`` a delivery. Unroutable packets are expected to be dropped and
    counted per router.
    """

    def __init__(self, model: MeshModel):
        self.model = model
        self.queues = defaultdict(deque)     # (src, dst) -> packets in flight, in order
        self.expected_drops = defaultdict(int)
        self.errors = []
        self.delivered = 0
        # What went wrong, counted: a delivery out of its pair's order, one never sent
        # or already delivered, one to a tile that is not its destination.
        self.counts = {"reordered": 0, "duplicated": 0, "misdelivered": 0}

    def sent(self, src, p: Packet):
        dests = self.model.destinations(p)
        for dst in dests:
            self.queues[(tuple(src), dst)].append(p)
        if not dests:
            self.expected_drops[self.model.drop_router(src)] += 1

    def received(self, port, p: Packet):
        port = tuple(port)
        if port not in self.model.destinations(p):
            self.counts["misdelivered"] += 1
            self.errors.append(f"packet {p} delivered at {port}, not at its destination")
            return
        q = self.queues.get((p.src, port))
        if not q:
            self.counts["duplicated"] += 1
            self.errors.append(f"packet {p} at {port} was never sent or is a duplicate")
        elif q[0] != p:
            where = "out of order" if p in q else "corrupted, duplicated or never sent"
            self.counts["reordered" if p in q else "duplicated"] += 1
            self.errors.append(f"packet {p} at {port}: {where}; expected {q[0]}")
            if p in q:
                q.remove(p)
        else:
            q.popleft()
            self.delivered += 1

    @property
    def outstanding(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def missing(self, limit: int = 5) -> list:
        out = []
        for (src, dst), q in self.queues.items():
            out += [f"{p} from {src} to {dst}" for p in list(q)[:limit]]
        return out[:limit]


class MemoryTileModel:
    """A memory tile as DESIGN.md and the tile contract define it.

    ``handle(p)`` consumes one request in arrival order and returns the reply
    packet or ``None``. Status registers sit at ``2**addr_bits - 4 + k``:
    dropped (set by the caller: its router's drop count), errors (requests
    answered with ERROR plus unexpected replies), flits received, replies
    issued; a status read returns them as they stood before that read, each wrapped at
    ``counter_bits`` and then cut to the data width.
    """

    STATUS = ("dropped", "errors", "received", "sent")

    def __init__(self, x: int, y: int, depth: int, fmt: PacketFormat, counter_bits: int = 32):
        self.x, self.y, self.depth, self.fmt = x, y, depth, fmt
        self.counter_bits = counter_bits
        self.mem = np.zeros(depth, dtype=object)
        self.mem[:] = 0
        self.errors = self.received = self.sent = 0
        self.dropped = 0
        self.status_base = (1 << fmt.addr_bits) - len(self.STATUS)

    def _reply(self, req: Packet, op: Op, data: int) -> Packet:
        self.sent += 1
        return Packet(dst_x=req.src_x, dst_y=req.src_y, src_x=self.x, src_y=self.y,
                      op=int(op), addr=req.addr, data=data)

    def _error(self, req: Packet) -> Packet:
        self.errors += 1
        return self._reply(req, Op.ERROR, req.op)

    def handle(self, req: Packet):
        # Status reads see the counters as they stood before this request.
        status = (self.dropped, self.errors, self.received, self.sent)
        self.received += 1
        if req.op == Op.WRITE:
            if req.addr < self.depth:
                self.mem[req.addr] = req.data
                return None
            return self._error(req)
        if req.op == Op.READ:
            if req.addr < self.depth:
                return self._reply(req, Op.REPLY, int(self.mem[req.addr]))
            if req.addr >= self.status_base:
                value = status[req.addr - self.status_base] % (1 << self.counter_bits)
                return self._reply(req, Op.REPLY, value & ((1 << self.fmt.data_bits) - 1))
            return self._error(req)
        if req.op in (Op.REPLY, Op.DONE, Op.ERROR):
            self.errors += 1
            return None
        return self._error(req)
