"""Host driver: runs a ``Crossbar`` on Verilator through cocotb and returns its outputs.

``run_on_verilator(params, sessions)`` builds the RTL (cached by content hash),
then for each session writes the noise seed, programs the weights row-major and
streams the input vectors, with optional random stalls on every stream. It
returns, per session, the integer outputs and the cycle of every input and
output transfer. ``CrossbarTB`` is the cocotb side, shared with the test benches.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict

import cocotb
from tilefab.gen.emit import to_verilog
from tilefab.golden.imc import CrossbarParams
from tilefab.hw.imc import Crossbar
from tilefab.verif import tb
from tilefab.verif.params import params
from tilefab.verif.runner import run_cocotb
from tilefab.verif.stream import Clocked, StreamSink, StreamSource, random_pause

HOST_MODULE = "tilefab.verif.tb_crossbar"
TIMEOUT_PER_WORD = 200


def pack(values, width):
    mask = (1 << width) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


def unpack(word, width, count):
    out = []
    for i in range(count):
        v = (word >> (i * width)) & ((1 << width) - 1)
        out.append(v - (1 << width) if v >> (width - 1) else v)
    return out


class CrossbarTB:
    """Drives the four streams of a ``Crossbar`` top from cocotb."""

    def __init__(self, dut, p, stall_in: float = 0.0, stall_out: float = 0.0, seed: int = 1):

        self.dut, self.p = dut, p
        rng = random.Random(seed)
        self.src_seed = StreamSource(dut, "seed", pause=random_pause(stall_in, rng))
        self.src_prog = StreamSource(dut, "prog", pause=random_pause(stall_in, rng))
        self.src_x = StreamSource(dut, "x", pause=random_pause(stall_in, rng))
        self.sink = StreamSink(dut, "y", pause=random_pause(stall_out, rng))
        self.clocked = Clocked(dut.clk, [self.src_seed, self.src_prog, self.src_x, self.sink])
        self.w_width = len(dut.prog__payload)
        self.y_width = len(dut.y__payload) // p.cols

    async def start(self):

        await tb.start(self.dut)
        self.clocked.start()

    async def session(self, noise_seed, weights, inputs):
        """Seed, program and apply ``inputs``; returns (outputs, transfer cycles)."""
        p = self.p
        self.src_seed.send(int(noise_seed) & 0xFFFF_FFFF)
        await self.clocked.wait_until(lambda: self.src_seed.idle, 100, "seed transfer")
        flat = [int(w) for row in weights for w in row]
        for w in flat:
            self.src_prog.send(w & ((1 << self.w_width) - 1))
        await self.clocked.wait_until(lambda: self.src_prog.idle,
                                      TIMEOUT_PER_WORD * (len(flat) + 1), "programming")
        first = len(self.sink.received)
        first_x = len(self.src_x.sent)
        for x in inputs:
            self.src_x.send(pack(x, p.in_bits))
        await self.clocked.wait_until(lambda: len(self.sink.received) - first == len(inputs),
                                      TIMEOUT_PER_WORD * (len(inputs) + 1), "results on y")
        got = [unpack(word, self.y_width, p.cols) for _, word in self.sink.received[first:]]
        cycles = {"x": [c for c, *_ in self.src_x.sent[first_x:]],
                  "y": [c for c, _ in self.sink.received[first:]]}
        return got, cycles

    def finish(self):
        errors = self.clocked.protocol_errors
        self.clocked.stop()
        assert not errors, errors


async def run_sessions(dut, check=None):
    """Run the sessions in the parameters and write ``outputs.json``.

    ``check(p, n, session, outputs)``, if given, is called after each session.
    """

    cfg = params()
    p = CrossbarParams(**cfg["crossbar"])
    bench = CrossbarTB(dut, p, cfg.get("stall_in", 0.0), cfg.get("stall_out", 0.0),
                       cfg.get("stim_seed", 1))
    await bench.start()
    record = []
    for n, sess in enumerate(cfg["sessions"]):
        got, cycles = await bench.session(sess["noise_seed"], sess["weights"], sess["inputs"])
        if check is not None:
            check(p, n, sess, got)
        record.append({"outputs": got, "cycles": cycles})
    bench.finish()
    with open("outputs.json", "w") as fh:
        json.dump(record, fh)


@cocotb.test()
async def host_sessions(dut):
    """Run the sessions in the parameters and write ``outputs.json``; no checking."""
    await run_sessions(dut)


def verilog_for(p, name: str = "crossbar") -> str:

    return to_verilog(Crossbar(**p.hw_kwargs()), name)


def run_on_verilator(p, sessions, *, stall_in: float = 0.0, stall_out: float = 0.0,
                     stim_seed: int = 1, verilog: str | None = None,
                     test_module: str = HOST_MODULE, tb_dir=None) -> list:
    """Run ``sessions`` (dicts of noise_seed, weights, inputs) on the RTL of ``p``."""


    verilog = verilog or verilog_for(p)
    sessions = [{"noise_seed": int(s["noise_seed"]),
                 "weights": [[int(v) for v in row] for row in s["weights"]],
                 "inputs": [[int(v) for v in x] for x in s["inputs"]]} for s in sessions]
    cfg = {"crossbar": asdict(p), "sessions": sessions, "stall_in": stall_in,
           "stall_out": stall_out, "stim_seed": stim_seed}
    run_dir = run_cocotb(verilog, "crossbar", test_module, params=cfg, tb_dir=tb_dir)
    return json.loads((run_dir / "outputs.json").read_text())
