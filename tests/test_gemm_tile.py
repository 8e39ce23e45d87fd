"""GEMM PE tile unit tests on amaranth.sim: the RTL against the untimed golden model.

A shared harness (``Tile.run``) feeds a list of packets into ``i`` with random
gaps (valid held with the same payload until taken), takes ``o`` with random
ready, records ``(cycle, Packet)`` for every flit out and the cycle each input
was taken, and checks that an offered output flit is never changed or withdrawn
before it is taken. Outputs are compared with ``GemmPEModel`` fed the same
packets, per category and in order: job results (REPLY with addr = a job tag,
and DONE) and front-end answers (READ replies and ERRORs). Job tags lie in
``[a_words + b_words, status_base)``, disjoint from every readable address.

The untimed model runs a job the moment it fires, so tests avoid what depends on
timing: outstanding EXECs never exceed the queue (batches wait for their DONEs)
and no job's operands are overwritten before it has run.

Tests, each over three dense and three N:M tile configurations (2:4 and 4:8,
different lanes, op_bits and metadata packings): random jobs against the model
(k from 1 to max_k, extreme operands, garbage in unused slots, EXEC before its
words, the words counter wrapping the firing compare, light to heavy
backpressure; N:M: random positions, zero and padded groups, k not a multiple of
M, malformed metadata words refused); firing only once the last operand word is
in; the modular firing compare at its boundaries; every status register; errors
that never hang the tile; scratchpad READs while a job runs; and the N:M cycle
cost, K*N/M issue cycles per k-panel.
"""

import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.sim import Simulator

from tilefab.golden import nm
from tilefab.golden.gemm import (STATUS_REGISTERS, Descriptor, GemmGeometry, GemmPEModel,
                                 b_sparse_block_words, meta_positions, operand_range,
                                 pack_operands, pack_results)
from tilefab.golden.packet import Op, Packet, PacketFormat
from tilefab.hw.noc.packet import packet_layout
from tilefab.hw.tiles.gemm import GemmTile

X, Y = 1, 2


@dataclass(frozen=True)
class Cfg:
    name: str
    lanes: int
    op_bits: int
    data_bits: int
    addr_bits: int
    max_k: int
    a_words: int
    b_words: int
    jobs: int
    coord_bits: int
    sparsity: str = "dense"


CONFIGS = [
    # P = 8, g = 2, acc_bits 21, R = 3, F = 2 (a part-filled flit); wait_bits 8, so the
    # words counter wraps the firing compare within a long run; b_words not a power of 2.
    Cfg("l4w8", lanes=4, op_bits=8, data_bits=64, addr_bits=10, max_k=40,
        a_words=32, b_words=48, jobs=2, coord_bits=2),
    # P = 8, g = 1, acc_bits 37, R = 3, F = 3.
    Cfg("l8w16", lanes=8, op_bits=16, data_bits=128, addr_bits=12, max_k=48,
        a_words=64, b_words=64, jobs=3, coord_bits=3),
    # P = 8, g = 4, acc_bits 12, R = 2, F = 1; the descriptor fills all 32 data bits,
    # the smallest scratchpads and a queue of one.
    Cfg("l2w4", lanes=2, op_bits=4, data_bits=32, addr_bits=11, max_k=31,
        a_words=16, b_words=16, jobs=1, coord_bits=2),
    # 2:4, P = 8 (two groups per A word), g = 2, E = 4 B words per metadata word of
    # T = 8 steps; 12 metadata words; b_words not a power of two.
    Cfg("s24l4w8", lanes=4, op_bits=8, data_bits=64, addr_bits=10, max_k=40,
        a_words=32, b_words=48, jobs=2, coord_bits=2, sparsity="2:4"),
    # 4:8, P = 8 (one group per A word), g = 1, 3-bit positions, E = 4, T = 4 (one
    # group per metadata word), acc_bits 37, F = 3.
    Cfg("s48l8w16", lanes=8, op_bits=16, data_bits=128, addr_bits=12, max_k=48,
        a_words=64, b_words=64, jobs=3, coord_bits=3, sparsity="4:8"),
    # 2:4 with max_k 31 (a ragged last group at k = max_k), g = 4, E = 2; the
    # descriptor fills all 32 data bits and the queue holds one job.
    Cfg("s24l2w4", lanes=2, op_bits=4, data_bits=32, addr_bits=11, max_k=31,
        a_words=16, b_words=16, jobs=1, coord_bits=2, sparsity="2:4"),
]
CFG_IDS = [c.name for c in CONFIGS]


# ---- harness items besides packets

@dataclass(frozen=True)
class Gap:
    """Offer nothing for ``n`` cycles before the next packet."""
    n: int


@dataclass(frozen=True)
class WaitDone:
    """Offer nothing until ``n`` DONE flits (counted from the start of the run) left."""
    n: int


@dataclass(frozen=True)
class Ready:
    """From here on take output flits with probability ``p`` (0: hold the output)."""
    p: float


@dataclass
class Run:
    packets: list          # the packets fed, in order
    taken: list            # cycle each packet was taken
    out: list              # (cycle, Packet) of every flit taken from the output
    cycles: int


class Tile:
    def __init__(self, cfg: Cfg, seed: int):
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.geom = GemmGeometry(lanes=cfg.lanes, op_bits=cfg.op_bits, max_k=cfg.max_k,
                                 a_words=cfg.a_words, b_words=cfg.b_words, jobs=cfg.jobs,
                                 data_bits=cfg.data_bits, addr_bits=cfg.addr_bits,
                                 sparsity=cfg.sparsity)
        self.sparse = self.geom.nm is not None
        self.fmt = PacketFormat(coord_bits=cfg.coord_bits, addr_bits=cfg.addr_bits,
                                data_bits=cfg.data_bits)
        self.layout = packet_layout(coord_bits=cfg.coord_bits, addr_bits=cfg.addr_bits,
                                    data_bits=cfg.data_bits)
        self.S = self.geom.status_base
        # Every readable address lies below tag_lo: B, A, then the metadata (N:M).
        self.tag_lo = self.geom.meta_base + self.geom.meta_words
        self.a_last = self.geom.a_base + cfg.a_words - 1     # the last A word
        hi = (1 << cfg.coord_bits) - 1
        self.sources = [(sx, sy) for sx in range(hi + 1) for sy in range(hi + 1)
                        if (sx, sy) != (X, Y)]
        self.words = 0          # operand words written so far, as the tile counts them

    # -- packets

    def packet(self, op, addr=0, data=0, src=None):
        sx, sy = src if src is not None else self.rng.choice(self.sources)
        return Packet(dst_x=X, dst_y=Y, src_x=sx, src_y=sy, op=int(op), addr=addr, data=data)

    def write(self, addr, data, **kw):
        if addr < self.tag_lo and (addr < self.geom.meta_base or self.meta_ok(data)):
            self.words += 1
        return self.packet(Op.WRITE, addr, data, **kw)

    def meta_ok(self, word):
        return nm.well_formed(meta_positions(word, self.geom), self.geom.nm[0])

    def meta_word(self, positions):
        """One metadata word of T x L positions (the spec's packing)."""
        g = self.geom
        _, (word,) = b_sparse_block_words(np.zeros_like(positions), positions, g)
        return word

    def bad_meta_write(self, addr=None):
        """A WRITE of a malformed metadata word (refused, so not counted)."""
        g = self.geom
        while True:
            word = self.rng.getrandbits(self.cfg.data_bits)
            if not self.meta_ok(word):
                break
        addr = g.meta_base + self.rng.randrange(g.meta_words) if addr is None else addr
        return self.packet(Op.WRITE, addr, word)

    def b_aligned(self, b_addr):
        """``b_addr`` rounded down to where an N:M block may start."""
        return b_addr - b_addr % self.geom.meta_group_words if self.sparse else b_addr

    def job_word_count(self, k, rows=1, blocks=1):
        """Operand words a job's ``job_packets`` write."""
        g = self.geom
        b = g.vstride(k) + g.meta_stride(k) if self.sparse else g.bstride(k)
        return rows * g.astride(k) + blocks * b

    def read(self, addr, **kw):
        return self.packet(Op.READ, addr, **kw)

    def status(self, name, **kw):
        return self.read(self.geom.status_addr(name), **kw)

    def tag(self):
        return self.rng.randrange(self.tag_lo, self.S)

    def exec(self, tag, **desc):
        return self.packet(Op.EXEC, tag, Descriptor(**desc).pack(self.geom))

    def wait_after(self, n_words):
        """The ``wait`` field that fires once ``n_words`` more words have been written."""
        return (self.words + n_words) % (1 << self.geom.wait_bits)

    # -- operands

    def operands(self, shape, extreme=0.3):
        lo, hi = operand_range(self.cfg.op_bits)
        x = np.array([self.rng.randint(lo, hi) for _ in range(int(np.prod(shape)))],
                     dtype=np.int64)
        pick = np.array([self.rng.random() < extreme for _ in range(x.size)], dtype=bool)
        x[pick] = [self.rng.choice((lo, hi, 0, -1, 1)) for _ in range(int(pick.sum()))]
        return x.reshape(shape)

    def positions(self, shape):
        """Random well-formed positions: (..., ks, L), N increasing of 0..M-1 a group."""
        n, m = self.geom.nm
        *outer, ks, lanes = shape
        out = np.zeros((*outer, ks // n, lanes, n), dtype=np.int64)
        for idx in np.ndindex(out.shape[:-1]):
            out[idx] = sorted(self.rng.sample(range(m), n))
        return np.moveaxis(out, -1, -2).reshape(shape)

    def job_words(self, k, rows, blocks, a=None, b=None):
        """(A words, B words) of a job; slots beyond k hold random garbage (ignored).

        N:M: ``b`` is ``(values, positions)``, each blocks x ks x L (random if None),
        and the B words are the blocks' value words then their metadata words, each
        block's value words followed by garbage up to a whole metadata word of steps."""
        g, P, L = self.geom, self.geom.operands_per_word, self.cfg.lanes
        a = self.operands((rows, k)) if a is None else a
        if not self.sparse:
            b = self.operands((blocks, k, L)) if b is None else b
        aw, bw = [], []
        for r in range(rows):
            flat = np.concatenate([a[r], self.operands((g.astride(k) * P - k,))])
            aw += [pack_operands(flat[i:i + P], self.cfg.op_bits) for i in range(0, flat.size, P)]
        if self.sparse:
            return aw, self._sparse_block_words(k, blocks, b)
        kg = g.k_per_b_word
        for c in range(blocks):
            full = np.concatenate([b[c], self.operands((g.bstride(k) * kg - k, L))])
            flat = full.reshape(-1)
            bw += [pack_operands(flat[i:i + P], self.cfg.op_bits) for i in range(0, flat.size, P)]
        return aw, bw

    def _sparse_block_words(self, k, blocks, b):
        """Per block, (value words, metadata words); garbage (well-formed metadata)
        in the steps after ks that fill the last words."""
        g, L = self.geom, self.cfg.lanes
        ks = g.steps(k)
        if b is None:
            values = self.operands((blocks, ks, L), extreme=0.4)
            values[self.operands((blocks, ks, L)) % 5 == 0] = 0      # zero-padded groups
            b = (values, self.positions((blocks, ks, L)))
        out = []
        steps = g.meta_stride(k) * g.meta_steps
        for c in range(blocks):
            values = np.concatenate([b[0][c], self.operands((steps - ks, L))])
            positions = np.concatenate([b[1][c], self.positions((steps - ks, L))])
            vw, mw = b_sparse_block_words(values, positions, g)
            out.append((vw[:g.vstride(k)], mw))
        return out

    def job_writes(self, k, rows, blocks, a_addr, b_addr, *, a=None, b=None):
        """(packet address, word) of every operand word of a job."""
        g = self.geom
        aw, bw = self.job_words(k, rows, blocks, a, b)
        writes = [(g.a_base + a_addr + i, w) for i, w in enumerate(aw)]
        if not self.sparse:
            return writes + [(b_addr + i, w) for i, w in enumerate(bw)]
        for c, (vw, mw) in enumerate(bw):
            base = b_addr + c * g.bstride(k)
            writes += [(base + i, w) for i, w in enumerate(vw)]
            meta = g.meta_base + base // g.meta_group_words
            writes += [(meta + i, w) for i, w in enumerate(mw)]
        return writes

    def job_packets(self, tag, k, rows, blocks, a_addr, b_addr, *, a=None, b=None,
                    exec_first=True, shuffle=True):
        """EXEC (before its words by default) and the WRITEs of its operands."""
        writes = self.job_writes(k, rows, blocks, a_addr, b_addr, a=a, b=b)
        if shuffle:
            self.rng.shuffle(writes)
        desc = dict(k=k, rows=rows, blocks=blocks, a_addr=a_addr, b_addr=b_addr)
        if exec_first:
            ex = self.exec(tag, wait=self.wait_after(len(writes)), **desc)
            return [ex] + [self.write(addr, w) for addr, w in writes]
        ws = [self.write(addr, w) for addr, w in writes]
        return ws + [self.exec(tag, wait=self.wait_after(0), **desc)]

    def result_flits(self, tag, src, a, b):
        """The REPLY and DONE flits of a job on operand matrices a (rows x k), b (blocks x k x L)."""
        sums = np.einsum("rk,ckl->rcl", a, b)
        flits = [self._from_tile(src, Op.REPLY, tag, f)
                 for group in sums.reshape(-1, self.cfg.lanes)
                 for f in pack_results(group, self.geom)]
        return flits + [self._from_tile(src, Op.DONE, tag, a.shape[0] * b.shape[0])]

    def _from_tile(self, dst, op, addr, data):
        return Packet(dst_x=dst[0], dst_y=dst[1], src_x=X, src_y=Y, op=int(op), addr=addr,
                      data=int(data))

    # -- simulation

    def run(self, items, *, p_in=0.6, p_out=0.7, dropped=0, quiet=None, max_cycles=20000):
        cfg, rng = self.cfg, self.rng
        dut = GemmTile(layout=self.layout, x=X, y=Y, lanes=cfg.lanes, op_bits=cfg.op_bits,
                       max_k=cfg.max_k, a_words=cfg.a_words, b_words=cfg.b_words,
                       jobs=cfg.jobs, sparsity=cfg.sparsity)
        quiet = cfg.max_k + 24 if quiet is None else quiet
        packets = [it for it in items if isinstance(it, Packet)]
        taken, out, errors = [], [], []
        state = {"cycles": 0}

        async def bench(ctx):
            ctx.set(dut.dropped, dropped)
            idx, cycle, gap, offering, held, idle = 0, 0, 0, False, None, 0
            p_ready, dones = p_out, 0
            while True:
                # Control items take effect the cycle they are reached.
                while not offering and idx < len(items) and not isinstance(items[idx], Packet):
                    it = items[idx]
                    if isinstance(it, Gap):
                        gap, idx = it.n, idx + 1
                    elif isinstance(it, Ready):
                        p_ready, idx = it.p, idx + 1
                    elif isinstance(it, WaitDone):
                        if dones < it.n:
                            break
                        idx += 1
                    else:
                        raise TypeError(it)
                if (not offering and gap == 0 and idx < len(items)
                        and isinstance(items[idx], Packet) and rng.random() < p_in):
                    ctx.set(dut.i.payload.as_value(), self.fmt.pack(items[idx]))
                    offering = True
                gap = max(0, gap - 1)
                ctx.set(dut.i.valid, offering)
                ready = p_ready >= 1 or (p_ready > 0 and rng.random() < p_ready)
                ctx.set(dut.o.ready, ready)
                if offering and ctx.get(dut.i.ready):
                    taken.append(cycle)
                    offering, idx, idle = False, idx + 1, 0
                if ctx.get(dut.o.valid):
                    word = ctx.get(dut.o.payload.as_value())
                    if held is not None and held != word:
                        errors.append(f"cycle {cycle}: the output changed an offered flit "
                                      f"{self.fmt.unpack(held)} -> {self.fmt.unpack(word)}")
                    if ready:
                        p = self.fmt.unpack(word)
                        out.append((cycle, p))
                        dones += p.op == Op.DONE
                        held = None
                    else:
                        held = word
                    idle = 0
                else:
                    if held is not None:
                        errors.append(f"cycle {cycle}: the output withdrew an offered flit")
                        held = None
                    idle += 1
                await ctx.tick()
                cycle += 1
                if idx == len(items) and not offering and idle >= quiet:
                    break
                if cycle >= max_cycles:
                    errors.append(f"timeout after {cycle} cycles: {len(taken)} of "
                                  f"{len(packets)} packets taken, {len(out)} flits out")
                    break
            state["cycles"] = cycle

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        assert not errors, errors[:5]
        assert len(taken) == len(packets)
        return Run(packets, taken, out, state["cycles"])

    # -- checking

    def is_result(self, p):
        return p.op == Op.DONE or (p.op == Op.REPLY and self.tag_lo <= p.addr < self.S)

    def model_outputs(self, packets):
        model = GemmPEModel(self.geom, X, Y)
        return [model.receive(p) for p in packets], model

    def check(self, run, exact_status=("errors", "flits_in", "words")):
        """Compare with the model per category; return {packet index: the RTL's answer}.

        Status READ replies are compared exactly for the registers in ``exact_status``
        (flits_out against the flits that left between the READ's take and its answer);
        for the rest only their envelope.
        """
        per_packet, model = self.model_outputs(run.packets)
        got = [p for _, p in run.out]
        for p in got:
            assert (p.src_x, p.src_y) == (X, Y), f"flit with src {(p.src_x, p.src_y)}: {p}"
        want_results = [p for outs in per_packet for p in outs if self.is_result(p)]
        got_results = [p for p in got if self.is_result(p)]
        n = min(len(want_results), len(got_results))
        for i in range(n):
            assert got_results[i] == want_results[i], (
                f"result flit {i}: got {got_results[i]}, expected {want_results[i]}")
        assert len(got_results) == len(want_results), (
            f"{len(got_results)} result/DONE flits, expected {len(want_results)}")

        got_answers = [(c, p) for c, p in run.out if not self.is_result(p)]
        asking = []
        for i, outs in enumerate(per_packet):
            answers = [p for p in outs if not self.is_result(p)]
            assert len(answers) <= 1
            asking += [(i, p) for p in answers]
        assert len(got_answers) == len(asking), (
            f"{len(got_answers)} answers (READ replies, ERRORs), expected {len(asking)}: "
            f"got {[p for _, p in got_answers][:8]}, expected {[w for _, w in asking][:8]}")
        answer_of = {}
        for (i, want), (cycle, p) in zip(asking, got_answers):
            req = run.packets[i]
            assert cycle > run.taken[i], f"answer {p} left before its request {req} was taken"
            reg = req.addr - self.S
            if req.op == Op.READ and want.op == Op.REPLY and 0 <= reg < len(STATUS_REGISTERS):
                name = STATUS_REGISTERS[reg]
                assert (p.op, p.addr, p.dst) == (want.op, want.addr, want.dst), (
                    f"answer to {req}: got {p}, expected {want}")
                if name == "flits_out":
                    # read as it stood when the decoder took the READ: after the tile's
                    # input queue took it and before the answer left
                    lo = sum(1 for c, _ in run.out if c < run.taken[i])
                    hi = sum(1 for c, _ in run.out if c < cycle)
                    assert lo <= p.data <= hi, (
                        f"flits_out read {p.data}, {lo} flits had left when the READ was "
                        f"taken and {hi} when its answer left")
                elif name in exact_status:
                    assert p.data == want.data, f"status {name} read {p.data}, expected {want.data}"
            else:
                assert p == want, f"answer to {req}: got {p}, expected {want}"
            answer_of[i] = p
        return answer_of, model


def pos(run, packet):
    """Index of this very packet object in the run (equal packets may repeat)."""
    return next(i for i, p in enumerate(run.packets) if p is packet)


def result_cycles(tile, run):
    return [c for c, p in run.out if tile.is_result(p)]


# ---- 1. random jobs against the golden model

def random_jobs(tile, n_batches):
    """Batches of at most ``jobs`` EXECs on disjoint regions, each EXEC before its words;
    a batch waits for the DONEs of the last. Also re-runs on operands already present,
    scratchpad READs and jobs with extreme operands."""
    g, rng, cfg = tile.geom, tile.rng, tile.cfg
    lo, hi = operand_range(cfg.op_bits)
    # Words written before the jobs bring the words counter close to 2**wait_bits, so
    # the jobs' `wait` values wrap past it: the firing compare must be modular.
    items, done = [], 0
    if tile.sparse:
        # Metadata words among them: mostly well-formed, the rest refused (not counted).
        target = (1 << g.wait_bits) - rng.randint(20, 60)
        while tile.words < target:
            addr = rng.randrange(tile.tag_lo)
            word = rng.getrandbits(cfg.data_bits)
            if addr >= g.meta_base and rng.random() < 0.7:
                word = tile.meta_word(tile.positions((g.meta_steps, cfg.lanes)))
            items.append(tile.write(addr, word))
    else:
        for _ in range((1 << g.wait_bits) - rng.randint(20, 60)):
            items.append(tile.write(rng.randrange(tile.tag_lo), rng.getrandbits(cfg.data_bits)))
    for batch in range(n_batches):
        a_free, b_free, jobs_here, placed = 0, 0, 0, []
        while jobs_here < cfg.jobs:
            if placed and rng.random() < 0.25:
                # Again on this batch's operands (contained in the region), wait already met.
                k0, r0, c0, aa, ba = rng.choice(placed)
                k = rng.randint(1, k0)
                d = dict(k=k, rows=rng.randint(1, r0), blocks=rng.randint(1, c0),
                         a_addr=aa, b_addr=ba, wait=tile.wait_after(0))
                items.append(tile.exec(tile.tag(), **d))
                jobs_here += 1
                continue
            k = rng.choice([1, cfg.max_k, rng.randint(1, cfg.max_k), rng.randint(1, 9)])
            if batch == 0 and jobs_here == 0:
                k = cfg.max_k
            ast, bst = g.astride(k), g.bstride(k)
            rows_max = min(3, (cfg.a_words - a_free) // ast)
            blocks_max = min(3, (cfg.b_words - b_free) // bst)
            if rows_max < 1 or blocks_max < 1:
                break
            rows, blocks = rng.randint(1, rows_max), rng.randint(1, blocks_max)
            a_addr = a_free + rng.randint(0, (cfg.a_words - a_free - rows * ast) // 4)
            b_addr = b_free + rng.randint(0, (cfg.b_words - b_free - blocks * bst) // 4)
            b_addr = tile.b_aligned(b_addr)
            a = b = None
            if batch == 0 and jobs_here == 0:
                # The largest sum: max_k products of (-2**(w-1))**2; and the most negative.
                a = np.full((rows, k), lo, dtype=np.int64)
                b = np.full((blocks, g.steps(k), cfg.lanes), lo, dtype=np.int64)
                b[:, :, cfg.lanes - 1:] = hi
                if tile.sparse:
                    b = (b, tile.positions(b.shape))
            items += tile.job_packets(tile.tag(), k, rows, blocks, a_addr, b_addr, a=a, b=b)
            placed.append((k, rows, blocks, a_addr, b_addr))
            a_free, b_free = a_addr + rows * ast, b_addr + blocks * bst
            jobs_here += 1
            if rng.random() < 0.5:
                items.append(Gap(rng.randint(0, 2 * k)))
        for _ in range(rng.randint(0, 6)):
            at = rng.randint(len(items) - 40, len(items))
            items.insert(at, tile.read(rng.randrange(tile.tag_lo)))
        if tile.sparse:
            for _ in range(rng.randint(0, 3)):
                at = rng.randint(len(items) - 40, len(items))
                items.insert(at, tile.bad_meta_write())
        done += jobs_here
        items.append(WaitDone(done))
    return items


# (seed, probability the output is ready): light to heavy result backpressure.
@pytest.mark.parametrize("seed,p_out", [(1, 0.6), (2, 0.25), (3, 0.95)])
@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_random_jobs_match_golden(cfg, seed, p_out):
    tile = Tile(cfg, seed)
    items = random_jobs(tile, n_batches=8)
    run = tile.run(items, p_in=0.7, p_out=p_out)
    tile.check(run)
    dones = [p for _, p in run.out if p.op == Op.DONE]
    assert len(dones) >= 5
    assert tile.words >= 1 << tile.geom.wait_bits, "the run should wrap the firing compare"


def test_golden_extremes_by_hand():
    """The harness's own expectation for the extreme job, without the model."""
    cfg = CONFIGS[0]
    tile = Tile(cfg, 0)
    lo, hi = operand_range(cfg.op_bits)
    k = cfg.max_k
    a = np.full((1, k), lo, dtype=np.int64)
    b = np.full((1, k, cfg.lanes), lo, dtype=np.int64)
    b[0, :, 1] = hi
    items = tile.job_packets(tile.tag_lo, k, 1, 1, 0, 0, a=a, b=b)
    run = tile.run(items)
    got = [p for _, p in run.out]
    assert got == tile.result_flits(tile.tag_lo, items[0].src, a, b)
    assert got[0].data & ((1 << tile.geom.acc_bits) - 1) == k << (2 * cfg.op_bits - 2)


# ---- 2. a job fires only when its operands are complete

@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_fires_only_when_operands_complete(cfg):
    tile = Tile(cfg, 7)
    g = tile.geom
    k, rows = cfg.max_k, 2
    blocks = min(2, cfg.b_words // g.bstride(k))
    # Some unrelated words first, so `wait` is not simply the count of this job's words.
    items = [tile.write(cfg.b_words - 1, 5), tile.write(tile.a_last, 6)]
    job = tile.job_packets(tile.tag_lo + 3, k, rows, blocks, 0, 0)
    compute = rows * blocks * g.steps(k)
    items.append(job[0])
    for w in job[1:-1]:
        items += [Gap(tile.rng.randint(6, 14)), w]
    busy_before = tile.status("busy")
    items += [Gap(compute + 40), busy_before, Gap(10), job[-1], Gap(compute + 40),
              tile.status("busy"), tile.status("stall_operands"), tile.status("stall_noc"),
              tile.status("jobs_done")]
    run = tile.run(items, p_out=1.0)
    ans, _ = tile.check(run, exact_status=("errors", "flits_in", "words", "busy", "jobs_done"))
    last = pos(run, job[-1])
    first_result = min(result_cycles(tile, run))
    assert first_result > run.taken[last], (
        f"a result left at cycle {first_result}, the last operand word was taken at "
        f"{run.taken[last]}")
    n = len(run.packets)
    assert ans[pos(run, busy_before)].data == 0, "busy before the last word"
    assert ans[n - 4].data == compute
    # The EXEC waited at the head of the queue from its arrival to the last word.
    waited = run.taken[last] - run.taken[pos(run, job[0])]
    assert abs(ans[n - 3].data - waited) <= 3, (
        f"stall_operands {ans[n - 3].data}, the EXEC waited {waited} cycles for its words")
    assert ans[n - 2].data == 0, "stall_noc with the output always ready and k = max_k"
    assert ans[n - 1].data == 1


@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_firing_compare_boundaries(cfg):
    """``wait`` 2**(wb-1) - 1 words in the past fires at once; 2**(wb-1) words ahead is
    the future and fires only on the 2**(wb-1)-th word."""
    tile = Tile(cfg, 23)
    half = 1 << (tile.geom.wait_bits - 1)
    k = 3
    desc = dict(k=k, rows=1, blocks=1, a_addr=0, b_addr=0)
    # Job 1: operands first, then its EXEC with `wait` as far in the past as still counts.
    items = tile.job_packets(tile.tag_lo, k, 1, 1, 0, 0, exec_first=False)[:-1]
    past = tile.exec(tile.tag_lo, wait=(tile.words - (half - 1)) % (1 << tile.geom.wait_bits),
                     **desc)
    items += [past, Gap(k + 40)]
    # Job 2: `wait` exactly half the modulus ahead; fillers, then its own operands last.
    writes = tile.job_writes(k, 1, 1, 0, 0)
    future = tile.exec(tile.tag_lo + 1, wait=tile.wait_after(half), **desc)
    items.append(future)
    filler = tile.a_last                         # the last A word, outside the job
    items += [tile.write(filler, tile.rng.getrandbits(cfg.data_bits))
              for _ in range(half - len(writes))]
    items += [tile.write(addr, w) for addr, w in writes]
    last = items[-1]
    run = tile.run(items, p_in=0.9, p_out=0.9)
    tile.check(run)
    dones = [(c, p) for c, p in run.out if p.op == Op.DONE]
    assert [p.addr for _, p in dones] == [tile.tag_lo, tile.tag_lo + 1]
    assert dones[0][0] < run.taken[pos(run, future)] + 1, "the past job did not fire at once"
    second = [c for c, p in run.out if tile.is_result(p) and p.addr == tile.tag_lo + 1]
    assert min(second) > run.taken[pos(run, last)], "the future job fired early"


# ---- 3. status counters

@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_status_counters(cfg):
    tile = Tile(cfg, 11)
    dropped = 0x9ABC_DEF1
    # An error and a stray DONE.
    items = [tile.read(tile.tag_lo), tile.packet(Op.DONE, 3, 4)]
    # A job whose EXEC waits for its words (stall_operands).
    items += tile.job_packets(tile.tag_lo + 1, 5, 1, 2, 1, 0)
    items.append(WaitDone(1))
    # A job of many short groups while the output is held (stall_noc).
    items.append(Ready(0))
    items += tile.job_packets(tile.tag_lo + 2, 1, 3, 3, 8, tile.b_aligned(10),
                              exec_first=False)
    items += [Gap(80), Ready(0.5), WaitDone(2), Gap(20)]
    # Every status register, twice, and the empty status addresses.
    reads = [tile.status(name) for name in STATUS_REGISTERS] * 2
    items += reads
    items += [tile.read(tile.S + i) for i in range(len(STATUS_REGISTERS), 16)]
    run = tile.run(items, dropped=dropped)
    ans, model = tile.check(run, exact_status=("errors", "flits_in", "words", "jobs_done",
                                               "busy"))
    first = pos(run, reads[0])
    values = {}
    for j, name in enumerate(STATUS_REGISTERS * 2):
        values.setdefault(name, []).append(ans[first + j].data)
    n = len(STATUS_REGISTERS)
    at = first + STATUS_REGISTERS.index("flits_in")
    busy = tile.geom.steps(5) * 2 + tile.geom.steps(1) * 3 * 3
    want = {"dropped": [dropped] * 2, "errors": [2, 2], "flits_in": [at, at + n],
            "words": [tile.words] * 2, "jobs_done": [2, 2], "busy": [busy] * 2}
    for name, v in want.items():
        assert values[name] == v, f"status {name}: read {values[name]}, expected {v}"
    for name in ("stall_operands", "stall_noc"):
        v = values[name]
        assert 0 < v[0] == v[1] < run.cycles, f"status {name}: read {v}"
    # flits_out was checked against the recorded cycles; between the two reads the
    # answers to the first round left.
    assert values["flits_out"][1] - values["flits_out"][0] >= 1
    assert model.counters["errors"] == 2 + 16 - n


# ---- 4. errors never hang the tile

@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_errors_never_hang(cfg):
    tile = Tile(cfg, 13)
    g, S = tile.geom, tile.S
    kmax_field = (1 << g.k_field_bits) - 1
    bad = [dict(k=0, rows=1, blocks=1, a_addr=0, b_addr=0)]
    if kmax_field > cfg.max_k:
        bad += [dict(k=cfg.max_k + 1, rows=1, blocks=1, a_addr=0, b_addr=0),
                dict(k=kmax_field, rows=1, blocks=1, a_addr=0, b_addr=0)]
    bad += [
        dict(k=4, rows=0, blocks=1, a_addr=0, b_addr=0),
        dict(k=4, rows=1, blocks=0, a_addr=0, b_addr=0),
        dict(k=cfg.max_k, rows=1, blocks=1, a_addr=cfg.a_words - g.astride(cfg.max_k) + 1,
             b_addr=0),
        dict(k=cfg.max_k, rows=1, blocks=1, a_addr=0,
             b_addr=cfg.b_words - g.bstride(cfg.max_k) + 1),
        dict(k=1, rows=cfg.a_words + 1, blocks=1, a_addr=0, b_addr=0),
        dict(k=1, rows=1, blocks=1, a_addr=cfg.a_words, b_addr=0),
        dict(k=1, rows=1, blocks=cfg.b_words, a_addr=0, b_addr=1),
    ]
    if tile.sparse and g.meta_group_words > 1:
        # In range, but a block's values must start a metadata word's B words.
        bad += [dict(k=1, rows=1, blocks=1, a_addr=0, b_addr=1),
                dict(k=cfg.max_k, rows=1, blocks=1, a_addr=0, b_addr=g.meta_group_words - 1)]
    items = [tile.exec(tile.tag(), wait=tile.wait_after(0), **d) for d in bad]
    # Fill the queue with jobs waiting for future words; one more is refused (full),
    # a bad one at a full queue is refused as bad.
    queued, need = [], 0
    for j in range(cfg.jobs):
        k = 2 + j
        need += tile.job_word_count(k)
        queued.append((tile.tag_lo + j, k, 4 * j, 8 * j))
        items.append(tile.exec(tile.tag_lo + j, k=k, rows=1, blocks=1, a_addr=queued[-1][2],
                               b_addr=queued[-1][3], wait=tile.wait_after(need)))
    items.append(tile.exec(tile.tag_lo + 20, k=1, rows=1, blocks=1, a_addr=0, b_addr=0,
                           wait=tile.wait_after(0)))
    items.append(tile.exec(tile.tag_lo + 21, **bad[0], wait=tile.wait_after(0)))
    # Out of range requests, unknown ops, stray answers.
    for addr in (tile.tag_lo, S - 1, S, S + len(STATUS_REGISTERS) - 1,
                 S + len(STATUS_REGISTERS), S + 15):
        items.append(tile.packet(Op.WRITE, addr, 0x5A))
    for addr in (tile.tag_lo, S - 1, S + len(STATUS_REGISTERS), S + 15):
        items.append(tile.read(addr))
    items += [tile.packet(6, 3, 1), tile.packet(7, S, 2), tile.packet(6, tile.tag_lo, 0)]
    items += [tile.packet(Op.REPLY, 1, 2), tile.packet(Op.DONE, tile.tag_lo, 1),
              tile.packet(Op.ERROR, S + 1, 3)]
    bad_meta = []
    if tile.sparse:
        # Malformed metadata words: all positions 0 (repeats), one group decreasing in
        # its last lane, random ones; refused, not stored (READ back) nor counted.
        n = g.nm[0]
        good = tile.positions((g.meta_steps, cfg.lanes))
        worse = good.copy()
        worse[n - 1, cfg.lanes - 1], worse[n - 2, cfg.lanes - 1] = (
            good[n - 2, cfg.lanes - 1], good[n - 1, cfg.lanes - 1])
        top = g.meta_base + g.meta_words - 1
        bad_meta = [tile.packet(Op.WRITE, g.meta_base, 0),
                    tile.packet(Op.WRITE, top, tile.meta_word(worse)),
                    tile.bad_meta_write(), tile.bad_meta_write()]
        items += bad_meta + [tile.read(g.meta_base), tile.read(top)]
    errors_mid = tile.status("errors")
    words_mid = tile.status("words")
    items += [errors_mid, words_mid]
    # The queued jobs' words: every queued job completes.
    for tag, k, aa, ba in queued:
        items += tile.job_packets(tag, k, 1, 1, aa, ba)[1:]
    items.append(WaitDone(cfg.jobs))
    # And a normal job still returns the exact result.
    items += tile.job_packets(tile.tag_lo + 30, cfg.max_k, 2,
                              min(2, cfg.b_words // g.bstride(cfg.max_k)), 0, 0)
    items += [WaitDone(cfg.jobs + 1), Gap(10), tile.status("errors"), tile.status("jobs_done")]
    run = tile.run(items, p_in=0.8, p_out=0.7)
    ans, model = tile.check(run, exact_status=("errors", "flits_in", "words", "jobs_done"))

    errs = [p for _, p in run.out if p.op == Op.ERROR]
    reasons = [p.data >> 8 for p in errs if p.data & 0xFF == Op.EXEC]
    assert reasons == [1] * len(bad) + [2, 1]
    full = [p for p in errs if p.addr == tile.tag_lo + 20]
    assert len(full) == 1 and full[0].data == Op.EXEC | 2 << 8
    ops = [p.data for p in errs if p.data & 0xFF != Op.EXEC]
    assert ops == [Op.WRITE] * 6 + [Op.READ] * 4 + [6, 7, 6] + [Op.WRITE | 3 << 8] * len(bad_meta)
    n_err = len(errs)
    assert ans[pos(run, errors_mid)].data == n_err + 3
    assert ans[pos(run, words_mid)].data == 0
    assert ans[len(run.packets) - 2].data == n_err + 3
    assert ans[len(run.packets) - 1].data == cfg.jobs + 1
    done_tags = [p.addr for _, p in run.out if p.op == Op.DONE]
    assert done_tags == [t for t, *_ in queued] + [tile.tag_lo + 30]


# ---- 5. scratchpad READs while a job runs

@pytest.mark.parametrize("cfg", CONFIGS, ids=CFG_IDS)
def test_reads_during_job(cfg):
    tile = Tile(cfg, 17)
    g = tile.geom
    k, rows = cfg.max_k, 2
    blocks = min(2, (cfg.b_words - 8) // g.bstride(k))
    # Two words outside the job's regions, to READ too.
    extra = [tile.write(tile.rng.randrange(cfg.b_words - 8, cfg.b_words), tile.rng.getrandbits(
        cfg.data_bits))]
    extra.append(tile.write(tile.a_last - tile.rng.randrange(4),
                            tile.rng.getrandbits(cfg.data_bits)))
    job = tile.job_packets(tile.tag_lo + 5, k, rows, blocks, 0, 0)
    items = extra + job
    a_span = range(cfg.b_words, cfg.b_words + rows * g.astride(k))
    b_span = range(0, blocks * g.bstride(k))
    # N:M: the job's metadata words, and the rest of the region (reset words).
    m_span = range(g.meta_base, g.meta_base + g.meta_words)
    steps = rows * blocks * g.steps(k)
    reads = []
    for _ in range(3 * steps // 4):
        pick = tile.rng.random()
        if pick < 0.4:
            addr = tile.rng.choice(a_span)
        elif pick < 0.8:
            addr = tile.rng.choice(b_span)
        else:
            addr = tile.rng.choice([extra[0].addr, extra[1].addr, *m_span])
        reads.append(tile.read(addr))
    items += reads + [WaitDone(1), Gap(10), tile.status("busy")]
    run = tile.run(items, p_in=0.8, p_out=0.8)
    ans, _ = tile.check(run, exact_status=("errors", "flits_in", "words", "busy"))
    assert ans[len(run.packets) - 1].data == steps
    # Enough READs landed while the engine was issuing.
    start = run.taken[pos(run, job[-1])]
    end = max(result_cycles(tile, run))
    during = [run.taken[pos(run, r)] for r in reads]
    during = [c for c in during if start < c < end]
    assert len(during) >= steps // 8, f"only {len(during)} READs during the job"


def test_done_counts_more_groups_than_a_result_word_holds():
    """lanes 1, 4-bit operands, max_k 1: a result is 9 bits, but a DONE's group count,
    rows * blocks = 16 * 16 = 256, needs more; the DONE must still carry it whole."""
    cfg = Cfg("l1w4k1", lanes=1, op_bits=4, data_bits=32, addr_bits=10, max_k=1,
              a_words=16, b_words=16, jobs=1, coord_bits=2)
    tile = Tile(cfg, 4)
    items = tile.job_packets(tile.tag(), 1, 16, 16, 0, 0) + [WaitDone(1)]
    run = tile.run(items, p_in=0.8, p_out=0.7)
    tile.check(run)
    assert [p.data for _, p in run.out if p.op == Op.DONE] == [256]


# ---- 6. the N:M cycle cost

def _issue_cycles(cfg, k, rows, blocks):
    """Cycles from a job's last operand word in to its DONE out, the output always
    ready, and the engine's busy count."""
    tile = Tile(cfg, 29)
    job = tile.job_packets(tile.tag_lo, k, rows, blocks, 0, 0, shuffle=False)
    items = job + [WaitDone(1), tile.status("busy")]
    run = tile.run(items, p_in=1.0, p_out=1.0)
    ans, _ = tile.check(run, exact_status=("errors", "flits_in", "words", "busy"))
    done = next(c for c, p in run.out if p.op == Op.DONE)
    return done - run.taken[len(job) - 1], ans[len(run.packets) - 1].data, tile.geom


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c.sparsity != "dense"],
                         ids=[c.name for c in CONFIGS if c.sparsity != "dense"])
def test_sparse_job_costs_k_n_over_m_cycles(cfg):
    """A k-panel costs ceil(k / M) * N issue cycles per (row, block), against k dense:
    the same tile dense takes M/N times as long."""
    k, rows = cfg.max_k, 3
    blocks = min(2, cfg.b_words // -(-k // (cfg.data_bits // cfg.op_bits // cfg.lanes)))
    sparse, busy, g = _issue_cycles(cfg, k, rows, blocks)
    n, m = g.nm
    steps = rows * blocks * -(-k // m) * n
    assert busy == steps
    dense, dense_busy, _ = _issue_cycles(dataclasses.replace(cfg, sparsity="dense"), k,
                                         rows, blocks)
    assert dense_busy == rows * blocks * k
    # The same pipeline behind the issue: a fixed latency to the DONE either way.
    assert 0 < sparse - steps == dense - rows * blocks * k <= 12, (sparse, dense)
