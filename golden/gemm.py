"""GEMM PE tile: geometry, word formats, exact maths and a functional model.

Written from spec/gemm_pe.md, never from the RTL (``tilefab.hw.tiles.gemm``).

Geometry. ``GemmGeometry`` holds the tile parameters (lanes L, op_bits w, max_k,
a_words, b_words, jobs) and the packet widths (data_bits D, addr_bits AB), and
derives every quantity of the spec: P = D // w operands per word, g = P // L
K-rows of B per B word, acc_bits, R = D // acc_bits results per result flit,
F = ceil(L / R) flits per result group, astride(k) = ceil(k / P) words per A
row, bstride(k) = ceil(k / g) words per B block, the descriptor field widths and
the status base S = 2**AB - 16. Construction checks every requirement of the
spec and raises ``ValueError`` naming the field and what is allowed.

Words. Operand j of a scratchpad word sits at bits [j*w, (j+1)*w), two's
complement. A row's operand kk is word kk // P, slot kk % P; a B block's
B[kk, l] is word kk // g, slot (kk % g)*L + l. Slots beyond k are 0. A result
group (L accumulators) is F REPLY flits, flit f holding v_{f*R+j} at bits
[j*acc_bits, (j+1)*acc_bits). A descriptor is, LSB first: k, rows, blocks,
a_addr, b_addr, wait.

Model. ``GemmPEModel`` is untimed: a job runs to completion the moment its
descriptor is at the head of the queue and ``words`` has reached its ``wait``,
so ``receive`` returns every packet the tile sends in answer to one packet,
and counters read as if every ready job had finished. Counters that depend on
cycles (stall_operands, stall_noc) and the router's dropped count read 0; busy
counts issued k steps (L MACs each), which the maths fixes: rows * blocks * k
per job. Status addresses S+9..S+15 hold no register: READ there is an ERROR.
A descriptor that is both bad and meets a full queue is refused as bad.

N:M sparsity (``sparsity`` "2:4" or "4:8", N of every M along K; the pattern
and the compressed form are ``golden.nm``'s). B is stored compressed: a block's
k-panel becomes ks = steps(k) = ceil(k / M) * N steps, step t = grp*N + j the
j-th stored entry of group grp, each a value and a position of mb = log2 M bits
per lane. Values fill B words as dense B rows do (step t lane l: word t // g,
slot (t % g)*L + l), vstride(k) = ceil(ks / g) words; a block's stride in B is
bstride(k) = vstride(k) rounded up to a multiple of E and its b_addr must be a
multiple of E, where E is the largest power of two with E*P*mb <= D. Positions
fill metadata words, a region of ceil(b_words / E) words at packet address
meta_base = b_words + a_words: metadata word i holds the positions of the
T = E*g steps of B words i*E .. i*E + E - 1, step t lane l at bits
[(t*L + l)*mb, (t*L + l + 1)*mb). The spec requires P % M == 0 (an A word holds
whole groups) and T % N == 0 (a metadata word holds whole groups). A step's
product is A operand grp*M + position (0 if that is k or beyond) times its value,
so a job costs ks issue steps per group of results, busy = rows * blocks * ks. A
metadata WRITE whose positions do not strictly increase inside every group of N
steps is refused with ERROR (data = op | 3 << 8), neither stored nor counted; the
metadata region resets to positions 0, 1, .., N-1 in every group.

``gemm_exact`` is the ideal product; ``expected_partition`` the assignment of
output tiles to PEs that the workload compiler must reproduce.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from . import nm
from .packet import Op, Packet

# name: (lowest, highest, default), the per-tile parameters of the spec
TILE_PARAMS = {
    "lanes": (1, 32, 8),
    "op_bits": (4, 16, 8),
    "max_k": (1, 65535, 1024),
    "a_words": (16, 65536, 512),
    "b_words": (16, 65536, 512),
    "jobs": (1, 64, 4),
}

# Status register i sits at packet address status_base + i.
STATUS_REGISTERS = ("dropped", "errors", "flits_in", "flits_out", "words",
                    "jobs_done", "busy", "stall_operands", "stall_noc")
STATUS_SPAN = 16        # addresses reserved for status registers at the top
COUNTER_BITS = 32


class Reject(IntEnum):
    """Reason an EXEC (or a metadata WRITE) is refused (ERROR data = op | reason << 8)."""
    BAD_DESCRIPTOR = 1
    QUEUE_FULL = 2
    BAD_METADATA = 3


def acc_bits(op_bits: int, max_k: int) -> int:
    """Accumulator width: the largest |sum| is max_k * (-2**(w-1))**2, plus a sign bit."""
    return (max_k << (2 * op_bits - 2)).bit_length() + 1


def operand_range(op_bits: int) -> tuple[int, int]:
    """Lowest and highest two's complement operand of ``op_bits`` bits."""
    return -(1 << (op_bits - 1)), (1 << (op_bits - 1)) - 1


def to_signed(value: int, bits: int) -> int:
    """Read the low ``bits`` of ``value`` as two's complement."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class GemmGeometry:
    lanes: int
    op_bits: int
    max_k: int
    a_words: int
    b_words: int
    jobs: int
    data_bits: int
    addr_bits: int
    sparsity: str = "dense"

    def __post_init__(self):
        for f in dataclasses.fields(self):      # numpy integers lack bit_length()
            if isinstance(getattr(self, f.name), np.integer):
                object.__setattr__(self, f.name, int(getattr(self, f.name)))
        self.check()

    def check(self):
        """Raise ValueError naming the first field that breaks a requirement of the spec."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "sparsity" and (not isinstance(v, int) or isinstance(v, bool)):
                raise ValueError(f"{f.name}: {v!r} is not an integer")
        nm.parse_sparsity(self.sparsity)
        for name, (lo, hi, _) in TILE_PARAMS.items():
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ValueError(f"{name}: {v} is not allowed, must be in {lo}..{hi}")
        for name in ("data_bits", "addr_bits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)} is not allowed, must be >= 1")
        unit = self.lanes * self.op_bits
        if self.data_bits % unit:
            raise ValueError(f"data_bits: {self.data_bits} is not allowed, must be a multiple "
                             f"of lanes*op_bits = {unit}")
        if self.nm:
            n, m = self.nm
            if self.operands_per_word % m:
                raise ValueError(f"sparsity: {self.sparsity!r} is not allowed with data_bits "
                                 f"{self.data_bits} and op_bits {self.op_bits}: an A word of "
                                 f"{self.operands_per_word} operands must hold whole groups "
                                 f"of {m}")
            if self.meta_steps % n:
                raise ValueError(f"sparsity: {self.sparsity!r} is not allowed with lanes "
                                 f"{self.lanes}, op_bits {self.op_bits} and data_bits "
                                 f"{self.data_bits}: a metadata word holds "
                                 f"{self.meta_steps} steps, not whole groups of {n}")
        if self.results_per_flit < 1:
            raise ValueError(f"data_bits: {self.data_bits} is not allowed, must hold one "
                             f"acc_bits = {self.acc_bits} result (op_bits {self.op_bits}, "
                             f"max_k {self.max_k})")
        if self.descriptor_bits > self.data_bits:
            parts = " + ".join(f"{n} {b}" for n, b in self.descriptor_fields)
            raise ValueError(f"data_bits: {self.data_bits} is not allowed, must hold the "
                             f"{self.descriptor_bits}-bit descriptor ({parts})")
        need = self.a_words + self.b_words + self.meta_words
        if need > self.status_base:
            meta = f" + metadata words {self.meta_words}" if self.nm else ""
            raise ValueError(f"addr_bits: {self.addr_bits} is not allowed, a_words + b_words"
                             f"{meta} = {need} needs addr_bits >= "
                             f"{(need + STATUS_SPAN - 1).bit_length()} "
                             f"(status registers take the top {STATUS_SPAN} addresses)")
        for name, stride in (("a_words", self.astride), ("b_words", self.bstride)):
            if stride(self.max_k) > getattr(self, name):
                raise ValueError(f"{name}: {getattr(self, name)} is not allowed, must hold one "
                                 f"{name[0].upper()} {'row' if name == 'a_words' else 'block'} "
                                 f"of max_k = {self.max_k}: {stride(self.max_k)} words")

    # --- derived quantities (spec letters in brackets) ---

    @property
    def operands_per_word(self) -> int:
        """[P] operands per scratchpad word (one WRITE flit)."""
        return self.data_bits // self.op_bits

    @property
    def k_per_b_word(self) -> int:
        """[g] K-rows of a B block per B word."""
        return self.operands_per_word // self.lanes

    @property
    def acc_bits(self) -> int:
        return acc_bits(self.op_bits, self.max_k)

    @property
    def results_per_flit(self) -> int:
        """[R] accumulators per result flit."""
        return self.data_bits // self.acc_bits

    @property
    def flits_per_group(self) -> int:
        """[F] result flits per group of L lanes."""
        return _ceil_div(self.lanes, self.results_per_flit)

    def astride(self, k: int) -> int:
        """Words per A row of k operands."""
        return _ceil_div(k, self.operands_per_word)

    def bstride(self, k: int) -> int:
        """Words per B block of k x lanes operands (sparse: of its values, E-aligned)."""
        if not self.nm:
            return _ceil_div(k, self.k_per_b_word)
        e = self.meta_group_words
        return _ceil_div(self.vstride(k), e) * e

    # --- N:M sparsity (None / 0 for a dense tile) ---

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) of an N:M sparse tile, None when dense."""
        return nm.parse_sparsity(self.sparsity)

    def steps(self, k: int) -> int:
        """[ks] issue steps of a k-panel: k dense, ceil(k / M) * N sparse."""
        if not self.nm:
            return k
        n, m = self.nm
        return nm.groups(k, m) * n

    def vstride(self, k: int) -> int:
        """B words holding a sparse block's values over a k-panel."""
        return _ceil_div(self.steps(k), self.k_per_b_word)

    @property
    def meta_bits(self) -> int:
        """[mb] bits of one position, log2 M."""
        return self.nm[1].bit_length() - 1 if self.nm else 0

    @property
    def meta_group_words(self) -> int:
        """[E] B words whose positions one metadata word holds: the largest power of
        two with E*P*mb <= D."""
        if not self.nm:
            return 0
        e = 1
        while 2 * e * self.operands_per_word * self.meta_bits <= self.data_bits:
            e *= 2
        return e

    @property
    def meta_steps(self) -> int:
        """[T] steps of one block whose positions one metadata word holds, E*g."""
        return self.meta_group_words * self.k_per_b_word

    def meta_stride(self, k: int) -> int:
        """Metadata words of one sparse block over a k-panel."""
        return _ceil_div(self.steps(k), self.meta_steps) if self.nm else 0

    @property
    def meta_words(self) -> int:
        """Depth of the metadata region, ceil(b_words / E)."""
        return _ceil_div(self.b_words, self.meta_group_words) if self.nm else 0

    @property
    def meta_base(self) -> int:
        """Packet address of metadata word 0 (after A)."""
        return self.a_base + self.a_words

    @property
    def k_field_bits(self) -> int:
        """[kb] width of the descriptor's k."""
        return self.max_k.bit_length()

    @property
    def a_field_bits(self) -> int:
        """[ab] width of the descriptor's rows and a_addr."""
        return self.a_words.bit_length()

    @property
    def b_field_bits(self) -> int:
        """[bb] width of the descriptor's blocks and b_addr."""
        return self.b_words.bit_length()

    @property
    def wait_bits(self) -> int:
        """[wb] width of the descriptor's wait, and the modulus of the firing compare."""
        return (self.a_words + self.b_words + self.meta_words).bit_length() + 1

    @property
    def descriptor_fields(self) -> tuple[tuple[str, int], ...]:
        """(name, width) of each descriptor field, LSB first."""
        ab, bb = self.a_field_bits, self.b_field_bits
        return (("k", self.k_field_bits), ("rows", ab), ("blocks", bb),
                ("a_addr", ab), ("b_addr", bb), ("wait", self.wait_bits))

    @property
    def descriptor_bits(self) -> int:
        return sum(b for _, b in self.descriptor_fields)

    @property
    def a_base(self) -> int:
        """Packet address of A word 0 (B words sit at 0..b_words-1)."""
        return self.b_words

    @property
    def status_base(self) -> int:
        """[S] packet address of status register 0."""
        return (1 << self.addr_bits) - STATUS_SPAN

    def status_addr(self, name: str) -> int:
        return self.status_base + STATUS_REGISTERS.index(name)


# --- word packing ---

def pack_operands(values, op_bits: int) -> int:
    """One word from operands, operand j at bits [j*w, (j+1)*w)."""
    lo, hi = operand_range(op_bits)
    mask = (1 << op_bits) - 1
    word = 0
    for j, v in enumerate(values):
        v = int(v)
        if not lo <= v <= hi:
            raise ValueError(f"operand {v} is outside {lo}..{hi} (op_bits {op_bits})")
        word |= (v & mask) << (j * op_bits)
    return word


def unpack_operands(word: int, op_bits: int, count: int) -> np.ndarray:
    """The first ``count`` operands of a word, sign-extended."""
    return np.array([to_signed(word >> (j * op_bits), op_bits) for j in range(count)],
                    dtype=np.int64)


def _pack_words(values: np.ndarray, words: int, per_word: int, op_bits: int) -> list[int]:
    """Pack operands in order, ``per_word`` to a word, zero-padded to ``words`` words."""
    flat = np.zeros(words * per_word, dtype=np.int64)
    flat[:values.size] = values.reshape(-1)
    return [pack_operands(w, op_bits) for w in flat.reshape(words, per_word)]


def a_row_words(row, geom: GemmGeometry) -> list[int]:
    """The astride(k) words of one A row of k operands."""
    row = np.asarray(row, dtype=np.int64).reshape(-1)
    return _pack_words(row, geom.astride(row.size), geom.operands_per_word, geom.op_bits)


def b_block_words(block, geom: GemmGeometry) -> list[int]:
    """The bstride(k) words of one B block: k rows of up to ``lanes`` columns.

    Columns beyond the block's width (N not a multiple of lanes) are padded with 0.
    """
    block = np.asarray(block, dtype=np.int64)
    k, cols = block.shape
    if cols > geom.lanes:
        raise ValueError(f"B block: {cols} columns, at most lanes = {geom.lanes}")
    # Operands in (kk, lane) order fill slot (kk % g)*L + l of word kk // g.
    full = np.zeros((k, geom.lanes), dtype=np.int64)
    full[:, :cols] = block
    return _pack_words(full, geom.bstride(k), geom.operands_per_word, geom.op_bits)


def b_sparse_block_words(values, positions, geom: GemmGeometry) -> tuple[list[int], list[int]]:
    """The vstride(k) value words and meta_stride(k) metadata words of one sparse B
    block: ``values``/``positions`` of ks steps x up to ``lanes`` columns.

    Missing columns and the steps after ks that fill the last words get zero values
    and positions 0, 1, .., N-1 in every group.
    """
    n, _ = geom.nm
    values, positions = np.asarray(values, np.int64), np.asarray(positions, np.int64)
    steps, cols = values.shape
    L, mb, T = geom.lanes, geom.meta_bits, geom.meta_steps
    if cols > L:
        raise ValueError(f"B block: {cols} columns, at most lanes = {L}")
    vw, mw = _ceil_div(steps, geom.k_per_b_word), _ceil_div(steps, T)
    full_v = np.zeros((mw * T, L), dtype=np.int64)
    full_p = np.tile((np.arange(mw * T) % n)[:, None], (1, L))
    full_v[:steps, :cols], full_p[:steps, :cols] = values, positions
    value_words = _pack_words(full_v[:vw * geom.k_per_b_word], vw, geom.operands_per_word,
                              geom.op_bits)
    meta_words = []
    for word in full_p.reshape(mw, T * L):
        meta_words.append(sum(int(p) << (j * mb) for j, p in enumerate(word)))
    return value_words, meta_words


def meta_reset_word(geom: GemmGeometry) -> int:
    """A metadata word after reset: positions 0, 1, .., N-1 in every group."""
    n, T, L = geom.nm[0], geom.meta_steps, geom.lanes
    _, (word,) = b_sparse_block_words(np.zeros((T, L)), np.arange(T * L).reshape(T, L) // L % n,
                                      geom)
    return word


def meta_positions(word: int, geom: GemmGeometry) -> np.ndarray:
    """The T x L positions of one metadata word."""
    mb = geom.meta_bits
    flat = [(word >> (j * mb)) & ((1 << mb) - 1) for j in range(geom.meta_steps * geom.lanes)]
    return np.array(flat, dtype=np.int64).reshape(geom.meta_steps, geom.lanes)


def pack_results(values, geom: GemmGeometry) -> list[int]:
    """The F flits of one result group: v_{f*R+j} at bits [j*acc_bits, (j+1)*acc_bits)."""
    acc, per = geom.acc_bits, geom.results_per_flit
    lo, hi = -(1 << (acc - 1)), (1 << (acc - 1)) - 1
    flits = [0] * geom.flits_per_group
    for i, v in enumerate(values):
        v = int(v)
        if not lo <= v <= hi:
            raise ValueError(f"result {v} does not fit acc_bits = {acc}")
        flits[i // per] |= (v & ((1 << acc) - 1)) << ((i % per) * acc)
    return flits


def unpack_results(flits, geom: GemmGeometry) -> np.ndarray:
    """The ``lanes`` accumulators of one result group, sign-extended from acc_bits."""
    if len(flits) != geom.flits_per_group:
        raise ValueError(f"result group: {len(flits)} flits, expected {geom.flits_per_group}")
    acc, per = geom.acc_bits, geom.results_per_flit
    return np.array([to_signed(flits[i // per] >> ((i % per) * acc), acc)
                     for i in range(geom.lanes)], dtype=np.int64)


@dataclass(frozen=True)
class Descriptor:
    """An EXEC's data: a job of rows x blocks groups over k."""
    k: int
    rows: int
    blocks: int
    a_addr: int
    b_addr: int
    wait: int

    def pack(self, geom: GemmGeometry) -> int:
        word, pos = 0, 0
        for name, bits in geom.descriptor_fields:
            v = getattr(self, name)
            if not 0 <= v < 1 << bits:
                raise ValueError(f"descriptor {name}: {v} does not fit in {bits} bits")
            word |= v << pos
            pos += bits
        return word

    @classmethod
    def unpack(cls, word: int, geom: GemmGeometry) -> Descriptor:
        values, pos = {}, 0
        for name, bits in geom.descriptor_fields:
            values[name] = (word >> pos) & ((1 << bits) - 1)
            pos += bits
        return cls(**values)

    def fits(self, geom: GemmGeometry) -> bool:
        """The spec's acceptance test, queue room aside."""
        aligned = not geom.nm or self.b_addr % geom.meta_group_words == 0
        return (1 <= self.k <= geom.max_k and self.rows >= 1 and self.blocks >= 1 and aligned
                and self.a_addr + self.rows * geom.astride(self.k) <= geom.a_words
                and self.b_addr + self.blocks * geom.bstride(self.k) <= geom.b_words)


# --- the mathematics ---

def check_gemm_operands(a, b, op_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """A (M x K) and B (K x N) as int64 arrays, or ValueError naming the matrix at fault."""
    lo, hi = operand_range(op_bits)
    out = []
    for name, x in (("a", a), ("b", b)):
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"{name}: must be a 2-D matrix, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"{name}: must hold integers, got dtype {x.dtype}")
        if x.size and (x.min() < lo or x.max() > hi):
            bad = x.min() if x.min() < lo else x.max()
            raise ValueError(f"{name}: value {int(bad)} is outside {lo}..{hi} "
                             f"(op_bits {op_bits})")
        out.append(x.astype(np.int64))
    if out[1].shape[0] != out[0].shape[1]:
        raise ValueError(f"b: shape {out[1].shape} does not match a's K = {out[0].shape[1]} "
                         f"(a is {out[0].shape}, b must be K x N)")
    return out[0], out[1]


def gemm_exact(a, b, op_bits: int) -> np.ndarray:
    """C = A·B exactly, as int64 (|C| < 2**47 for the spec's widths)."""
    a, b = check_gemm_operands(a, b, op_bits)
    return a @ b


class Share(NamedTuple):
    """The C rows and lane blocks one PE computes."""
    rows: range
    blocks: range


def split_even(count: int, parts: int) -> list[range]:
    """``count`` items as ``parts`` contiguous near-equal ranges, larger parts first."""
    q, r = divmod(count, parts)
    bounds = [i * q + min(i, r) for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


def expected_partition(m: int, n: int, lanes: int, pes: int) -> list[Share | None]:
    """Output tiles per PE index (row-major over a pr x pc grid); None for unused PEs.

    N splits into ceil(n / lanes) lane blocks. The grid minimizes the largest
    per-PE work ceil(m/pr) * ceil(blocks/pc); ties go to fewer operands sent
    (each A row goes to pc PEs, each B block of lanes columns to pr PEs), then to
    fewer PEs, then to fewer row parts. Grids with more parts than rows or blocks
    only add copies, so they are not considered.
    """
    for name, v in (("m", m), ("n", n), ("lanes", lanes), ("pes", pes)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: {v!r} is not allowed, must be an integer >= 1")
    blocks = _ceil_div(n, lanes)

    def cost(grid):
        pr, pc = grid
        return (_ceil_div(m, pr) * _ceil_div(blocks, pc), m * pc + lanes * blocks * pr,
                pr * pc, pr)

    pr, pc = min(((pr, pc) for pr in range(1, min(m, pes) + 1)
                  for pc in range(1, min(blocks, pes // pr) + 1)), key=cost)
    shares: list[Share | None] = [Share(r, c) for r in split_even(m, pr)
                                  for c in split_even(blocks, pc)]
    return shares + [None] * (pes - len(shares))


# --- the tile ---

class GemmPEModel:
    """Functional model of one GEMM PE at (x, y); see the module docstring."""

    def __init__(self, geom: GemmGeometry, x: int, y: int):
        self.geom, self.x, self.y = geom, x, y
        self.memory = {"a": [0] * geom.a_words, "b": [0] * geom.b_words}
        # Operands of every word, decoded on WRITE so a job is a numpy product.
        self._operands = {name: np.zeros((len(words), geom.operands_per_word), dtype=np.int64)
                          for name, words in self.memory.items()}
        if geom.nm:
            self.memory["m"] = [meta_reset_word(geom)] * geom.meta_words
            self._operands["m"] = np.stack([meta_positions(meta_reset_word(geom), geom)]
                                           * geom.meta_words)
        self.counters = dict.fromkeys(STATUS_REGISTERS, 0)
        self.queue: deque[tuple[int, Descriptor, tuple[int, int]]] = deque()

    def receive(self, packet: Packet) -> list[Packet]:
        """Take one packet from the NoC; return the packets the tile sends, in order."""
        g = self.geom
        x0, y0, x1, y1 = packet.rect or (*packet.dst, *packet.dst)
        if not (x0 <= self.x <= x1 and y0 <= self.y <= y1):
            where = f"rect {packet.rect}" if packet.mcast else f"{packet.dst}"
            raise ValueError(f"packet for {where} delivered to the tile at "
                             f"{(self.x, self.y)}")
        if not (0 <= packet.addr < 1 << g.addr_bits and 0 <= packet.data < 1 << g.data_bits):
            raise ValueError(f"packet addr {packet.addr} or data {packet.data:#x} is wider "
                             f"than addr_bits {g.addr_bits} / data_bits {g.data_bits}")
        before = dict(self.counters)        # a READ returns the value before the request
        self.counters["flits_in"] += 1
        out = self._serve(packet, before)
        self.counters["errors"] += sum(p.op == Op.ERROR for p in out)
        self.counters["flits_out"] += len(out)
        return out

    def _serve(self, packet: Packet, before: dict) -> list[Packet]:
        op = packet.op
        if op == Op.WRITE:
            place = self._locate(packet.addr)
            if place is None:
                return [self._answer(packet, Op.ERROR, packet.addr, op)]
            if place[0] == "m" and not nm.well_formed(meta_positions(packet.data, self.geom),
                                                      self.geom.nm[0]):
                return [self._answer(packet, Op.ERROR, packet.addr,
                                     op | Reject.BAD_METADATA << 8)]
            self._store(*place, packet.data)
            self.counters["words"] += 1
            return self._fire()
        if op == Op.READ:
            value = self._read(packet.addr, before)
            if value is None:
                return [self._answer(packet, Op.ERROR, packet.addr, op)]
            return [self._answer(packet, Op.REPLY, packet.addr, value)]
        if op == Op.EXEC:
            d = Descriptor.unpack(packet.data, self.geom)
            if not d.fits(self.geom):
                reason = Reject.BAD_DESCRIPTOR
            elif len(self.queue) >= self.geom.jobs:
                reason = Reject.QUEUE_FULL
            else:
                self.queue.append((packet.addr, d, packet.src))
                return self._fire()
            return [self._answer(packet, Op.ERROR, packet.addr, op | reason << 8)]
        if op in (Op.REPLY, Op.DONE, Op.ERROR):
            self.counters["errors"] += 1
            return []
        return [self._answer(packet, Op.ERROR, packet.addr, op)]

    def _answer(self, request: Packet, op: Op, addr: int, data: int) -> Packet:
        return self._packet(request.src, op, addr, data)

    def _packet(self, dst: tuple[int, int], op: Op, addr: int, data: int) -> Packet:
        return Packet(dst_x=dst[0], dst_y=dst[1], src_x=self.x, src_y=self.y,
                      op=int(op), addr=addr, data=data)

    def _locate(self, addr: int) -> tuple[str, int] | None:
        """Scratchpad and word of a packet address, None outside both."""
        g = self.geom
        if addr < g.b_words:
            return "b", addr
        if addr < g.a_base + g.a_words:
            return "a", addr - g.a_base
        if addr < g.meta_base + g.meta_words:
            return "m", addr - g.meta_base
        return None

    def _read(self, addr: int, counters: dict) -> int | None:
        """A scratchpad word or status register, None where there is neither."""
        place = self._locate(addr)
        if place is not None:
            return self.memory[place[0]][place[1]]
        i = addr - self.geom.status_base
        if 0 <= i < len(STATUS_REGISTERS):
            return counters[STATUS_REGISTERS[i]] % (1 << COUNTER_BITS)
        return None

    def _store(self, region: str, index: int, word: int):
        self.memory[region][index] = word
        if region == "m":
            self._operands[region][index] = meta_positions(word, self.geom)
        else:
            self._operands[region][index] = unpack_operands(word, self.geom.op_bits,
                                                            self.geom.operands_per_word)

    def _ready(self, wait: int) -> bool:
        # Wrap-safe: words has reached wait if it is less than half the modulus past it.
        wb = self.geom.wait_bits
        return (self.counters["words"] - wait) % (1 << wb) < 1 << (wb - 1)

    def _fire(self) -> list[Packet]:
        out = []
        while self.queue and self._ready(self.queue[0][1].wait):
            out += self._run(*self.queue.popleft())
        return out

    def _run(self, tag: int, d: Descriptor, requester: tuple[int, int]) -> list[Packet]:
        g = self.geom
        astride, bstride = g.astride(d.k), g.bstride(d.k)
        a_ops, b_ops = self._operands["a"], self._operands["b"]
        rows = np.stack([a_ops[d.a_addr + r * astride:][:astride].reshape(-1)[:d.k]
                         for r in range(d.rows)])                       # rows x k
        if g.nm:
            sums = self._sparse_sums(d, rows)
        else:
            blocks = np.stack([b_ops[d.b_addr + c * bstride:][:bstride].reshape(-1, g.lanes)
                               [:d.k] for c in range(d.blocks)])        # blocks x k x L
            sums = np.einsum("rk,ckl->rcl", rows, blocks)               # exact in int64
        out = [self._packet(requester, Op.REPLY, tag, flit)
               for group in sums.reshape(-1, g.lanes) for flit in pack_results(group, g)]
        out.append(self._packet(requester, Op.DONE, tag, d.rows * d.blocks))
        self.counters["jobs_done"] += 1
        self.counters["busy"] += d.rows * d.blocks * g.steps(d.k)
        return out

    def _sparse_sums(self, d: Descriptor, rows: np.ndarray) -> np.ndarray:
        """rows x blocks x L sums of a sparse job: each block's ks steps of values and
        positions, read from its B words and their metadata words."""
        g = self.geom
        n, m = g.nm
        ks, bstride, e = g.steps(d.k), g.bstride(d.k), g.meta_group_words
        b_ops, m_ops = self._operands["b"], self._operands["m"]
        sums = []
        for c in range(d.blocks):
            base = d.b_addr + c * bstride
            values = b_ops[base:][:g.vstride(d.k)].reshape(-1, g.lanes)[:ks]
            positions = m_ops[base // e:][:g.meta_stride(d.k)].reshape(-1, g.lanes)[:ks]
            sums.append(nm.sparse_matmul(rows, values, positions, n, m))   # rows x L
        return np.stack(sums, axis=1)
