"""The GEMM PE golden model against the spec's mathematics and its packet contract."""

import itertools

import numpy as np
import pytest

from tilefab.golden import gemm as gm
from tilefab.golden import nm
from tilefab.golden.packet import Op, Packet

HOST = (7, 7)
TILE = (1, 2)
# 4 lanes of 8 bits, 64-bit words: P = 8, g = 2, acc_bits = 21, R = 3, F = 2; wait_bits = 7.
GEOM = gm.GemmGeometry(lanes=4, op_bits=8, max_k=32, a_words=16, b_words=16, jobs=2,
                       data_bits=64, addr_bits=8)


def signed_bits(lo, hi):
    """Smallest two's complement width holding lo..hi, by search."""
    return next(b for b in itertools.count(1) if -(1 << (b - 1)) <= lo and hi < 1 << (b - 1))


def packet(op, addr=0, data=0, src=HOST):
    return Packet(dst_x=TILE[0], dst_y=TILE[1], src_x=src[0], src_y=src[1], op=int(op),
                  addr=addr, data=data)


def model(geom=GEOM):
    return gm.GemmPEModel(geom, *TILE)


def exec_packet(tag, geom=GEOM, **fields):
    d = dict(k=1, rows=1, blocks=1, a_addr=0, b_addr=0, wait=0) | fields
    return packet(Op.EXEC, tag, gm.Descriptor(**d).pack(geom))


def read(tile, name):
    (reply,) = tile.receive(packet(Op.READ, tile.geom.status_addr(name)))
    assert reply.op == Op.REPLY
    return reply.data


# --- widths and exact maths ---

@pytest.mark.parametrize("w, max_k", [(4, 1), (4, 2), (4, 3), (4, 4), (5, 1), (5, 2), (6, 2)])
def test_acc_bits_is_the_smallest_width_of_every_reachable_sum(w, max_k):
    lo, hi = gm.operand_range(w)
    products = {x * y for x in range(lo, hi + 1) for y in range(lo, hi + 1)}
    sums = {0}
    for _ in range(max_k):
        sums = {s + p for s in sums for p in products}
    assert gm.acc_bits(w, max_k) == signed_bits(min(sums), max(sums))


@pytest.mark.parametrize("w", range(4, 17))
@pytest.mark.parametrize("max_k", [1, 2, 3, 7, 8, 1000, 1024, 65535])
def test_acc_bits_holds_the_extreme_sum_and_no_less_would(w, max_k):
    bits = gm.acc_bits(w, max_k)
    extreme = max_k * (-(1 << (w - 1))) ** 2
    assert extreme <= (1 << (bits - 1)) - 1
    assert extreme > (1 << (bits - 2)) - 1
    # The most negative sum is smaller in magnitude, so it fits too.
    assert max_k * (-(1 << (w - 1))) * ((1 << (w - 1)) - 1) >= -(1 << (bits - 1))


@pytest.mark.parametrize("w", [4, 8, 16])
def test_gemm_exact_matches_float_and_python_ints_with_extremes(w):
    rng = np.random.default_rng(w)
    lo, hi = gm.operand_range(w)
    a = rng.integers(lo, hi + 1, (7, 300))
    b = rng.integers(lo, hi + 1, (300, 5))
    a[0, :], b[:, 0] = lo, lo          # the largest positive sum
    a[1, :], b[:, 1] = hi, lo          # the most negative one
    a[2, ::2], b[::3, 2] = lo, hi
    c = gm.gemm_exact(a, b, w)
    assert c.dtype == np.int64 and c.shape == (7, 5)
    assert np.array_equal(c, a.astype(np.float64) @ b.astype(np.float64))
    ints = [[sum(int(a[i, k]) * int(b[k, j]) for k in range(300)) for j in range(5)]
            for i in range(7)]
    assert c.tolist() == ints
    assert c[0, 0] == 300 * lo * lo and c[1, 1] == 300 * hi * lo


def test_gemm_exact_at_the_widest_accumulator():
    lo = gm.operand_range(16)[0]
    a = np.full((1, 65535), lo)
    c = gm.gemm_exact(a, a.T, 16)
    assert int(c[0, 0]) == 65535 << 30 < 1 << gm.acc_bits(16, 65535) - 1


@pytest.mark.parametrize("a, b, message", [
    (np.zeros(3, int), np.zeros((3, 2), int), r"a: must be a 2-D matrix, got shape \(3,\)"),
    (np.zeros((2, 3), int), np.zeros((2, 2, 2), int), r"b: must be a 2-D matrix"),
    (np.zeros((2, 3), int), np.zeros((4, 2), int), r"b: shape \(4, 2\) does not match a's K = 3"),
    (np.zeros((2, 3)), np.zeros((3, 2), int), r"a: must hold integers, got dtype float64"),
    (np.array([[0, 128]]), np.zeros((2, 1), int), r"a: value 128 is outside -128\.\.127"),
    (np.zeros((1, 2), int), np.array([[-129], [0]]), r"b: value -129 is outside -128\.\.127"),
])
def test_gemm_exact_names_the_bad_matrix(a, b, message):
    with pytest.raises(ValueError, match=message):
        gm.gemm_exact(a, b, 8)


# --- geometry ---

def test_derived_quantities_of_the_default_tile():
    g = gm.GemmGeometry(8, 8, 1024, 512, 512, 4, np.int64(128), 16)
    assert (g.operands_per_word, g.k_per_b_word, g.acc_bits) == (16, 2, 26)
    assert (g.results_per_flit, g.flits_per_group) == (4, 2)
    assert (g.astride(1024), g.bstride(1024), g.astride(17), g.bstride(17)) == (64, 512, 2, 9)
    assert (g.k_field_bits, g.a_field_bits, g.b_field_bits, g.wait_bits) == (11, 10, 10, 12)
    assert g.descriptor_bits == 63
    assert g.status_base == 65520 and g.status_addr("jobs_done") == 65525
    assert g.a_base == 512


GOOD = dict(lanes=8, op_bits=8, max_k=1024, a_words=512, b_words=512, jobs=4,
            data_bits=128, addr_bits=16)


@pytest.mark.parametrize("change, message", [
    (dict(lanes=0), r"lanes: 0 is not allowed, must be in 1\.\.32"),
    (dict(lanes=33), r"lanes: 33 is not allowed, must be in 1\.\.32"),
    (dict(op_bits=3), r"op_bits: 3 is not allowed, must be in 4\.\.16"),
    (dict(max_k=65536), r"max_k: 65536 is not allowed, must be in 1\.\.65535"),
    (dict(a_words=15), r"a_words: 15 is not allowed, must be in 16\.\.65536"),
    (dict(b_words=65537), r"b_words: 65537 is not allowed"),
    (dict(jobs=0), r"jobs: 0 is not allowed, must be in 1\.\.64"),
    (dict(jobs=2.0), r"jobs: 2\.0 is not an integer"),
    (dict(data_bits=96), r"data_bits: 96 is not allowed, must be a multiple of "
                         r"lanes\*op_bits = 64"),
    (dict(data_bits=0), r"data_bits: 0 is not allowed, must be >= 1"),
    (dict(lanes=1, op_bits=4, data_bits=16),
     r"data_bits: 16 is not allowed, must hold one acc_bits = 18 result"),
    (dict(lanes=4, op_bits=4, data_bits=16, max_k=2, a_words=65536, b_words=16, addr_bits=20),
     r"data_bits: 16 is not allowed, must hold the 64-bit descriptor \(k 2 \+ rows 17"),
    (dict(addr_bits=10), r"addr_bits: 10 is not allowed, a_words \+ b_words = 1024 needs "
                         r"addr_bits >= 11"),
    (dict(data_bits=64), r"b_words: 512 is not allowed, must hold one B block of "
                         r"max_k = 1024: 1024 words"),
    (dict(lanes=2, max_k=8192, a_words=500, b_words=1100),
     r"a_words: 500 is not allowed, must hold one A row of max_k = 8192: 512 words"),
])
def test_geometry_names_the_field_and_what_is_allowed(change, message):
    with pytest.raises(ValueError, match=message):
        gm.GemmGeometry(**(GOOD | change))


# --- word formats ---

def test_operand_words_round_trip_and_sit_in_their_slots():
    rng = np.random.default_rng(1)
    for w in (4, 8, 13, 16):
        lo, hi = gm.operand_range(w)
        v = rng.integers(lo, hi + 1, 9)
        v[0], v[1] = lo, hi
        word = gm.pack_operands(v, w)
        assert word < 1 << 9 * w
        assert np.array_equal(gm.unpack_operands(word, w, 9), v)
        assert (word >> w) & ((1 << w) - 1) == hi and word & ((1 << w) - 1) == 1 << (w - 1)
    with pytest.raises(ValueError, match=r"operand 8 is outside -8\.\.7"):
        gm.pack_operands([8], 4)


def slot(words, index, geom=GEOM):
    p = geom.operands_per_word
    return gm.to_signed(words[index // p] >> (index % p) * geom.op_bits, geom.op_bits)


def test_a_row_words_follow_the_spec_and_pad_with_zero():
    row = np.arange(-9, 12)                                    # k = 21 over P = 8
    words = gm.a_row_words(row, GEOM)
    assert len(words) == GEOM.astride(21) == 3
    assert [slot(words, kk) for kk in range(24)] == list(row) + [0, 0, 0]


def test_b_block_words_follow_the_spec_and_pad_with_zero():
    k, lanes, g = 7, GEOM.lanes, GEOM.k_per_b_word
    block = np.arange(k * 3).reshape(k, 3) - 10                # 3 of 4 lanes: ragged N
    words = gm.b_block_words(block, GEOM)
    assert len(words) == GEOM.bstride(k) == 4
    for kk in range(8):
        for lane in range(lanes):
            want = block[kk, lane] if kk < k and lane < 3 else 0
            assert slot(words, (kk // g) * GEOM.operands_per_word + (kk % g) * lanes + lane) == want
    with pytest.raises(ValueError, match="at most lanes = 4"):
        gm.b_block_words(np.zeros((2, 5), int), GEOM)


def test_descriptor_round_trips_in_field_order():
    rng = np.random.default_rng(2)
    for _ in range(50):
        fields = {name: int(rng.integers(0, 1 << bits)) for name, bits in GEOM.descriptor_fields}
        d = gm.Descriptor(**fields)
        assert gm.Descriptor.unpack(d.pack(GEOM), GEOM) == d
    d = gm.Descriptor(k=1, rows=0, blocks=0, a_addr=0, b_addr=0, wait=0)
    assert d.pack(GEOM) == 1
    top = gm.Descriptor(k=0, rows=0, blocks=0, a_addr=0, b_addr=0, wait=1)
    assert top.pack(GEOM) == 1 << GEOM.descriptor_bits - GEOM.wait_bits
    with pytest.raises(ValueError, match="descriptor rows: 32 does not fit in 5 bits"):
        gm.Descriptor(k=1, rows=32, blocks=1, a_addr=0, b_addr=0, wait=0).pack(GEOM)


def test_result_flits_round_trip_and_follow_the_spec():
    acc = GEOM.acc_bits
    top, bottom = (1 << acc - 1) - 1, -(1 << acc - 1)
    values = [top, bottom, -1, 5]
    flits = gm.pack_results(values, GEOM)
    assert len(flits) == GEOM.flits_per_group == 2
    mask = (1 << acc) - 1
    assert flits[0] == top | (bottom & mask) << acc | mask << 2 * acc
    assert flits[1] == 5
    assert gm.unpack_results(flits, GEOM).tolist() == values
    with pytest.raises(ValueError, match="does not fit acc_bits"):
        gm.pack_results([top + 1], GEOM)
    with pytest.raises(ValueError, match="1 flits, expected 2"):
        gm.unpack_results(flits[:1], GEOM)


# --- the tile model ---

def operands(tile, k, rng):
    """Write one A row (A word 0..) and one B block (B word 0..); return A·B for it."""
    a = rng.integers(-128, 128, k)
    b = rng.integers(-128, 128, (k, GEOM.lanes))
    writes = [packet(Op.WRITE, GEOM.a_base + i, w) for i, w in enumerate(gm.a_row_words(a, GEOM))]
    writes += [packet(Op.WRITE, i, w) for i, w in enumerate(gm.b_block_words(b, GEOM))]
    return writes, a @ b


def test_exec_fires_only_when_the_word_count_is_reached():
    tile, rng = model(), np.random.default_rng(3)
    writes, want = operands(tile, 21, rng)
    assert tile.receive(exec_packet(9, k=21, wait=len(writes))) == []
    for w in writes[:-1]:
        assert tile.receive(w) == []
    out = tile.receive(writes[-1])
    assert [p.op for p in out] == [Op.REPLY, Op.REPLY, Op.DONE]
    assert all(p.dst == HOST and p.src == TILE and p.addr == 9 for p in out)
    assert gm.unpack_results([p.data for p in out[:2]], GEOM).tolist() == want.tolist()
    assert out[2].data == 1


def test_exec_fires_at_once_when_its_words_are_there_and_jobs_run_in_order():
    tile, rng = model(), np.random.default_rng(4)
    writes, _ = operands(tile, 8, rng)
    for w in writes:
        tile.receive(w)
    # Job 1 waits for one more word; job 2, ready, must not overtake it.
    assert tile.receive(exec_packet(1, k=8, wait=len(writes) + 1)) == []
    assert tile.receive(exec_packet(2, k=8, wait=len(writes))) == []
    out = tile.receive(packet(Op.WRITE, 15, 0))
    assert [(p.op, p.addr) for p in out] == [(Op.REPLY, 1)] * 2 + [(Op.DONE, 1)] + \
        [(Op.REPLY, 2)] * 2 + [(Op.DONE, 2)]


def test_firing_compare_is_wrap_safe():
    tile = model()
    modulus = 1 << GEOM.wait_bits
    for i in range(modulus - 2):                # words just below the wrap
        tile.receive(packet(Op.WRITE, i % 16, 0))
    # A wait past the wrap is 3 words ahead, not far behind.
    assert tile.receive(exec_packet(0, wait=1)) == []
    for _ in range(2):
        assert tile.receive(packet(Op.WRITE, 0, 0)) == []
    assert [p.op for p in tile.receive(packet(Op.WRITE, 0, 0))][-1] == Op.DONE
    # A wait up to half the modulus behind counts as reached.
    assert tile.receive(exec_packet(1, wait=(1 - modulus // 2 + 1) % modulus))[-1].op == Op.DONE


@pytest.mark.parametrize("fields", [
    dict(k=0), dict(k=33), dict(rows=0), dict(blocks=0),
    dict(k=32, rows=5),                                   # 5 rows x 4 words + 0 > 16
    dict(k=9, a_addr=15, rows=1),                         # 15 + 2 > 16
    dict(k=32, b_addr=1, blocks=1),                       # 1 + 16 > 16
])
def test_bad_descriptor_is_refused(fields):
    tile = model()
    (err,) = tile.receive(exec_packet(5, **fields))
    assert (err.op, err.addr, err.data, err.dst) == (Op.ERROR, 5, Op.EXEC | 1 << 8, HOST)
    assert not tile.queue and read(tile, "errors") == 1


def test_descriptor_on_the_edge_is_accepted():
    tile = model()
    assert tile.receive(exec_packet(0, k=32, rows=4, blocks=1, wait=9)) == []
    assert tile.receive(exec_packet(1, k=9, a_addr=14, b_addr=11, wait=9)) == []
    assert len(tile.queue) == 2


def test_queue_full_refuses_and_drops_the_descriptor():
    tile = model()
    for tag in range(GEOM.jobs):
        assert tile.receive(exec_packet(tag, wait=50)) == []
    (err,) = tile.receive(exec_packet(7, wait=1))
    assert (err.op, err.addr, err.data) == (Op.ERROR, 7, Op.EXEC | 2 << 8)
    out = []
    for _ in range(50):
        out += tile.receive(packet(Op.WRITE, 0, 0))
    assert [p.addr for p in out if p.op == Op.DONE] == [0, 1]


@pytest.mark.parametrize("op, addr", [
    (Op.WRITE, 32), (Op.WRITE, 239), (Op.WRITE, 240), (Op.WRITE, 255),   # gap and status
    (Op.READ, 32), (Op.READ, 249), (Op.READ, 255),                        # gap, unused status
    (6, 0), (7, 3),                                                       # unknown ops
])
def test_requests_the_tile_cannot_serve_get_an_error(op, addr):
    tile = model()
    (err,) = tile.receive(packet(op, addr, 1))
    assert (err.op, err.addr, err.data, err.dst, err.src) == (Op.ERROR, addr, op, HOST, TILE)
    assert read(tile, "errors") == 1 and read(tile, "words") == 0


@pytest.mark.parametrize("op", [Op.REPLY, Op.DONE, Op.ERROR])
def test_answers_arriving_count_as_errors_and_get_none(op):
    tile = model()
    assert tile.receive(packet(op, 3, 4)) == []
    assert read(tile, "flits_out") == 0 and read(tile, "errors") == 1


def test_reads_return_words_and_counters_before_the_request():
    tile, rng = model(), np.random.default_rng(5)
    writes, _ = operands(tile, 16, rng)
    tile.receive(exec_packet(0, k=16, wait=len(writes)))
    for w in writes:
        tile.receive(w)                                   # 1 job: 2 REPLY + DONE
    tile.receive(packet(Op.WRITE, 200, 0))                # ERROR
    tile.receive(packet(Op.DONE, 0, 0))                   # unexpected
    sent = 1 + len(writes) + 2
    (word,) = tile.receive(packet(Op.READ, GEOM.a_base + 1, 0))
    assert (word.op, word.addr, word.data) == (Op.REPLY, GEOM.a_base + 1, writes[1].data)
    assert read(tile, "flits_in") == sent + 1
    assert read(tile, "flits_out") == 3 + 1 + 1 + 1        # job, ERROR, the two READs so far
    assert read(tile, "errors") == 2
    assert read(tile, "words") == len(writes)
    assert read(tile, "jobs_done") == 1
    assert read(tile, "busy") == 16                         # rows * blocks * k steps
    for name in ("dropped", "stall_operands", "stall_noc"):
        assert read(tile, name) == 0


def test_packets_for_another_tile_are_a_test_bench_error():
    with pytest.raises(ValueError, match=r"delivered to the tile at \(1, 2\)"):
        model().receive(Packet(0, 0, *HOST, Op.READ))


# --- N:M sparsity: the pattern, compression, the product ---

@pytest.mark.parametrize("n, m, column, values, positions", [
    (2, 4, [1, 2, 0, 0], [1, 2], [0, 1]),             # NVIDIA's example
    (2, 4, [0, 0, 3, 0], [0, 3], [0, 2]),             # one nonzero: a zero at the lowest free
    (2, 4, [0, 5, 0, -6], [5, -6], [1, 3]),
    (2, 4, [0, 0, 0, 0], [0, 0], [0, 1]),
    (2, 4, [0, 0, 0, 7], [0, 7], [0, 3]),
    (4, 8, [0, 9, 0, 0, 0, 0, -1, 4], [0, 9, -1, 4], [0, 1, 6, 7]),
    (4, 8, [1, 2, 3, 4, 0, 0, 0, 0], [1, 2, 3, 4], [0, 1, 2, 3]),
    (4, 8, [0] * 8, [0] * 4, [0, 1, 2, 3]),
])
def test_compression_of_one_group(n, m, column, values, positions):
    v, p = nm.compress(np.array(column)[:, None], n, m)
    assert v[:, 0].tolist() == values and p[:, 0].tolist() == positions


@pytest.mark.parametrize("n, m", [(2, 4), (4, 8)])
def test_compression_round_trips_and_the_product_is_exact(n, m):
    rng = np.random.default_rng(n)
    for k, cols in [(1, 1), (m, 3), (4 * m + 3, 5), (64, 16), (257, 7)]:
        b = nm.prune(rng.integers(-128, 128, (k, cols)), n, m)
        b[rng.random(b.shape) < 0.25] = 0
        b[:min(k, m), 0] = 0                              # an empty group
        assert nm.violation(b, n, m) is None
        values, positions = nm.compress(b, n, m)
        assert values.shape == positions.shape == (nm.groups(k, m) * n, cols)
        assert nm.well_formed(positions, n)
        assert np.array_equal(nm.decompress(values, positions, n, m, k=k), b)
        a = rng.integers(-128, 128, (6, k))
        got = nm.sparse_matmul(a, values, positions, n, m)
        # The second check: against the ideal product, in floats and in Python ints.
        assert np.array_equal(got, a.astype(float) @ b.astype(float))
        assert got.tolist() == [[sum(int(a[i, kk]) * int(b[kk, j]) for kk in range(k))
                                 for j in range(cols)] for i in range(6)]


def test_sparse_product_of_any_positions_is_a_times_their_decompression():
    """Positions that repeat add their values at one row, in both."""
    rng = np.random.default_rng(3)
    values = rng.integers(-8, 8, (6, 3))
    positions = rng.integers(0, 4, (6, 3))
    positions[0:2, 0] = 2                                  # a repeat
    a = rng.integers(-8, 8, (4, 12))
    assert np.array_equal(nm.sparse_matmul(a, values, positions, 2, 4),
                          a @ nm.decompress(values, positions, 2, 4))
    # A is read as 0 from its K on: a short A drops the last rows' terms.
    assert np.array_equal(nm.sparse_matmul(a[:, :10], values, positions, 2, 4),
                          a[:, :10] @ nm.decompress(values, positions, 2, 4)[:10])
    assert not nm.well_formed(positions, 2)


def test_prune_keeps_the_largest_per_group():
    b = np.array([[1, -9], [-5, 0], [5, 3], [2, 3], [0, 1], [0, 0]])
    assert nm.prune(b, 2, 4).tolist() == [[0, -9], [-5, 0], [5, 3], [0, 0], [0, 1], [0, 0]]


@pytest.mark.parametrize("b, message", [
    (np.eye(4, dtype=int)[:, :1] + np.array([[0], [1], [1], [0]]),
     "b[:, 0] group 0 (k 0..3): 3 nonzeros, at most 2 allowed for 2:4"),
    (np.ones((6, 2), int), "b[:, 0] group 0 (k 0..3): 4 nonzeros, at most 2 allowed for 2:4"),
    (np.vstack([np.zeros((4, 2), int), np.ones((3, 2), int)]),
     "b[:, 0] group 1 (k 4..6): 3 nonzeros, at most 2 allowed for 2:4"),
])
def test_violation_names_the_first_group(b, message):
    assert nm.violation(b, 2, 4) == message
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        nm.compress(b, 2, 4)


SPARSE = dict(lanes=4, op_bits=8, max_k=40, a_words=32, b_words=48, jobs=2, data_bits=64,
              addr_bits=10, sparsity="2:4")


def test_sparse_geometry():
    g = gm.GemmGeometry(**SPARSE)
    assert g.nm == (2, 4) and g.meta_bits == 2
    # E*P*mb <= D: 4 * 8 * 2 = 64; T = E*g = 8 steps of 4 lanes per metadata word.
    assert (g.meta_group_words, g.meta_steps, g.meta_words, g.meta_base) == (4, 8, 12, 80)
    assert (g.steps(40), g.steps(37), g.steps(1)) == (20, 20, 2)
    assert (g.vstride(37), g.bstride(37), g.meta_stride(37)) == (10, 12, 3)
    assert g.wait_bits == 8                                     # counts metadata words too
    h = gm.GemmGeometry(**(SPARSE | dict(sparsity="4:8", lanes=8, op_bits=16,
                                         data_bits=128)))
    assert (h.meta_bits, h.meta_group_words, h.meta_steps, h.steps(40)) == (3, 4, 4, 20)
    dense = gm.GemmGeometry(**(SPARSE | dict(sparsity="dense")))
    assert (dense.nm, dense.meta_words, dense.steps(37), dense.bstride(37)) == (None, 0, 37, 19)


@pytest.mark.parametrize("change, message", [
    (dict(sparsity="1:2"), r"sparsity: '1:2' is not allowed, must be one of dense, 2:4, 4:8"),
    (dict(lanes=2, data_bits=48), r"sparsity: '2:4' is not allowed with data_bits 48 and "
                                  r"op_bits 8: an A word of 6 operands must hold whole groups"),
    (dict(sparsity="4:8", lanes=4, op_bits=4, data_bits=32),
     r"sparsity: '4:8' is not allowed with lanes 4, op_bits 4 and data_bits 32: a metadata "
     r"word holds 2 steps, not whole groups of 4"),
    (dict(addr_bits=6, a_words=16, b_words=32, max_k=32),
     r"addr_bits: 6 is not allowed, a_words \+ b_words \+ metadata words 8 = 56"),
])
def test_sparse_geometry_names_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        gm.GemmGeometry(**(SPARSE | change))


def test_sparse_words_follow_the_spec():
    g = gm.GemmGeometry(**SPARSE)
    steps = 10                                          # 3 lanes of 4, k = 20
    values = np.arange(steps * 3).reshape(steps, 3) - 15
    positions = np.tile([[0], [3]], (steps // 2, 3))
    vw, mw = gm.b_sparse_block_words(values, positions, g)
    assert (len(vw), len(mw)) == (5, 2)
    for t in range(16):
        for lane in range(4):
            v = values[t, lane] if t < steps and lane < 3 else 0
            if t < 10:
                assert slot(vw, (t // 2) * 8 + (t % 2) * 4 + lane, g) == v
            p = positions[t, lane] if t < steps and lane < 3 else t % 2
            assert (mw[t // 8] >> ((t % 8) * 4 + lane) * 2) & 3 == p
    assert gm.meta_positions(mw[1], g)[:4].tolist() == [[0, 0, 0, 0], [3, 3, 3, 1],
                                                         [0, 0, 0, 0], [1, 1, 1, 1]]
    assert gm.meta_reset_word(g) == sum(1 << ((t * 4 + lane) * 2) for t in range(1, 8, 2)
                                        for lane in range(4))


def sparse_job_packets(g, k, rows, blocks, a, values, positions, wait_base=0, tag=9):
    packets, words = [], 0
    for r in range(rows):
        for i, w in enumerate(gm.a_row_words(a[r], g)):
            packets.append(packet(Op.WRITE, g.a_base + r * g.astride(k) + i, w))
    for c in range(blocks):
        vw, mw = gm.b_sparse_block_words(values[c], positions[c], g)
        base = c * g.bstride(k)
        packets += [packet(Op.WRITE, base + i, w) for i, w in enumerate(vw)]
        packets += [packet(Op.WRITE, g.meta_base + base // g.meta_group_words + i, w)
                    for i, w in enumerate(mw)]
    words = len(packets)
    d = dict(k=k, rows=rows, blocks=blocks, a_addr=0, b_addr=0, wait=wait_base + words)
    return packets + [exec_packet(tag, g, **d)]


@pytest.mark.parametrize("sparsity", ["2:4", "4:8"])
def test_sparse_model_job_is_the_exact_product(sparsity):
    change = dict(sparsity=sparsity) if sparsity == "2:4" else dict(
        sparsity="4:8", lanes=8, op_bits=16, data_bits=128)
    g = gm.GemmGeometry(**(SPARSE | change))
    n, m = g.nm
    rng = np.random.default_rng(5)
    k, rows, blocks = 37, 2, 2
    lo, hi = gm.operand_range(g.op_bits)
    a = rng.integers(lo, hi + 1, (rows, k))
    b = nm.prune(rng.integers(lo, hi + 1, (k, blocks * g.lanes)), n, m)
    compressed = [nm.compress(b[:, c * g.lanes:(c + 1) * g.lanes], n, m) for c in range(blocks)]
    tile = model(g)
    out = []
    for p in sparse_job_packets(g, k, rows, blocks, a, [v for v, _ in compressed],
                                [p for _, p in compressed]):
        out += tile.receive(p)
    replies = [p.data for p in out if p.op == Op.REPLY]
    assert [p.op for p in out][-1] == Op.DONE
    F = g.flits_per_group
    got = np.stack([gm.unpack_results(replies[i:i + F], g) for i in range(0, len(replies), F)])
    assert np.array_equal(got.reshape(rows, blocks * g.lanes), a @ b)
    assert read(tile, "busy") == rows * blocks * nm.groups(k, m) * n


def test_sparse_model_refuses_malformed_metadata_and_misaligned_blocks():
    g = gm.GemmGeometry(**SPARSE)
    tile = model(g)
    reset = gm.meta_reset_word(g)
    (err,) = tile.receive(packet(Op.WRITE, g.meta_base + 1, 0))        # repeats
    assert (err.op, err.data) == (Op.ERROR, Op.WRITE | 3 << 8)
    (err,) = tile.receive(packet(Op.WRITE, g.meta_base + 1, 0b0001 << 0 | 0b10 << 8))
    assert (err.op, err.data) == (Op.ERROR, Op.WRITE | 3 << 8)          # lane 0: 2 then 0
    assert read(tile, "words") == 0 and read(tile, "errors") == 2
    (got,) = tile.receive(packet(Op.READ, g.meta_base + 1))
    assert got.data == reset                                             # not stored
    assert tile.receive(packet(Op.WRITE, g.meta_base + 1, reset)) == []
    assert read(tile, "words") == 1
    (err,) = tile.receive(exec_packet(3, g, k=4, b_addr=2))              # not a multiple of E
    assert (err.op, err.data) == (Op.ERROR, Op.EXEC | 1 << 8)
    assert tile.receive(exec_packet(3, g, k=4, b_addr=4, wait=1))[-1].op == Op.DONE
