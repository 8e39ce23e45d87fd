"""cocotb testbench for ``Crossbar``: random stimulus and backpressure, checked in the loop.

Parameters (``tilefab.verif.params``): ``crossbar`` (``CrossbarParams`` fields),
``sessions`` (list of ``{"noise_seed", "weights", "inputs"}``), ``stall_in`` /
``stall_out`` (stall probabilities on the inputs and on ``y``), ``stim_seed``.
Every output is compared with ``CrossbarModel`` as it arrives, session by
session; outputs and transfer cycles go to ``outputs.json`` for the caller's
statistics.
"""

import cocotb
import numpy as np
from tilefab.golden.imc import CrossbarModel
from tilefab.verif.tb_crossbar import run_sessions


def _check(p, n, sess, got):
    weights = np.array(sess["weights"], dtype=np.int64)
    inputs = np.array(sess["inputs"], dtype=np.int64).reshape(-1, p.rows)
    model = CrossbarModel(p, sess["noise_seed"])
    model.program(weights)
    for k, x in enumerate(inputs):
        want = model.mvm(x).tolist()
        assert got[k] == want, (f"session {n} vector {k}: RTL {got[k]} != golden {want} "
                                f"(x = {x.tolist()})")


@cocotb.test()
async def crossbar_matches_golden(dut):
    await run_sessions(dut, check=_check)
