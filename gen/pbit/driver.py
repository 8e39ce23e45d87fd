"""Host side of ``PBitArray``: encode programs, decode records, predict them, run on RTL.

A session is a list of operations -- ``Program`` (J, h, colours, clamps, spins),
``Run`` (a beta schedule) and ``Read`` -- that ``encode`` turns into ``ctrl`` words.
``golden_records`` predicts every ``out`` record of the session with the bit-exact
model; ``tilefab.verif.tb_pbit.run_rtl`` executes it on the Verilator model of the
array.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...golden.pbit import PBitFormat, PBitMachine, lane_rows
from ...hw.pbit.array import Kind, Op
from ...hw.pbit.control import word_layouts
from ...hw.pbit.lanes import LaneOp
from ..errors import ConfigError


@dataclass
class Program:
    """A problem in array integers: J (n x n, symmetric, zero diagonal), h, colours."""
    J: np.ndarray
    h: np.ndarray
    colours: np.ndarray
    clamp: np.ndarray | None = None
    state: np.ndarray | None = None     # +-1; None keeps the current spins


@dataclass
class Run:
    schedule: list                      # [(beta_q, sweeps), ...]
    n_colours: int
    sample_every: int = 0


@dataclass
class Read:
    pass


@dataclass
class Result:
    """What one Run or Read produced."""
    samples: list = field(default_factory=list)   # (spins +-1, energy)
    state: np.ndarray | None = None
    energy: int = 0
    best_state: np.ndarray | None = None
    best_energy: int = 0
    cycles: int = 0
    update_cycles: int = 0


def fmt_of(cfg: dict) -> PBitFormat:
    return PBitFormat(**{k: cfg[k] for k in (
        "w_bits", "w_frac", "h_bits", "beta_bits", "beta_frac", "lut_size",
        "lut_step_frac", "rand_bits")}, z_bits=cfg.get("z_bits", 0))


# -- encoding ---------------------------------------------------------------------------

def _pack(layout, **fields) -> int:
    """The bits of ``fields`` in the hardware's ``layout`` (fields truncated to width)."""
    return layout.const(fields).as_value().value


def _word(lay: dict, op, index=0, slot=0, data=0) -> int:
    """A ctrl word; ``data`` is the op's data, already packed in its layout."""
    return _pack(lay["ctrl"], op=int(op), index=index, slot=slot, data=data)


def check_program(cfg: dict, neighbours, prog: Program):
    """Reject a program the array cannot hold, naming the field and what is allowed."""
    n = cfg["n"]
    J, h = np.asarray(prog.J), np.asarray(prog.h)
    if J.shape != (n, n) or h.shape != (n,):
        raise ConfigError("J", f"the array has {n} p-bits; J must be {n}x{n} and h length {n}")
    if not np.array_equal(J, J.T) or np.any(np.diag(J) != 0):
        raise ConfigError("J", "must be symmetric with a zero diagonal")
    fmt = fmt_of(cfg)
    lo, hi = fmt.w_range()
    if J.min() < lo or J.max() > hi:
        raise ConfigError("J", f"values must lie in [{lo}, {hi}] (w_bits={fmt.w_bits})")
    lo, hi = fmt.h_range()
    if h.min() < lo or h.max() > hi:
        raise ConfigError("h", f"values must lie in [{lo}, {hi}] (h_bits={fmt.h_bits})")
    if cfg.get("arch") == "lanes":
        _check_lane_capacity(cfg, J)
    else:
        wired = np.zeros((n, n), bool)
        for i, row in enumerate(neighbours):
            wired[i, list(row)] = True
        bad = np.argwhere((J != 0) & ~wired)
        if len(bad):
            i, j = bad[0]
            raise ConfigError("J", f"J[{i}][{j}] is non-zero but p-bits {i} and {j} are not "
                                   f"neighbours in this array (max_degree={cfg['max_degree']})")
    colours = np.asarray(prog.colours)
    if colours.shape != (n,) or colours.min() < 0 or colours.max() >= cfg["n_colours"]:
        raise ConfigError("colours", f"one colour per p-bit in [0, {cfg['n_colours'] - 1}] "
                                     f"(the array has n_colours={cfg['n_colours']})")
    clash = np.argwhere((J != 0) & (colours[:, None] == colours[None, :]))
    if len(clash):
        i, j = clash[0]
        raise ConfigError("colours", f"p-bits {i} and {j} are coupled (J={J[i, j]}) but share "
                                     f"colour {colours[i]}; coupled p-bits must not update "
                                     f"in the same cycle")
    for grp in cfg.get("share", ()):
        c = colours[grp]
        if len(set(c.tolist())) != len(grp):
            i, j = [grp[k] for k in np.flatnonzero(c == c[np.argmax(np.bincount(c))])[:2]]
            raise ConfigError("colours", f"p-bits {i} and {j} share an update datapath "
                                         f"(share group {list(grp)}) but both have colour "
                                         f"{colours[i]}; members of a group must differ")


def lane_entries(J) -> np.ndarray:
    """Edge entries per p-bit in a lane array: its non-zero couplings, at least one."""
    return np.maximum(1, (np.asarray(J) != 0).sum(axis=1))


def _check_lane_capacity(cfg: dict, J):
    deg = (J != 0).sum(axis=1)
    if deg.max(initial=0) > cfg["max_degree"]:
        i = int(np.argmax(deg))
        raise ConfigError("J", f"p-bit {i} has {deg[i]} couplings, above the array's "
                               f"max_degree={cfg['max_degree']}")
    P = cfg["lanes"]
    if cfg.get("fields") == "incremental":
        reach = np.abs(J).sum(axis=1)
        limit = (1 << (cfg["field_bits"] - 1)) - (1 << (cfg["h_bits"] - 1))
        if reach.max(initial=0) > limit:
            i = int(np.argmax(reach))
            raise ConfigError("J", f"p-bit {i} has sum |J| = {reach[i]}, above {limit}, "
                                   f"what its {cfg['field_bits']}-bit field holds beside h")
        rows = int(lane_rows(J, P).sum())
        if rows > cfg["edge_depth"]:
            raise ConfigError("J", f"the edge rows need {rows} entries in every lane, above "
                                   f"the array's edge_depth={cfg['edge_depth']}; generate a "
                                   f"deeper edge memory")
        return
    per_lane = np.bincount(np.arange(cfg["n"]) % P, weights=lane_entries(J), minlength=P)
    if per_lane.max() > cfg["edge_depth"]:
        raise ConfigError("J", f"lane {int(np.argmax(per_lane))} needs {int(per_lane.max())} "
                               f"edge entries, above the array's edge_depth="
                               f"{cfg['edge_depth']}; generate more lanes or a deeper "
                               f"edge memory")


def _lane_program_words(cfg: dict, lay: dict, op: Program) -> list[int]:
    """Edge memories, node tables and counts of every lane (see ``PBitLanes``)."""
    n, P = cfg["n"], cfg["lanes"]
    J, h = np.asarray(op.J), np.asarray(op.h)
    clamp = np.zeros(n, bool) if op.clamp is None else np.asarray(op.clamp, bool)
    words = []
    for lane in range(P):
        mine = [i for i in range(lane, n, P)]
        mine.sort(key=lambda i: (bool(clamp[i]), int(op.colours[i]), i))
        addr = 0
        for k, i in enumerate(mine):
            nz = [int(j) for j in np.flatnonzero(J[i])] or [i]
            for t, j in enumerate(nz):
                data = _pack(lay["EDGE"], nbr=j, j=int(J[i, j]), last=int(t == len(nz) - 1))
                words.append(_word(lay, LaneOp.EDGE, addr, lane, data))
                addr += 1
            data = _pack(lay["NODE"], slot=i // P, h=int(h[i]), colour=int(op.colours[i]),
                         clamp=int(clamp[i]))
            words.append(_word(lay, LaneOp.NODE, k, lane, data))
        words.append(_word(lay, LaneOp.COUNT, 0, lane, _pack(lay["COUNT"], count=len(mine))))
    return words


def _field_program_words(cfg: dict, lay: dict, op: Program) -> list[int]:
    """Incremental fields: every lane's rows of every p-bit, node tables, counts
    (``hw.pbit.fields``). p-bit i owns rows base_i .. base_i + rows_i - 1 in every lane,
    bases in p-bit order."""
    n, P = cfg["n"], cfg["lanes"]
    J, h = np.asarray(op.J), np.asarray(op.h)
    clamp = np.zeros(n, bool) if op.clamp is None else np.asarray(op.clamp, bool)
    rows = lane_rows(J, P)
    base = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(int)
    words = []
    for lane in range(P):
        for i in range(n):
            nbrs = [int(j) for j in np.flatnonzero(J[i]) if j % P == lane]
            for k in range(int(rows[i])):
                j = nbrs[k] if k < len(nbrs) else None
                data = _pack(lay["EDGE"], dst=0 if j is None else j // P,
                             j=0 if j is None else int(J[i, j]), src=i)
                words.append(_word(lay, LaneOp.EDGE, int(base[i]) + k, lane, data))
        mine = sorted(range(lane, n, P), key=lambda i: (bool(clamp[i]), int(op.colours[i]), i))
        for k, i in enumerate(mine):
            data = _pack(lay["NODE"], slot=i // P, h=int(h[i]), colour=int(op.colours[i]),
                         clamp=int(clamp[i]), base=int(base[i]), rows=int(rows[i]))
            words.append(_word(lay, LaneOp.NODE, k, lane, data))
        words.append(_word(lay, LaneOp.COUNT, 0, lane, _pack(lay["COUNT"], count=len(mine))))
    words.append(_word(lay, LaneOp.COUNT, 1, 0, _pack(lay["COUNT"], count=int(rows.sum()))))
    return words


def encode(cfg: dict, neighbours, ops) -> list[int]:
    lay = word_layouts(cfg)
    words = []

    def state_words(op):
        return [_word(lay, Op.STATE, i, 0, _pack(lay["STATE"], spin=int(op.state[i] > 0)))
                for i in range(cfg["n"])]

    for op in ops:
        if isinstance(op, Program) and cfg.get("arch") == "lanes":
            check_program(cfg, neighbours, op)
            program = _field_program_words if cfg.get("fields") == "incremental" else \
                _lane_program_words
            words += program(cfg, lay, op)
            if op.state is not None:
                words += state_words(op)
        elif isinstance(op, Program):
            check_program(cfg, neighbours, op)
            J, h = np.asarray(op.J), np.asarray(op.h)
            clamp = np.zeros(cfg["n"], bool) if op.clamp is None else np.asarray(op.clamp, bool)
            for i, row in enumerate(neighbours):
                for k, j in enumerate(row):
                    words.append(_word(lay, Op.J, i, k, _pack(lay["J"], j=int(J[i, j]))))
                words.append(_word(lay, Op.H, i, 0, _pack(lay["H"], h=int(h[i]))))
                words.append(_word(lay, Op.COLOUR, i, 0, _pack(
                    lay["COLOUR"], colour=int(op.colours[i]), clamp=int(clamp[i]))))
                if op.state is not None:
                    words.append(_word(lay, Op.STATE, i, 0,
                                       _pack(lay["STATE"], spin=int(op.state[i] > 0))))
        elif isinstance(op, Run):
            check_run(cfg, op)
            for e, (beta_q, sweeps) in enumerate(op.schedule):
                words.append(_word(lay, Op.SCHED, e, 0,
                                   _pack(lay["SCHED"], beta=beta_q, sweeps=sweeps)))
            words.append(_word(lay, Op.RUN, len(op.schedule) - 1, 0, _pack(
                lay["RUN"], sample_every=op.sample_every, colours=op.n_colours - 1)))
        elif isinstance(op, Read):
            words.append(_word(lay, Op.READ))
        else:
            raise TypeError(f"unknown operation {op!r}")
    return words


def check_run(cfg: dict, run: Run):
    if not 1 <= len(run.schedule) <= cfg["sched_depth"]:
        raise ConfigError("schedule", f"needs 1 to {cfg['sched_depth']} (beta, sweeps) entries "
                                      f"(sched_depth), got {len(run.schedule)}")
    for e, (beta_q, sweeps) in enumerate(run.schedule):
        if not 0 <= beta_q < 1 << cfg["beta_bits"]:
            raise ConfigError(f"schedule[{e}].beta", f"code must lie in [0, "
                              f"{(1 << cfg['beta_bits']) - 1}] (beta_bits={cfg['beta_bits']})")
        if not 1 <= sweeps < 1 << cfg["sweep_bits"]:
            raise ConfigError(f"schedule[{e}].sweeps", f"must lie in [1, "
                              f"{(1 << cfg['sweep_bits']) - 1}] (sweep_bits={cfg['sweep_bits']})")
    if not 1 <= run.n_colours <= cfg["n_colours"]:
        raise ConfigError("n_colours", f"must lie in [1, {cfg['n_colours']}], "
                                       f"got {run.n_colours}")
    if not 0 <= run.sample_every < 1 << 16:
        raise ConfigError("sample_every", "must lie in [0, 65535] sweeps")


# -- decoding ---------------------------------------------------------------------------

def split_record(cfg: dict, word: int, lay: dict | None = None) -> tuple[int, int, int]:
    """An ``out`` record's kind, index and data (``out_layout``)."""
    rec = (lay or word_layouts(cfg))["out"].from_bits(word)
    return rec["kind"], rec["index"], rec["data"]


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _spins(chunks: list[int], cfg: dict) -> np.ndarray:
    W, n = cfg["word_bits"], cfg["n"]
    v = 0
    for k, c in enumerate(chunks):
        v |= (c & ((1 << W) - 1)) << (k * W)
    return np.array([1 if (v >> i) & 1 else -1 for i in range(n)], dtype=np.int64)


def decode(cfg: dict, words) -> list[Result]:
    """Group ``out`` words into one ``Result`` per Run/Read."""
    eb = cfg["energy_bits"]
    lay = word_layouts(cfg)
    results, cur, chunks = [], Result(), []
    for w in words:
        kind, index, data = split_record(cfg, w, lay)
        if kind in (Kind.SAMPLE, Kind.BEST):
            if index != len(chunks):
                raise ValueError(f"record chunk {index} out of order")
            chunks.append(data)
        elif kind == Kind.ENERGY:
            spins = _spins(chunks, cfg)
            chunks = []
            if index == 0:
                cur.samples.append((spins, _signed(data, eb)))
            else:
                cur.best_state, cur.best_energy = spins, _signed(data, eb)
        elif index == 0:
            cur.cycles = data
        else:
            cur.update_cycles = data
            cur.state, cur.energy = cur.samples.pop()
            results.append(cur)
            cur = Result()
    return results


# -- golden prediction ------------------------------------------------------------------

def _chunks(spins, cfg) -> list[int]:
    W = cfg["word_bits"]
    v = sum(1 << i for i, s in enumerate(spins) if s > 0)
    return [(v >> (k * W)) & ((1 << W) - 1) for k in range(cfg["n_chunks"])]


def _rec(lay, kind, index, data) -> int:
    """An ``out`` record (``out_layout``); a negative energy in two's complement."""
    return _pack(lay["out"], kind=int(kind), index=index, data=data)


def _sample_records(cfg, lay, spins, e) -> list[int]:
    out = [_rec(lay, Kind.SAMPLE, k, c) for k, c in enumerate(_chunks(spins, cfg))]
    return out + [_rec(lay, Kind.ENERGY, 0, e)]


def golden_records(cfg: dict, seeds, ops) -> list[int]:
    """Every ``out`` word the array emits for ``ops``, from the bit-exact model."""
    fmt = fmt_of(cfg)
    lay = word_layouts(cfg)
    n = cfg["n"]
    machine = None
    state = np.ones(n, dtype=np.int64)
    best_state, best_e, cycles, upd = -np.ones(n, dtype=np.int64), 0, 0, 0
    out = []
    for op in ops:
        if isinstance(op, Program):
            if op.state is not None:
                state = np.asarray(op.state, dtype=np.int64)
            rng = machine.rng if machine is not None else seeds
            machine = PBitMachine(fmt, op.J, op.h, op.colours, rng, state=state,
                                  frozen=op.clamp, lanes=cfg.get("lanes"),
                                  fields=cfg.get("fields", "recompute"))
        elif isinstance(op, Run):
            res = machine.run(op.schedule, op.n_colours, op.sample_every)
            state = machine.m
            for s, e in res.samples:
                out += _sample_records(cfg, lay, s, e)
            best_state, best_e = res.best_state, res.best_energy
            cycles, upd = res.cycles, res.update_cycles
            out += _final_records(cfg, lay, machine.m, res.energy, best_state, best_e, cycles, upd)
        elif isinstance(op, Read):
            out += _final_records(cfg, lay, machine.m, machine.energy(), best_state, best_e,
                                  cycles, upd)
    return out


def _final_records(cfg, lay, spins, e, best_state, best_e, cycles, upd) -> list[int]:
    out = _sample_records(cfg, lay, spins, e)
    out += [_rec(lay, Kind.BEST, k, c) for k, c in enumerate(_chunks(best_state, cfg))]
    return out + [_rec(lay, Kind.ENERGY, 1, best_e), _rec(lay, Kind.COUNT, 0, cycles),
                  _rec(lay, Kind.COUNT, 1, upd)]


def n_results(ops) -> int:
    return sum(isinstance(op, (Run, Read)) for op in ops)
