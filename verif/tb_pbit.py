"""cocotb host for ``PBitArray``: stream ctrl words in, collect every out record.

``session`` is the one driver used by the CLI (through the ``pbit_host`` test below,
which reads a job file named in the runner parameters) and by the testbenches.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, ReadOnly, RisingEdge, Timer
from tilefab.gen.emit import to_verilog
from tilefab.gen.pbit import driver
from tilefab.hw.pbit.array import PBitArray
from tilefab.verif import tb
from tilefab.verif.params import params
from tilefab.verif.runner import run_cocotb
from tilefab.verif.stream import Clocked, StreamSink, StreamSource, random_pause

KIND_COUNT = 3


async def session(dut, words, *, n_results: int, index_bits: int, in_stall: float = 0.0,
                  out_stall: float = 0.0, seed: int = 1, timeout: int = 1_000_000):
    """Send ``words``, wait for ``n_results`` final records; returns (records, cycles)."""
    await tb.start(dut)
    rng = random.Random(seed)
    src = StreamSource(dut, "ctrl", pause=random_pause(in_stall, rng) if in_stall else None)
    records = []
    done = [0]
    mask = (1 << index_bits) - 1

    def on_word(cycle, w):
        records.append(w)
        if w & 3 == KIND_COUNT and (w >> 2) & mask == 1:
            done[0] += 1

    sink = StreamSink(dut, "out", on_word=on_word,
                      pause=random_pause(out_stall, rng) if out_stall else None)
    clk = Clocked(dut.clk, [src, sink]).start()
    for w in words:
        src.send(w)
    await clk.wait_until(lambda: done[0] == n_results and src.idle, timeout,
                         f"{n_results} results from the p-bit array")
    clk.stop()
    assert not clk.protocol_errors, clk.protocol_errors
    return records, clk.cycle


async def session_events(dut, words, *, n_results: int, index_bits: int,
                         timeout: int = 1_000_000):
    """``session`` without backpressure, woken by stream events instead of every clock.

    A long anneal then costs no Python per cycle: the host sleeps until ``ctrl.ready``
    or ``out.valid`` rises. ``ready`` stays high, so every record transfers on the
    first rising edge at which it is valid.
    """
    # The clock runs in the simulator's C layer (no Python per cycle); the host only
    # writes right after a rising edge, where that clock's ordering is the same.
    cocotb.start_soon(Clock(dut.clk, tb.CLOCK_NS, unit="ns", impl="gpi").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    clk = dut.clk
    mask = (1 << index_bits) - 1
    records = []
    done = [0]
    start = cocotb.utils.get_sim_time(unit="ns")

    async def feed():
        for w in words:
            dut.ctrl__payload.value = w
            dut.ctrl__valid.value = 1
            while True:
                await ReadOnly()
                if int(dut.ctrl__ready.value):
                    break
                await RisingEdge(dut.ctrl__ready)
            await RisingEdge(clk)
        dut.ctrl__valid.value = 0

    async def collect():
        dut.out__ready.value = 1
        while done[0] < n_results:
            await ReadOnly()
            if not int(dut.out__valid.value):
                await RisingEdge(dut.out__valid)
                await ReadOnly()
            w = int(dut.out__payload.value)
            records.append(w)
            if w & 3 == KIND_COUNT and (w >> 2) & mask == 1:
                done[0] += 1
            await RisingEdge(clk)

    dut.out__ready.value = 0
    dut.ctrl__valid.value = 0
    await RisingEdge(clk)
    cocotb.start_soon(feed())
    got = cocotb.start_soon(collect())
    expired = Timer(timeout * tb.CLOCK_NS, unit="ns")
    if await First(got, expired) is expired:
        raise AssertionError(f"timeout after {timeout} cycles waiting for {n_results} "
                             f"results from the p-bit array")
    cycles = int((cocotb.utils.get_sim_time(unit="ns") - start) // tb.CLOCK_NS)
    return records, cycles


async def run_job(dut):
    """Run the job named in the parameters and write its records; returns (job, records)."""
    p = params()
    job = json.loads(open(p["job"]).read())
    if job["in_stall"] or job["out_stall"]:
        records, cycles = await session(
            dut, job["words"], n_results=job["n_results"], index_bits=job["index_bits"],
            in_stall=job["in_stall"], out_stall=job["out_stall"], seed=job["seed"],
            timeout=job["timeout"])
    else:
        records, cycles = await session_events(
            dut, job["words"], n_results=job["n_results"], index_bits=job["index_bits"],
            timeout=job["timeout"])
    with open(p["result"], "w") as fh:
        json.dump({"records": records, "sim_cycles": cycles}, fh)
    return job, records


@cocotb.test()
async def pbit_host(dut):
    await run_job(dut)


def run_rtl(array: PBitArray, ops, *, name: str = "pbit_array", in_stall: float = 0.0,
            out_stall: float = 0.0, seed: int = 1, timeout: int | None = None,
            expected: list[int] | None = None, test_module: str = "tilefab.verif.tb_pbit",
            tb_dir: Path | None = None) -> tuple[list[driver.Result], dict]:
    """Run ``ops`` on the Verilator model of ``array``.

    Returns one ``Result`` per Run/Read and the raw reply (``records``, ``sim_cycles``).
    With ``expected`` and a checking ``test_module`` the testbench compares records.
    """
    cfg = array.config()
    words = driver.encode(cfg, array.neighbours, ops)
    sampling = any(isinstance(op, driver.Run) and op.sample_every for op in ops)
    if timeout is None:
        sweeps = sum(s for op in ops if isinstance(op, driver.Run) for _, s in op.schedule)
        per_sweep = cfg["n_colours"] if cfg.get("arch") != "lanes" else \
            cfg["n_colours"] * 7 + cfg["lanes"] * cfg["edge_depth"]
        timeout = 10 * (len(words) + sweeps * per_sweep) + 100_000
        if sampling:
            timeout += 20 * sweeps * (cfg["n_chunks"] + 1)
    with tempfile.TemporaryDirectory(prefix="tilefab-pbit-") as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({"words": words, "n_results": driver.n_results(ops),
                                   "index_bits": cfg["index_bits"],
                                   "in_stall": in_stall, "out_stall": out_stall,
                                   "seed": seed, "timeout": timeout, "expected": expected,
                                   "stalls_allowed": sampling}))
        run_cocotb(to_verilog(array, name), name, test_module,
                   params={"job": str(job), "result": str(result)},
                   tb_dir=tb_dir)
        got = json.loads(result.read_text())
    return driver.decode(cfg, got["records"]), got
