"""Sparse and dynamically routed computation: the banked gather unit."""

from .gather import PARAMS, SparseGather, check_gather_params

__all__ = ["PARAMS", "SparseGather", "check_gather_params"]
