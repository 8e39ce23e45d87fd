"""Clock and reset for every testbench: Amaranth tops have ``clk`` and ``rst``."""

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

import cocotb

CLOCK_NS = 10


async def start(dut, reset_cycles: int = 3):
    """Start the clock, hold reset for ``reset_cycles`` and release it at a falling edge."""
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, reset_cycles)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
