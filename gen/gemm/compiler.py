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

Results. ``GemmPlan.assemble`` takes each PE's REPLY words in arrival order:
jobs in EXEC order, groups row-major (row outer, block inner), F flits a group.

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

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ...golden.gemm import (Descriptor, GemmGeometry, Share, a_row_words, b_block_words,
                           check_gemm_operands, expected_partition, unpack_results)
from ...golden.packet import Op, Packet
from ...hw.tiles.gemm import GemmParams
from ..errors import OperandError
from . import nm

ITEM_OPS = {"write": Op.WRITE, "exec": Op.EXEC}


@dataclass(frozen=True)
class Item:
    """One packet of a PE program: for "write" addr/data are the word's; for "exec"
    addr is the job tag and data the descriptor."""
    kind: str
    addr: int
    data: int
    after_done: int

    def packet(self, dst: tuple[int, int], src: tuple[int, int]) -> Packet:
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
class GemmPlan:
    m: int
    k: int
    n: int
    geom: GemmGeometry
    programs: tuple[PEProgram, ...]

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

    def __init__(self, geom: GemmGeometry, k: int, words: int, sparse_b=None):
        self.geom, self.k = geom, k
        self.sparse_b = sparse_b        # N:M: (params, values, positions) of the whole B
        self.words = words              # the tile's word counter
        self.after_done = 0             # never decreases: the host sends in order
        self.items: list[Item] = []
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
                self._step(a_panel, a_buf, load_a, b_panel, b_buf, load_b=q == 0)

    def _step(self, a_panel: range, a_buf: _Buffer, load_a: bool,
              b_panel: range, b_buf: _Buffer, load_b: bool):
        """One A panel against one B panel: each arriving operand meets the resident ones."""
        g, k = self.geom, self.k
        rows_in = [] if load_a else list(a_panel)
        blocks_in = [] if load_b else list(b_panel)

        def block_arrives(block):
            b_addr = b_buf.base + len(blocks_in) * g.bstride(k)
            blocks_in.append(block)
            job = (list(rows_in), a_buf, a_buf.base, [block], b_buf, b_addr) if rows_in else None
            self._arrive(b_buf, self._block_writes(block, b_addr), job)

        def row_arrives(row):
            a_addr = a_buf.base + len(rows_in) * g.astride(k)
            rows_in.append(row)
            job = ([row], a_buf, a_addr, list(blocks_in), b_buf, b_buf.base) if blocks_in else None
            writes = [(g.a_base + a_addr + i, w) for i, w in enumerate(self.a_rows[row])]
            self._arrive(a_buf, writes, job)

        if load_b:
            block_arrives(b_panel[0])
        if load_a:
            for row in a_panel:
                row_arrives(row)
        if load_b:
            for block in b_panel[1:]:
                block_arrives(block)

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

    def _arrive(self, into: _Buffer, writes: list[tuple[int, int]], job: tuple | None):
        """Write one A row or B block (packet address, word), preceded by the EXEC of
        the job its words complete, so the tile fires on its word counter."""
        self.after_done = max(self.after_done, into.free_after)
        if job is not None:
            self._exec(*job, wait=self.words + len(writes))
        self.items += [Item("write", addr, w, self.after_done) for addr, w in writes]
        self.words += len(writes)

    def _exec(self, rows: list, a_buf: _Buffer, a_addr: int, blocks: list, b_buf: _Buffer,
              b_addr: int, wait: int):
        g, j = self.geom, len(self.jobs)
        # The queue holds `jobs` descriptors: job j - jobs must be DONE first.
        self.after_done = max(self.after_done, j - g.jobs + 1)
        d = Descriptor(k=self.k, rows=len(rows), blocks=len(blocks), a_addr=a_addr,
                       b_addr=b_addr, wait=wait % (1 << g.wait_bits))
        tag = j % (1 << g.addr_bits)
        self.items.append(Item("exec", tag, d.pack(g), self.after_done))
        self.jobs.append(Job(tag=tag, rows=tuple(rows), cols=tuple(c * g.lanes for c in blocks),
                             groups=len(rows) * len(blocks)))
        a_buf.last_reader = b_buf.last_reader = j


def tile_params(geom: GemmGeometry) -> GemmParams:
    """The tile's own parameter object for a geometry (its word layouts)."""
    values = {f: getattr(geom, f) for f in ("lanes", "op_bits", "max_k", "a_words",
                                            "b_words", "jobs", "sparsity")}
    return GemmParams(data_bits=geom.data_bits, addr_bits=geom.addr_bits, **values)


def compile_gemm(a, b, geom: GemmGeometry, pes: Sequence[tuple[int, int]], *,
                 words_before: Mapping[tuple[int, int], int] | None = None) -> GemmPlan:
    """Plan C = A·B on the PEs ``pes`` (PE index i = position in the list).

    Every PE gets a program, in the order of ``pes``; unused PEs an empty one.
    ``words_before`` optionally gives tiles' ``words`` counters (status register
    4) before the plan runs, as the EXEC waits count from them; tiles fresh from
    reset, and tiles left out, start at 0.
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
    programs = []
    for (x, y), share in zip(pes, expected_partition(m, n, geom.lanes, len(pes))):
        builder = _ProgramBuilder(geom, k, words_before.get((x, y), 0), sparse_b)
        if share is not None:
            builder.build(share, a, b)
        programs.append(PEProgram(x, y, tuple(builder.items), tuple(builder.jobs)))
    return GemmPlan(m, k, n, geom, tuple(programs))
