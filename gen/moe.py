"""Workload compiler for a mixture-of-experts layer: operand checks, the expert-to-tile
map, the gather/scatter index lists and the per-tile request lists.

The layer (``golden.moe`` defines it) runs in two sessions on the fabric's GEMM
tiles:

1. gating: G = tokens @ gate_w, compiled by ``compile_gemm`` over the gate tiles
   (every GEMM tile, or the one asked for);
2. experts: from G, top-k per token (``golden.moe.top_k``: ties to the lowest
   expert index), then for every expert with tokens a dense batch of the tokens
   routed to it (gather by ``Route.tokens``) times its weights, compiled by
   ``compile_gemm`` over the tiles the expert is mapped to. All experts go into one
   session, so experts on different tiles run in parallel; the outputs are
   scattered back to (token, k slot) by ``Route.tokens`` / ``Route.slots``.

Expert map (``assign_experts``). With E experts and P GEMM tiles (in the
fabric's order): if E >= P, expert e lives on tile e mod P (round robin: tile p
holds experts p, p + P, ...; ``shared``); if E < P, expert e gets the tiles p
with p mod E == e, and its batch is split over them as any GEMM is.

``placement="balanced"`` (``balance_experts``) maps by this call's load instead,
as the weights are streamed on every call anyway: if at most P experts have
tokens, every tile goes to one of them, as many to each as minimises the largest
tokens per tile (one each, then each further tile to the expert with the most
tokens per tile, ties to the lowest index); otherwise each expert (most tokens
first, ties to the lowest index) goes to the tile with the fewest tokens so far
(ties to the first tile). Experts with no tokens get no tile.

Several experts on one tile run one after the other: their programs are
concatenated, each later program's DONE gates shifted by the jobs before it (so
its first word waits for every earlier job to be DONE: nothing it writes can
overwrite an operand still in use, and the descriptor queue cannot overflow),
its EXEC waits counted on from the words written before it, and its result
words taken, in order, after the earlier programs'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..golden import moe as golden_moe
from ..golden.gemm import GemmGeometry, operand_range
from .errors import OperandError
from .gemm.compiler import ITEM_OPS, GemmPlan, compile_gemm

PLACEMENTS = ("static", "balanced")


@dataclass(frozen=True)
class MoeOperands:
    tokens: np.ndarray        # T x D, int64
    gate_w: np.ndarray        # D x E
    experts: np.ndarray       # E x D x O
    top_k: int
    combine: str

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, D, E, O)."""
        (t, d), (e, _, o) = self.tokens.shape, self.experts.shape
        return t, d, e, o


def _integers(name: str, value, op_bits: int, ndim: int, what: str) -> np.ndarray:
    x = np.asarray(value)
    if x.ndim != ndim:
        raise OperandError(f"{name}: must be {what}, got shape {x.shape}")
    if x.dtype == object or not np.issubdtype(x.dtype, np.integer):
        raise OperandError(f"{name}: must hold integers, got dtype {x.dtype}")
    lo, hi = operand_range(op_bits)
    if x.size and (x.min() < lo or x.max() > hi):
        bad = x.min() if x.min() < lo else x.max()
        raise OperandError(f"{name}: value {int(bad)} is outside {lo}..{hi} (the GEMM "
                           f"tiles' op_bits {op_bits})")
    return x.astype(np.int64)


def check_moe_operands(tokens, gate_w, experts, top_k, geom: GemmGeometry,
                       combine: str = "sum", placement: str = "static") -> MoeOperands:
    """The operands as int64 arrays, or ``OperandError`` naming the operand at fault and
    what is allowed (shapes, the tiles' operand range, K <= max_k, top_k, the combine
    rule and the placement)."""
    if placement not in PLACEMENTS:
        raise OperandError(f"placement: {placement!r} is not allowed, must be one of "
                           f"{', '.join(PLACEMENTS)}")
    w = geom.op_bits
    x = _integers("tokens", tokens, w, 2, "a 2-D matrix tokens x d_in")
    t, d = x.shape
    if t < 1 or d < 1:
        raise OperandError(f"tokens: shape {x.shape} is not allowed, must have at least "
                           f"one token and d_in >= 1")
    if d > geom.max_k:
        raise OperandError(f"tokens: d_in = {d} is the GEMM's K, not allowed above the "
                           f"tiles' max_k = {geom.max_k}")
    g = _integers("gate_w", gate_w, w, 2, "a 2-D matrix d_in x experts")
    if g.shape[0] != d or g.shape[1] < 1:
        raise OperandError(f"gate_w: shape {g.shape} is not allowed, must be d_in x experts "
                           f"= {d} x E with E >= 1 (tokens are {x.shape})")
    n_exp = g.shape[1]
    if isinstance(experts, np.ndarray) and experts.dtype != object:
        mats = [experts[e] for e in range(experts.shape[0])] if experts.ndim == 3 else None
        if mats is None:
            raise OperandError(f"experts: must be E x d_in x d_out (or a list of E d_in x "
                               f"d_out matrices), got shape {experts.shape}")
    else:
        mats = list(experts)
    if len(mats) != n_exp:
        raise OperandError(f"experts: {len(mats)} matrices, must be {n_exp} (gate_w has "
                           f"{n_exp} columns, one per expert)")
    checked = []
    for e, m in enumerate(mats):
        m = _integers(f"experts[{e}]", m, w, 2, "a 2-D matrix d_in x d_out")
        want = checked[0].shape[1] if checked else None
        if m.shape[0] != d or m.shape[1] < 1 or (want is not None and m.shape[1] != want):
            raise OperandError(f"experts[{e}]: shape {m.shape} is not allowed, must be "
                               f"d_in x d_out = {d} x {want if want else 'O'} (O >= 1, the "
                               f"same for every expert)")
        checked.append(m)
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or \
            not 1 <= top_k <= n_exp:
        raise OperandError(f"top_k: {top_k!r} is not allowed, must be 1..{n_exp} (the "
                           f"number of experts)")
    if combine not in golden_moe.COMBINES:
        raise OperandError(f"combine: {combine!r} is not allowed, must be one of "
                           f"{', '.join(golden_moe.COMBINES)}")
    if combine == "logit" and not golden_moe.logit_fits(d, w, int(top_k)):
        raise OperandError(f"combine: 'logit' with d_in = {d}, op_bits {w} and top_k = "
                           f"{top_k} can overflow int64; use combine='sum'")
    return MoeOperands(x, g, np.stack(checked), int(top_k), combine)


def assign_experts(n_experts: int, tiles: Sequence[tuple[int, int]]) -> dict:
    """Expert -> the tiles it lives on (module docstring)."""
    tiles = [tuple(t) for t in tiles]
    if not tiles:
        raise OperandError("tiles: an MoE layer needs at least one GEMM tile")
    p = len(tiles)
    if n_experts >= p:
        return {e: (tiles[e % p],) for e in range(n_experts)}
    return {e: tuple(tiles[i] for i in range(p) if i % n_experts == e)
            for e in range(n_experts)}


def balance_experts(load, tiles: Sequence[tuple[int, int]]) -> dict:
    """Expert -> its tiles, by ``load`` (tokens per expert; module docstring)."""
    tiles = [tuple(t) for t in tiles]
    if not tiles:
        raise OperandError("tiles: an MoE layer needs at least one GEMM tile")
    load = [int(n) for n in load]
    active = [e for e, n in enumerate(load) if n]
    out = {e: () for e in range(len(load))}
    if len(active) <= len(tiles):
        share = dict.fromkeys(active, 1)
        for _ in range(len(tiles) - len(active)):
            e = max(active, key=lambda e: (load[e] / share[e], -e))
            share[e] += 1
        at = 0
        for e in active:
            out[e] = tuple(tiles[at:at + share[e]])
            at += share[e]
        return out
    total = [0] * len(tiles)
    for e in sorted(active, key=lambda e: (-load[e], e)):
        i = min(range(len(tiles)), key=lambda i: (total[i], i))
        out[e] = (tiles[i],)
        total[i] += load[e]
    return out


@dataclass(frozen=True)
class Route:
    """The tokens routed to one expert: gather X[tokens], scatter row i to (tokens[i],
    slots[i]); ``tiles`` hold the expert."""
    expert: int
    tokens: np.ndarray
    slots: np.ndarray
    tiles: tuple


def plan_routes(indices, assignment: Mapping[int, tuple]) -> list[Route]:
    """The gather/scatter lists of every expert from the top-k ``indices``."""
    return [Route(e, t, j, assignment[e])
            for e, (t, j) in enumerate(golden_moe.routes(indices, len(assignment)))]


@dataclass
class Schedule:
    """GEMM plans laid end to end on their tiles as one session's requests."""
    geom: GemmGeometry
    words: dict                                   # tile -> word counter after the plans
    requests: dict = field(default_factory=dict)  # tile -> [(op, addr, data, after_done)]
    jobs: dict = field(default_factory=dict)      # tile -> jobs so far
    replies: dict = field(default_factory=dict)   # tile -> REPLY words expected
    dones: dict = field(default_factory=dict)     # tile -> DONE tags, in order
    segments: dict = field(default_factory=dict)  # tile -> [(label, REPLY words)]
    plans: dict = field(default_factory=dict)     # label -> GemmPlan
    rows: dict = field(default_factory=dict)      # tile -> {label: C rows computed}

    def compile(self, label, a, b, pes, operand: str) -> GemmPlan:
        """Plan A·B over ``pes`` after whatever the schedule already holds."""
        pes = [tuple(p) for p in pes]
        try:
            plan = compile_gemm(a, b, self.geom, pes,
                                words_before={p: self.words.get(p, 0) for p in pes})
        except ValueError as err:      # an N:M pattern, a scratchpad too small
            raise OperandError(f"{operand}: {err}") from err
        self.add(label, plan)
        return plan

    def add(self, label, plan: GemmPlan):
        f = self.geom.flits_per_group
        self.plans[label] = plan
        for prog in plan.programs:
            if not prog.items:
                continue
            xy = (prog.x, prog.y)
            base = self.jobs.get(xy, 0)
            self.requests.setdefault(xy, []).extend(
                (ITEM_OPS[it.kind], it.addr, it.data, it.after_done + base) for it in prog.items)
            self.words[xy] = self.words.get(xy, 0) + sum(it.kind == "write" for it in prog.items)
            self.jobs[xy] = base + len(prog.jobs)
            n = f * sum(j.groups for j in prog.jobs)
            self.replies[xy] = self.replies.get(xy, 0) + n
            self.dones.setdefault(xy, []).extend(j.tag for j in prog.jobs)
            self.segments.setdefault(xy, []).append((label, n))
            self.rows.setdefault(xy, {})[label] = len({r for j in prog.jobs for r in j.rows})

    @property
    def expect(self) -> dict:
        return {xy: (self.replies[xy], len(self.dones[xy])) for xy in self.requests}

    def assemble(self, replies: Mapping[tuple, Sequence[int]]) -> dict:
        """label -> its C, from each tile's REPLY words in arrival order."""
        per_plan = {label: {} for label in self.plans}
        for xy, segments in self.segments.items():
            words = list(replies.get(xy, ()))
            if len(words) != self.replies[xy]:
                raise ValueError(f"tile {xy} returned {len(words)} result words, expected "
                                 f"{self.replies[xy]}")
            at = 0
            for label, n in segments:
                per_plan[label][xy] = words[at:at + n]
                at += n
        return {label: plan.assemble(per_plan[label]) for label, plan in self.plans.items()}


def plan_gate(ops: MoeOperands, geom: GemmGeometry, tiles, words_before) -> Schedule:
    """The gating session: G = tokens @ gate_w over ``tiles``."""
    s = Schedule(geom, dict(words_before))
    s.compile("gate", ops.tokens, ops.gate_w, tiles, "gate_w")
    return s


@dataclass
class ExpertPlan:
    """The expert session and how to put its results back in token order."""
    schedule: Schedule
    routes: list
    assignment: dict
    shared: bool              # some tile holds several experts
    shape: tuple              # (T, k, O)

    @property
    def load(self) -> np.ndarray:
        """Tokens per expert."""
        return np.array([len(r.tokens) for r in self.routes], dtype=np.int64)

    def tile_tokens(self, tiles) -> dict:
        """Per tile: the routed token rows it multiplied (a row split over several tiles
        by columns counts on each)."""
        rows = self.schedule.rows
        return {tuple(xy): sum(rows.get(tuple(xy), {}).values()) for xy in tiles}

    def tile_experts(self, tiles) -> dict:
        """Per tile: the experts mapped to it."""
        return {tuple(xy): [e for e, ts in self.assignment.items() if tuple(xy) in ts]
                for xy in tiles}

    @property
    def macs(self) -> int:
        return sum(p.macs for p in self.schedule.plans.values())

    def assemble(self, replies: Mapping[tuple, Sequence[int]]) -> np.ndarray:
        """y (T x k x O): expert e's output row i goes to (tokens[i], slots[i])."""
        y = np.zeros(self.shape, dtype=np.int64)
        outs = self.schedule.assemble(replies)
        for r in self.routes:
            if len(r.tokens):
                y[r.tokens, r.slots] = outs[r.expert]
        return y


def plan_experts(ops: MoeOperands, indices, geom: GemmGeometry, tiles, words_before,
                 placement: str = "static") -> ExpertPlan:
    """The expert session from the top-k ``indices``: per expert with tokens, its gathered
    batch times its weights on its tiles, all in one schedule."""
    t, _, e, o = ops.shape
    if placement == "static":
        assignment = assign_experts(e, tiles)
    elif placement == "balanced":
        assignment = balance_experts(golden_moe.expert_load(indices, e), tiles)
    else:
        raise OperandError(f"placement: {placement!r} is not allowed, must be one of "
                           f"{', '.join(PLACEMENTS)}")
    routes = plan_routes(indices, assignment)
    s = Schedule(geom, dict(words_before))
    for r in routes:
        if len(r.tokens):
            s.compile(r.expert, ops.tokens[r.tokens], ops.experts[r.expert], r.tiles,
                      f"experts[{r.expert}]")
    held = [xy for ts in assignment.values() for xy in ts]
    return ExpertPlan(s, routes, assignment, len(held) > len(set(held)), (t, ops.top_k, o))
