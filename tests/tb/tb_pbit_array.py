"""cocotb checks of ``PBitArray`` against records predicted by the golden model.

The pytest side writes a job (ctrl words, expected out records, backpressure) and
names it in the runner parameters; this module drives the words through
``tilefab.gen.pbit.pbit_host.session`` and compares every record, bit for bit. The
records it received are written back for the statistical checks done in pytest.
"""

import json

import cocotb

from tilefab.gen.pbit.pbit_host import KIND_COUNT, session
from tilefab.verif.params import params


@cocotb.test()
async def pbit_records_match_golden(dut):
    p = params()
    job = json.loads(open(p["job"]).read())
    records, cycles = await session(
        dut, job["words"], n_results=job["n_results"], index_bits=job["index_bits"],
        in_stall=job["in_stall"], out_stall=job["out_stall"], seed=job["seed"],
        timeout=job["timeout"])
    with open(p["result"], "w") as fh:
        json.dump({"records": records, "sim_cycles": cycles}, fh)
    expected = job.get("expected")
    if expected is None:
        return
    assert len(records) == len(expected), f"{len(records)} records, expected {len(expected)}"
    mask = (1 << job["index_bits"]) - 1
    for k, (got, exp) in enumerate(zip(records, expected)):
        kind, index = got & 3, (got >> 2) & mask
        if kind == KIND_COUNT and index == 0 and job["stalls_allowed"]:
            # Run cycles include stalls from output backpressure; never fewer.
            shift = 2 + job["index_bits"]
            assert (got & 3, got >> 2 & mask) == (exp & 3, exp >> 2 & mask)
            assert got >> shift >= exp >> shift, f"record {k}: fewer cycles than updates"
            continue
        assert got == exp, f"record {k}: got {got:#x}, golden {exp:#x}"
