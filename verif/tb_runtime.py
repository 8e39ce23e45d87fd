"""cocotb test of a heterogeneous fabric: every tile kind's job through the runtime.

``every_kind``: one ``Fabric`` on the ``CocotbBackend`` (random backpressure on
both host streams, ``in_stall`` / ``out_stall``) runs, back to back on one
simulation without a reset:

1. memory: random words (full ``data_bits``, both ends of the address range)
   written to and read back from every memory tile, in one session per tile and
   through ``write_async`` / ``read_async``; checked against a dict;
2. gemm: C = A·B (random operands with both extremes) on the GEMM tiles, checked
   against ``gemm_exact`` (``golden_ok``) and numpy's integer product;
3. mvm: ``y = w @ x`` tiled over every crossbar tile (``golden_ok``);
4. anneal: a random sparse Ising problem on the p-bit tile (``golden_ok``; the
   reported energies recomputed from the returned states);
5. factor: ``N`` on the p-bit tile (``golden_ok`` and ``a * b == N``), skipped with
   the reason in ``result.json`` when the multiplier does not fit the tile;
6. malformed requests to every tile (unmapped addresses, unknown ops, bad
   descriptors, out-of-range ctrl words and weights, derived from the tile's
   geometry), each of which must be answered ``ERROR`` with the request's op and
   address echoed (and the tile's reason code where it defines one) and counted
   in the tile's ``errors`` register, leaving its other counters alone; each
   followed by a correct job on the same tile (memory contents intact, a GEMM, an
   MVM, a Max-Cut);
7. finally every tile's ``errors`` equals the malformed requests it was sent and
   every router's ``dropped`` is 0.

Parameters (``params()``): ``config`` (YAML path), ``seed``, ``in_stall``,
``out_stall``, ``gemm`` and ``gemm_after`` ([m, k, n]), ``mvm`` and ``mvm_after``
([m, k, vectors]), ``anneal_n``, ``sweeps``, ``maxcut_nodes``, ``factor`` (N),
``factor_bits`` (optional [na, nb]), ``factor_sweeps``, ``factor_runs``.
Writes ``result.json``: every job with its tile(s), cycles (a runtime job's
first-flit-in to last-flit-out window; for the memory and malformed steps, the
clock cycles the step took) and verdict, the jobs skipped and why, and every
tile's final ``errors`` count.
"""

from __future__ import annotations

import json
from pathlib import Path

import cocotb
import numpy as np
from amaranth.hdl import Shape

from ..gen.errors import ConfigError
from ..gen.pbit import factor as pbit_factor
from ..gen.pbit import tile as pbit_tile
from ..golden.gemm import gemm_exact
from ..golden.packet import Op
from .params import params
from .runtime import Fabric
from .stimulus import random_operands

UNKNOWN_OP = 7          # no packet op has this value (Op ends at ERROR = 5)


class _Log:
    """The jobs run so far, for ``result.json``."""

    def __init__(self, fab: Fabric):
        self.fab = fab
        self.jobs = []
        self.skipped = {}

    @property
    def cycle(self) -> int:
        return self.fab.backend.cycle if self.fab.backend.clocked is not None else 0

    def add(self, job: str, tiles, cycles: int, ok: bool, **extra):
        self.jobs.append({"job": job, "tiles": [list(t) for t in tiles], "cycles": int(cycles),
                          "golden_ok": bool(ok), **extra})


def _require(ok: bool, what: str):
    if not ok:
        raise AssertionError(what)


def _status_base(t) -> int:
    return min(t.geometry["status_registers"].values())


# -- jobs ------------------------------------------------------------------------------

async def memory_job(fab: Fabric, log: _Log, rng, model: dict, words: int, label: str):
    """Write ``words`` random words (and both ends of the range) to every memory tile,
    read every word of ``model`` back, check against it."""
    bits = fab.config["packet"]["data_bits"]
    mask = (1 << bits) - 1
    for t in fab.tiles_of("memory"):
        depth = t.geometry["depth"]
        mem = model.setdefault(t.xy, {})
        fresh = {0: mask, depth - 1: int(rng.integers(1 << 31)) | (1 << (bits - 1))}
        for a in rng.integers(depth, size=words):
            fresh[int(a)] = int.from_bytes(rng.bytes((bits + 7) // 8), "little") & mask
        mem.update(fresh)
        start = log.cycle
        reqs = ([(Op.WRITE, a, v) for a, v in fresh.items()] +
                [(Op.READ, a, 0) for a in sorted(mem)])
        got = await fab.transact_async(t.x, t.y, reqs, replies=len(mem))
        want = [(Op.REPLY, a, mem[a]) for a in sorted(mem)]
        bad = [(w, g) for w, g in zip(want, got) if tuple(g) != w]
        _require(len(got) == len(want) and not bad,
                 f"memory {t.xy}: {len(bad)} wrong replies, first (want, got) = "
                 f"{bad[0] if bad else (len(want), len(got))}")
        # the plain read/write API, on an address inside the range
        addr = int(rng.integers(depth))
        value = int(rng.integers(1 << 31))
        await fab.write_async(t.x, t.y, addr, value)
        mem[addr] = value
        back = await fab.read_async(t.x, t.y, addr)
        _require(back == value, f"memory {t.xy}: read {addr} = {back}, wrote {value}")
        log.add(label, [t.xy], log.cycle - start, True, words=len(mem))
        cocotb.log.info(f"{label} {t.xy}: {len(mem)} words read back exact")


async def gemm_job(fab: Fabric, log: _Log, rng, shape, label: str):
    m, k, n = shape
    op_bits = fab.tiles_of("gemm")[0].values["op_bits"]
    a, b = random_operands(rng, m, k, n, op_bits)
    r = await fab.gemm_async(a, b)
    _require(r.golden_ok, f"{label} {m}x{k}x{n}: {r.mismatch}")
    _require(np.array_equal(r.c, gemm_exact(a, b, op_bits)) and
             np.array_equal(r.c, a.astype(np.int64) @ b.astype(np.int64)),
             f"{label} {m}x{k}x{n}: product differs from numpy")
    errors = {pe: c["errors"] for pe, c in r.counters.items() if c["errors"]}
    _require(not errors, f"{label}: PEs counted errors during a correct job: {errors}")
    log.add(label, sorted(r.counters), r.cycles, r.golden_ok, shape=[m, k, n],
            utilization=r.utilization)
    cocotb.log.info(f"{label} {m}x{k}x{n}: exact, {r.cycles} cycles")


async def mvm_job(fab: Fabric, log: _Log, rng, shape, seed: int, label: str, tiles: list):
    """``y = w @ x`` with integer operands over the whole range; it must be split over
    every crossbar tile in ``tiles`` when there are several."""
    m, k, vectors = shape
    geom = fab.tiles_of("crossbar")[0].geometry
    w_max = geom["w_max"]
    lo, hi = geom["x_range"]
    w = rng.integers(-w_max, w_max + 1, (m, k))
    x = rng.integers(lo, hi + 1, (vectors, k))
    r = await fab.mvm_async(w, x, seed=seed)
    _require(r.golden_ok, f"{label} {m}x{k}: {r.mismatch}")
    _require(r.y.shape == (vectors, m), f"{label}: y has shape {r.y.shape}")
    if len(tiles) >= 2:
        _require(r.tiles == tiles, f"{label} {m}x{k}: ran on {r.tiles}, not on every "
                                   f"crossbar tile {tiles}; make it larger than one tile")
    log.add(label, r.tiles, r.cycles, r.golden_ok, shape=[m, k, vectors], blocks=r.jobs,
            error=r.error)
    cocotb.log.info(f"{label} {m}x{k} x {vectors}: {r.jobs} blocks on {r.tiles}, "
                    f"= golden, {r.cycles} cycles")


def _ising_energy(J, h, s) -> int:
    s = np.asarray(s, dtype=np.int64)
    return int(-(s @ np.asarray(J, dtype=np.int64) @ s) // 2 - np.asarray(h) @ s)


async def anneal_job(fab: Fabric, log: _Log, rng, n: int, sweeps: int, seed: int):
    j = rng.integers(-3, 4, (n, n)) * (rng.random((n, n)) < 0.25)
    j = np.triu(j, 1)
    j = j + j.T
    h = rng.integers(-3, 4, n)
    r = await fab.anneal_async(j, h, sweeps=sweeps, seed=seed)
    _require(r.golden_ok, f"anneal: {r.mismatch}")
    _require(r.state.shape == (n,) and r.best_energy <= r.energy,
             f"anneal: state {r.state.shape}, best E {r.best_energy} > final E {r.energy}")
    if r.scale == 1.0:              # integer problem used as it is: energies recomputable
        for name, s, e in (("final", r.state, r.energy), ("best", r.best_state,
                                                          r.best_energy)):
            _require(_ising_energy(j, h, s) == e,
                     f"anneal: {name} energy {e} != {_ising_energy(j, h, s)} of its state")
    log.add("anneal", [r.tile], r.cycles, r.golden_ok, n=n, sweeps=r.sweeps,
            best_energy=int(r.best_energy))
    cocotb.log.info(f"anneal {n} p-bits x {r.sweeps} sweeps: = golden, best E "
                    f"{r.best_energy}, {r.cycles} cycles")


async def maxcut_job(fab: Fabric, log: _Log, nodes: int, sweeps: int, seed: int,
                     label: str):
    edges = [(i, (i + 1) % nodes, 1) for i in range(nodes)] + [(0, nodes // 2, 2)]
    r = await fab.maxcut_async(edges, sweeps=sweeps, seed=seed)
    _require(r.golden_ok, f"{label}: {r.mismatch}")
    side = r.assignment
    cut = sum(w for a, b, w in edges if side[a] != side[b])
    _require(r.cut == cut and cut <= sum(w for *_, w in edges),
             f"{label}: reported cut {r.cut}, its assignment cuts {cut}")
    log.add(label, [r.tile], r.cycles, r.golden_ok, nodes=nodes, cut=int(r.cut))
    cocotb.log.info(f"{label} ring of {nodes} + chord: cut {r.cut}, = golden, "
                    f"{r.cycles} cycles")


async def factor_job(fab: Fabric, log: _Log, p: dict, seed: int):
    N = p["factor"]
    t = fab.tiles_of("pbit")[0]
    cfg = t.params.config()
    bits = tuple(p["factor_bits"]) if p.get("factor_bits") else None
    na, nb = pbit_factor.factor_widths(N, bits)
    try:
        prog, _ = pbit_factor.factor_program(N, na, nb, n_colours=cfg["n_colours"])
        need = len(prog.h)
        reason = (f"the {na}x{nb} multiplier needs {need} p-bits, the tile has "
                  f"{cfg['n']}" if need > cfg["n"] else "")
    except ConfigError as exc:
        reason = str(exc)
    if reason:
        log.skipped["factor"] = reason
        cocotb.log.info(f"factor {N}: skipped, {reason}")
        return
    r = await fab.factor_async(N, bits=bits, sweeps=p.get("factor_sweeps", 100),
                               runs=p.get("factor_runs", 16), seed=seed)
    _require(r.golden_ok, f"factor {N}: {r.mismatch}")
    _require(r.a is not None and r.a * r.b == N,
             f"factor {N}: not found in {r.runs} runs of {r.sweeps // r.runs} sweeps")
    log.add("factor", [r.tile], r.cycles, r.golden_ok, N=N, a=r.a, b=r.b, runs=r.runs)
    cocotb.log.info(f"factor {N} = {r.a} x {r.b} in {r.runs} runs, = golden, "
                    f"{r.cycles} cycles")


# -- malformed requests ----------------------------------------------------------------

def _bad_memory(t, fab):
    depth, base = t.geometry["depth"], _status_base(t)
    return [((Op.READ, depth, 0), 0), ((Op.WRITE, depth, 0x5A5A), 0),
            ((Op.WRITE, base, 1), 0),                  # a status register is read-only
            ((Op.EXEC, 0, 0), 0), ((UNKNOWN_OP, 0, 0), 0)]


def _field(layout: dict, **values) -> int:
    word = 0
    for name, v in values.items():
        f = layout[name]
        if not 0 <= v < 1 << f["width"]:
            raise ValueError(f"{name} = {v} does not fit {f['width']} bits")
        word |= v << f["lsb"]
    return word


def _bad_gemm(t, fab):
    g, v = t.geometry, t.values
    unmapped = g["a_base"] + v["a_words"]
    desc = g["descriptor"]
    good = {"k": 1, "rows": 1, "blocks": 1, "a_addr": 0, "b_addr": 0, "wait": 0}
    out = [((Op.READ, unmapped, 0), 0), ((Op.WRITE, unmapped, 3), 0),
           ((Op.EXEC, 1, _field(desc, **{**good, "k": 0})), 1),        # k = 0
           ((Op.EXEC, 2, _field(desc, **{**good, "rows": 0})), 1),     # no rows
           ((UNKNOWN_OP, 0, 0), 0)]
    if v["max_k"] + 1 < 1 << desc["k"]["width"]:
        out.append(((Op.EXEC, 3, _field(desc, **{**good, "k": v["max_k"] + 1})), 1))
    return out


def _bad_crossbar(t, fab):
    amap, g = t.geometry["address_map"], t.geometry
    reasons = g["errors"]["reasons"]
    D = fab.config["packet"]["data_bits"]
    too_big = g["w_max"] + 1
    return [((Op.WRITE, amap["x_base"] + amap["x_words"], 0), reasons["unmapped"]),
            ((Op.READ, amap["seed"], 0), reasons["unmapped"]),
            ((Op.WRITE, amap["prog"], too_big), reasons["weight_range"]),
            ((Op.WRITE, amap["prog"], (-too_big) % (1 << D)), reasons["weight_range"]),
            ((UNKNOWN_OP, 0, 0), reasons["unknown_op"])]


def _bad_pbit(t, fab):
    """Requests the p-bit tile must refuse; a ctrl word is its chunk WRITEs, of which
    only the completing one is answered."""
    p, g = t.params, t.geometry
    reasons = g["errors"]["reasons"]
    amap = g["address_map"]["ctrl"]
    out = [((Op.READ, amap["chunks"], 0), reasons["other"]),
           ((Op.WRITE, amap["chunks"], 0), reasons["other"]),
           ((UNKNOWN_OP, 0, 0), reasons["other"])]

    def ctrl_word(**fields):
        chunks = pbit_tile._chunks(p, p.ctrl_layout.const(fields).as_value().value)
        writes = [(Op.WRITE, amap["base"] + k, c) for k, c in enumerate(chunks)]
        return writes[:-1], writes[-1]

    lead, last = ctrl_word(op=int(p.ops.RUN))                       # RUN is EXEC's job
    out += [(w, None) for w in lead] + [(last, reasons["bad_op"])]
    idx_bits = Shape.cast(p.ctrl_layout["index"].shape).width
    bad_index = []
    if p.n < 1 << idx_bits:
        bad_index.append({"op": int(p.ops.STATE), "index": p.n, "data": 1})
    if p.arch == "lanes":
        bad_index.append({"op": int(p.ops.COUNT), "data": p.slots + 1})
        if p.slots < 1 << idx_bits:
            bad_index.append({"op": int(p.ops.NODE), "index": p.slots})
    for fields in bad_index:
        lead, last = ctrl_word(**fields)
        out += [(w, None) for w in lead] + [(last, reasons["bad_index"])]
    desc = g["exec"]["descriptor"]
    cfg = p.config()
    if cfg["n_colours"] < 1 << desc["colours"]["width"]:
        out.append(((Op.EXEC, 1, _field(desc, colours=cfg["n_colours"])),
                    reasons["bad_descriptor"]))
    if cfg["sched_depth"] < 1 << desc["last"]["width"]:
        out.append(((Op.EXEC, 2, _field(desc, last=cfg["sched_depth"])),
                    reasons["bad_descriptor"]))
    return out


BAD = {"memory": _bad_memory, "gemm": _bad_gemm, "crossbar": _bad_crossbar,
       "pbit": _bad_pbit}
# Counters a refused request must leave alone (besides flits counted on the way in).
UNTOUCHED = {"gemm": ("words", "jobs_done", "busy"), "crossbar": ("mvms", "busy"),
             "pbit": ("runs", "ctrl_words", "running"), "memory": ()}


async def malformed(fab: Fabric, log: _Log, t, sent: dict):
    """Send ``t`` every malformed request of its kind; check each ERROR and the counters."""
    items = BAD[t.kind](t, fab)
    requests = [r for r, _ in items]
    answered = [(r, reason) for r, reason in items if reason is not None]
    before = await fab.status_async(t.x, t.y)
    start = log.cycle
    got = await fab.transact_async(t.x, t.y, requests, replies=len(answered))
    after = await fab.status_async(t.x, t.y)
    _require(len(got) == len(answered),
             f"{t.kind} {t.xy}: {len(got)} answers to {len(answered)} malformed requests")
    for ((op, addr, _), reason), (g_op, g_addr, g_data) in zip(answered, got):
        want_data = int(op) | reason << 8
        _require((g_op, g_addr, g_data) == (Op.ERROR, addr, want_data),
                 f"{t.kind} {t.xy}: request op {int(op)} addr {addr} answered "
                 f"{Op(g_op).name} addr {g_addr} data {g_data:#x}, expected ERROR addr "
                 f"{addr} data {want_data:#x}")
    _require(after["errors"] == before["errors"] + len(answered),
             f"{t.kind} {t.xy}: errors {before['errors']} -> {after['errors']} after "
             f"{len(answered)} refused requests")
    for name in UNTOUCHED[t.kind]:
        _require(after[name] == before[name],
                 f"{t.kind} {t.xy}: {name} {before[name]} -> {after[name]} after refused "
                 f"requests only")
    sent[t.xy] = sent.get(t.xy, 0) + len(answered)
    log.add(f"malformed {t.kind}", [t.xy], log.cycle - start, True, requests=len(requests),
            errors=len(answered), errors_counted=after["errors"] - before["errors"])
    cocotb.log.info(f"malformed {t.kind} {t.xy}: {len(answered)} ERRORs, counted")


async def statuses(fab: Fabric) -> dict:
    return {xy: await fab.status_async(*xy) for xy in sorted(fab.tiles)}


# -- the test --------------------------------------------------------------------------

@cocotb.test()
async def every_kind(dut):
    p = params()
    seed = p.get("seed", 1)
    fab = Fabric.in_cocotb(dut, p)
    kinds = {t.kind for t in fab.tiles.values()}
    missing = {"memory", "gemm", "crossbar", "pbit"} - kinds
    _require(not missing, f"{fab.config['name']}: no {', '.join(sorted(missing))} tiles")
    log = _Log(fab)
    rng = np.random.default_rng(seed)

    start = await statuses(fab)
    dirty = {xy: (s["errors"], s["dropped"]) for xy, s in start.items()
             if s["errors"] or s["dropped"]}
    _require(not dirty, f"counters not zero after reset: {dirty}")

    memory = {}
    await memory_job(fab, log, rng, memory, 16, "memory")
    await gemm_job(fab, log, rng, p["gemm"], "gemm")
    crossbars = sorted(t.xy for t in fab.tiles_of("crossbar"))
    await mvm_job(fab, log, rng, p["mvm"], seed + 1, "mvm", crossbars)
    await anneal_job(fab, log, rng, p.get("anneal_n", 16), p.get("sweeps", 50), seed + 2)
    await factor_job(fab, log, p, seed + 3)

    sent = {}
    for t in sorted(fab.tiles_of("memory"), key=lambda t: t.xy):
        await malformed(fab, log, t, sent)
    await memory_job(fab, log, rng, memory, 4, "memory after ERROR")
    for t in sorted(fab.tiles_of("gemm"), key=lambda t: t.xy):
        await malformed(fab, log, t, sent)
    await gemm_job(fab, log, rng, p.get("gemm_after", [3, 5, 4]), "gemm after ERROR")
    for xy in crossbars:
        await malformed(fab, log, fab.tile(*xy), sent)
    await mvm_job(fab, log, rng, p.get("mvm_after", [5, 7, 2]), seed + 4, "mvm after ERROR",
                  crossbars)
    for t in sorted(fab.tiles_of("pbit"), key=lambda t: t.xy):
        await malformed(fab, log, t, sent)
    await maxcut_job(fab, log, p.get("maxcut_nodes", 10), p.get("sweeps", 50) * 2,
                     seed + 5, "maxcut after ERROR")

    final = await statuses(fab)
    for xy, s in final.items():
        _require(s["errors"] == sent.get(xy, 0),
                 f"tile {xy}: errors {s['errors']}, sent {sent.get(xy, 0)} malformed")
        _require(s["dropped"] == 0, f"tile {xy}: its router dropped {s['dropped']} flits")

    Path("result.json").write_text(json.dumps({
        "config": fab.config["name"], "seed": seed, "in_stall": p.get("in_stall", 0.0),
        "out_stall": p.get("out_stall", 0.0), "jobs": log.jobs, "skipped": log.skipped,
        "errors": {f"{x},{y}": final[(x, y)]["errors"] for x, y in sorted(final)},
        "cycles": log.cycle}, indent=2))
