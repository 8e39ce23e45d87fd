# amaranth: UnusedElaboratable=no
"""Router unit tests on amaranth.sim: all five ports loaded at once, random backpressure.

Both router kinds (``Router``, ``VoqRouter``) take random flits on N, E, S, W and L:
on each input the destinations XY routing can bring there (from the golden mesh
model), plus on every input some it cannot (destinations outside the mesh, and
on link inputs flits that would need a turn XY never takes). Each routable flit
must leave by the output XY routing names, in order per input, exactly once;
the others are dropped and counted; an offered flit is held until taken. The
VOQ router must move flits of one input out of several outputs in one cycle
(input speedup); the FIFO router never can.
"""

import random
import subprocess
from collections import Counter, defaultdict, deque
from pathlib import Path

import pytest
from router_bench import check_outputs, run_router
from tilefab.gen import toolchain
from tilefab.gen.config import load, resolve
from tilefab.gen.errors import ConfigError
from tilefab.gen.generate import generate
from tilefab.gen.lint import lint_file
from tilefab.golden.noc import MeshModel
from tilefab.golden.packet import Packet, PacketFormat
from tilefab.hw.noc.mesh import Mesh
from tilefab.hw.noc.packet import packet_layout
from tilefab.hw.noc.router import DIRECTIONS, Router
from tilefab.hw.noc.router_voq import VoqRouter
from tilefab.hw.noc.routing import Place

FMT = PacketFormat(coord_bits=3, addr_bits=4, data_bits=12)
LAYOUT = packet_layout(coord_bits=3, addr_bits=4, data_bits=12)
PORT = {name: d for d, name in enumerate(DIRECTIONS)}


def build(kind, depth, **place):
    if kind == "fifo":
        return Router(layout=LAYOUT, fifo_depth=depth, **place)
    return VoqRouter(layout=LAYOUT, depth=depth, **place)


# (mesh, router under test, host attachment): the centre of a 3x3 mesh with the host
# elsewhere, an edge router whose north port is the host port, and an interior router
# of a non-square 4x3 mesh whose host hangs off the east edge.
PLACES = {
    "3x3-centre": ((3, 3), (1, 1), (0, 0, "west")),
    "3x3-host-north": ((3, 3), (1, 0), (1, 0, "north")),
    "4x3-interior": ((4, 3), (2, 1), (3, 1, "east")),
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("kind,depth", [("fifo", 1), ("fifo", 2), ("fifo", 3),
                                        ("voq", 1), ("voq", 2), ("voq", 4)])
def test_router_all_ports(kind, depth, place):
    (cols, rows), here, host = PLACES[place]
    dut = build(kind, depth, x=here[0], y=here[1], cols=cols, rows=rows, host=host)
    model = MeshModel(cols, rows, host[:2], FMT, host_side=host[2])
    turns = model.turns()
    # Per input: destination -> the output XY routing takes there.
    legal = {d: {dst: PORT[o] for o, dsts in turns.get((here, name), {}).items()
                 for dst in dsts}
             for d, name in enumerate(DIRECTIONS)}
    everywhere = model.nodes() + [FMT.host, (cols, 0), (0, rows), (7, 0)]
    rng = random.Random(hash((kind, depth, place)) & 0xFFFF)
    queues = {d: deque() for d in range(5)}
    entered = {}
    expected = defaultdict(deque)
    drops = 0
    for seq in range(800):
        d = rng.randrange(5)
        if legal[d] and rng.random() < 0.9:
            dst = rng.choice(sorted(legal[d]))
        else:
            dst = rng.choice(everywhere)
        p = Packet(dst[0], dst[1], 0, 0, rng.randrange(6), rng.randrange(16), seq)
        queues[d].append(p)
        entered[p] = d
        if dst in legal[d]:
            expected[(d, legal[d][dst])].append(p)
        else:
            drops += 1
    assert drops > 20 and sum(len(q) for q in expected.values()) > 600
    got, errors, dropped, moves = run_router(dut, FMT, queues, rng, cycles=8000, ready=0.6,
                                             drain=5 * depth + 10)
    assert not any(queues.values()), "inputs never accepted all flits"
    assert dropped == drops
    assert not errors, errors[:5]
    check_outputs(got, expected)
    # Per cycle, the most flits one input moved out.
    fanout = [max(Counter(entered.get(p) for _, p in moved).values(), default=0)
              for moved in moves]
    if kind == "voq":
        assert max(fanout) >= 2, "no input ever fed two outputs in one cycle"
    else:
        assert max(fanout) == 1, "an input FIFO gave up two flits in one cycle"


@pytest.mark.parametrize("shape,host", [((3, 3), (0, 0, "west")), ((4, 3), (3, 1, "east")),
                                        ((1, 4), (0, 3, "south")), ((5, 1), (2, 0, "north"))])
def test_turns_are_the_xy_turns(shape, host):
    """Each router builds exactly the turns golden XY routes take: no fewer (a flit
    would be dropped), no more (a queue or request line that never carries a flit)."""
    cols, rows = shape
    model = MeshModel(cols, rows, host[:2], FMT, host_side=host[2])
    turns = model.turns()
    for x, y in model.nodes():
        place = Place.check(layout=LAYOUT, x=x, y=y, cols=cols, rows=rows, host=host)
        for d, name in enumerate(DIRECTIONS):
            want = sorted(PORT[o] for o in turns.get(((x, y), name), {}))
            assert list(place.turns(d)) == want, f"router {(x, y)} input {name}"
        voq = VoqRouter(layout=LAYOUT, x=x, y=y, cols=cols, rows=rows, host=host)
        assert len(voq.queues) == sum(len(place.turns(d)) for d in range(5))


def test_interior_voq_count():
    r = VoqRouter(layout=LAYOUT, x=1, y=1, cols=3, rows=3, host=(0, 0, "west"))
    # N, S: 2 each (onward, local); E, W: 4 each (onward, N, S, local); L: 5.
    assert len(r.queues) == 17
    assert all(o not in (1, 3) for d, o in r.queues if d in (0, 2))    # no Y-to-X
    assert all(d != o for d, o in r.queues if d != 4)                   # no U-turn


PLACE = {"x": 1, "y": 1, "cols": 3, "rows": 3, "host": (0, 0, "west")}


@pytest.mark.parametrize("kwargs,message", [
    ({"depth": 0}, r"^depth: 0 is not allowed, must be 1\.\.64$"),
    ({"depth": 65}, r"^depth: 65 is not allowed, must be 1\.\.64$"),
    ({"depth": 2.0}, r"^depth: 2\.0 is not allowed, must be 1\.\.64$"),
    ({"depth": True}, r"^depth: True is not allowed"),
    ({"counter_bits": 0}, r"^counter_bits: 0 is not allowed, must be 1\.\.64$"),
    ({"x": 3}, r"^x: 3 is not allowed, must be 0\.\.2$"),
    ({"y": -1}, r"^y: -1 is not allowed, must be 0\.\.2$"),
    ({"cols": 0, "x": 0}, r"^cols: 0 is not allowed, must be >= 1$"),
    ({"host": (0, 0, "up")}, r"^host side: 'up' is not allowed, must be one of north, east"),
    ({"host": (3, 0, "east")}, r"^host: router \(3, 0\) is outside the 3x3 mesh$"),
    ({"host": (1, 1, "west")}, r"^host: side 'west' of router \(1, 1\) is not on the edge"),
    ({"cols": 8}, r"^coord_bits: 3 bits cannot address a 8x3 mesh plus the host"),
])
def test_voq_router_refuses(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VoqRouter(layout=LAYOUT, **{**PLACE, **kwargs})


def test_voq_router_takes_no_fifo_depth():
    with pytest.raises(TypeError, match="fifo_depth"):
        VoqRouter(layout=LAYOUT, fifo_depth=2, **PLACE)


def test_mesh_picks_the_router():
    fifo = Mesh(layout=LAYOUT, cols=3, rows=2, fifo_depth=3)
    voq = Mesh(layout=LAYOUT, cols=3, rows=2, router="voq", voq_depth=5)
    assert type(fifo.router(2, 1)) is Router and fifo.router(2, 1)._fifo_depth == 3
    assert type(voq.router(2, 1)) is VoqRouter and voq.router(2, 1)._depth == 5
    with pytest.raises(ValueError, match=r"^router: 'vc' is not allowed, must be one of "
                                         r"fifo, voq$"):
        Mesh(layout=LAYOUT, cols=3, rows=2, router="vc")
    with pytest.raises(ValueError, match=r"^depth: 0 is not allowed"):
        Mesh(layout=LAYOUT, cols=3, rows=2, router="voq", voq_depth=0)


def test_config_router_fields():
    cfg = resolve({"mesh": {"cols": 2, "rows": 2}})
    assert cfg["mesh"]["router"] == "fifo" and cfg["mesh"]["voq_depth"] == 4
    cfg = resolve({"mesh": {"cols": 2, "rows": 2, "router": "voq", "voq_depth": 3}})
    assert cfg["mesh"]["router"] == "voq" and cfg["mesh"]["voq_depth"] == 3
    for mesh, message in [
            ({"router": "xy"}, 'mesh.router: "xy" is not allowed, must be one of fifo, voq'),
            ({"voq_depth": 0}, "mesh.voq_depth: 0 is not allowed, must be 1..64"),
            ({"voq_depth": 65}, "mesh.voq_depth: 65 is not allowed, must be 1..64")]:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            resolve({"mesh": {"cols": 2, "rows": 2, **mesh}})


EXAMPLES = Path(__file__).parent.parent / "examples"


def voq_config(example: str, depth: int) -> dict:
    cfg = load(EXAMPLES / example)
    cfg["mesh"].update(router="voq", voq_depth=depth)
    cfg["name"] += f"_voq{depth}"
    return cfg


@pytest.mark.parametrize("top", ["fabric", "mesh"])
@pytest.mark.parametrize("depth", [1, 4])
def test_voq_lint_clean(top, depth):
    g = generate(voq_config("fabric3x2.yaml", depth), top)
    assert "voq_" in g.text()
    proc = lint_file(g.verilog, g.module)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.synth
@pytest.mark.parametrize("router", ["fifo", "voq"])
def test_mesh_has_no_combinational_loop(router, tmp_path):
    """VOQ inputs' ready depends on their payload; the mesh must still have no loop."""
    cfg = voq_config("fabric3x2.yaml", 2)
    cfg["mesh"]["router"] = router
    g = generate(cfg, "mesh")
    script = f"read_verilog {g.verilog}; prep -flatten -top {g.module}; check -assert"
    proc = subprocess.run([toolchain.yosys(), "-q", "-p", script], capture_output=True,
                          text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
