"""cocotb testbench for ``Crossbar``: random stimulus and backpressure, checked in the loop.

Parameters (``tilefab.verif.params``): ``crossbar`` (``CrossbarParams`` fields),
``sessions`` (list of ``{"noise_seed", "weights", "inputs"}``), ``stall_in`` /
``stall_out`` (stall probabilities on the inputs and on ``y``), ``stim_seed``.
Every output is compared with ``CrossbarModel`` as it arrives, session by
session; outputs and transfer cycles go to ``outputs.json`` for the caller's
statistics.
"""

import json

import cocotb
import numpy as np

from tilefab.gen.imc.host import CrossbarTB
from tilefab.golden.imc import CrossbarModel, CrossbarParams
from tilefab.verif.params import params


@cocotb.test()
async def crossbar_matches_golden(dut):
    cfg = params()
    p = CrossbarParams(**cfg["crossbar"])
    bench = CrossbarTB(dut, p, cfg.get("stall_in", 0.0), cfg.get("stall_out", 0.0),
                       cfg.get("stim_seed", 1))
    await bench.start()
    record = []
    for n, sess in enumerate(cfg["sessions"]):
        weights = np.array(sess["weights"], dtype=np.int64)
        inputs = np.array(sess["inputs"], dtype=np.int64).reshape(-1, p.rows)
        got, cycles = await bench.session(sess["noise_seed"], weights.tolist(),
                                          inputs.tolist())
        model = CrossbarModel(p, sess["noise_seed"])
        model.program(weights)
        for k, x in enumerate(inputs):
            want = model.mvm(x).tolist()
            assert got[k] == want, (f"session {n} vector {k}: RTL {got[k]} != golden {want} "
                                    f"(x = {x.tolist()})")
        record.append({"outputs": got, "cycles": cycles})
    bench.finish()
    with open("outputs.json", "w") as fh:
        json.dump(record, fh)
