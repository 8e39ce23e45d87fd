"""Workload compilers of the sparse tiles: CSR SpMV over the ``spmv`` tiles."""

from .spmv import SpmvJob, SpmvPlan, as_csr, plan_spmv

__all__ = ["SpmvJob", "SpmvPlan", "as_csr", "plan_spmv"]
