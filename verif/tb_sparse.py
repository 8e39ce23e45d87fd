"""cocotb test of the sparse jobs on a fabric, driven through the runtime.

``sparse_jobs``: one ``Fabric`` on the ``CocotbBackend`` (random backpressure on both
host streams) runs, without a reset between them: CSR SpMVs on every spmv tile
(random matrices of several densities, an empty row and a full row, one with more
nonzeros than a tile holds), malformed CSR sent raw to each spmv tile (ERROR, counted,
the next SpMV still exact), and a mixture-of-experts layer on the GEMM tiles (uniform
and skewed routing). Every result must equal its golden model. Parameters: ``config``,
``seed``, ``in_stall``, ``out_stall``, ``m``, ``k``, ``densities``, ``tokens``,
``d_in``, ``d_out``, ``experts``, ``top_k``, ``op_bits``. Writes ``result.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cocotb
import numpy as np
import scipy.sparse as sp

from ..golden.packet import Op
from .params import params
from .runtime import Fabric


def _require(ok: bool, what: str):
    if not ok:
        raise AssertionError(what)


def _matrix(rng, m, k, density, bits):
    lim = 1 << (bits - 1)
    a = sp.random(m, k, density=density, format="csr", random_state=rng,
                  data_rvs=lambda n: rng.choice(np.r_[-lim:0, 1:lim], n)).astype(np.int64)
    return a.tolil()


async def _spmv(fab, rng, a, bits, what, jobs):
    a = sp.csr_matrix(a)
    x = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), a.shape[1])
    run = await fab.spmv_async(a, x)
    want = a.toarray() @ x
    _require(run.golden_ok and np.array_equal(run.y, want),
             f"{what}: {run.mismatch or 'y differs from numpy'}")
    jobs.append({"job": what, "nnz": int(a.nnz), "cycles": run.cycles,
                 "tiles": [list(t) for t in run.tiles], "passes": run.passes})
    cocotb.log.info(f"{what}: exact, {a.nnz} nonzeros, {run.cycles} cycles")


@cocotb.test()
async def sparse_jobs(dut):
    p = params()
    seed = p.get("seed", 1)
    fab = Fabric.in_cocotb(dut, p)
    rng = np.random.default_rng(seed)
    jobs = []
    tiles = fab.tiles_of("spmv")
    bits = min(t.values["value_bits"] for t in tiles)
    m, k = p.get("m", 24), p.get("k", 40)
    for d in p.get("densities", [0.5, 0.1]):
        await _spmv(fab, rng, _matrix(rng, m, k, d, bits), bits, f"spmv density {d}", jobs)
    a = _matrix(rng, m, k, 0.2, bits)
    a[3, :] = 0                                              # an empty row
    a[5, :] = rng.choice([-1, 1], k)                         # a full row
    await _spmv(fab, rng, a, bits, "spmv empty and full rows", jobs)
    cap = max(t.values["nnz_depth"] for t in tiles) * len(tiles)
    big = _matrix(rng, 2 * m, max(k, cap // m + 8), 0.9, bits)
    _require(big.nnz > max(t.values["nnz_depth"] for t in tiles),
             "the large matrix must overflow one tile")
    await _spmv(fab, rng, big, bits, "spmv beyond one tile", jobs)

    errors = {}
    for t in tiles:
        before = (await fab.status_async(t.x, t.y))["errors"]
        got = await fab.transact_async(t.x, t.y, [(7, 0, 0)], replies=1)
        _require([g[0] for g in got] == [Op.ERROR], f"spmv {t.xy}: unknown op got {got}")
        after = (await fab.status_async(t.x, t.y))["errors"]
        _require(after == before + 1, f"spmv {t.xy}: errors {before} -> {after}")
        errors[f"{t.x},{t.y}"] = after
    await _spmv(fab, rng, _matrix(rng, m, k, 0.3, bits), bits, "spmv after ERROR", jobs)

    if "tokens" in p and any(t.kind == "gemm" for t in fab.tiles.values()):
        lim = 1 << (p["op_bits"] - 1)
        n_e = p["experts"]
        for routing in ("uniform", "skewed"):
            tokens = rng.integers(-lim, lim, (p["tokens"], p["d_in"]))
            gate = rng.integers(-lim, lim, (p["d_in"], n_e))
            if routing == "skewed":
                gate[:, 0] = lim - 1
                tokens = np.minimum(np.abs(tokens), lim - 1)
            experts = [rng.integers(-lim, lim, (p["d_in"], p["d_out"])) for _ in range(n_e)]
            run = await fab.moe_async(tokens, gate, experts, top_k=p["top_k"])
            _require(run.golden_ok, f"moe {routing}: {run.mismatch}")
            jobs.append({"job": f"moe {routing}", "cycles": run.cycles,
                         "expert_load": [int(v) for v in run.expert_load]})
            cocotb.log.info(f"moe {routing}: exact, load {list(run.expert_load)}")
    Path("result.json").write_text(json.dumps({"jobs": jobs, "errors": errors}, indent=2))
