"""One router on amaranth.sim under random traffic: the driver both router suites share.

``run_router`` offers each input's queued packets (a new one with probability 0.8
a cycle, held until taken), drops each output's ``ready`` at random, records every
output transfer and every breach of the stream rule on the outputs, then drains with
every output ready. ``check_outputs`` matches what each output delivered against
the per-input sequences expected there: nothing unexpected, repeated or out of
order, nothing left undelivered.
"""

from collections import defaultdict

from amaranth.sim import Simulator
from tilefab.hw.noc.router import DIRECTIONS


def run_router(dut, fmt, queues, rng, *, cycles: int, ready: float, drain: int):
    """Drive ``dut`` from ``queues`` (input -> deque of packets, consumed).

    Returns ``(got, errors, dropped, moves)``: per output the packets it delivered in
    order, stream-rule breaches, the router's ``dropped`` count at the end and, per
    cycle of the random phase, the ``(output, packet)`` transfers of that cycle."""
    got, errors, moves, dropped = defaultdict(list), [], [], []

    async def bench(ctx):
        held, offering = [None] * 5, [False] * 5
        for _ in range(cycles):
            for d in range(5):
                if not offering[d] and queues[d] and rng.random() < 0.8:
                    ctx.set(dut.i[d].payload.as_value(), fmt.pack(queues[d][0]))
                    offering[d] = True
                ctx.set(dut.i[d].valid, offering[d])
                ctx.set(dut.o[d].ready, rng.random() < ready)
            await ctx.delay(1e-9)
            for d in range(5):
                if offering[d] and ctx.get(dut.i[d].ready):
                    queues[d].popleft()
                    offering[d] = False
            moved = []
            for o in range(5):
                if ctx.get(dut.o[o].valid):
                    word = ctx.get(dut.o[o].payload.as_value())
                    if held[o] is not None and held[o] != word:
                        errors.append(f"output {DIRECTIONS[o]} changed its offered flit")
                    if ctx.get(dut.o[o].ready):
                        p = fmt.unpack(word)
                        got[o].append(p)
                        moved.append((o, p))
                        held[o] = None
                    else:
                        held[o] = word
                elif held[o] is not None:
                    errors.append(f"output {DIRECTIONS[o]} withdrew an offered flit")
            moves.append(moved)
            await ctx.tick()
            if not any(queues.values()) and not any(offering):
                break
        for d in range(5):
            ctx.set(dut.i[d].valid, 0)
        for _ in range(drain):
            for o in range(5):
                ctx.set(dut.o[o].ready, 1)
            await ctx.delay(1e-9)
            for o in range(5):
                if ctx.get(dut.o[o].valid):
                    got[o].append(fmt.unpack(ctx.get(dut.o[o].payload.as_value())))
            await ctx.tick()
        dropped.append(ctx.get(dut.dropped))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, errors, dropped[0], moves


def check_outputs(got, expected, unit: str = "flits"):
    """Each output's deliveries interleave the per-input sequences ``expected[(d, o)]``
    exactly: every packet the head of one of them, all of them used up."""
    for o in range(5):
        pending = {d: expected[(d, o)] for d in range(5)}
        for p in got[o]:
            src = [d for d in range(5) if pending[d] and pending[d][0] == p]
            assert src, f"output {DIRECTIONS[o]}: unexpected, repeated or out-of-order {p}"
            pending[src[0]].popleft()
        left = sum(len(q) for q in pending.values())
        assert left == 0, f"output {DIRECTIONS[o]}: {left} {unit} never delivered"
