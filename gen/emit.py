"""Verilog emission: one function, stable output, no absolute paths."""

from __future__ import annotations

import warnings


def to_verilog(component, name: str) -> str:
    """Convert an Amaranth component to Verilog text, byte-identical run to run."""
    from amaranth.back import verilog

    with warnings.catch_warnings():
        # Unused-elaboratable warnings from throwaway sub-objects are not errors here.
        warnings.simplefilter("ignore", category=UserWarning)
        return verilog.convert(component, name=name, emit_src=False)
