"""Workload compiler: C = A·B as per-PE programs of GEMM PE packets.

``compile_gemm(a, b, geom, pes)`` gives each PE (x, y) of ``pes`` a program: the
items the host sends it, in order. An item is a WRITE of one operand word or an
EXEC of one job; ``after_done`` is the number of DONE flits the host must have
received from that PE before sending the item. Honouring it guarantees that

* no WRITE overwrites a scratchpad word that a job not yet DONE still reads;
* the descriptor queue never overflows (EXEC j waits for DONE of job j - jobs);
* nothing deadlocks: every gate waits only on jobs whose words come earlier.

Partition. PE i computes the rows and lane blocks ``expected_partition`` gives
it. N is padded to whole blocks with zero columns (dropped on assembly); A rows
are padded with zero slots beyond K.

Reuse and order. B blocks are loaded once per B panel and stay while A rows
stream. A region whose whole share fits is loaded once; otherwise it is split
into panels of half the region, alternating halves (double buffering: the next
panel loads while the current one computes), or of the whole region when a
half holds no row/block. B panels are the outer loop; a resident A share is
reused by every B panel, a streamed one is sent again for each. Within a
(B panel, A panel) step each operand that arrives is multiplied by every
counterpart already resident, by one EXEC sent right before the operand's words
(its ``wait`` is the PE's word count once they are written, so the tile fires
on its word counter): the first B block, then each A row with an EXEC (row x
resident blocks), then each further block with an EXEC (resident rows x
block). A PE's first EXEC therefore needs one B block and one A row.

Multicast (``compile_gemm(..., multicast=True)``, for packets with rectangle
multicast). The partition is a 2-D ``Grid``: pr x pc PEs, PE (i, j) computing
rows ``rows[i]`` x lane blocks ``blocks[j]`` (``split_even`` of M and of the
blocks), so the pc PEs of PE row i share their A rows and the pr PEs of PE
column j their B blocks. ``make_grid`` lays the PE grid over ``pes`` in row-major
(y, x) or column-major order: on a full rectangle of pc mesh columns PE rows are
mesh rows and PE columns mesh columns; pc = 1 broadcasts B to all the PEs and
sends each its own rows. ``choose_grid`` takes, over every pr <= M, pc <= blocks,
pr * pc <= PEs and both orders, the least ``estimate_cycles``: the start (one block
for every PE column and one row for every PE row, as host flits) plus the most
work a PE has, or the host's flits in, or the result flits out, if longer. Every
PE's program is built as above, from its own share, so the PEs sharing a load
put it at the same scratchpad address. One arrival order serves every PE
(``arrival_order``): in a step that loads both, the first block, the first row,
then a row or a block, whichever frees more groups per host flit of its round
(a row to every PE row, a block to every PE column); a PE with fewer rows or
blocks skips the missing ones, so shared loads keep one relative order on all
PEs and the host can always serve them. A load (an A row or a B block at its
step) held by several PEs is covered by rectangles of exactly those PEs
(``cover``; one, on a full grid); each of its words becomes one multicast flit
per rectangle: ``Item.send`` indexes ``GemmPlan.sends``, the rectangle, and the
item stands in the program of every PE there, with that PE's own DONE gate. A
streamed A row sent again for a later B panel goes to the PEs that still have
that panel. An EXEC is multicast to the rectangle of its load when every PE there
posts the same descriptor (tag, addresses, word count) for it; else it goes to each
PE alone (its gate is always the PE's own). On a 4x4
mesh with 128-bit words, 8 lanes and int8 (a block of K rows is K/2 words, a row
K/16) ``choose_grid`` broadcasts B (pc = 1): all 16 PEs start after one block and
16 rows, against four blocks and four rows for a 4 x 4 grid; with 64-bit words
and 4 lanes (a block four times a row) it takes the 4 x 4 grid.

Results. ``GemmPlan.assemble`` takes each PE's REPLY words in arrival order:
jobs in EXEC order, groups row-major (row outer, block inner), F flits a group.
Results are always unicast REPLYs to the host.

N:M tiles. B must obey the tile's N:M pattern along K in every column
(``OperandError`` names the first group that does not); it is compressed
(``nm.compress``, K padded with zero rows to a multiple of M) and each block is
sent as its value words and its metadata words (``nm.block_words``, encoded with
the tile's layouts), both counted by the tile's word counter. A block's values
start at a multiple of E (the B words per metadata word) and panels of B split
at a multiple of E, so a metadata word never serves two blocks. The descriptor's
k is the true K; the tile pads the last group itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ...golden.gemm import (
    Descriptor,
    GemmGeometry,
    Share,
    a_row_words,
    b_block_words,
    check_gemm_operands,
    expected_partition,
    split_even,
    unpack_results,
)
from ...golden.packet import Op, Packet, multicast_packet
from ...hw.tiles.gemm import GemmParams
from ..errors import OperandError
from . import nm

ITEM_OPS = {"write": Op.WRITE, "exec": Op.EXEC}


@dataclass(frozen=True)
class Item:
    """One packet of a PE program: for "write" addr/data are the word's; for "exec"
    addr is the job tag and data the descriptor. ``send`` >= 0 names the multicast
    flit (``GemmPlan.sends[send]`` is its rectangle) that delivers this item to the PE
    and to every other PE of the rectangle, in whose programs it stands as well;
    -1 is a unicast packet to this PE alone."""
    kind: str
    addr: int
    data: int
    after_done: int
    send: int = -1

    def packet(self, dst: tuple[int, int], src: tuple[int, int], rect=None) -> Packet:
        """The packet to ``dst``, or (``rect`` given) the multicast to ``rect``."""
        if rect is not None:
            return multicast_packet(rect, src, int(ITEM_OPS[self.kind]), self.addr, self.data)
        return Packet(dst_x=dst[0], dst_y=dst[1], src_x=src[0], src_y=src[1],
                      op=int(ITEM_OPS[self.kind]), addr=self.addr, data=self.data)


@dataclass(frozen=True)
class Job:
    """One EXEC: C rows ``rows`` x lane blocks whose lane 0 is C column ``cols[i]``."""
    tag: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    groups: int


@dataclass(frozen=True)
class PEProgram:
    x: int
    y: int
    items: tuple[Item, ...]
    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class Grid:
    """A 2-D partition: PE (i, j) = ``pes[i * cols + j]`` computes C rows ``rows[i]``
    x lane blocks ``blocks[j]``; PE row i shares its A rows, PE column j its B blocks."""
    rows: tuple[range, ...]
    blocks: tuple[range, ...]
    pes: tuple[tuple[int, int], ...]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.blocks)

    def pe(self, i: int, j: int) -> tuple[int, int]:
        return self.pes[i * len(self.blocks) + j]

    def a_sharers(self, i: int) -> list:
        return [self.pe(i, j) for j in range(len(self.blocks))]

    def b_sharers(self, j: int) -> list:
        return [self.pe(i, j) for i in range(len(self.rows))]


@dataclass(frozen=True)
class GemmPlan:
    m: int
    k: int
    n: int
    geom: GemmGeometry
    programs: tuple[PEProgram, ...]
    sends: tuple[tuple[int, int, int, int], ...] = ()   # rectangle of each multicast flit
    grid: Grid | None = None                            # the multicast partition

    @property
    def flits_in(self) -> int:
        """Flits the host sends: each multicast once, each unicast item once."""
        return len(self.sends) + sum(it.send < 0 for p in self.programs for it in p.items)

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates (padding excluded), the numerator of utilization."""
        return self.m * self.k * self.n

    def assemble(self, outputs: Mapping[tuple[int, int], Sequence[int]]) -> np.ndarray:
        """C (m x n, int64) from each PE's REPLY data words in arrival order."""
        g = self.geom
        known = {(p.x, p.y) for p in self.programs}
        if set(outputs) - known:
            raise ValueError(f"results from {sorted(set(outputs) - known)}, which have no program")
        c = np.zeros((self.m, self.n), dtype=np.int64)
        for p in self.programs:
            words = list(outputs.get((p.x, p.y), ()))
            expected = g.flits_per_group * sum(job.groups for job in p.jobs)
            if len(words) != expected:
                raise ValueError(f"PE ({p.x}, {p.y}) returned {len(words)} result words, "
                                 f"expected {expected}")
            groups = iter(range(0, expected, g.flits_per_group))
            for job in p.jobs:
                for row in job.rows:
                    for col in job.cols:
                        at = next(groups)
                        lanes = unpack_results(words[at:at + g.flits_per_group], g)
                        width = min(g.lanes, self.n - col)     # padded columns dropped
                        c[row, col:col + width] = lanes[:width]
        return c


class _Buffer:
    """A scratchpad area holding one panel: a whole region, or half of it."""

    def __init__(self, base: int):
        self.base = base
        self.free_after = 0     # DONEs needed before the current panel may be written
        self.last_reader = -1   # last job reading the current panel

    def refill(self):
        # The next panel may be written once every job reading this one is DONE.
        self.free_after = max(self.free_after, self.last_reader + 1)
        self.last_reader = -1


def _panel_size(count: int, stride: int, capacity: int, what: str,
                align: int = 1) -> tuple[int, list[_Buffer]]:
    """Items (rows or blocks) per panel and the buffers panels alternate over; the
    second buffer starts at a multiple of ``align``."""
    if count * stride <= capacity:
        return count, [_Buffer(0)]
    half = capacity // 2 // align * align
    if half >= stride:
        return half // stride, [_Buffer(0), _Buffer(half)]
    if capacity >= stride:
        return capacity // stride, [_Buffer(0)]
    raise ValueError(f"{what} of {stride} words does not fit the {capacity}-word scratchpad")


def _panels(indices: range, size: int) -> list[range]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


class _ProgramBuilder:
    """Emits one PE's items and jobs, tracking the DONE gates they need."""

    def __init__(self, geom: GemmGeometry, k: int, words: int, sparse_b=None,
                 order: Sequence[tuple[str, int]] | None = None):
        self.geom, self.k = geom, k
        self.sparse_b = sparse_b        # N:M: (params, values, positions) of the whole B
        self.words = words              # the tile's word counter
        self.after_done = 0             # never decreases: the host sends in order
        # Arrivals of a step that loads both: None, the first block, every row, the
        # other blocks; or ("b", u) / ("a", t) pairs, the u-th block and t-th row.
        self.order = order
        self.items: list[Item] = []
        self.keys: list[tuple] = []   # per item: (load, word index) or (load, "exec")
        self.jobs: list[Job] = []
        self.a_rows: dict[int, list[int]] = {}      # C row -> its A words
        self.b_blocks: dict[int, list[int]] = {}    # lane block -> its B words

    def build(self, share: Share, a: np.ndarray, b: np.ndarray):
        g, k = self.geom, self.k
        self.a_rows = {r: a_row_words(a[r], g) for r in share.rows}
        if self.sparse_b is None:
            self.b_blocks = {c: b_block_words(b[:, c * g.lanes:(c + 1) * g.lanes], g)
                             for c in share.blocks}
        else:
            params, values, positions = self.sparse_b
            lanes = [slice(c * g.lanes, (c + 1) * g.lanes) for c in share.blocks]
            self.b_blocks = {c: nm.block_words(values[:, s], positions[:, s], params)
                             for c, s in zip(share.blocks, lanes)}
        rows_per, a_bufs = _panel_size(len(share.rows), g.astride(k), g.a_words,
                                       f"an A row (k = {k})")
        blocks_per, b_bufs = _panel_size(len(share.blocks), g.bstride(k), g.b_words,
                                         f"a B block (k = {k})",
                                         align=g.meta_group_words if g.nm else 1)
        a_panels, b_panels = _panels(share.rows, rows_per), _panels(share.blocks, blocks_per)
        a_loads = 0
        for p, b_panel in enumerate(b_panels):
            b_buf = b_bufs[p % len(b_bufs)]
            b_buf.refill()
            for q, a_panel in enumerate(a_panels):
                load_a = p == 0 or len(a_panels) > 1      # a single A panel stays resident
                a_buf = a_bufs[a_loads % len(a_bufs)]
                if load_a:
                    a_loads += 1
                    a_buf.refill()
                self._step(a_panel, a_buf, load_a, b_panel, b_buf, load_b=q == 0, at=(p, q))

    def _step(self, a_panel: range, a_buf: _Buffer, load_a: bool,
              b_panel: range, b_buf: _Buffer, load_b: bool, at: tuple[int, int]):
        """One A panel against one B panel: each arriving operand meets the resident ones.
        ``at`` = (B panel, A panel) names the loads: ("a", row, p, q), ("b", block, p)."""
        g, k = self.geom, self.k
        rows_in = [] if load_a else list(a_panel)
        blocks_in = [] if load_b else list(b_panel)

        def block_arrives(block):
            b_addr = b_buf.base + len(blocks_in) * g.bstride(k)
            blocks_in.append(block)
            job = (list(rows_in), a_buf, a_buf.base, [block], b_buf, b_addr) if rows_in else None
            self._arrive(b_buf, self._block_writes(block, b_addr), job, ("b", block, at[0]))

        def row_arrives(row):
            a_addr = a_buf.base + len(rows_in) * g.astride(k)
            rows_in.append(row)
            job = ([row], a_buf, a_addr, list(blocks_in), b_buf, b_buf.base) if blocks_in else None
            writes = [(g.a_base + a_addr + i, w) for i, w in enumerate(self.a_rows[row])]
            self._arrive(a_buf, writes, job, ("a", row, *at))

        if self.order is None or not (load_a and load_b):
            if load_b:
                block_arrives(b_panel[0])
            if load_a:
                for row in a_panel:
                    row_arrives(row)
            if load_b:
                for block in b_panel[1:]:
                    block_arrives(block)
            return
        for kind, i in self.order:
            if kind == "b" and i < len(b_panel):
                block_arrives(b_panel[i])
            elif kind == "a" and i < len(a_panel):
                row_arrives(a_panel[i])

    def _block_writes(self, block: int, b_addr: int) -> list[tuple[int, int]]:
        """(packet address, word) of a B block at ``b_addr``: its words, or (N:M) its
        value words and then its metadata words."""
        g = self.geom
        if self.sparse_b is None:
            return [(b_addr + i, w) for i, w in enumerate(self.b_blocks[block])]
        values, meta = self.b_blocks[block]
        at = g.meta_base + b_addr // g.meta_group_words
        return ([(b_addr + i, w) for i, w in enumerate(values)]
                + [(at + i, w) for i, w in enumerate(meta)])

    def _arrive(self, into: _Buffer, writes: list[tuple[int, int]], job: tuple | None,
                load: tuple):
        """Write one A row or B block (packet address, word), preceded by the EXEC of
        the job its words complete, so the tile fires on its word counter."""
        self.after_done = max(self.after_done, into.free_after)
        if job is not None:
            self._exec(*job, wait=self.words + len(writes), load=load)
        self.items += [Item("write", addr, w, self.after_done) for addr, w in writes]
        self.keys += [(load, i) for i in range(len(writes))]
        self.words += len(writes)

    def _exec(self, rows: list, a_buf: _Buffer, a_addr: int, blocks: list, b_buf: _Buffer,
              b_addr: int, wait: int, load: tuple):
        g, j = self.geom, len(self.jobs)
        # The queue holds `jobs` descriptors: job j - jobs must be DONE first.
        self.after_done = max(self.after_done, j - g.jobs + 1)
        d = Descriptor(k=self.k, rows=len(rows), blocks=len(blocks), a_addr=a_addr,
                       b_addr=b_addr, wait=wait % (1 << g.wait_bits))
        tag = j % (1 << g.addr_bits)
        self.items.append(Item("exec", tag, d.pack(g), self.after_done))
        self.keys.append((load, "exec"))        # the EXEC that the load completes
        self.jobs.append(Job(tag=tag, rows=tuple(rows), cols=tuple(c * g.lanes for c in blocks),
                             groups=len(rows) * len(blocks)))
        a_buf.last_reader = b_buf.last_reader = j


def tile_params(geom: GemmGeometry) -> GemmParams:
    """The tile's own parameter object for a geometry (its word layouts)."""
    values = {f: getattr(geom, f) for f in ("lanes", "op_bits", "max_k", "a_words",
                                            "b_words", "jobs", "sparsity")}
    return GemmParams(data_bits=geom.data_bits, addr_bits=geom.addr_bits, **values)


def compile_gemm(a, b, geom: GemmGeometry, pes: Sequence[tuple[int, int]], *,
                 words_before: Mapping[tuple[int, int], int] | None = None,
                 multicast: bool = False, grid: Grid | None = None) -> GemmPlan:
    """Plan C = A·B on the PEs ``pes`` (PE index i = position in the list).

    Every PE gets a program, in the order of ``pes``; unused PEs an empty one.
    ``words_before`` optionally gives tiles' ``words`` counters (status register
    4) before the plan runs, as the EXEC waits count from them; tiles fresh from
    reset, and tiles left out, start at 0. ``multicast`` (packets with rectangle
    multicast) plans the 2-D partition ``grid`` (default ``choose_grid``'s) and
    sends every shared operand word once per rectangle of its sharers; a ``grid``
    without ``multicast`` gives the same programs, every item unicast.
    """
    a, b = check_gemm_operands(a, b, geom.op_bits)
    (m, k), n = a.shape, b.shape[1]
    if m < 1 or n < 1:
        raise OperandError(f"a is {a.shape} and b is {b.shape}: M and N must be >= 1")
    if not 1 <= k <= geom.max_k:
        raise OperandError(f"K = {k} is not allowed, must be in 1..max_k = {geom.max_k}")
    pes = [tuple(pe) for pe in pes]
    if not pes or len(set(pes)) != len(pes):
        raise OperandError(f"pes: {pes} must list at least one PE, each once")
    words_before = words_before or {}
    sparse_b = None
    if geom.nm:
        # Zero columns up to whole lane blocks, then the compressed form of all of B.
        padded = np.zeros((k, -(-n // geom.lanes) * geom.lanes), dtype=np.int64)
        padded[:, :n] = b
        sparse_b = (tile_params(geom), *nm.compress(padded, *geom.nm))
    if multicast or grid is not None:
        grid = grid or choose_grid(m, k, n, geom, pes)
        return _compile_grid(a, b, geom, pes, words_before, sparse_b, grid, multicast)
    programs = []
    for (x, y), share in zip(pes, expected_partition(m, n, geom.lanes, len(pes))):
        builder = _ProgramBuilder(geom, k, words_before.get((x, y), 0), sparse_b)
        if share is not None:
            builder.build(share, a, b)
        programs.append(PEProgram(x, y, tuple(builder.items), tuple(builder.jobs)))
    return GemmPlan(m, k, n, geom, tuple(programs))


# --- multicast: the 2-D partition, its rectangles and the arrival order ---

def rect_tiles(rect) -> list[tuple[int, int]]:
    """The tiles of ``rect`` = (x0, y0, x1, y1), row-major."""
    x0, y0, x1, y1 = rect
    return [(x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def cover(tiles) -> list[tuple[int, int, int, int]]:
    """Rectangles (x0, y0, x1, y1) made of ``tiles`` only that together hold each of
    them once: greedy maximal rectangles, along rows or along columns, whichever
    needs fewer (a full rectangle of tiles is one)."""
    best = None
    for along in (0, 1):                            # 0: grow along x first, 1: along y
        left = set(map(tuple, tiles))
        rects = []
        while left:
            x0, y0 = min(left, key=lambda t: (t[1 - along], t[along]))
            x1, y1 = x0, y0
            if along == 0:
                while (x1 + 1, y0) in left:
                    x1 += 1
                while all((x, y1 + 1) in left for x in range(x0, x1 + 1)):
                    y1 += 1
            else:
                while (x0, y1 + 1) in left:
                    y1 += 1
                while all((x1 + 1, y) in left for y in range(y0, y1 + 1)):
                    x1 += 1
            rects.append((x0, y0, x1, y1))
            left -= set(rect_tiles(rects[-1]))
        if best is None or len(rects) < len(best):
            best = rects
    return best


def make_grid(m: int, n: int, lanes: int, pes: Sequence[tuple[int, int]], shape: tuple[int, int],
              major: str = "rows") -> Grid:
    """The ``shape`` = (pr, pc) partition of C on ``pes`` taken in row-major order (y,
    then x; ``major="rows"``: on a full rectangle of pc columns, PE rows are mesh rows)
    or column-major order (``"cols"``)."""
    pr, pc = shape
    blocks = -(-n // lanes)
    if not (1 <= pr <= m and 1 <= pc <= blocks and pr * pc <= len(pes)):
        raise ValueError(f"grid {pr} x {pc}: needs 1 <= pr <= M = {m}, 1 <= pc <= "
                         f"{blocks} lane blocks and pr * pc <= {len(pes)} PEs")
    key = (lambda t: (t[1], t[0])) if major == "rows" else (lambda t: (t[0], t[1]))
    order = sorted(map(tuple, pes), key=key)
    return Grid(tuple(split_even(m, pr)), tuple(split_even(blocks, pc)),
                tuple(order[:pr * pc]))


def _block_words(geom: GemmGeometry, k: int) -> int:
    """Words the host sends for one B block: its words, or (N:M) values and metadata."""
    return geom.vstride(k) + geom.meta_stride(k) if geom.nm else geom.bstride(k)


def _panels_of(count: int, stride: int, capacity: int, align: int = 1) -> tuple[int, int]:
    """(items per panel, panels) of ``count`` rows or blocks (``_panel_size``'s rule)."""
    per, _ = _panel_size(count, stride, capacity, "an operand", align)
    return per, -(-count // per)


def _round_costs(geom: GemmGeometry, k: int, grid: Grid) -> tuple[int, int]:
    """Host flits to bring one more A row to every PE row (its rectangles' words and an
    EXEC per PE), and one more B block to every PE column."""
    pr, pc = grid.shape
    a = sum(len(cover(grid.a_sharers(i))) for i in range(pr)) * geom.astride(k) + pr * pc
    b = sum(len(cover(grid.b_sharers(j))) for j in range(pc)) * _block_words(geom, k) + pr * pc
    return a, b


def estimate_cycles(m: int, k: int, n: int, geom: GemmGeometry, grid: Grid) -> int:
    """A rough run time of ``grid``: the start (one block to every PE column and one
    row to every PE row) plus the most work a PE has (its k steps and 2 engine cycles a
    job), or the host's flits in, or the result flits out, whichever is longest."""
    pr, pc = grid.shape
    rows, blocks = max(map(len, grid.rows)), max(map(len, grid.blocks))
    astride, bwords = geom.astride(k), _block_words(geom, k)
    _, q = _panels_of(rows, astride, geom.a_words)
    _, p = _panels_of(blocks, geom.bstride(k), geom.b_words,
                      geom.meta_group_words if geom.nm else 1)
    resend = p if q > 1 else 1                     # a streamed A comes again per B panel
    jobs = rows * resend + blocks * q
    a_cost, b_cost = _round_costs(geom, k, grid)
    start = a_cost + b_cost - pr * pc
    work = rows * blocks * geom.steps(k) + 2 * jobs
    flits_in = (sum(len(cover(grid.a_sharers(i))) * len(r) for i, r in enumerate(grid.rows))
                * astride * resend
                + sum(len(cover(grid.b_sharers(j))) * len(c) for j, c in enumerate(grid.blocks))
                * bwords + pr * pc * jobs)
    flits_out = m * -(-n // geom.lanes) * geom.flits_per_group + pr * pc * jobs
    return max(start + work, flits_in, flits_out)


def choose_grid(m: int, k: int, n: int, geom: GemmGeometry,
                pes: Sequence[tuple[int, int]]) -> Grid:
    """The partition with the least ``estimate_cycles`` over every pr x pc (pr <= M, pc
    <= lane blocks, pr * pc <= PEs) on ``pes`` in row- and column-major order; ties to
    fewer flits in, then fewer PEs."""
    blocks = -(-n // geom.lanes)
    best = None
    for pr in range(1, min(m, len(pes)) + 1):
        for pc in range(1, min(blocks, len(pes) // pr) + 1):
            for major in ("rows", "cols"):
                grid = make_grid(m, n, geom.lanes, pes, (pr, pc), major)
                a_cost, b_cost = _round_costs(geom, k, grid)
                cost = (estimate_cycles(m, k, n, geom, grid), a_cost + b_cost, pr * pc, pr)
                if best is None or cost < best[0]:
                    best = (cost, grid)
    return best[1]


def arrival_order(rows: int, blocks: int, row_cost: int, block_cost: int) -> list:
    """The arrivals of a step that loads ``rows`` A rows and ``blocks`` B blocks: the
    first block, the first row, then whichever frees more work per host flit: a row
    (as many groups as blocks are in, for ``row_cost`` flits) or a block (as many
    groups as rows are in, for ``block_cost``); ties to the row."""
    seq, r, c = [("b", 0)], 0, 1
    while r < rows or c < blocks:
        if r < rows and (c >= blocks or r == 0 or c * block_cost >= r * row_cost):
            seq.append(("a", r))
            r += 1
        else:
            seq.append(("b", c))
            c += 1
    return seq


def _compile_grid(a, b, geom: GemmGeometry, pes: list, words_before: Mapping, sparse_b,
                  grid: Grid, multicast: bool) -> GemmPlan:
    (m, k), n = a.shape, b.shape[1]
    pr, pc = grid.shape
    if set(grid.pes) - set(pes):
        raise ValueError(f"grid: PEs {sorted(set(grid.pes) - set(pes))} are not in pes")
    # One arrival order for every PE, so that the PEs sharing a load see it in the
    # same place among the other shared loads: the host can serve them all. It spans
    # the largest panels of rows and of blocks any PE has.
    align = geom.meta_group_words if geom.nm else 1
    rows = max(_panels_of(len(r), geom.astride(k), geom.a_words)[0] for r in grid.rows)
    blocks = max(_panels_of(len(c), geom.bstride(k), geom.b_words, align)[0]
                 for c in grid.blocks)
    order = arrival_order(rows, blocks, *_round_costs(geom, k, grid))
    builders = {}
    for i in range(pr):
        for j in range(pc):
            pe = grid.pe(i, j)
            builders[pe] = _ProgramBuilder(geom, k, words_before.get(pe, 0), sparse_b, order)
            builders[pe].build(Share(grid.rows[i], grid.blocks[j]), a, b)
    # Who holds each load (an A row or B block at its step), as rectangles of tiles.
    holders: dict[tuple, list] = {}
    for pe, builder in builders.items():
        for load in dict.fromkeys(key[0] for key in builder.keys if key is not None):
            holders.setdefault(load, []).append(pe)
    rect_of, covers = {}, {}
    for load, tiles in holders.items():
        fs = frozenset(tiles)
        if fs not in covers:
            covers[fs] = cover(fs)
        for rect in covers[fs]:
            for t in rect_tiles(rect):
                rect_of[(load, t)] = rect
    # An EXEC goes once to a rectangle when every PE there posts the same descriptor
    # for the same load (same tag, addresses and word count); else to each PE alone.
    execs: dict[tuple, set] = {}
    for pe, builder in builders.items():
        for item, key in zip(builder.items, builder.keys):
            if key is not None and key[1] == "exec":
                execs.setdefault((key, rect_of[(key[0], pe)]), set()).add((pe, item.addr,
                                                                           item.data))
    shared_exec = {k for k, v in execs.items()
                   if len({(a, d) for _, a, d in v}) == 1
                   and {pe for pe, _, _ in v} == set(rect_tiles(k[1]))}
    sends, first, send_of = [], [], {}
    programs = []
    for pe in pes:
        builder = builders.get(pe)
        if builder is None:
            programs.append(PEProgram(*pe, (), ()))
            continue
        items = []
        for item, key in zip(builder.items, builder.keys):
            rect = None if key is None or not multicast else rect_of[(key[0], pe)]
            if key is not None and key[1] == "exec" and (key, rect) not in shared_exec:
                rect = None
            if rect is None or rect[:2] == rect[2:]:
                items.append(item)
                continue
            sid = send_of.setdefault((key, rect), len(sends))
            if sid == len(sends):
                sends.append(rect)
                first.append(item)
            elif (first[sid].addr, first[sid].data) != (item.addr, item.data):
                raise AssertionError(f"multicast {rect}: PE {pe} needs word {item.data:#x} "
                                     f"at {item.addr}, another PE {first[sid].data:#x} at "
                                     f"{first[sid].addr}")
            items.append(dataclasses.replace(item, send=sid))
        programs.append(PEProgram(*pe, tuple(items), tuple(builder.jobs)))
    return GemmPlan(m, k, n, geom, tuple(programs), tuple(sends), grid)
