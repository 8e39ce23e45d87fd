"""cocotb checks of ``PBitArray`` against records predicted by the golden model.

The pytest side writes a job (ctrl words, expected out records, backpressure) and
names it in the runner parameters; this module drives the words through
``tilefab.verif.tb_pbit.session`` and compares every record, bit for bit. The
records it received are written back for the statistical checks done in pytest.
"""


import cocotb
from tilefab.verif.tb_pbit import KIND_COUNT, run_job


@cocotb.test()
async def pbit_records_match_golden(dut):
    job, records = await run_job(dut)
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
