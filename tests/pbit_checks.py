"""Helpers the PBitArray RTL tests share: random couplings on a topology, and a run of
the Verilator model checked record for record against the golden model."""

import numpy as np
from tilefab.gen.pbit import driver
from tilefab.verif.tb_pbit import run_rtl


def random_on(nbrs, rng, wlo, whi, hlo, hhi):
    """Symmetric integer J in [wlo, whi] on the edges of ``nbrs`` and h in [hlo, hhi]."""
    n = len(nbrs)
    J = np.zeros((n, n), dtype=np.int64)
    for i, row in enumerate(nbrs):
        for j in row:
            if i < j:
                J[i, j] = J[j, i] = rng.integers(wlo, whi + 1)
    return J, rng.integers(hlo, hhi + 1, n)


def check(array, ops, name, **kw):
    """``ops`` on the RTL of ``array``; its records must equal the golden model's (with
    samples, the testbench checks them record by record, stalls aside)."""
    expected = driver.golden_records(array.config(), array._seeds, ops)
    results, raw = run_rtl(array, ops, name=name, expected=expected,
                           test_module="tilefab.verif.tb_pbit_check", **kw)
    assert raw["records"] == expected or any(
        isinstance(op, driver.Run) and op.sample_every for op in ops)
    return results
