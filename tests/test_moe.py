"""Mixture of experts: the golden model against plain numpy loops, the routing plan
(expert map, gather/scatter, programs laid end to end on a tile) against the GEMM PE
model, operand errors named, and ``fab.moe`` on Verilator bit-exact under random
backpressure: uniform, skewed (every token to one expert) and top_k = experts."""

from pathlib import Path

import numpy as np
import pytest
from tilefab.gen import moe as plan
from tilefab.gen.errors import OperandError
from tilefab.golden import moe as golden
from tilefab.golden.gemm import GemmGeometry, GemmPEModel
from tilefab.golden.packet import Packet

from tilefab import Fabric

EXAMPLES = Path(__file__).parent.parent / "examples"
GEOM = GemmGeometry(data_bits=64, addr_bits=12, lanes=4, op_bits=8, max_k=256, a_words=256,
                    b_words=256, jobs=4)
TILES = [(0, 0), (1, 0), (0, 1), (1, 1)]


def operands(rng, t, d, e, o, bits=8):
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    return (rng.integers(lo, hi, (t, d)), rng.integers(lo, hi, (d, e)),
            rng.integers(lo, hi, (e, d, o)))


def reference(x, g, w, k, rule="sum"):
    """The layer with Python loops: sort by (-logit, expert), sum or logit-weight."""
    logits = x @ g
    t, e = logits.shape
    idx = np.array([sorted(range(e), key=lambda j: (-logits[i, j], j))[:k] for i in range(t)])
    y = np.array([[x[i] @ w[idx[i, j]] for j in range(k)] for i in range(t)])
    weight = np.take_along_axis(logits, idx, 1) if rule == "logit" else np.ones_like(idx)
    out = np.array([sum(weight[i, j] * y[i, j] for j in range(k)) for i in range(t)])
    return logits, idx, y, out


# -- the golden model

@pytest.mark.parametrize("rule", golden.COMBINES)
@pytest.mark.parametrize("k", [1, 2, 5])
def test_golden_matches_loops(rule, k):
    rng = np.random.default_rng(k)
    x, g, w = operands(rng, 13, 7, 5, 3)
    r = golden.moe(x, g, w, k, rule)
    logits, idx, y, out = reference(x, g, w, k, rule)
    for got, want in ((r.logits, logits), (r.indices, idx), (r.y, y), (r.out, out)):
        assert np.array_equal(got, want)
    assert r.load.sum() == 13 * k and np.array_equal(r.load, np.bincount(idx.ravel(), minlength=5))


def test_golden_ties_go_to_the_lowest_expert():
    logits = np.array([[3, 5, 5, 1], [0, 0, 0, 0], [-2, 7, -2, 7]])
    assert golden.top_k(logits, 2).tolist() == [[1, 2], [0, 1], [1, 3]]
    assert golden.top_k(logits, 4).tolist() == [[1, 2, 0, 3], [0, 1, 2, 3], [1, 3, 0, 2]]


def test_golden_routes_are_in_token_order_and_invert_the_indices():
    idx = np.array([[2, 0], [0, 1], [2, 1]])
    routes = golden.routes(idx, 3)
    assert [r[0].tolist() for r in routes] == [[0, 1], [1, 2], [0, 2]]
    assert [r[1].tolist() for r in routes] == [[1, 0], [1, 1], [0, 0]]
    for e, (t, j) in enumerate(routes):
        assert (idx[t, j] == e).all()
    with pytest.raises(ValueError, match=r"top_k: 4 is not allowed, must be 1\.\.3"):
        golden.top_k(np.zeros((2, 3), int), 4)
    with pytest.raises(ValueError, match="combine"):
        golden.combine(np.zeros((3, 2, 1)), idx, idx, "softmax")


# -- the routing plan

def test_experts_map_round_robin_or_split_over_tiles():
    assert plan.assign_experts(6, TILES) == {0: ((0, 0),), 1: ((1, 0),), 2: ((0, 1),),
                                             3: ((1, 1),), 4: ((0, 0),), 5: ((1, 0),)}
    assert plan.assign_experts(2, TILES) == {0: ((0, 0), (0, 1)), 1: ((1, 0), (1, 1))}
    assert plan.assign_experts(1, TILES) == {0: tuple(TILES)}


def test_balanced_placement_gives_hot_experts_more_tiles():
    assert plan.balance_experts([64, 0, 0, 0], TILES) == {0: tuple(TILES), 1: (), 2: (), 3: ()}
    assert plan.balance_experts([30, 10, 0, 10], TILES) == {
        0: ((0, 0), (1, 0)), 1: ((0, 1),), 2: (), 3: ((1, 1),)}
    # more active experts than tiles: longest first onto the least loaded tile
    got = plan.balance_experts([9, 1, 5, 5, 4, 3], TILES)
    assert got == {0: ((0, 0),), 2: ((1, 0),), 3: ((0, 1),), 4: ((1, 1),), 5: ((1, 1),),
                   1: ((1, 0),)}


def run_on_models(schedule, words=None):
    """Every tile's requests through the GEMM PE model, in order: REPLY words, DONE tags."""
    models = {xy: GemmPEModel(GEOM, *xy) for xy in TILES}
    for xy, n in (words or {}).items():
        models[xy].counters["words"] = n
    replies, dones = {}, {}
    for xy, reqs in schedule.requests.items():
        for op, addr, data, _ in reqs:
            for p in models[xy].receive(Packet(xy[0], xy[1], 3, 3, op, addr, data)):
                assert p.op in (3, 4), p
                (replies if p.op == 4 else dones).setdefault(xy, []).append(
                    p.data if p.op == 4 else p.addr)
    assert dones == schedule.dones
    return replies


@pytest.mark.parametrize("placement", plan.PLACEMENTS)
@pytest.mark.parametrize(("e", "k"), [(7, 2), (2, 2), (4, 1), (9, 3)])
def test_plan_runs_on_the_pe_model(e, k, placement):
    """Several experts per tile (programs end to end), experts split over tiles, the
    tiles' word counters carried from the gate session to the expert session."""
    rng = np.random.default_rng(e)
    x, g, w = operands(rng, 19, 12, e, 6)
    ops = plan.check_moe_operands(x, g, w, k, GEOM, placement=placement)
    before = {xy: 5 * i for i, xy in enumerate(TILES)}
    gate = plan.plan_gate(ops, GEOM, TILES, before)
    logits = gate.assemble(run_on_models(gate, before))["gate"]
    assert np.array_equal(logits, x @ g)
    idx = golden.top_k(logits, k)
    ex = plan.plan_experts(ops, idx, GEOM, TILES, gate.words, placement)
    replies = run_on_models(ex.schedule, gate.words)
    y = ex.assemble(replies)
    assert np.array_equal(y, golden.expert_outputs(x, w, idx))
    if placement == "static":
        assert ex.shared == (e > len(TILES))
    assert sum(ex.tile_tokens(TILES).values()) >= 19 * k
    assert ex.load.tolist() == np.bincount(idx.ravel(), minlength=e).tolist()


Z = np.zeros


@pytest.mark.parametrize(("change", "message"), [
    ({"tokens": Z(6, int)}, r"tokens: must be a 2-D matrix tokens x d_in"),
    ({"tokens": Z((3, 6))}, r"tokens: must hold integers, got dtype float64"),
    ({"tokens": np.full((3, 6), 200)},
     r"tokens: value 200 is outside -128\.\.127 \(the GEMM tiles' op_bits 8\)"),
    ({"tokens": Z((3, 300), int), "gate_w": Z((300, 4), int), "experts": Z((4, 300, 2), int)},
     r"tokens: d_in = 300 .* max_k = 256"),
    ({"gate_w": Z((5, 4), int)}, r"gate_w: shape \(5, 4\) .* must be d_in x experts = 6 x E"),
    ({"gate_w": np.full((6, 4), -129)}, r"gate_w: value -129 is outside"),
    ({"experts": Z((3, 6, 2), int)}, r"experts: 3 matrices, must be 4"),
    ({"experts": Z((6, 2), int)}, r"experts: must be E x d_in x d_out"),
    ({"experts": [Z((6, 2), int)] * 3 + [Z((6, 3), int)]},
     r"experts\[3\]: shape \(6, 3\) is not allowed, must be d_in x d_out = 6 x 2"),
    ({"experts": [Z((6, 2), int)] * 2 + [np.full((6, 2), 128)] * 2},
     r"experts\[2\]: value 128 is outside -128\.\.127"),
    ({"top_k": 0}, r"top_k: 0 is not allowed, must be 1\.\.4 \(the number of experts\)"),
    ({"top_k": 5}, r"top_k: 5 is not allowed, must be 1\.\.4"),
    ({"top_k": True}, r"top_k: True is not allowed"),
    ({"combine": "softmax"}, r"combine: 'softmax' is not allowed, must be one of sum, logit"),
    ({"placement": "random"}, r"placement: 'random' is not allowed, must be one of static, bal"),
])
def test_bad_operands_are_named(change, message):
    args = {"tokens": Z((3, 6), int), "gate_w": Z((6, 4), int),
            "experts": Z((4, 6, 2), int), "top_k": 2, "combine": "sum",
            "placement": "static"} | change
    with pytest.raises(OperandError, match=message):
        plan.check_moe_operands(args["tokens"], args["gate_w"], args["experts"],
                                args["top_k"], GEOM, args["combine"], args["placement"])


def test_logit_combine_that_could_overflow_is_refused():
    wide = GemmGeometry(data_bits=64, addr_bits=12, lanes=2, op_bits=16, max_k=256,
                        a_words=256, b_words=256, jobs=4)
    d = 256                   # 3 * (256 * 2**30)**2 > 2**63
    args = (np.zeros((2, d), int), np.zeros((d, 3), int), np.zeros((3, d, 1), int), 3, wide)
    with pytest.raises(OperandError, match="combine: 'logit' .* overflow int64"):
        plan.check_moe_operands(*args, combine="logit")
    plan.check_moe_operands(*args, combine="sum")


# -- on Verilator

@pytest.fixture(scope="module")
def fab():
    return Fabric(EXAMPLES / "gemm2x2.yaml", seed=11, in_stall=0.25, out_stall=0.35)


def check(run, x, g, w, k, rule="sum"):
    assert run.golden_ok, run.mismatch
    logits, idx, y, out = reference(x, g, w, k, rule)
    assert np.array_equal(run.logits, logits) and np.array_equal(run.indices, idx)
    assert np.array_equal(run.y, y) and np.array_equal(run.out, out)
    assert run.expert_load.tolist() == np.bincount(idx.ravel(), minlength=g.shape[1]).tolist()
    assert run.counters and all(c["errors"] == 0 for c in run.counters.values())
    assert run.cycles == run.gate_cycles + run.expert_cycles > 0
    assert run.tokens_per_cycle == pytest.approx(len(x) / run.cycles)


@pytest.mark.sim
@pytest.mark.parametrize("seed", [1, 2])
def test_moe_round_robin_is_bit_exact_under_backpressure(fab, seed):
    rng = np.random.default_rng(seed)
    x, g, w = operands(rng, 23, 24, 6, 9)          # 6 experts on 4 tiles
    run = fab.moe(x, g, w, 2, seed=seed, in_stall=0.3, out_stall=0.4)
    check(run, x, g, w, 2)
    assert run.shared and run.assignment[4] == ((0, 0),) and run.assignment[5] == ((1, 0),)
    assert run.tile_experts()[(0, 0)] == [0, 4]
    load = run.expert_load
    assert run.tile_load[(0, 0)] == load[0] + load[4]


@pytest.mark.sim
def test_moe_skewed_routing_sends_every_token_to_one_expert(fab):
    rng = np.random.default_rng(3)
    x = rng.integers(1, 128, (17, 16))
    g = np.full((16, 4), -128)
    g[:, 2] = 127                                   # expert 2 wins every token
    _, _, w = operands(rng, 1, 16, 4, 5)
    run = fab.moe(x, g, w, top_k=1, seed=4)
    check(run, x, g, w, 1)
    assert run.expert_load.tolist() == [0, 0, 17, 0] and run.imbalance == 4.0
    assert run.tile_load == {(0, 0): 0, (1, 0): 0, (0, 1): 17, (1, 1): 0}
    balanced = fab.moe(x, g, w, top_k=1, placement="balanced", seed=5)
    check(balanced, x, g, w, 1)
    assert balanced.assignment[2] == tuple(TILES) and balanced.assignment[0] == ()
    assert all(n > 0 for n in balanced.tile_load.values())
    assert balanced.expert_cycles < run.expert_cycles / 2


@pytest.mark.sim
def test_moe_top_k_equal_to_experts_on_split_tiles_with_logit_weights(fab):
    rng = np.random.default_rng(5)
    x, g, w = operands(rng, 11, 10, 2, 6)          # 2 experts, 2 tiles each
    run = fab.moe(x, g, w, top_k=2, combine="logit", gate_tile=(1, 1), seed=6)
    check(run, x, g, w, 2, "logit")
    assert not run.shared and run.assignment == {0: ((0, 0), (0, 1)), 1: ((1, 0), (1, 1))}
    assert run.gate_tiles == [(1, 1)] and run.expert_load.tolist() == [11, 11]
    assert np.array_equal(run.y.sum(axis=1), x @ (w[0] + w[1]))


@pytest.mark.sim
def test_moe_on_the_heterogeneous_fabric():
    fab = Fabric(EXAMPLES / "hetero3x3.yaml", seed=2, in_stall=0.2, out_stall=0.3)
    rng = np.random.default_rng(8)
    x, g, w = operands(rng, 9, 20, 5, 7)
    check(fab.moe(x, g, w, 3), x, g, w, 3)


@pytest.mark.sim
def test_moe_bad_inputs_are_named_before_anything_runs(fab):
    x, g, w = np.zeros((3, 6), int), np.zeros((6, 4), int), np.zeros((4, 6, 2), int)
    with pytest.raises(OperandError, match=r"experts\[1\]: value 300"):
        fab.moe(x, g, [w[0], w[1] + 300, w[2], w[3]])
    with pytest.raises(OperandError, match=r"top_k: 5 is not allowed, must be 1\.\.4"):
        fab.moe(x, g, w, top_k=5)
    with pytest.raises(Exception, match=r"tile \(1, 2\): not in the 2x2 mesh"):
        fab.moe(x, g, w, gate_tile=(1, 2))
    assert fab.moe(x, g, w).golden_ok
