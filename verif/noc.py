"""NoC verification: the packet BFM, traffic patterns and a harness for mesh ports.

``PacketBFM`` packs and unpacks packets with the bit positions a generated
top's ``manifest.json`` gives (and checks them against the golden packet spec).
``MeshHarness`` puts a ``StreamSource``/``StreamSink`` pair with its own pause
pattern on every port of a generated ``mesh`` top (every router's local port and
the host port) or of a ``fabric`` top (the host port only), and feeds every
delivery to the golden ``DeliveryChecker``.
"""

from __future__ import annotations

import random

from ..golden.noc import DeliveryChecker, MeshModel
from ..golden.packet import Packet, PacketFormat, multicast_packet
from .stream import Clocked, StreamSink, StreamSource, random_pause


# The counts a soak (``tb_noc.soak``, ``tilefab bench noc --soak``) must find 0: the
# checker's faults, stream-rule breaches and routers whose drop count is not the
# golden one.
SOAK_FAULTS = ("lost", "duplicated", "reordered", "misdelivered", "protocol_errors",
               "drop_mismatches")


class PacketBFM:
    def __init__(self, manifest: dict):
        fields = manifest["packet"]["fields"]
        cfg = manifest["config"]["packet"]
        self.fmt = PacketFormat(coord_bits=cfg["coord_bits"], addr_bits=cfg["addr_bits"],
                                data_bits=cfg["data_bits"],
                                multicast=cfg.get("multicast", False))
        for name in self.fmt.fields:
            spec = (self.fmt.offsets[name], self.fmt.widths[name])
            got = (fields[name]["lsb"], fields[name]["width"])
            if spec != got:
                raise AssertionError(f"manifest packet field {name} at (lsb, width) {got}, "
                                     f"golden spec says {spec}")

    def pack(self, p: Packet) -> int:
        return self.fmt.pack(p)

    def unpack(self, word: int) -> Packet:
        return self.fmt.unpack(word)


def model_for(manifest: dict, fmt: PacketFormat) -> MeshModel:
    cfg = manifest["config"]
    host = cfg["host"]
    return MeshModel(cfg["mesh"]["cols"], cfg["mesh"]["rows"], (host["x"], host["y"]), fmt,
                     host_side=host["side"])


def traffic(pattern: str, sources: list, dests: list, n: int, rng: random.Random,
            hotspot=None, hot_fraction: float = 0.5) -> list:
    """``n`` (src, dst) pairs: ``all_pairs`` cycles over every pair, ``uniform`` draws
    both ends at random, ``hotspot`` sends ``hot_fraction`` of packets to ``hotspot``."""
    if pattern == "all_pairs":
        pairs = [(s, d) for s in sources for d in dests]
        out = []
        while len(out) < n:
            rng.shuffle(pairs)
            out += pairs
        return out[:n]
    if pattern == "uniform":
        return [(rng.choice(sources), rng.choice(dests)) for _ in range(n)]
    if pattern == "hotspot":
        hot = hotspot if hotspot is not None else dests[len(dests) // 2]
        return [(rng.choice(sources), hot if rng.random() < hot_fraction else rng.choice(dests))
                for _ in range(n)]
    raise ValueError(f"pattern: {pattern!r} is not allowed, must be one of "
                     f"all_pairs, uniform, hotspot")


class MeshHarness:
    """Sources and sinks on every port of a mesh or fabric top, checked by the golden model."""

    def __init__(self, dut, manifest: dict, rng: random.Random,
                 src_stall: float = 0.0, sink_stall: float = 0.0):
        self.dut = dut
        self.manifest = manifest
        self.bfm = PacketBFM(manifest)
        self.fmt = self.bfm.fmt
        self.model = model_for(manifest, self.fmt)
        self.checker = DeliveryChecker(self.model)
        self.host = self.fmt.host
        self.sources, self.sinks = {}, {}
        names = {p["name"] for p in manifest["ports"]}
        ports = [(self.host, "host_in", "host_out")]
        if "tile_in__0__valid" in names:
            ports += [(node, f"tile_in__{i}", f"tile_out__{i}")
                      for i, node in enumerate(self.model.nodes())]
        self.latencies = []      # (src, dst, cycles from `at` to delivery)
        for node, pin, pout in ports:
            self.sources[node] = StreamSource(dut, pin, random_pause(src_stall, rng))
            self.sinks[node] = StreamSink(dut, pout, random_pause(sink_stall, rng),
                                          on_word=self._on_word(node))
        self.clock = Clocked(dut.clk, [*self.sources.values(), *self.sinks.values()])
        self._born = {}          # packet -> [src, cycle it may be sent, copies to deliver]
        self.multicasts = 0      # multicast packets sent
        self.on_packet = None    # optional hook(port, packet, cycle)

    @property
    def nodes(self) -> list:
        """Ports that can inject traffic (tiles, if exposed, then the host)."""
        return [n for n in self.sources if n != self.host] + [self.host]

    def _on_word(self, node):
        def handle(cycle, word):
            p = self.bfm.unpack(word)
            self.checker.received(node, p)
            born = self._born.get(p)
            if born is not None:
                self.latencies.append((born[0], node, cycle - born[1], born[1]))
                born[2] -= 1                 # a multicast is born once, delivered often
                if not born[2]:
                    del self._born[p]
            if self.on_packet is not None:
                self.on_packet(node, p, cycle)
        return handle

    def send(self, src, p: Packet, at: int = 0):
        """Inject ``p`` at port ``src`` (a node or the host), no earlier than cycle ``at``."""
        self.checker.sent(src, p)
        self.multicasts += p.mcast
        dests = self.model.destinations(p)
        if dests:
            self._born[p] = [src, at, len(dests)]
        self.sources[src].send(self.bfm.pack(p), at=at)

    def rect(self, rng: random.Random, bad: bool = False) -> tuple:
        """A random rectangle of tiles ``(x0, y0, x1, y1)``; with ``bad`` one that is
        empty or leaves the mesh."""
        cols, rows, top = self.model.cols, self.model.rows, (1 << self.fmt.coord_bits) - 1
        while True:
            x0, x1 = sorted(rng.randrange(cols) for _ in range(2))
            y0, y1 = sorted(rng.randrange(rows) for _ in range(2))
            if not bad:
                return (x0, y0, x1, y1)
            r = [rng.randrange(top + 1) for _ in range(4)]
            if not (r[0] <= r[2] < cols and r[1] <= r[3] < rows):
                return tuple(r)

    def packet(self, src, dst, op: int = 0, addr: int = 0, data: int = 0) -> Packet:
        return Packet(dst_x=dst[0], dst_y=dst[1], src_x=src[0], src_y=src[1],
                      op=op, addr=addr, data=data)

    def multicast(self, src, rect, op: int = 0, addr: int = 0, data: int = 0) -> Packet:
        return multicast_packet(rect, src, op, addr, data)

    def counts(self) -> dict:
        """What the checker saw: delivered, lost (still outstanding), duplicated,
        reordered and misdelivered packet copies, and stream-rule breaches."""
        return {"delivered": self.checker.delivered, "lost": self.checker.outstanding,
                **self.checker.counts, "protocol_errors": len(self.clock.protocol_errors)}

    def start(self):
        self.clock.start()
        return self

    async def drain(self, timeout: int):
        await self.clock.wait_until(
            lambda: self.checker.outstanding == 0 and all(s.idle for s in self.sources.values()),
            timeout, "every routable packet to be delivered")

    def check(self):
        errors = self.checker.errors + self.clock.protocol_errors
        if self.checker.outstanding:
            errors.append(f"{self.checker.outstanding} packets lost, e.g. "
                          f"{self.checker.missing()}")
        assert not errors, "\n".join(errors[:20])
