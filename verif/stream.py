"""Stream drivers for ``amaranth.lib.stream`` ports in cocotb, with backpressure.

Amaranth flattens a stream port ``p`` to ``p__payload``, ``p__valid`` and
``p__ready``. A ``StreamSource`` drives one such port into the DUT, a
``StreamSink`` takes one out of it; both are stepped by one ``Clocked`` loop per
clock, so a testbench with dozens of ports costs one coroutine, not dozens.

Each cycle the loop, at the falling edge, lets every endpoint drive its inputs,
then waits for ``ReadOnly`` and lets every endpoint sample: a transfer is a cycle
where valid and ready are both high at that point, i.e. at the next rising edge.
This holds on Verilator and Icarus alike.

Rules checked on the DUT's outputs (``StreamSink``): once ``valid`` is high it
stays high with the same payload until the transfer (the Amaranth stream rule).
The sources obey the same rule: a pause only delays presenting a new word.

Pause generators yield True on a cycle to stall (source: hold back a new word;
sink: drop ready), e.g. ``itertools.cycle([0, 0, 0, 1])`` or ``random_pause(0.3, rng)``.
"""

from __future__ import annotations

import collections
import itertools
import random

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly


def random_pause(p_stall: float, rng: random.Random | None = None):
    """An endless pause pattern that stalls each cycle with probability ``p_stall``."""
    rng = rng or random.Random()
    while True:
        yield rng.random() < p_stall


def never():
    return itertools.repeat(False)


class StreamSource:
    """Drive words into a DUT stream input ``<prefix>__{payload,valid,ready}``."""

    def __init__(self, dut, prefix: str, pause=None):
        self.name = prefix
        self._payload = getattr(dut, f"{prefix}__payload")
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self.pause = pause if pause is not None else never()
        self.queue = collections.deque()   # (word, tag, not_before_cycle)
        self.current = None
        self.sent = []                     # (cycle, word, tag) in transfer order
        self._valid_now = 0
        self._valid.value = 0
        self._payload.value = 0

    def send(self, word: int, tag=None, at: int = 0):
        """Queue ``word``; it is offered no earlier than cycle ``at`` (queue in ``at`` order)."""
        self.queue.append((word, tag, at))

    @property
    def idle(self) -> bool:
        return self.current is None and not self.queue

    def drive(self, cycle: int):
        stall = next(self.pause)
        if self.current is None and self.queue and not stall and self.queue[0][2] <= cycle:
            self.current = self.queue.popleft()
            self._payload.value = self.current[0]
        valid = int(self.current is not None)
        if valid != self._valid_now:
            self._valid.value = valid
            self._valid_now = valid

    def sample(self, cycle: int):
        if self.current is not None and int(self._ready.value):
            self.sent.append((cycle, self.current[0], self.current[1]))
            self.current = None
            self.on_sent(cycle)

    def on_sent(self, cycle: int):
        """Hook for subclasses: a word left the source on ``cycle``."""


class StreamSink:
    """Take words from a DUT stream output, with a pause pattern on ``ready``."""

    def __init__(self, dut, prefix: str, pause=None, on_word=None):
        self.name = prefix
        self._payload = getattr(dut, f"{prefix}__payload")
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self.pause = pause if pause is not None else never()
        self.on_word = on_word
        self.received = []                 # (cycle, word)
        self._ready_now = 0
        self._ready.value = 0
        self._held = None                  # (word) offered but not taken last cycle
        self.protocol_errors = []

    def drive(self, cycle: int):
        ready = int(not next(self.pause))
        if ready != self._ready_now:
            self._ready.value = ready
            self._ready_now = ready

    def sample(self, cycle: int):
        valid = int(self._valid.value)
        if self._held is not None:
            if not valid:
                self.protocol_errors.append(f"{self.name}: valid dropped before transfer "
                                            f"at cycle {cycle}")
            elif int(self._payload.value) != self._held:
                self.protocol_errors.append(f"{self.name}: payload changed before transfer "
                                            f"at cycle {cycle}")
        if not valid:
            self._held = None
            return
        word = int(self._payload.value)
        if self._ready_now:
            self._held = None
            self.received.append((cycle, word))
            if self.on_word is not None:
                self.on_word(cycle, word)
        else:
            self._held = word


class Clocked:
    """Steps a set of stream endpoints once per clock cycle from one coroutine."""

    def __init__(self, clk, endpoints=()):
        self.clk = clk
        self.endpoints = list(endpoints)
        self.cycle = 0
        self._task = None

    def add(self, *endpoints):
        self.endpoints.extend(endpoints)

    async def _loop(self):
        fall, ro = FallingEdge(self.clk), ReadOnly()
        while True:
            await fall
            self.cycle += 1
            for ep in self.endpoints:
                ep.drive(self.cycle)
            await ro
            for ep in self.endpoints:
                ep.sample(self.cycle)

    def start(self):
        self._task = cocotb.start_soon(self._loop())
        return self

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def protocol_errors(self):
        return [e for ep in self.endpoints for e in getattr(ep, "protocol_errors", [])]

    async def wait_until(self, predicate, timeout: int, what: str = "condition"):
        """Wait whole cycles until ``predicate()``; fail clearly after ``timeout`` cycles."""
        start = self.cycle
        fall = FallingEdge(self.clk)
        while not predicate():
            if self.cycle - start > timeout:
                raise AssertionError(f"timeout after {timeout} cycles waiting for {what}")
            await fall
