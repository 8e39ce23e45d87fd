"""cocotb test of a generated fabric of GEMM tiles, driven through the host runtime.

``gemm``: one ``Fabric`` on the ``CocotbBackend`` runs C = A·B for each shape in
``shapes`` back to back (no reset between them, so the operand counters carry
over), with random operands including both extreme values and random
backpressure on both host streams (``in_stall``, ``out_stall``); on N:M tiles B
is pruned to the pattern along K, with emptier groups besides. Every product
must equal ``golden.gemm.gemm_exact``; per PE, the engine's ``busy`` counter
must equal the issue steps its jobs needed (k, or ceil(k / M) * N for N:M) and
``jobs_done``/``words`` the jobs and operand words it was sent. Parameters:
``config`` (YAML path), ``seed``, ``shapes``, ``in_stall``, ``out_stall``. Writes
``result.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cocotb
import numpy as np

from ..gen.gemm.compiler import compile_gemm
from ..golden import nm
from ..golden.gemm import GemmGeometry, gemm_exact
from .params import params
from .runtime import Fabric
from .stimulus import random_operands


@cocotb.test()
async def gemm(dut):
    p = params()
    seed = p.get("seed", 1)
    fabric = Fabric.in_cocotb(dut, p)
    info = fabric.manifest["gemm"]
    pkt = fabric.config["packet"]
    geom = GemmGeometry(data_bits=pkt["data_bits"], addr_bits=pkt["addr_bits"],
                        **info["params"])
    pes = [tuple(pe) for pe in info["pes"]]
    rng = np.random.default_rng(seed)
    runs = []
    for m, k, n in p["shapes"]:
        a, b = random_operands(rng, m, k, n, geom.op_bits)
        if geom.nm:
            b = nm.prune(b, *geom.nm)
            b[rng.random(b.shape) < 0.2] = 0
        run = await fabric.gemm_async(a, b)
        want = gemm_exact(a, b, geom.op_bits)
        if not np.array_equal(run.c, want):
            bad = np.argwhere(run.c != want)
            i, j = bad[0]
            raise AssertionError(f"{m}x{k}x{n}: {len(bad)} wrong elements, first C[{i},{j}] = "
                                 f"{run.c[i, j]}, numpy {want[i, j]}")
        plan = compile_gemm(a, b, geom, pes, multicast=fabric.fmt.multicast)
        for prog in plan.programs:
            c = run.counters[(prog.x, prog.y)]
            want_busy = sum(j.groups for j in prog.jobs) * geom.steps(k)
            want_words = sum(it.kind == "write" for it in prog.items)
            got = (c["busy"], c["jobs_done"], c["words"], c["errors"])
            expect = (want_busy, len(prog.jobs), want_words, 0)
            if got != expect:
                raise AssertionError(f"{m}x{k}x{n}: PE {(prog.x, prog.y)} counters (busy, "
                                     f"jobs_done, words, errors) = {got}, expected {expect}")
        runs.append({"shape": [m, k, n], "cycles": run.cycles,
                     "utilization": run.utilization,
                     "sparse_utilization": run.sparse_utilization, "flits_in": run.flits_in,
                     "flits_out": run.flits_out})
        sparse = (f" ({run.sparse_utilization:.1%} of the {geom.sparsity} peak)"
                  if geom.nm else "")
        dut._log.info(f"{m}x{k}x{n}: exact, {run.cycles} cycles, "
                      f"utilization {run.utilization:.1%} of dense{sparse}")
    Path("result.json").write_text(json.dumps({"runs": runs}, indent=2))
