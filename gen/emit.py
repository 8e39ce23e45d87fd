"""Verilog emission: one function, stable output, no absolute paths."""

from __future__ import annotations

import os
import warnings

from amaranth.back import verilog


def to_verilog(component, name: str) -> str:
    """Convert an Amaranth component to Verilog text, byte-identical run to run."""
    # Amaranth prefers a system yosys (e.g. $YOSYS, which the toolchain sets for
    # synthesis) over its built-in one; pin the built-in one so the text never
    # depends on the environment.
    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            return verilog.convert(component, name=name, emit_src=False)
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = saved
