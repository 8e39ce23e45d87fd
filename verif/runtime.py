"""The runtime: one handle that runs jobs on every tile kind of a generated fabric.

``Fabric(config)`` generates the fabric (cached), builds its Verilator model once
through pyverilator and steps it from Python; ``Fabric(config,
backend=CocotbBackend(dut))`` drives the same host port inside a cocotb test
(there, ``await fab.gemm_async(...)`` and the other ``*_async`` methods);
``Fabric(config, backend="golden")`` runs the p-bit jobs on their bit-exact model
alone, for problems too long to simulate.

Every method compiles its job into per-tile request lists with the workload
compilers of ``tilefab.gen`` (GEMM tiling, crossbar mapping, p-bit programs),
runs them as one ``HostSession`` (the host side of the NoC protocol, the same
for every kind) and decodes the replies. Every method takes ``seed``,
``in_stall`` and ``out_stall``: the probabilities that the host pauses its
sends on ``host_in`` / drops ``host_out.ready`` in a cycle, drawn from ``seed``.

Results carry their golden prediction: ``.golden_ok`` says whether the RTL's
answer equals the bit-exact model's (for GEMM, numpy's exact product), and
``.mismatch`` names the first difference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..gen.config import as_config, tile_params
from ..gen.errors import ConfigError, TilefabError
from ..gen.gemm.compiler import ITEM_OPS, GemmPlan, compile_gemm
from ..gen.generate import generate, packet_format
from ..gen.imc import tile as imc_tile
from ..gen.moe import check_moe_operands, plan_experts, plan_gate
from ..gen.pbit import driver, factor, graph, maxcut, quant
from ..gen.pbit import sparsify as pbit_sparsify
from ..gen.pbit import tile as pbit_tile
from ..gen.sparse import spmv as spmv_plan
from ..golden import moe as golden_moe
from ..golden.gemm import GemmGeometry, gemm_exact
from ..golden.packet import Op
from ..golden.pbit import PBitMachine, pbit_seeds
from .board_sim import BoardSimBackend
from .serial_link import SerialBackend
from .session import (
    CocotbBackend,
    HostError,
    HostSession,
    Multicast,
    PyverilatorBackend,
)

BACKENDS = ("verilator", "pyverilator", "golden", "board-sim", "serial")


class GoldenBackend:
    """No simulator: p-bit jobs return the bit-exact model's results (same spins, energies
    and cycle counts as the tile); other jobs need RTL and are refused."""

    asynchronous = False


BETA = (0.1, 3.0)          # the default anneal: a geometric ramp between these
# Factoring: a constant beta (the best state of a run is checked, so a run is a search
# at one temperature) and restarts of FACTOR_SWEEPS; tilefab bench pbit --factor measures
# these against ramps.
FACTOR_BETA = 0.7
FACTOR_SWEEPS = 1000
FACTOR_BUDGET_SWEEPS = 1_000_000
FACTOR_BUDGET_SECONDS = 600.0


@dataclass
class Tile:
    x: int
    y: int
    kind: str
    values: dict              # the YAML parameters, defaults filled
    params: object            # the kind's checked parameter object (``Tile.Params``)
    geometry: dict            # ``params.manifest()``: address map, status registers

    @property
    def xy(self) -> tuple:
        return (self.x, self.y)


def _mismatch(name, got, want) -> str:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"{name}: shape {got.shape} != golden {want.shape}"
    bad = np.argwhere(got != want)
    if not len(bad):
        return ""
    idx = tuple(int(i) for i in bad[0])
    return f"{name}{list(idx)}: RTL {got[idx]} != golden {want[idx]}"


# -- results ---------------------------------------------------------------------------

class _Checked:
    """``golden_ok``: the run's ``mismatch`` (its first difference from the golden
    model) is empty."""

    @property
    def golden_ok(self) -> bool:
        return not self.mismatch


class _CheckedY(_Checked):
    """A run whose integer outputs ``y`` are checked against its ``golden`` ones."""

    @property
    def mismatch(self) -> str:
        return _mismatch("y", self.y, self.golden)


@dataclass
class GemmRun(_Checked):
    """One GEMM on the fabric: the product and how long it took.

    ``utilization`` is against the dense peak (PEs x lanes MACs per cycle); on N:M
    tiles (``nm``) it can reach M/N, and ``sparse_utilization`` is against their
    peak, PEs x lanes x M/N dense-equivalent MACs per cycle."""
    c: np.ndarray
    cycles: int                     # first flit in to last flit out
    macs: int                       # m * k * n
    pes: int
    lanes: int
    flits_in: int
    flits_out: int
    counters: dict                  # (x, y) -> {status register: value during the run}
    mismatch: str = ""
    nm: tuple | None = None         # (N, M) of N:M sparse tiles

    @property
    def sparse_peak_macs_per_cycle(self) -> float:
        """Dense-equivalent MACs per cycle at the N:M peak (the dense peak if dense)."""
        n, m = self.nm or (1, 1)
        return self.peak_macs_per_cycle * m / n

    @property
    def sparse_utilization(self) -> float:
        return self.macs / (self.sparse_peak_macs_per_cycle * self.cycles)

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.pes * self.lanes

    @property
    def utilization(self) -> float:
        return self.macs / (self.peak_macs_per_cycle * self.cycles)

    def pe_utilization(self) -> dict:
        """Per PE: cycles its MAC engine issued, over the run's cycles."""
        return {pe: c["busy"] / self.cycles for pe, c in self.counters.items()}

    def stall_breakdown(self) -> dict:
        """Mean over PEs of each kind of engine cycle, as fractions of the run."""
        out = {}
        for name in ("busy", "stall_operands", "stall_noc"):
            out[name] = float(np.mean([c[name] for c in self.counters.values()])) / self.cycles
        out["idle"] = max(0.0, 1.0 - sum(out.values()))
        return out


@dataclass
class MvmRun(_CheckedY):
    """``y = w @ x`` on the crossbar tiles."""
    y: np.ndarray                   # integer outputs, summed over the k-blocks
    estimate: np.ndarray            # y in units of w @ x
    ideal: np.ndarray               # float w @ x
    golden: np.ndarray              # the bit-exact model's y
    cycles: int
    tiles: list                     # crossbar tiles used
    jobs: int                       # (tile, block) programmings
    energy_pj: float                # from the energy model
    macs: int                       # m * k * vectors

    @property
    def error(self) -> float:
        """Relative RMS error of the estimate against the ideal MVM."""
        diff = np.asarray(self.estimate, float) - self.ideal
        ref = float(np.sqrt(np.mean(self.ideal ** 2)))
        rms = float(np.sqrt(np.mean(diff ** 2)))
        return rms / ref if ref else (0.0 if rms == 0 else float("inf"))



@dataclass
class AnnealRun(_Checked):
    """One anneal on a p-bit tile."""
    state: np.ndarray               # final spins, +-1
    energy: int                     # its energy in the tile's integer units
    best_state: np.ndarray
    best_energy: int
    cycles: int                     # the tile's run cycles
    update_cycles: int
    sweeps: int
    flips: int                      # update decisions: sweeps x free p-bits
    tile: tuple
    samples: list = field(default_factory=list)
    scale: float = 1.0              # integer units per problem unit (quantization)
    mismatch: str = ""
    cut: int | None = None          # maxcut: the best cut seen ...
    assignment: np.ndarray | None = None   # ... and its side of every node (0/1)
    final_cut: int | None = None
    split: object = None            # maxcut with sparsify: the ``sparsify.Split`` run ...
    disagreements: int = 0          # ... and its copies that differ from their first copy

    @property
    def flips_per_cycle(self) -> float:
        return self.flips / self.cycles if self.cycles else 0.0


@dataclass
class FactorRun(_Checked):
    """A factoring job: ``found`` when ``a * b == N`` with ``1 < a <= b``; ``status`` is
    ``factored``, ``not found`` (a budget ran out: ``stopped`` says which), or, answered
    without annealing, ``prime``, ``even`` or ``square``."""
    N: int
    a: int | None
    b: int | None
    runs: int                       # restarts annealed
    sweeps: int                     # sweeps annealed, all restarts together
    cycles: int
    tile: tuple
    mismatch: str = ""
    status: str = ""
    seconds: float = 0.0
    cases: tuple = ()               # the multipliers searched ("kxnb"), in restart order
    stopped: str = ""               # the budget that ran out (status "not found")

    @property
    def found(self) -> bool:
        return self.a is not None and self.a * self.b == self.N

    @property
    def annealed(self) -> bool:
        return self.status in ("factored", "not found", "mismatch")


@dataclass
class MoeRun(_Checked):
    """One mixture-of-experts layer (``golden.moe`` defines it) on the GEMM tiles.

    The gate logits are computed on the tiles (``gate_tiles``), top-k is taken from
    them on the host (ties to the lowest expert index), and each expert's gathered
    batch runs on the tiles it is mapped to (``assignment``: round robin when there
    are more experts than tiles, or by load with ``placement="balanced"``;
    ``shared``: some tile holds several), all experts in one session. ``out``
    combines the per-(token, k) outputs ``y`` by ``combine`` ("sum": unweighted;
    "logit": weighted by the integer gate logits). ``cycles`` is gate + expert
    session (first flit in to last flit out of each; the host's top-k between them
    is not counted)."""
    out: np.ndarray                 # T x O
    y: np.ndarray                   # T x k x O: token t's j-th expert's output
    logits: np.ndarray              # T x E, from the tiles
    indices: np.ndarray             # T x k, each token's experts, best first
    combine: str
    expert_load: np.ndarray         # E: tokens per expert
    tile_load: dict                 # (x, y) -> routed token rows it multiplied
    assignment: dict                # expert -> the tiles it lives on
    shared: bool                    # some tile holds several experts
    gate_tiles: list
    gate_cycles: int
    expert_cycles: int
    macs: int                       # gate and experts, padding excluded
    flits_in: int
    flits_out: int
    counters: dict                  # (x, y) -> {status register: value during the run}
    mismatch: str = ""

    @property
    def tokens(self) -> int:
        return int(self.out.shape[0])

    @property
    def cycles(self) -> int:
        return self.gate_cycles + self.expert_cycles

    @property
    def tokens_per_cycle(self) -> float:
        return self.tokens / self.cycles if self.cycles else 0.0

    @property
    def imbalance(self) -> float:
        """Busiest expert's tokens over the mean (1.0: perfectly even)."""
        mean = float(np.mean(self.expert_load))
        return float(self.expert_load.max()) / mean if mean else 0.0

    def tile_experts(self) -> dict:
        """(x, y) -> the experts mapped to it."""
        return {xy: [e for e, ts in self.assignment.items() if xy in ts]
                for xy in self.tile_load}


@dataclass
class SpmvRun(_CheckedY):
    """``y = A x`` (CSR) on the spmv tiles.

    ``slot_fill`` is nonzeros over the nonzero slots of the tiles while their engines
    ran: ``nnz / (lanes x sum of the tiles' busy cycles)``; ``nnz_per_cycle`` is over
    the whole run (first flit in to last flit out, loading included)."""
    y: np.ndarray
    golden: np.ndarray              # the exact product (int64)
    cycles: int
    nnz: int
    tiles: list                     # spmv tiles used
    lanes: int
    jobs: int                       # EXECs (tile passes)
    passes: int
    counters: dict                  # (x, y) -> {status register: its growth in the run}
    flits_in: int = 0
    flits_out: int = 0

    @property
    def busy(self) -> dict:
        return {xy: c["busy"] for xy, c in self.counters.items()}

    @property
    def engine_cycles(self) -> int:
        """The longest engine time of one tile (the compute span, loading excluded)."""
        return max(self.busy.values(), default=0)

    @property
    def nnz_per_cycle(self) -> float:
        return self.nnz / self.cycles if self.cycles else 0.0

    @property
    def slot_fill(self) -> float:
        total = sum(self.busy.values()) * self.lanes
        return self.nnz / total if total else 0.0

    def tile_fill(self) -> dict:
        """Per tile: its nonzeros over its lanes x busy cycles."""
        return {xy: c["nonzeros"] / (self.lanes * c["busy"]) if c["busy"] else 0.0
                for xy, c in self.counters.items()}



# -- the handle ------------------------------------------------------------------------

class Fabric:
    """A generated fabric and a simulator to run jobs on it (see the module docstring)."""

    def __init__(self, config, backend="verilator", *, seed: int | None = None,
                 in_stall: float = 0.0, out_stall: float = 0.0, port: str | None = None):
        self.config = as_config(config)
        golden = backend == "golden"
        self.generated = None if golden else generate(self.config)
        self.manifest = None if golden else self.generated.manifest
        self.fmt = packet_format(self.config)
        pkt = self.config["packet"]
        # a status READ returns the counter, wrapped at its width, in the data field
        self._counter_mod = 1 << min(self.config["counter_bits"], pkt["data_bits"])
        self.tiles = {}
        for t in self.config["tile_map"]:
            params = tile_params(t, pkt)
            values = {k: v for k, v in t.items() if k not in ("x", "y", "kind")}
            self.tiles[(t["x"], t["y"])] = Tile(t["x"], t["y"], t["kind"], values, params,
                                                params.manifest())
        _check_stalls(in_stall, out_stall)
        if isinstance(backend, str):
            if backend not in BACKENDS:
                raise TilefabError(f"backend: {backend!r} is not allowed, must be one of "
                                   f"{', '.join(BACKENDS)} or a backend object "
                                   f"(CocotbBackend(dut) in cocotb tests)")
            if port is not None and backend != "serial":
                raise TilefabError(f"port: only backend 'serial' takes a port, not "
                                   f"{backend!r}")
            if backend == "board-sim":
                backend = BoardSimBackend(self.config, seed=seed, in_stall=in_stall,
                                          out_stall=out_stall)
            elif backend == "serial":
                backend = SerialBackend(self.config, port, seed=seed, in_stall=in_stall,
                                        out_stall=out_stall)
            else:
                backend = GoldenBackend() if golden else PyverilatorBackend(
                    self.generated, seed, in_stall, out_stall)
        self.backend = backend
        self._pbit_history = {}          # tile -> every p-bit op it has run (golden state)

    @classmethod
    def in_cocotb(cls, dut, p: dict) -> "Fabric":
        """The fabric of a cocotb testbench's parameters ``p`` (``config``, and ``seed``,
        ``in_stall``, ``out_stall`` for the ``CocotbBackend`` on ``dut``)."""
        return cls(p["config"], backend=CocotbBackend(
            dut, seed=p.get("seed", 1), in_stall=p.get("in_stall", 0.0),
            out_stall=p.get("out_stall", 0.0)))

    # -- tiles

    def tiles_of(self, kind: str) -> list:
        found = [t for t in self.tiles.values() if t.kind == kind]
        if not found:
            kinds = ", ".join(sorted({t.kind for t in self.tiles.values()}))
            raise TilefabError(f"{self.config['name']}: this fabric has no {kind} tiles "
                               f"(its tiles are: {kinds})")
        return found

    def tile(self, x: int, y: int) -> Tile:
        if (x, y) not in self.tiles:
            mesh = self.config["mesh"]
            raise TilefabError(f"tile ({x}, {y}): not in the {mesh['cols']}x{mesh['rows']} "
                               f"mesh, x must be 0..{mesh['cols'] - 1} and y "
                               f"0..{mesh['rows'] - 1}")
        return self.tiles[(x, y)]

    def _pick(self, kind: str, where) -> Tile:
        if where is None:
            return self.tiles_of(kind)[0]
        t = self.tile(*where)
        if t.kind != kind:
            raise TilefabError(f"tile {tuple(where)}: is a {t.kind} tile, not {kind}")
        return t

    # -- plain requests

    def read(self, x, y, addr, **run):
        return self._sync(self.read_async(x, y, addr, **run))

    async def read_async(self, x, y, addr, **run) -> int:
        self.tile(x, y)
        s = await self._run({(x, y): [(Op.READ, addr, 0, 0)]}, {(x, y): (1, 0)}, **run)
        return s.streams[(x, y)].replies[0]

    def write(self, x, y, addr, value, **run):
        return self._sync(self.write_async(x, y, addr, value, **run))

    async def write_async(self, x, y, addr, value, **run):
        """A posted WRITE, fenced by a READ of a status register so an ERROR is seen."""
        t = self.tile(x, y)
        fence = next(iter(t.geometry["status_registers"].values()))
        await self._run({(x, y): [(Op.WRITE, addr, value, 0), (Op.READ, fence, 0, 0)]},
                        {(x, y): (1, 0)}, **run)

    def status(self, x, y, **run) -> dict:
        return self._sync(self.status_async(x, y, **run))

    async def status_async(self, x, y, **run) -> dict:
        got = await self._status({(x, y): self.tile(x, y)}, **run)
        return got[(x, y)]

    async def _status(self, tiles: dict, **run) -> dict:
        requests, expect = {}, {}
        for xy, t in tiles.items():
            regs = t.geometry["status_registers"]
            requests[xy] = [(Op.READ, a, 0, 0) for a in regs.values()]
            expect[xy] = (len(regs), 0)
        s = await self._run(requests, expect, **run)
        return {xy: dict(zip(t.geometry["status_registers"], s.streams[xy].replies))
                for xy, t in tiles.items()}

    def transact(self, x, y, requests, replies: int, dones: int = 0, **run) -> list:
        return self._sync(self.transact_async(x, y, requests, replies, dones, **run))

    async def transact_async(self, x, y, requests, replies: int, dones: int = 0,
                             **run) -> list:
        """Send raw ``(op, addr, data)`` requests to one tile; return every packet back.

        ERROR answers count as replies here instead of stopping the run, so
        malformed requests can be sent on purpose.
        """
        self.tile(x, y)
        s = await self._run({(x, y): [(op, a, d, 0) for op, a, d in requests]},
                            {(x, y): (replies, dones)}, errors_ok=True, **run)
        return s.streams[(x, y)].packets

    # -- GEMM

    def gemm(self, a, b, **run) -> GemmRun:
        return self._sync(self.gemm_async(a, b, **run))

    async def gemm_async(self, a, b, **run) -> GemmRun:
        """C = A·B on every GEMM tile (they must share their parameters)."""
        pes = self.tiles_of("gemm")
        values = pes[0].values
        if any(t.values != values for t in pes):
            raise TilefabError("tiles: GEMM tiles with different parameters in one fabric are "
                               "not supported by gemm(); give them all the same parameters")
        p = self.config["packet"]
        geom = GemmGeometry(data_bits=p["data_bits"], addr_bits=p["addr_bits"], **values)
        coords = [t.xy for t in pes]
        before = await self._status({t.xy: t for t in pes}, **run)
        plan = compile_gemm(a, b, geom, coords,
                            words_before={pe: before[pe]["words"] for pe in coords},
                            multicast=self.fmt.multicast)
        requests, expect = gemm_requests(plan)
        session = await self._run(requests, expect, **run)
        for prog in plan.programs:
            got = session.streams[(prog.x, prog.y)].dones
            want = [j.tag for j in prog.jobs]
            if got != want:
                raise HostError(f"tile {(prog.x, prog.y)} finished jobs {got}, expected {want}")
        c = plan.assemble({dst: s.replies for dst, s in session.streams.items()})
        after = await self._status({t.xy: t for t in pes}, **run)
        counters = {pe: {k: (after[pe][k] - before[pe][k]) % self._counter_mod for k in after[pe]}
                    for pe in coords}
        return GemmRun(c=c, cycles=session.cycles, macs=plan.macs, pes=len(pes),
                       lanes=values["lanes"], flits_in=session.flits_in,
                       flits_out=session.flits_out, counters=counters,
                       mismatch=_mismatch("c", c, gemm_exact(a, b, values["op_bits"])),
                       nm=geom.nm)

    # -- crossbar

    def mvm(self, w, x, **run) -> MvmRun:
        return self._sync(self.mvm_async(w, x, **run))

    async def mvm_async(self, w, x, *, seed: int | None = None, in_stall=None,
                        out_stall=None) -> MvmRun:
        """``y = w @ x`` tiled over every crossbar tile; partial sums added on the host."""
        tiles = self.tiles_of("crossbar")
        noise_seed = 0 if seed is None else _seed(seed)
        plan = imc_tile.plan_mvm([(t.xy, t.params) for t in tiles], w, x, seed=noise_seed)
        requests, expect = {}, {}
        for job in plan.jobs:
            requests.setdefault(job.tile, []).extend((op, a, d, 0) for op, a, d in job.requests)
            r, dn = expect.get(job.tile, (0, 0))
            expect[job.tile] = (r + job.expected[0], dn + job.expected[1])
        session = await self._run(requests, expect, seed=seed, in_stall=in_stall,
                                  out_stall=out_stall)
        replies, taken = [], {}
        for job in plan.jobs:
            got = session.streams[job.tile].replies
            k = taken.get(job.tile, 0)
            replies.append(got[k:k + job.expected[0]])
            taken[job.tile] = k + job.expected[0]
        out = plan.assemble(replies)
        ideal = np.asarray(x, dtype=np.float64) @ np.asarray(w, dtype=np.float64).T
        m, k = plan.shape
        return MvmRun(y=out.y, estimate=out.estimate, ideal=ideal,
                      golden=imc_tile.golden_outputs(plan), cycles=session.cycles,
                      tiles=sorted({j.tile for j in plan.jobs}), jobs=len(plan.jobs),
                      energy_pj=imc_tile.energy_pj(plan), macs=m * k * plan.batch)

    # -- sparse: CSR SpMV

    def spmv(self, a, x, **run) -> SpmvRun:
        return self._sync(self.spmv_async(a, x, **run))

    async def spmv_async(self, a, x, *, seed: int | None = None, in_stall=None,
                         out_stall=None) -> SpmvRun:
        """``y = a @ x`` on every spmv tile: ``a`` a scipy.sparse matrix or ``(indptr,
        indices, data[, shape])`` of integers, rows split over the tiles, several passes
        when a tile's storage is too small; exact, checked against ``spmv_exact``."""
        tiles = self.tiles_of("spmv")
        plan = spmv_plan.plan_spmv([(t.xy, t.params) for t in tiles], a, x)
        run = {"seed": seed, "in_stall": in_stall, "out_stall": out_stall}
        used = sorted({j.tile for j in plan.jobs})
        counters, cycles, fin, fout = {}, 0, 0, 0
        y = np.zeros(plan.shape[0], dtype=np.int64)
        if plan.jobs:
            before = await self._status({xy: self.tiles[xy] for xy in used}, **run)
            requests, expect = {}, {}
            for job in plan.jobs:
                requests.setdefault(job.tile, []).extend(job.requests)
                r, dn = expect.get(job.tile, (0, 0))
                f, d = plan.expected(job)
                expect[job.tile] = (r + f, dn + d)
            session = await self._run(requests, expect, **run)
            replies, taken = [], {}
            for job in plan.jobs:
                got = session.streams[job.tile].replies
                k, f = taken.get(job.tile, 0), plan.expected(job)[0]
                replies.append(got[k:k + f])
                taken[job.tile] = k + f
            for xy in used:
                want = [j.tag for j in plan.jobs if j.tile == xy]
                if session.streams[xy].dones != want:
                    raise HostError(f"tile {xy} finished jobs {session.streams[xy].dones}, "
                                    f"expected {want}")
            y = plan.assemble(replies)
            after = await self._status({xy: self.tiles[xy] for xy in used}, **run)
            counters = {xy: {k: (after[xy][k] - before[xy][k]) % self._counter_mod for k in after[xy]}
                        for xy in used}
            cycles, fin, fout = session.cycles, session.flits_in, session.flits_out
        return SpmvRun(y=y, golden=plan.golden(), cycles=cycles, nnz=plan.nnz, tiles=used,
                       lanes=plan.params.lanes, jobs=len(plan.jobs), passes=plan.passes,
                       counters=counters, flits_in=fin, flits_out=fout)

    # -- p-bits

    def anneal(self, j, h=None, **kw) -> AnnealRun:
        return self._sync(self.anneal_async(j, h, **kw))

    async def anneal_async(self, j, h=None, *, sweeps: int = 1000, beta=BETA,
                           seed: int | None = None, sample_every: int = 0, tile=None,
                           in_stall=None, out_stall=None) -> AnnealRun:
        """Anneal E = -(1/2 m'Jm + h'm) on a p-bit tile from a random state (``seed``).

        ``j`` and ``h`` are integers in the tile's number formats or floats, which
        are quantized (a power-of-two scale); ``beta`` is a constant, a
        ``(beta0, beta1)`` geometric ramp, or a list of ``(beta_code, sweeps)``.
        """
        t = self._pick("pbit", tile)
        J, hq, scale = self._quantize(t, j, h)
        colours = graph.dsatur(_neighbours(J))
        rng = np.random.default_rng(_seed(seed or 1))
        state = rng.choice([-1, 1], len(hq))
        prog, order = _fit(t, driver.Program(J, hq, colours, state=state))
        schedule = self._schedule(t, beta, sweeps, scale)
        r, mismatch = await self._pbit_run(
            t, [prog, driver.Run(schedule, int(colours.max()) + 1, sample_every)],
            seed=seed, in_stall=in_stall, out_stall=out_stall)
        r = _trim(r, order, len(hq))
        total = sum(s for _, s in schedule)
        return AnnealRun(state=r.state, energy=r.energy, best_state=r.best_state,
                         best_energy=r.best_energy, cycles=r.cycles,
                         update_cycles=r.update_cycles, sweeps=total, flips=total * len(hq),
                         tile=t.xy, samples=r.samples, scale=scale, mismatch=mismatch)

    def maxcut(self, graph_, **kw) -> AnnealRun:
        return self._sync(self.maxcut_async(graph_, **kw))

    async def maxcut_async(self, graph_, *, sweeps: int = 1000, beta=BETA,
                           seed: int | None = None, tile=None, sparsify: bool = False,
                           max_degree: int | None = None, in_stall=None,
                           out_stall=None) -> AnnealRun:
        """Max-Cut of ``graph_`` (edges ``(i, j, w)`` 0-based, a networkx graph or a rudy
        file): J = -W, h = 0; ``.cut`` is the best cut seen, ``.assignment`` its sides.

        ``sparsify`` (or a ``max_degree``) splits nodes of higher degree than
        ``max_degree`` (default: the tile's) into ferromagnetically chained copies
        (``gen.pbit.sparsify``); the cut is then the original graph's, each node on its
        first copy's side, and ``.disagreements`` counts copies that differ from it."""
        gr = as_graph(graph_)
        split = None
        if sparsify or max_degree is not None:
            t = self._pick("pbit", tile)
            cfg = t.params.config()
            D = cfg["max_degree"] if max_degree is None else max_degree
            split = pbit_sparsify.sparsify(gr, D)
            hi = driver.fmt_of(cfg).w_range()[1] >> driver.fmt_of(cfg).w_frac
            big = int(np.abs(split.graph.weights).max(initial=0))
            if big > hi:
                raise ConfigError("max_degree", f"sparsifying to degree {D} needs copy "
                                                f"couplings up to {big}, above the tile's "
                                                f"largest J {hi} (w_bits="
                                                f"{cfg['w_bits']}); allow a larger degree")
            run_gr = split.graph
        else:
            run_gr = gr
        run = await self.anneal_async(-run_gr.W(), np.zeros(run_gr.n, dtype=np.int64),
                                      sweeps=sweeps, beta=beta, seed=seed, tile=tile,
                                      in_stall=in_stall, out_stall=out_stall)
        if split is None:
            run.cut = gr.cut(run.best_state)
            run.final_cut = gr.cut(run.state)
            run.assignment = (run.best_state > 0).astype(np.int64)
        else:
            run.cut = split.cut(run.best_state)
            run.final_cut = split.cut(run.state)
            run.assignment = (split.assignment(run.best_state) > 0).astype(np.int64)
            run.split, run.disagreements = split, split.disagreements(run.best_state)
        return run

    def factor(self, N: int, **kw) -> FactorRun:
        return self._sync(self.factor_async(N, **kw))

    async def factor_async(self, N: int, *, bits=None, sweeps: int = FACTOR_SWEEPS,
                           runs: int | None = None, budget_sweeps: int = FACTOR_BUDGET_SWEEPS,
                           budget_seconds: float = FACTOR_BUDGET_SECONDS, beta=FACTOR_BETA,
                           seed: int | None = None, tile=None, in_stall=None,
                           out_stall=None) -> FactorRun:
        """Factor N with invertible multipliers run backwards on a p-bit tile.

        A prime, even or square N is answered without annealing. Otherwise restarts of
        ``sweeps`` sweeps cycle over ``factor.factor_cases(N, bits)`` (each restart
        programs its case from a fresh random state drawn from ``seed``; the tile's
        PRNGs run on) until a factorization is found or a budget runs out: ``runs``
        restarts, ``budget_sweeps`` sweeps in all, ``budget_seconds`` of wall clock.
        """
        t0 = time.perf_counter()
        N = factor.check_N(N)
        t = self._pick("pbit", tile)
        easy = factor.trivial(N)
        if easy is not None:
            kind, p, q = easy
            return FactorRun(N, p, q, 0, 0, 0, t.xy, status=kind,
                             seconds=time.perf_counter() - t0)
        _check_budget("sweeps", sweeps, 1)
        _check_budget("budget_sweeps", budget_sweeps, sweeps)
        if runs is not None:
            _check_budget("runs", runs, 1)
        if isinstance(budget_seconds, bool) or not isinstance(budget_seconds, (int, float)) \
                or not budget_seconds > 0:
            raise ConfigError("budget_seconds", f"{budget_seconds!r} is not allowed, must be "
                                                f"a number of seconds > 0")
        cfg = t.params.config()
        jobs = []
        for case in factor.factor_cases(N, bits):
            prog, mult = factor.case_program(N, case, n_colours=cfg["n_colours"])
            if len(prog.h) > cfg["n"]:
                raise ConfigError("N", f"factoring {N} needs a {case.label} multiplier of "
                                       f"{len(prog.h)} p-bits; the p-bit tile at {t.xy} has "
                                       f"n = {cfg['n']} (bits=(na, nb) searches one smaller "
                                       f"multiplier)")
            J, h, _ = self._quantize(t, prog.J, prog.h, integers=True)
            jobs.append((case, prog, mult, J, h))
        schedule = self._schedule(t, beta, sweeps, 1.0)
        rng = np.random.default_rng(_seed(seed or 1))
        gold = _GoldenTile(t.params, self._pbit_history.setdefault(t.xy, []))
        used = cycles = restarts = 0
        stopped = ""
        while True:
            case, prog, mult, J, h = jobs[restarts % len(jobs)]
            state = np.asarray(prog.state).copy()
            free = ~np.asarray(prog.clamp, bool)
            state[free] = rng.choice([-1, 1], int(free.sum()))
            fitted, order = _fit(t, driver.Program(J, h, prog.colours, clamp=prog.clamp,
                                                   state=state))
            ops = [fitted, driver.Run(schedule, int(prog.colours.max()) + 1)]
            res, mismatch = await self._factor_step(t, gold, ops, seed=seed,
                                                    in_stall=in_stall, out_stall=out_stall)
            restarts += 1
            used += sweeps
            cycles += res.cycles
            res = _trim(res, order, len(h))
            cases = tuple(c.label for c, *_ in jobs)
            done = {"runs": restarts, "sweeps": used, "cycles": cycles, "tile": t.xy,
                    "cases": cases}
            if mismatch:
                return FactorRun(N, None, None, mismatch=mismatch, status="mismatch",
                                 seconds=time.perf_counter() - t0, **done)
            for spins in (res.best_state, res.state):
                a, b = mult.value(spins, mult.a), mult.value(spins, mult.b)
                if a * b == N and 1 < min(a, b):
                    return FactorRun(N, min(a, b), max(a, b), status="factored",
                                     seconds=time.perf_counter() - t0, **done)
            if runs is not None and restarts >= runs:
                stopped = f"runs={runs} restarts"
            elif used + sweeps > budget_sweeps:
                stopped = f"budget_sweeps={budget_sweeps}"
            elif time.perf_counter() - t0 >= budget_seconds:
                stopped = f"budget_seconds={budget_seconds:g}"
            if stopped:
                return FactorRun(N, None, None, status="not found", stopped=stopped,
                                 seconds=time.perf_counter() - t0, **done)

    async def _factor_step(self, t: Tile, gold: _GoldenTile, ops, **run):
        """``ops`` on the tile and on its golden model, which runs on from the last step
        (``_pbit_run`` replays a tile's whole history, which restarts make quadratic)."""
        want = gold.feed(ops)
        self._pbit_history[t.xy].extend(ops)
        if isinstance(self.backend, GoldenBackend):
            return want, ""
        requests, expected = pbit_tile.requests_for(t.params, ops)
        cfg = t.params.config()
        sweeps = sum(s for op in ops if isinstance(op, driver.Run) for _, s in op.schedule)
        per_sweep = cfg["n_colours"] * 7 + cfg.get("lanes", 1) * cfg.get("edge_depth", 1)
        session = await self._run({t.xy: [(op, a, d, 0) for op, a, d in requests]},
                                  {t.xy: (expected.reply_flits, expected.dones)},
                                  timeout=20000 + 2 * sweeps * per_sweep, **run)
        r = pbit_tile.decode_replies(t.params, session.streams[t.xy].replies)[-1]
        return r, (_mismatch("state", r.state, want.state) or
                   _mismatch("best_state", r.best_state, want.best_state) or
                   _mismatch("energy", r.energy, want.energy) or
                   _mismatch("cycles", r.cycles, want.cycles))

    def _quantize(self, t: Tile, j, h, integers: bool = False):
        fmt = driver.fmt_of(t.params.config())
        J = _matrix("j", j)
        n = J.shape[0]
        h = np.zeros(n) if h is None else np.asarray(h)
        if h.shape != (n,):
            raise ConfigError("h", f"must have length {n} (j is {n}x{n}), not shape {h.shape}")
        if n > t.params.config()["n"]:
            raise ConfigError("j", f"{n} p-bits do not fit the p-bit tile at {t.xy}: it has "
                                   f"n = {t.params.config()['n']}")
        whole = (np.all(np.mod(J, 1) == 0) and np.all(np.mod(h, 1) == 0))
        lo, hi = fmt.w_range()
        hlo, hhi = fmt.h_range()
        if integers or (whole and fmt.w_frac == 0 and J.min(initial=0) >= lo
                        and J.max(initial=0) <= hi and h.min(initial=0) >= hlo
                        and h.max(initial=0) <= hhi):
            q = quant.quantize(J, h, fmt, scale=1.0)
        else:
            q = quant.quantize(J, h, fmt)
        return q.J, q.h, q.scale

    def _schedule(self, t: Tile, beta, sweeps: int, scale: float) -> list:
        cfg = t.params.config()
        fmt = driver.fmt_of(cfg)
        limit = (1 << cfg["sweep_bits"]) - 1
        if not isinstance(sweeps, int) or isinstance(sweeps, bool) or \
                not 1 <= sweeps <= limit * cfg["sched_depth"]:
            raise ConfigError("sweeps", f"{sweeps!r} is not allowed, must be 1.."
                                        f"{limit * cfg['sched_depth']} (sched_depth "
                                        f"{cfg['sched_depth']} x sweep_bits {cfg['sweep_bits']})")
        if isinstance(beta, list):
            return [(int(b), int(s)) for b, s in beta]
        if isinstance(beta, tuple):
            b0, b1 = (float(v) for v in beta)
            if not (np.isfinite(b0) and np.isfinite(b1) and 0 < b0 and 0 < b1):
                raise ConfigError("beta", f"{beta!r} is not allowed, must be two positive "
                                          f"numbers (beta0, beta1)")
            entries = max(cfg["sched_depth"] if cfg["sched_depth"] < 8 else 8,
                          -(-sweeps // limit))
            return factor.anneal_schedule(fmt, sweeps, b0 / scale, b1 / scale, entries)
        b = float(beta)
        if not (np.isfinite(b) and b >= 0):
            raise ConfigError("beta", f"{beta!r} is not allowed, must be a number >= 0")
        n = -(-sweeps // limit)
        per = [sweeps // n + (k < sweeps % n) for k in range(n)]
        return [(fmt.beta_code(b / scale), s) for s in per]

    async def _pbit_run(self, t: Tile, ops, **run):
        requests, expected = pbit_tile.requests_for(t.params, ops)
        history = self._pbit_history.setdefault(t.xy, [])
        if isinstance(self.backend, GoldenBackend):
            history.extend(ops)
            return pbit_tile.golden_results(t.params, history)[-1], ""
        cfg = t.params.config()
        sweeps = sum(s for op in ops if isinstance(op, driver.Run) for _, s in op.schedule)
        per_sweep = cfg["n_colours"] * 7 + cfg.get("lanes", 1) * cfg.get("edge_depth", 1)
        session = await self._run({t.xy: [(op, a, d, 0) for op, a, d in requests]},
                                  {t.xy: (expected.reply_flits, expected.dones)},
                                  timeout=20000 + 2 * sweeps * per_sweep, **run)
        got = pbit_tile.decode_replies(t.params, session.streams[t.xy].replies)
        history.extend(ops)
        want = pbit_tile.golden_results(t.params, history)[-len(got):]
        r, g = got[-1], want[-1]
        mismatch = (_mismatch("state", r.state, g.state) or
                    _mismatch("best_state", r.best_state, g.best_state) or
                    _mismatch("energy", r.energy, g.energy) or
                    _mismatch("cycles", r.cycles, g.cycles))
        return r, mismatch

    # -- mixture of experts

    def moe(self, tokens, gate_w, experts, top_k=2, **run) -> MoeRun:
        return self._sync(self.moe_async(tokens, gate_w, experts, top_k, **run))

    async def moe_async(self, tokens, gate_w, experts, top_k=2, *, combine: str = "sum",
                        gate_tile=None, placement: str = "static", **run) -> MoeRun:
        """A dynamically routed MoE layer on the GEMM tiles (``gen.moe``, ``golden.moe``).

        ``tokens`` T x D, ``gate_w`` D x E, ``experts`` E x D x O (or a list of E
        matrices), all integers in the tiles' ``op_bits``, D <= max_k. Session 1
        computes the gate logits on every GEMM tile (or on ``gate_tile`` alone);
        session 2 runs every expert's batch of routed tokens on its tiles, mapped round
        robin (``placement="static"``) or by this call's load (``"balanced"``).
        """
        pes = self.tiles_of("gemm")
        values = pes[0].values
        if any(t.values != values for t in pes):
            raise TilefabError("tiles: GEMM tiles with different parameters in one fabric are "
                               "not supported by moe(); give them all the same parameters")
        p = self.config["packet"]
        geom = GemmGeometry(data_bits=p["data_bits"], addr_bits=p["addr_bits"], **values)
        ops = check_moe_operands(tokens, gate_w, experts, top_k, geom, combine, placement)
        coords = [t.xy for t in pes]
        gate_tiles = coords if gate_tile is None else [self._pick("gemm", gate_tile).xy]
        before = await self._status({t.xy: t for t in pes}, **run)
        gate = plan_gate(ops, geom, gate_tiles, {xy: before[xy]["words"] for xy in coords})
        s1 = await self._moe_session(gate, **run)
        logits = gate.assemble({xy: s.replies for xy, s in s1.streams.items()})["gate"]
        indices = golden_moe.top_k(logits, ops.top_k)
        plan = plan_experts(ops, indices, geom, coords, gate.words, placement)
        s2 = await self._moe_session(plan.schedule, **run)
        y = plan.assemble({xy: s.replies for xy, s in s2.streams.items()})
        out = golden_moe.combine(y, logits, indices, combine)
        after = await self._status({t.xy: t for t in pes}, **run)
        counters = {xy: {k: (after[xy][k] - before[xy][k]) % self._counter_mod for k in after[xy]}
                    for xy in coords}
        want = golden_moe.moe(ops.tokens, ops.gate_w, ops.experts, ops.top_k, combine)
        mismatch = (_mismatch("logits", logits, want.logits) or
                    _mismatch("indices", indices, want.indices) or
                    _mismatch("y", y, want.y) or _mismatch("out", out, want.out))
        return MoeRun(out=out, y=y, logits=logits, indices=indices, combine=combine,
                      expert_load=plan.load, tile_load=plan.tile_tokens(coords),
                      assignment=plan.assignment, shared=plan.shared, gate_tiles=gate_tiles,
                      gate_cycles=s1.cycles, expert_cycles=s2.cycles,
                      macs=gate.plans["gate"].macs + plan.macs,
                      flits_in=s1.flits_in + s2.flits_in, flits_out=s1.flits_out + s2.flits_out,
                      counters=counters, mismatch=mismatch)

    async def _moe_session(self, schedule, **run):
        """Run one ``gen.moe.Schedule``; every tile must finish its jobs in order."""
        session = await self._run(schedule.requests, schedule.expect, **run)
        for xy, want in schedule.dones.items():
            got = session.streams[xy].dones
            if got != want:
                raise HostError(f"tile {xy} finished jobs {got}, expected {want}")
        return session

    # -- plumbing

    async def _run(self, requests, expect, *, seed=None, in_stall=None, out_stall=None,
                   errors_ok: bool = False, timeout: int = 20000):
        _check_stalls(in_stall, out_stall)
        if isinstance(self.backend, GoldenBackend):
            raise TilefabError("backend golden: runs the p-bit jobs (anneal, maxcut, factor) "
                               "on the bit-exact model only; every other job needs the RTL "
                               "(backend verilator)")
        session = HostSession.build(self.fmt, requests, expect, errors_ok=errors_ok)
        run = self.backend.run(session, seed=seed, in_stall=in_stall, out_stall=out_stall,
                               timeout=timeout)
        if self.backend.asynchronous:
            return await run
        return run

    def _sync(self, coro):
        if self.backend.asynchronous:
            coro.close()
            raise TilefabError("this backend runs inside cocotb: use the *_async methods "
                               "with await")
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value
        raise RuntimeError("a synchronous backend suspended")


def gemm_requests(plan: GemmPlan) -> tuple[dict, dict]:
    """A GEMM plan as ``HostSession`` requests and expected (replies, DONEs) per PE: each
    unicast item an ``(op, addr, data, after_done)`` tuple, each multicast flit one
    ``Multicast`` in the lists of all the PEs of its rectangle, gated per PE by that
    PE's ``after_done``."""
    after: dict[int, list] = {}
    for prog in plan.programs:
        for it in prog.items:
            if it.send >= 0:
                after.setdefault(it.send, []).append(((prog.x, prog.y), it.after_done))
    flits: dict[int, Multicast] = {}
    requests, expect = {}, {}
    for prog in plan.programs:
        pe = (prog.x, prog.y)
        out = []
        for it in prog.items:
            op = int(ITEM_OPS[it.kind])
            if it.send < 0:
                out.append((op, it.addr, it.data, it.after_done))
                continue
            if it.send not in flits:
                flits[it.send] = Multicast(rect=plan.sends[it.send], op=op, addr=it.addr,
                                           data=it.data, after=tuple(after[it.send]))
            out.append(flits[it.send])
        requests[pe] = out
        expect[pe] = (sum(j.groups for j in prog.jobs) * plan.geom.flits_per_group,
                      len(prog.jobs))
    return requests, expect


def _fit(t: Tile, prog: driver.Program) -> tuple[driver.Program, np.ndarray]:
    """The problem as the tile runs it: padded with clamped, uncoupled p-bits to the
    tile's ``n`` and, on a lanes tile, relabelled so that every colour's work is spread
    evenly over the lanes (``maxcut.balance_lanes``; a colour pass lasts as long as its
    busiest lane). Returns the program and ``order``: tile p-bit ``k`` is problem p-bit
    ``order[k]`` (padding p-bits are ``n`` and up)."""
    n, size = len(prog.h), t.params.config()["n"]
    pad = size - n
    J = np.zeros((size, size), dtype=np.int64)
    J[:n, :n] = prog.J
    clamp = np.zeros(n, bool) if prog.clamp is None else np.asarray(prog.clamp, bool)
    state = np.ones(n, dtype=np.int64) if prog.state is None else np.asarray(prog.state)
    h = np.concatenate([prog.h, np.zeros(pad, dtype=np.int64)])
    colours = np.concatenate([prog.colours, np.zeros(pad, dtype=np.int64)])
    clamp = np.concatenate([clamp, np.ones(pad, bool)])
    state = np.concatenate([state, np.ones(pad, dtype=np.int64)])
    order = np.arange(size)
    if t.values["arch"] == "lanes":
        work = driver.lane_entries(J)
        order = maxcut.balance_lanes(work, colours, t.values["lanes"])
    return driver.Program(J[np.ix_(order, order)], h[order], colours[order],
                          clamp=clamp[order], state=state[order]), order


def _trim(r: driver.Result, order: np.ndarray, n: int) -> driver.Result:
    """A tile's result in the problem's labels (``_fit``), padding dropped."""
    def back(spins):
        out = np.empty_like(spins)
        out[order] = spins
        return out[:n]
    return driver.Result(samples=[(back(s), e) for s, e in r.samples], state=back(r.state),
                         energy=r.energy, best_state=back(r.best_state),
                         best_energy=r.best_energy, cycles=r.cycles,
                         update_cycles=r.update_cycles)


class _GoldenTile:
    """The bit-exact model of one p-bit tile kept between calls: ``feed(ops)`` runs a
    Program/Run session on from where the previous one stopped and returns the last
    Run's result, as ``pbit_tile.golden_results`` of the whole history would."""

    def __init__(self, params, history):
        self.cfg = params.config()
        self.fmt = driver.fmt_of(self.cfg)
        self.rng = np.asarray(pbit_seeds(params.seed, params.n), dtype=np.uint32)
        self.machine = None
        if history:
            self.feed(history)

    def feed(self, ops) -> driver.Result | None:
        out = None
        for op in ops:
            if isinstance(op, driver.Program):
                state = op.state if op.state is not None else (
                    self.machine.m if self.machine is not None else None)
                rng = self.machine.rng if self.machine is not None else self.rng
                self.machine = PBitMachine(self.fmt, op.J, op.h, op.colours, rng,
                                           state=state, frozen=op.clamp,
                                           lanes=self.cfg.get("lanes"))
            elif isinstance(op, driver.Run):
                r = self.machine.run(op.schedule, op.n_colours, op.sample_every)
                out = driver.Result(samples=r.samples, state=r.state, energy=r.energy,
                                    best_state=r.best_state, best_energy=r.best_energy,
                                    cycles=r.cycles, update_cycles=r.update_cycles)
        return out


def _check_budget(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ConfigError(name, f"{value!r} is not allowed, must be an integer >= {lo}")


def _check_stalls(in_stall, out_stall):
    for name, v in (("in_stall", in_stall), ("out_stall", out_stall)):
        if v is not None and not (isinstance(v, (int, float)) and 0 <= v < 1):
            raise TilefabError(f"{name}: {v!r} is not allowed, must be a probability in [0, 1)")


def _seed(seed) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 1 << 32:
        raise ConfigError("seed", f"{seed!r} is not allowed, must be 0..{(1 << 32) - 1}")
    return seed


def _matrix(name, value) -> np.ndarray:
    a = np.asarray(value)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ConfigError(name, f"must be a square matrix, not shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
        raise ConfigError(name, "must hold finite numbers")
    return a


def _neighbours(J) -> list:
    return [list(np.flatnonzero(row)) for row in np.asarray(J)]


def as_graph(g) -> graph.Graph:
    """A ``Graph`` from edges ``(i, j, w)`` (0-based), a networkx graph or a rudy file."""
    if isinstance(g, graph.Graph):
        return g
    if isinstance(g, (str, Path)):
        return graph.read_rudy(g)
    if hasattr(g, "edges") and hasattr(g, "nodes"):         # networkx
        nodes = {v: k for k, v in enumerate(g.nodes)}
        edges = [(nodes[a], nodes[b], d.get("weight", 1)) for a, b, d in g.edges(data=True)]
        return graph.from_edges(edges, n=len(nodes))
    return graph.from_edges(g)


__all__ = ["AnnealRun", "CocotbBackend", "Fabric", "FactorRun", "GemmRun", "GoldenBackend", "HostError",
           "MoeRun", "MvmRun", "PyverilatorBackend", "SpmvRun", "as_graph"]
