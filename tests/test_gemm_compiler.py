"""The GEMM workload compiler: plans run on the golden PE model give exactly A·B,
follow the partition, and honour the host's DONE gates (reuse, queue depth); on
N:M tiles also the pattern check, the compression and the words against the
golden model's. Multicast plans: every PE gets exactly its unicast program's
items, shared words are one flit per rectangle of the PEs that hold them, and
served by the real host session to golden tiles they give exactly A·B."""

import dataclasses
import random
from collections import Counter, deque

import numpy as np
import pytest

from tilefab.gen.errors import OperandError
from tilefab.gen.gemm import nm as host_nm
from tilefab.gen.gemm.compiler import (Item, arrival_order, choose_grid, compile_gemm, cover,
                                       estimate_cycles, make_grid, rect_tiles, tile_params)
from tilefab.golden import nm
from tilefab.golden.gemm import (Descriptor, GemmGeometry, GemmPEModel, Share,
                                 b_sparse_block_words, expected_partition, gemm_exact,
                                 operand_range)
from tilefab.golden.packet import Op, PacketFormat, multicast_packet
from tilefab.verif.runtime import gemm_requests
from tilefab.verif.session import HostSession

HOST = (15, 15)

GEOMS = {
    # tiny scratchpads: panels and double buffering; 6-bit tags wrap
    "l4w8d64-tiny": GemmGeometry(lanes=4, op_bits=8, max_k=32, a_words=16, b_words=16,
                                 jobs=2, data_bits=64, addr_bits=6),
    "l8w8d64": GemmGeometry(lanes=8, op_bits=8, max_k=64, a_words=64, b_words=128,
                            jobs=4, data_bits=64, addr_bits=10),
    "l4w16d64": GemmGeometry(lanes=4, op_bits=16, max_k=48, a_words=32, b_words=64,
                             jobs=3, data_bits=64, addr_bits=8),
    "l8w16d128": GemmGeometry(lanes=8, op_bits=16, max_k=100, a_words=64, b_words=256,
                              jobs=4, data_bits=128, addr_bits=12),
    "l4w8d128-jobs1": GemmGeometry(lanes=4, op_bits=8, max_k=200, a_words=512, b_words=512,
                                   jobs=1, data_bits=128, addr_bits=11),
    # N:M: tiny scratchpads (B panels split at a metadata word), E = 4
    "s24l4w8d64-tiny": GemmGeometry(lanes=4, op_bits=8, max_k=32, a_words=16, b_words=16,
                                    jobs=2, data_bits=64, addr_bits=6, sparsity="2:4"),
    # g = 1, E = 8: one metadata word per 8 value words
    "s24l4w16d64": GemmGeometry(lanes=4, op_bits=16, max_k=48, a_words=32, b_words=64,
                                jobs=3, data_bits=64, addr_bits=8, sparsity="2:4"),
    # 4:8, one group per A word, 3-bit positions, E = 4
    "s48l8w16d128": GemmGeometry(lanes=8, op_bits=16, max_k=100, a_words=64, b_words=256,
                                 jobs=4, data_bits=128, addr_bits=12, sparsity="4:8"),
}

PES = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]


def operands(m, k, n, geom, seed):
    """Random A, B with the extreme operands planted; on an N:M tile B pruned to the
    pattern, with some groups emptier still."""
    rng = np.random.default_rng(seed)
    lo, hi = operand_range(geom.op_bits)
    a, b = rng.integers(lo, hi + 1, (m, k)), rng.integers(lo, hi + 1, (k, n))
    a[0, :], b[:, 0] = lo, lo
    a[-1, ::2], b[::2, -1] = hi, lo
    if geom.nm:
        b = nm.prune(b, *geom.nm)
        b[rng.random(b.shape) < 0.2] = 0
    return a, b


def block_words(geom, k):
    """Words the host sends for one B block: its words, or (N:M) values and metadata."""
    return geom.vstride(k) + geom.meta_stride(k) if geom.nm else geom.bstride(k)


def run(plan):
    """Every PE's items, in order, through its model; the REPLY data words per PE."""
    outputs = {}
    for p in plan.programs:
        tile = GemmPEModel(plan.geom, p.x, p.y)
        words, done = [], []
        for item in p.items:
            for out in tile.receive(item.packet((p.x, p.y), HOST)):
                assert out.op in (Op.REPLY, Op.DONE) and out.dst == HOST and out.src == (p.x, p.y)
                (words if out.op == Op.REPLY else done).append((out.addr, out.data))
        assert done == [(job.tag, job.groups) for job in p.jobs]
        outputs[(p.x, p.y)] = [data for _, data in words]
    return outputs


def check_program(p, geom, k):
    """The host's gates, against a worst-case engine that finishes a job only when the
    host must have seen its DONE: no WRITE may then change a word a running job reads."""
    astride, bstride, bwords = geom.astride(k), geom.bstride(k), block_words(geom, k)
    gates = [item.after_done for item in p.items]
    assert gates == sorted(gates)
    jobs = []          # per job: (the word count it needs, packet addresses it reads)
    words = 0
    for item in p.items:
        if item.kind == "exec":
            j = len(jobs)
            assert item.after_done >= j - geom.jobs + 1          # the queue has room
            assert item.addr == p.jobs[j].tag == j % (1 << geom.addr_bits)
            d = Descriptor.unpack(item.data, geom)
            assert d.k == k and d.fits(geom) and d.rows * d.blocks == p.jobs[j].groups
            ahead = (d.wait - words) % (1 << geom.wait_bits)
            assert ahead in (astride, bwords)       # sent right before its own operand
            a0, b0 = geom.a_base + d.a_addr, d.b_addr
            reads = (set(range(a0, a0 + d.rows * astride))
                     | set(range(b0, b0 + d.blocks * bstride)))
            if geom.nm:
                e = geom.meta_group_words
                reads |= set(range(geom.meta_base + b0 // e,
                                   geom.meta_base + (b0 + d.blocks * bstride) // e))
            jobs.append((words + ahead, reads))
        else:
            words += 1
            for j in range(item.after_done, len(jobs)):
                need, reads = jobs[j]
                assert not (need < words and item.addr in reads), \
                    f"PE ({p.x}, {p.y}): write {words} to {item.addr} under running job {j}"
    if jobs:
        assert jobs[0][0] <= astride + bwords                   # early start


def check_partition(plan, pes):
    g = plan.geom
    shares = expected_partition(plan.m, plan.n, g.lanes, len(pes))
    for p, share in zip(plan.programs, shares):
        groups = Counter((r, c) for job in p.jobs for r in job.rows for c in job.cols)
        want = set() if share is None else {(r, c * g.lanes) for r in share.rows
                                            for c in share.blocks}
        assert set(groups) == want and all(v == 1 for v in groups.values())
        assert all(job.groups == len(job.rows) * len(job.cols) for job in p.jobs)
        if share is None:
            assert p.items == ()
            continue
        # Each B block is sent once; a share of A that fits is sent once.
        writes = [item.addr for item in p.items if item.kind == "write"]
        b_writes = sum(addr < g.a_base or addr >= g.meta_base for addr in writes)
        assert b_writes == len(share.blocks) * block_words(g, plan.k)
        a_once = len(share.rows) * g.astride(plan.k)
        assert len(writes) - b_writes >= a_once
        if a_once <= g.a_words:
            assert len(writes) - b_writes == a_once


def check_plan(a, b, geom, pes):
    plan = compile_gemm(a, b, geom, pes)
    assert (plan.m, plan.k, plan.n, plan.macs) == (*a.shape, b.shape[1], a.size * b.shape[1])
    assert [(p.x, p.y) for p in plan.programs] == list(pes)
    for p in plan.programs:
        check_program(p, geom, plan.k)
    check_partition(plan, pes)
    assert np.array_equal(plan.assemble(run(plan)), gemm_exact(a, b, geom.op_bits))
    return plan


def shapes(geom):
    """Edge shapes for a geometry, then random ones."""
    kmax, lanes = geom.max_k, geom.lanes
    fixed = [(1, 1, 1), (1, kmax, 1), (1, 1, lanes), (3, kmax, 2 * lanes + 1),
             (7, kmax - 1, lanes - 1), (2, 5, 3 * lanes)]
    rng = np.random.default_rng(geom.max_k)
    rand = [(int(rng.integers(1, 13)), int(rng.integers(1, kmax + 1)),
             int(rng.integers(1, 5 * lanes))) for _ in range(6)]
    return fixed + rand


CASES = [(name, shape, npes) for name, geom in GEOMS.items()
         for i, shape in enumerate(shapes(geom)) for npes in ((1, 4, 6)[i % 3],)]


@pytest.mark.parametrize("name, shape, npes", CASES,
                         ids=[f"{n}-{m}x{k}x{nn}-{p}pe" for n, (m, k, nn), p in CASES])
def test_plan_computes_a_times_b_exactly(name, shape, npes):
    geom = GEOMS[name]
    check_plan(*operands(*shape, geom, seed=sum(shape)), geom, PES[:npes])


@pytest.mark.parametrize("shape, npes", [
    ((12, 12, 20), 1),      # A and B both stream, double buffered
    ((12, 32, 20), 1),      # a B block fills the region: single buffer
    ((80, 4, 8), 1),        # A streams against resident B; tags wrap at 64
    ((3, 12, 40), 2),       # B streams against resident A
    ((17, 25, 23), 3),
])
def test_panels_on_small_scratchpads(shape, npes):
    geom = GEOMS["l4w8d64-tiny"]
    check_plan(*operands(*shape, geom, seed=1), geom, PES[:npes])


def first_write_to(p, lo, hi):
    """Index of the first write into packet addresses lo..hi-1, and the jobs before it."""
    for i, item in enumerate(p.items):
        if item.kind == "write" and lo <= item.addr < hi:
            return i, sum(it.kind == "exec" for it in p.items[:i])
    raise AssertionError("no write there")


def test_double_buffering_loads_the_next_panel_while_the_current_computes():
    # Tiny scratchpads with a deep queue, so only the region gates hold the host back.
    geom = GemmGeometry(lanes=4, op_bits=8, max_k=32, a_words=16, b_words=16, jobs=8,
                        data_bits=64, addr_bits=6)
    # 12 x 12 x 4: one B block; A rows of 2 words, 4 rows to a half: 3 panels of 4 jobs.
    (p,) = compile_gemm(*operands(12, 12, 4, geom, seed=2), geom, PES[:1]).programs
    half = geom.a_base + geom.a_words // 2
    i, jobs_before = first_write_to(p, half, half + 1)
    # The second panel (after its first row's EXEC) goes in while the first computes.
    assert jobs_before == 5 and p.items[i].after_done == 0
    # The third reuses the first half: it waits for the first panel's last job, job 3.
    row0 = [it.after_done for it in p.items if it.kind == "write" and it.addr == geom.a_base]
    assert row0 == [0, 4]


def test_first_exec_needs_one_block_and_one_row():
    geom = GEOMS["l8w8d64"]
    plan = compile_gemm(*operands(9, 40, 30, geom, seed=3), geom, PES[:1])
    items = plan.programs[0].items
    first = next(i for i, item in enumerate(items) if item.kind == "exec")
    assert first == geom.bstride(40)                     # one B block, then the EXEC
    assert all(item.kind == "write" for item in items[first + 1:first + 1 + geom.astride(40)])
    job = plan.programs[0].jobs[0]
    assert (job.rows, job.cols) == ((0,), (0,))


def test_word_counter_base_of_a_used_tile():
    geom = GEOMS["l4w8d64-tiny"]
    a, b = operands(5, 9, 7, geom, seed=4)
    base = (1 << geom.wait_bits) - 3                     # the waits wrap
    plan = compile_gemm(a, b, geom, [(0, 0)], words_before={(0, 0): base})
    tile = GemmPEModel(geom, 0, 0)
    for _ in range(base):
        tile.receive(Item("write", 0, 0, 0).packet((0, 0), HOST))
    out = [r for item in plan.programs[0].items for r in tile.receive(item.packet((0, 0), HOST))]
    replies = [r.data for r in out if r.op == Op.REPLY]
    assert np.array_equal(plan.assemble({(0, 0): replies}), gemm_exact(a, b, 8))


def test_assemble_checks_the_word_counts():
    geom = GEOMS["l8w8d64"]
    plan = compile_gemm(*operands(3, 4, 9, geom, seed=5), geom, PES[:2])
    outputs = run(plan)
    short = outputs | {(1, 0): outputs[(1, 0)][:-1]}
    with pytest.raises(ValueError, match=r"PE \(1, 0\) returned 11 result words, expected 12"):
        plan.assemble(short)
    with pytest.raises(ValueError, match=r"PE \(0, 0\) returned 13 result words, expected 12"):
        plan.assemble(outputs | {(0, 0): outputs[(0, 0)] + [0]})
    with pytest.raises(ValueError, match=r"results from \[\(5, 5\)\]"):
        plan.assemble(outputs | {(5, 5): []})


@pytest.mark.parametrize("a, b, pes, message", [
    (np.ones((2, 65), int), np.ones((65, 2), int), [(0, 0)],
     r"K = 65 is not allowed, must be in 1\.\.max_k = 64"),
    (np.ones((2, 0), int), np.ones((0, 2), int), [(0, 0)], r"K = 0 is not allowed"),
    (np.ones((0, 3), int), np.ones((3, 2), int), [(0, 0)], r"M and N must be >= 1"),
    (np.ones((2, 3), int), np.ones((3, 2), int), [], r"pes: \[\] must list at least one PE"),
    (np.ones((2, 3), int), np.ones((3, 2), int), [(0, 0), (0, 0)], r"each once"),
    (np.full((2, 3), 128), np.ones((3, 2), int), [(0, 0)], r"a: value 128 is outside"),
])
def test_compile_errors(a, b, pes, message):
    with pytest.raises(ValueError, match=message):
        compile_gemm(a, b, GEOMS["l8w8d64"], pes)


# --- the partition itself ---

def ceil_div(a, b):
    return -(-a // b)


@pytest.mark.parametrize("m, n, lanes, pes", [
    (1, 1, 4, 1), (1, 1, 4, 5), (10, 40, 8, 4), (9, 48, 8, 3), (4, 4, 4, 8), (7, 100, 4, 6),
    (100, 3, 8, 7), (13, 77, 8, 16), (64, 64, 8, 12), (5, 33, 4, 64),
])
def test_partition_covers_once_with_least_work(m, n, lanes, pes):
    shares = expected_partition(m, n, lanes, pes)
    blocks = ceil_div(n, lanes)
    assert len(shares) == pes
    used = [s for s in shares if s is not None]
    assert shares[len(used):] == [None] * (pes - len(used))
    cells = Counter((r, c) for s in used for r in s.rows for c in s.blocks)
    assert set(cells) == {(r, c) for r in range(m) for c in range(blocks)}
    assert set(cells.values()) == {1}
    work = max(len(s.rows) * len(s.blocks) for s in used)
    best = min(ceil_div(m, pr) * ceil_div(blocks, pc)
               for pr in range(1, pes + 1) for pc in range(1, pes // pr + 1))
    assert work == best
    # Near-equal contiguous parts, larger first, row-major over the grid.
    for axis in ("rows", "blocks"):
        sizes = [len(getattr(s, axis)) for s in used]
        assert max(sizes) - min(sizes) <= 1
    row_parts = sorted({(s.rows.start, len(s.rows)) for s in used})
    assert [size for _, size in row_parts] == sorted((size for _, size in row_parts), reverse=True)


def test_partition_ties_go_to_fewer_operands_sent():
    # 2 x 2 and 4 x 1 both give 15 groups a PE; 2 x 2 sends less B.
    assert expected_partition(10, 40, 8, 4) == [
        Share(range(0, 5), range(0, 3)), Share(range(0, 5), range(3, 5)),
        Share(range(5, 10), range(0, 3)), Share(range(5, 10), range(3, 5))]
    # 3 x 1 and 1 x 3 both give 18; splitting N sends each B block once.
    assert [s.rows for s in expected_partition(9, 48, 8, 3)] == [range(0, 9)] * 3
    # 5 rows on 4 PEs: 4 x 1 and 3 x 1 both give 2 rows; 3 x 1 sends B to fewer PEs.
    assert expected_partition(5, 8, 8, 4) == [
        Share(range(0, 2), range(0, 1)), Share(range(2, 4), range(0, 1)),
        Share(range(4, 5), range(0, 1)), None]


def test_partition_arguments_are_checked():
    with pytest.raises(ValueError, match=r"pes: 0 is not allowed"):
        expected_partition(1, 1, 4, 0)


# --- N:M sparse B ---

@pytest.mark.parametrize("sparsity, b_of, message", [
    ("2:4", lambda b: b.__setitem__((slice(8, 11), 3), 1),
     "b[:, 3] group 2 (k 8..11): 3 nonzeros, at most 2 allowed for 2:4"),
    # The first column first, then along K; a ragged last group names its true rows.
    ("2:4", lambda b: (b.__setitem__((slice(0, 4), 4), 5), b.__setitem__((slice(4, 8), 1), 7)),
     "b[:, 1] group 1 (k 4..7): 4 nonzeros, at most 2 allowed for 2:4"),
    ("2:4", lambda b: b.__setitem__((slice(12, 15), 0), -1),
     "b[:, 0] group 3 (k 12..14): 3 nonzeros, at most 2 allowed for 2:4"),
    ("4:8", lambda b: b.__setitem__((slice(8, 13), 2), 2),
     "b[:, 2] group 1 (k 8..14): 5 nonzeros, at most 4 allowed for 4:8"),
])
def test_sparse_pattern_errors_name_the_first_bad_group(sparsity, b_of, message):
    geom = GemmGeometry(lanes=4, op_bits=8, max_k=32, a_words=16, b_words=16, jobs=2,
                        data_bits=64, addr_bits=6, sparsity=sparsity)
    b = np.zeros((15, 6), dtype=np.int64)
    b_of(b)
    with pytest.raises(OperandError) as err:
        compile_gemm(np.ones((2, 15), int), b, geom, PES[:2])
    assert str(err.value) == message
    assert nm.violation(b, *geom.nm) == message          # the golden model agrees


def test_sparse_pattern_is_along_k_per_column():
    """Full rows are fine: the pattern constrains each column along K only."""
    geom = GEOMS["s24l4w8d64-tiny"]
    b = np.zeros((8, 5), dtype=np.int64)
    b[0, :], b[3, :], b[5, :] = 1, -2, 3              # 2, then 1, nonzeros per group
    a = np.arange(16).reshape(2, 8) - 8
    check_plan(a, b, geom, PES[:2])


@pytest.mark.parametrize("name", [n for n, g in GEOMS.items() if g.nm])
def test_sparse_compression_and_words_match_golden(name):
    geom = GEOMS[name]
    params = tile_params(geom)
    rng = np.random.default_rng(7)
    for k, cols in [(1, 1), (geom.max_k, geom.lanes), (geom.max_k - 1, geom.lanes - 1),
                    (13, 2)]:
        b = nm.prune(rng.integers(-9, 10, (k, cols)), *geom.nm)
        b[rng.random(b.shape) < 0.3] = 0
        values, positions = host_nm.compress(b, *geom.nm)
        want = nm.compress(b, *geom.nm)
        assert np.array_equal(values, want[0]) and np.array_equal(positions, want[1])
        assert np.array_equal(nm.decompress(values, positions, *geom.nm, k=k), b)
        # The hardware's layouts encode what the spec's packing gives, bit for bit.
        assert host_nm.block_words(values, positions, params) == \
            tuple(b_sparse_block_words(values, positions, geom))
        vw, mw = host_nm.block_words(values, positions, params)
        assert (len(vw), len(mw)) == (geom.vstride(k), geom.meta_stride(k))


def test_sparse_sends_fewer_b_words_than_dense():
    sparse = GEOMS["s24l4w8d64-tiny"]
    dense = GemmGeometry(**{**sparse.__dict__, "sparsity": "dense"})
    a, b = operands(4, 32, 8, sparse, seed=9)
    count = {}
    for geom in (sparse, dense):
        plan = check_plan(a, b, geom, PES[:1])
        count[geom.sparsity] = sum(it.kind == "write" for it in plan.programs[0].items)
    # B: 2 blocks of 16 words dense; of 8 value + 2 metadata words 2:4; A: 4 rows of 4.
    assert count == {"dense": 16 + 32, "2:4": 16 + 20}


# --- multicast: the 2-D partition, shared loads and the host order ---

MESHES = {
    "4x4": [(x, y) for y in range(4) for x in range(4)],
    "3x2": [(x, y) for y in range(2) for x in range(3)],
    # Not a rectangle: sharers are covered by several rectangles, some single tiles.
    "L5": [(0, 0), (1, 0), (2, 0), (0, 1), (0, 2)],
}


def multicast_format(geom):
    return PacketFormat(coord_bits=3, addr_bits=geom.addr_bits, data_bits=geom.data_bits,
                        multicast=True)


def run_multicast(plan):
    """Every PE's items through its model, each shared item as the multicast packet of
    its rectangle; the REPLY data words per PE."""
    outputs = {}
    for p in plan.programs:
        tile = GemmPEModel(plan.geom, p.x, p.y)
        words = []
        for item in p.items:
            rect = plan.sends[item.send] if item.send >= 0 else None
            for out in tile.receive(item.packet((p.x, p.y), HOST, rect)):
                assert out.dst == HOST and out.src == (p.x, p.y)
                if out.op == Op.REPLY:
                    words.append(out.data)
        outputs[(p.x, p.y)] = words
    return outputs


def serve(plan, seed):
    """The plan through the real ``HostSession`` (one flit a cycle, multicasts sent once
    when every tile of the rectangle is ready, DONE gates) to golden PE models whose
    answers come back after random delays; the product it assembles."""
    fmt = multicast_format(plan.geom)
    requests, expect = gemm_requests(plan)
    session = HostSession.build(fmt, requests, expect)
    tiles = {(p.x, p.y): GemmPEModel(plan.geom, p.x, p.y) for p in plan.programs}
    rng = random.Random(seed)
    back, cycle = deque(), 0
    while not session.finished:
        word = session.next_word()
        if word is not None:
            session.taken(cycle)
            p = fmt.unpack(word)
            x0, y0, x1, y1 = p.rect or (*p.dst, *p.dst)
            for (x, y), tile in tiles.items():
                if x0 <= x <= x1 and y0 <= y <= y1:
                    back.extend(tile.receive(p))
        if back and rng.random() < 0.3:          # the tiles answer late
            session.receive(cycle, fmt.pack(back.popleft()))
        cycle += 1
        assert cycle < 200_000, session.describe()
    assert session.flits_in == plan.flits_in
    return plan.assemble({dst: s.replies for dst, s in session.streams.items()})


def check_multicast_plan(a, b, geom, pes, grid=None, seed=0):
    plan = compile_gemm(a, b, geom, pes, multicast=True, grid=grid)
    g = plan.grid
    assert [(p.x, p.y) for p in plan.programs] == list(pes)
    # The partition: PE (i, j) computes rows[i] x blocks[j], every group once.
    groups = Counter((r, c) for p in plan.programs for job in p.jobs
                     for r in job.rows for c in job.cols)
    blocks = ceil_div(plan.n, geom.lanes)
    assert set(groups) == {(r, c * geom.lanes) for r in range(plan.m) for c in range(blocks)}
    assert set(groups.values()) == {1}
    progs = {(p.x, p.y): p for p in plan.programs}
    for i, rows in enumerate(g.rows):
        for j, cols in enumerate(g.blocks):
            got = {(r, c) for job in progs[g.pe(i, j)].jobs for r in job.rows for c in job.cols}
            assert got == {(r, c * geom.lanes) for r in rows for c in cols}
    # Each PE gets exactly the words (and EXECs) of its unicast program, in its order.
    unicast = compile_gemm(a, b, geom, pes, grid=g)
    assert unicast.sends == () and all(it.send < 0 for p in unicast.programs for it in p.items)
    for p, u in zip(plan.programs, unicast.programs):
        assert [dataclasses.replace(it, send=-1) for it in p.items] == list(u.items)
        assert p.jobs == u.jobs
        check_program(p, geom, plan.k)
    # A multicast flit stands once in the program of every tile of its rectangle, only
    # there, as the same word at the same address (an EXEC: the same tag and
    # descriptor on every PE of the rectangle).
    holders = {}
    for p in plan.programs:
        for it in p.items:
            if it.send >= 0:
                holders.setdefault(it.send, []).append(((p.x, p.y), it.addr, it.data))
    assert sorted(holders) == list(range(len(plan.sends)))
    for sid, rect in enumerate(plan.sends):
        tiles = [t for t, _, _ in holders[sid]]
        assert sorted(tiles) == sorted(rect_tiles(rect)) and len(tiles) > 1
        assert len({(addr, data) for _, addr, data in holders[sid]}) == 1
    want = gemm_exact(a, b, geom.op_bits)
    assert np.array_equal(plan.assemble(run_multicast(plan)), want)
    assert np.array_equal(serve(plan, seed), want)
    return plan


MC_CASES = [(name, shape, mesh) for name in ("l4w8d64-tiny", "l8w8d64", "l4w16d64",
                                             "s24l4w8d64-tiny", "s24l4w16d64", "s48l8w16d128")
            for shape, mesh in zip(shapes(GEOMS[name])[2:8], ("4x4", "3x2", "L5") * 2)]


@pytest.mark.parametrize("name, shape, mesh", MC_CASES,
                         ids=[f"{n}-{m}x{k}x{nn}-{s}" for n, (m, k, nn), s in MC_CASES])
def test_multicast_plan_computes_a_times_b_exactly(name, shape, mesh):
    geom = GEOMS[name]
    check_multicast_plan(*operands(*shape, geom, seed=sum(shape)), geom, MESHES[mesh])


@pytest.mark.parametrize("name, shape, mesh, grid", [
    ("l4w8d64-tiny", (12, 12, 20), "3x2", (3, 2)),    # A and B both stream: panels
    ("l4w8d64-tiny", (17, 25, 23), "4x4", (4, 4)),    # ragged: rows 5, 4, 4, 4
    ("l8w8d64", (9, 40, 30), "4x4", (2, 4)),          # 2 of 4 mesh rows
    ("l4w16d64", (13, 48, 37), "3x2", (2, 3)),
    ("s24l4w8d64-tiny", (10, 30, 18), "3x2", (2, 3)),
    ("s48l8w16d128", (11, 100, 33), "4x4", (4, 4)),
    ("l8w8d64", (20, 33, 50), "L5", (2, 2)),          # sharers split into rectangles
])
@pytest.mark.parametrize("major", ["rows", "cols"])
def test_multicast_2d_grids(name, shape, mesh, grid, major):
    """Grids where PE rows share A rows and PE columns share B blocks, both multicast."""
    geom = GEOMS[name]
    pes = MESHES[mesh]
    a, b = operands(*shape, geom, seed=3)
    g = make_grid(shape[0], shape[2], geom.lanes, pes, grid, major)
    plan = check_multicast_plan(a, b, geom, pes, grid=g, seed=1)
    # Every flit goes to PEs of one PE row (an A row) or one PE column (a B block); on a
    # full rectangle of PEs each PE row and each PE column is one rectangle, and a
    # streamed A row sent again reaches the PEs that still have B panels to go.
    sets = [set(g.a_sharers(i)) for i in range(grid[0])] + \
        [set(g.b_sharers(j)) for j in range(grid[1])]
    for rect in set(plan.sends):
        assert any(set(rect_tiles(rect)) <= s for s in sets)
    cols = len({x for x, _ in pes}) if major == "rows" else len({y for _, y in pes})
    if mesh != "L5" and grid[1] == cols:
        # PE rows are mesh rows (or columns): each sharer set is one rectangle.
        assert {len(cover(s)) for s in sets} == {1}
        assert any(set(rect_tiles(r)) == s for r in plan.sends for s in sets[:grid[0]])
        assert any(set(rect_tiles(r)) == s for r in plan.sends for s in sets[grid[0]:])


def test_multicast_sends_each_operand_word_once():
    """On 4x4 PEs with operands that fit, every A and B word is one flit, whatever the
    grid: the host sends M*astride + blocks*bstride words, plus one flit per EXEC or
    per rectangle of PEs sharing an EXEC."""
    geom = GemmGeometry(lanes=8, op_bits=8, max_k=1024, a_words=512, b_words=512, jobs=4,
                        data_bits=128, addr_bits=12)
    pes = MESHES["4x4"]
    a, b = operands(64, 64, 64, geom, seed=4)
    words = 64 * geom.astride(64) + 8 * geom.bstride(64)
    for grid in (None, (4, 4), (2, 8), (16, 1)):
        g = grid and make_grid(64, 64, 8, pes, grid)
        plan = compile_gemm(a, b, geom, pes, multicast=True, grid=g)
        execs = (sum(it.kind == "exec" and it.send < 0 for p in plan.programs
                     for it in p.items)
                 + len({it.send for p in plan.programs for it in p.items
                        if it.kind == "exec" and it.send >= 0}))
        unicast_writes = sum(it.kind == "write" and it.send < 0
                             for p in plan.programs for it in p.items)
        if grid in (None, (16, 1), (4, 4)):         # every sharer set is a rectangle
            assert plan.flits_in == words + execs
            assert unicast_writes == (256 if plan.grid.shape == (16, 1) else 0)
        else:                                       # 2 x 8: PE columns are 2 mesh columns
            assert plan.flits_in > words + execs
        assert plan.flits_in < sum(len(p.items) for p in plan.programs)


def test_choose_grid_starts_the_pes_early():
    """The grid with the cheapest start wins. With 8 lanes and 16 operands a word, a B
    block of 64 K-rows is 32 words and an A row 4: broadcasting B and sending each of
    16 PEs its own rows starts them all after 32 + 16 * 4 words, a 4 x 4 grid after
    4 * 32 + 4 * 4. With 4 lanes and 8 operands a word (a block 4 rows' worth of
    words) both cost the same and the 4 x 4 grid, which shares A too, is taken."""
    d128 = GemmGeometry(lanes=8, op_bits=8, max_k=1024, a_words=512, b_words=512, jobs=4,
                        data_bits=128, addr_bits=12)
    d64 = GemmGeometry(lanes=4, op_bits=8, max_k=256, a_words=512, b_words=512, jobs=4,
                       data_bits=64, addr_bits=12)
    pes = MESHES["4x4"]
    assert choose_grid(64, 64, 64, d128, pes).shape == (16, 1)
    assert choose_grid(128, 128, 128, d128, pes).shape == (16, 1)
    assert estimate_cycles(64, 64, 64, d128, make_grid(64, 64, 8, pes, (16, 1))) < \
        estimate_cycles(64, 64, 64, d128, make_grid(64, 64, 8, pes, (4, 4)))
    g = choose_grid(128, 128, 128, d64, pes)
    assert g.shape == (4, 4)
    assert [cover(g.a_sharers(i)) for i in range(4)] == [[(0, y, 3, y)] for y in range(4)]
    assert [cover(g.b_sharers(j)) for j in range(4)] == [[(x, 0, x, 3)] for x in range(4)]
    assert choose_grid(1, 1, 1, d128, pes).shape == (1, 1)


def test_arrival_order_alternates_by_work_per_flit():
    # Rows cost 80 flits a round, blocks 48: a block, a row, then what frees more work.
    assert arrival_order(4, 8, 80, 48) == [
        ("b", 0), ("a", 0), ("b", 1), ("a", 1), ("b", 2), ("b", 3), ("a", 2), ("b", 4),
        ("a", 3), ("b", 5), ("b", 6), ("b", 7)]
    assert arrival_order(3, 1, 10, 10) == [("b", 0), ("a", 0), ("a", 1), ("a", 2)]


def test_cover_uses_rectangles_of_the_tiles_only():
    assert cover(MESHES["4x4"]) == [(0, 0, 3, 3)]
    assert cover(MESHES["L5"]) in ([(0, 0, 2, 0), (0, 1, 0, 2)], [(0, 0, 0, 2), (1, 0, 2, 0)])
    tiles = [(0, 0), (2, 0), (0, 1), (2, 1)]
    assert sorted(cover(tiles)) == [(0, 0, 0, 1), (2, 0, 2, 1)]


def test_golden_tile_takes_multicasts_for_its_rectangle():
    geom = GEOMS["l8w8d64"]
    tile = GemmPEModel(geom, 1, 1)
    tile.receive(multicast_packet((0, 0, 2, 1), HOST, Op.WRITE, 3, 7))
    assert tile.memory["b"][3] == 7 and tile.counters["words"] == 1
    with pytest.raises(ValueError, match=r"packet for rect \(2, 0, 3, 1\) delivered to "
                                         r"the tile at \(1, 1\)"):
        tile.receive(multicast_packet((2, 0, 3, 1), HOST, Op.WRITE, 3, 7))
