"""Golden models of the sparse gather unit (``SparseGather``): values, order, cycles.

Written from the contract (DESIGN.md and ``hw/sparse/gather.py``'s docstring), not
from the RTL:

- ``GatherMemory``: ``depth`` words of ``value_bits``; index ``i`` is bank
  ``i % banks``, row ``i // banks``; writes to ``i >= depth`` are dropped and counted.
- ``gather(words, indices, depth)``: what each lane delivers, in request order: the
  word at an in-range index with ``error = 0``, ``value = 0, error = 1`` otherwise.
  ``ideal_gather`` is the plain mathematics, ``values[indices]``, for the second check.
- ``simulate(...)``: a cycle model of the unit (reorder window, one rotating-priority
  arbiter per bank, fixed read latency) under any pattern of source pauses and sink
  stalls; it gives every transfer's cycle, each bank's conflicts and each lane's
  stalls, so a run on the RTL can be checked cycle for cycle.

The cycle model's rules, per cycle ``c``, all decided on the state at the start of ``c``:

1. A lane holds at most ``window + 3`` requests (taken, not yet delivered), oldest
   first; its index stream is ready when it holds fewer. A source offers its next word
   in cycle ``c`` unless paused in ``c`` and keeps offering it until taken.
2. Of a lane's requests not yet granted, the ``window`` oldest are eligible. Going
   through them oldest first, a lane requests the bank of each one whose bank it does
   not request yet, up to ``ports`` banks; for each such bank, that oldest eligible
   request is the one it presents.
3. Bank ``b`` grants, of the lanes requesting it, the first at or after its pointer in
   cyclic order (pointer 0 at reset) and moves the pointer to the lane after it; that
   lane's request presented to ``b`` is served; a lane may be granted several banks.
   ``conflicts[b]`` grows by the requesting lanes not granted. ``stalls[l]`` grows when
   lane ``l``'s source offers and the lane is full.
4. A request taken in ``c`` is eligible from ``c + 1``; granted in ``c``, its record
   is complete from ``c + 2``; an out-of-range request's record is complete from
   ``c + 1``. A lane offers its oldest request's record once complete; the sink takes
   it in ``c`` unless stalled in ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Requests a lane holds beyond its window (arbitration, read, delivery).
PIPELINE_ENTRIES = 3
#: Cycles from taking an index to offering its value when nothing conflicts.
LATENCY = 3


def _positive(name, value, lo=1):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name}: {value!r} is not allowed, must be an integer >= {lo}")
    return int(value)


class GatherMemory:
    """The words of the unit's banks, as the ``write`` port leaves them."""

    def __init__(self, depth: int, value_bits: int, banks: int = 1):
        self.depth = _positive("depth", depth)
        self.value_bits = _positive("value_bits", value_bits)
        self.banks = _positive("banks", banks)
        self.words = np.zeros(self.depth, dtype=np.uint64)
        self.dropped_writes = 0

    def write(self, index: int, value: int) -> bool:
        """Store ``value`` (its low ``value_bits``) at ``index``; False if out of range."""
        if not 0 <= index < self.depth:
            self.dropped_writes += 1
            return False
        self.words[index] = int(value) & ((1 << self.value_bits) - 1)
        return True

    def load(self, indices, values):
        for i, v in zip(indices, values):
            self.write(int(i), int(v))

    def bank_row(self, index: int) -> tuple[int, int]:
        return index % self.banks, index // self.banks


def gather(words, indices, depth: int):
    """(values, errors) of one lane's requests, in request order (bit-exact records)."""
    idx = np.asarray(indices, dtype=np.int64)
    words = np.asarray(words, dtype=np.uint64)
    err = (idx < 0) | (idx >= depth)
    vals = np.where(err, 0, words[np.where(err, 0, idx)]).astype(np.uint64)
    return vals, err.astype(np.int64)


def ideal_gather(values, indices):
    """The mathematics: ``values[indices]`` (every index in range)."""
    return np.asarray(values)[np.asarray(indices)]


@dataclass
class GatherTrace:
    """What ``simulate`` predicts: per lane the cycle each index was taken and each
    record delivered, the records, and the counters' increments over the run."""
    lanes: int
    banks: int
    in_cycles: list = field(default_factory=list)
    out_cycles: list = field(default_factory=list)
    values: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    conflicts: np.ndarray | None = None
    stalls: np.ndarray | None = None
    cycles: int = 0          # cycles simulated (until every record was delivered)
    pointers: list = field(default_factory=list)   # the arbiters' pointers at the end

    def accesses(self) -> int:
        return sum(len(c) for c in self.out_cycles)

    def span(self) -> int:
        """Cycles from the first index taken to the last record delivered, inclusive."""
        firsts = [c[0] for c in self.in_cycles if len(c)]
        lasts = [c[-1] for c in self.out_cycles if len(c)]
        return max(lasts) - min(firsts) + 1 if firsts else 0

    def per_lane_per_cycle(self) -> float:
        """Accesses per lane per cycle over ``span()``."""
        return self.accesses() / (self.lanes * self.span()) if self.span() else 0.0


def _pattern(p, lanes, what):
    if p is None:
        return [np.zeros(0, dtype=bool)] * lanes
    if len(p) != lanes:
        raise ValueError(f"{what}: {len(p)} patterns, must be one per lane ({lanes})")
    return [np.asarray(x, dtype=bool) for x in p]


def simulate(indices, *, banks: int, window: int, depth: int, ports: int = 2, words=None,
             in_pause=None, out_pause=None, pointers=None,
             max_cycles: int | None = None) -> GatherTrace:
    """Cycle model of ``SparseGather`` on ``indices`` (one sequence per lane).

    ``in_pause[l][c]`` / ``out_pause[l][c]`` true: lane ``l``'s source does not offer a
    new word / its sink is not ready in cycle ``c`` (beyond the arrays: no pause).
    Cycle 0 is the first cycle a source may offer. ``words`` (default zeros) gives the
    values. ``pointers`` are the banks' arbiter pointers at cycle 0 (default: all 0, as
    after reset; pass a previous run's ``trace.pointers`` to continue from it). Raises
    ``RuntimeError`` if the run has not finished by ``max_cycles``.
    """
    lanes = len(indices)
    _positive("lanes", lanes)
    banks, window, depth = _positive("banks", banks), _positive("window", window), \
        _positive("depth", depth)
    ports = _positive("ports", ports)
    seqs = [[int(i) for i in s] for s in indices]
    words = np.zeros(depth, dtype=np.uint64) if words is None else np.asarray(words,
                                                                              np.uint64)
    in_pause = _pattern(in_pause, lanes, "in_pause")
    out_pause = _pattern(out_pause, lanes, "out_pause")
    capacity = window + PIPELINE_ENTRIES
    total = sum(len(s) for s in seqs)
    if max_cycles is None:
        longest = max((len(p) for p in in_pause + out_pause), default=0)
        max_cycles = 4 * (total + lanes) + longest + 100

    def paused(pat, c):
        return bool(pat[c]) if c < len(pat) else False

    # A request: [index, granted (bool), complete_from (cycle or None)].
    held = [[] for _ in range(lanes)]
    nxt = [0] * lanes                 # next word of each source
    offering = [False] * lanes        # the source holds word nxt[l] on its port
    pointer = [0] * banks if pointers is None else [int(x) for x in pointers]
    if len(pointer) != banks or not all(0 <= x < lanes for x in pointer):
        raise ValueError(f"pointers: {pointers!r} is not allowed, must be {banks} lanes "
                         f"in 0..{lanes - 1}")
    tr = GatherTrace(lanes, banks, [[] for _ in range(lanes)], [[] for _ in range(lanes)],
                     [[] for _ in range(lanes)], [[] for _ in range(lanes)],
                     np.zeros(banks, dtype=np.int64), np.zeros(lanes, dtype=np.int64))
    delivered, c = 0, 0
    while delivered < total:
        if c >= max_cycles:
            raise RuntimeError(f"gather model: {total - delivered} records not delivered "
                               f"after {max_cycles} cycles")
        # 1. sources offer; readiness on both sides from the start-of-cycle state
        for lane in range(lanes):
            if not offering[lane] and nxt[lane] < len(seqs[lane]) and \
                    not paused(in_pause[lane], c):
                offering[lane] = True
        ready = [len(h) < capacity for h in held]
        offer = [bool(h) and h[0][2] is not None and h[0][2] <= c for h in held]
        # 2-3. eligibility and arbitration, on the state at the start of the cycle
        wants = [{} for _ in range(lanes)]      # lane -> {bank: oldest eligible}
        for lane in range(lanes):
            waiting = [r for r in held[lane] if not r[1] and r[2] is None]
            for r in waiting[:window]:
                bank = r[0] % banks
                if bank not in wants[lane] and len(wants[lane]) < ports:
                    wants[lane][bank] = r
        grants = []
        for b in range(banks):
            asking = [lane for lane in range(lanes) if b in wants[lane]]
            if not asking:
                continue
            winner = min(asking, key=lambda lane: (lane - pointer[b]) % lanes)
            pointer[b] = (winner + 1) % lanes
            tr.conflicts[b] += len(asking) - 1
            grants.append(wants[winner][b])
        # 4. the cycle's transfers and grants take effect at its end
        for lane in range(lanes):
            if offer[lane] and not paused(out_pause[lane], c):
                r = held[lane].pop(0)
                tr.out_cycles[lane].append(c)
                err = not 0 <= r[0] < depth
                tr.values[lane].append(0 if err else int(words[r[0]]))
                tr.errors[lane].append(int(err))
                delivered += 1
        for lane in range(lanes):
            if not offering[lane]:
                continue
            if not ready[lane]:
                tr.stalls[lane] += 1
                continue
            idx = seqs[lane][nxt[lane]]
            held[lane].append([idx, False, c + 1 if not 0 <= idx < depth else None])
            tr.in_cycles[lane].append(c)
            nxt[lane] += 1
            offering[lane] = False
        for r in grants:
            r[1] = True
            r[2] = c + 2
        c += 1
    tr.cycles = c
    tr.pointers = pointer
    return tr


def pattern_bound(indices, banks: int, depth: int) -> float:
    """The most accesses per lane per cycle any unit could reach on ``indices``: every
    lane moves one index per cycle and every bank serves one read per cycle, so a run
    takes at least max(longest lane, busiest bank) cycles."""
    lanes = len(indices)
    n = max(len(s) for s in indices)
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in indices])
    inside = flat[(flat >= 0) & (flat < depth)]
    busiest = np.bincount(inside % banks, minlength=banks).max() if inside.size else 0
    return flat.size / (lanes * max(n, int(busiest)))


# -- CSR SpMV ---------------------------------------------------------------------------
#
# ``spmv_exact`` is the mathematics, ``y = A x`` over the integers, from CSR arrays.
# ``spmv_tile`` is the SpMV tile (``hw/tiles/spmv.py``'s contract) on the contents of
# its storage: local row ``r`` runs on lane ``r % lanes`` over that lane's entries
# ``[end[r - lanes], end[r])`` (0 for the first row of a lane); an end pointer above
# ``lane_depth`` or below the row's start, or a column ``>= x_depth``, makes the run
# malformed (the tile answers one ERROR). Each row costs ``max(1, its nonzeros)``
# slots of its lane, so a run takes at least ``max(slots)`` cycles of the engine.


def spmv_exact(indptr, indices, data, x) -> np.ndarray:
    """``y = A x`` exactly (int64) for the CSR matrix ``(indptr, indices, data)``."""
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    vals = np.asarray(data, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    y = np.zeros(len(indptr) - 1, dtype=np.int64)
    np.add.at(y, rows, vals[:indptr[-1]] * x[indices[:indptr[-1]]])
    return y


@dataclass
class SpmvTileRun:
    """What one EXEC of the SpMV tile produces."""
    y: np.ndarray            # one sum per local row (zeros when ``bad``)
    bad: bool                # malformed CSR: the tile answers ERROR, no results
    slots: np.ndarray        # per lane, gather requests (nonzeros and empty rows)
    nonzeros: int

    @property
    def cycle_bound(self) -> int:
        """Fewest engine cycles the run can take: the busiest lane's slots."""
        return int(self.slots.max()) if self.slots.size else 0


def spmv_tile(ends, entries, x, *, rows: int, lanes: int, lane_depth: int,
              x_depth: int) -> SpmvTileRun:
    """The tile's EXEC of ``rows`` local rows. ``ends[r]``: the stored end pointer of row
    ``r``; ``entries[l]``: lane ``l``'s ``(value, col)`` words; ``x``: the gathered
    words as signed integers (``x_depth`` of them)."""
    y = np.zeros(rows, dtype=np.int64)
    slots = np.zeros(lanes, dtype=np.int64)
    pos = [0] * lanes
    bad, nonzeros = False, 0
    for r in range(rows):
        lane = r % lanes
        end = int(ends[r])
        if end > lane_depth or end < pos[lane]:
            bad = True
            end = pos[lane]
        slots[lane] += max(1, end - pos[lane])
        acc = 0
        for value, col in entries[lane][pos[lane]:end]:
            nonzeros += 1
            if not 0 <= col < x_depth:
                bad = True
                continue
            acc += int(value) * int(x[col])
        y[r] = acc
        pos[lane] = end
    return SpmvTileRun(np.zeros(rows, dtype=np.int64) if bad else y, bad, slots, nonzeros)
