"""Arithmetic helpers every hardware block shares: adder trees and sizes.

``tree_sum(terms, m=None)`` is the exact sum of Amaranth values as a balanced adder
tree (depth log2 of the fan-in); with ``m`` every partial sum is a kept wire.
``below(value, bound)`` is ``value < bound`` for a constant bound, folded where the
value's width decides it. ``onehot_select(onehot, values)`` is the value whose bit of a
one-hot select is set, as one AND-OR level. ``bits_for(n)`` and ``ceil_div(a, b)`` are
generation-time sizes.
"""

from __future__ import annotations

from functools import reduce

from amaranth.hdl import C, Cat, Const, Mux, Signal, Value


def bits_for(n: int) -> int:
    """Bits to hold 0..n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def below(value, bound: int):
    """``value < bound`` for a constant ``bound``, folded where the value's width decides
    it, else as logic on the bits (the value is below the bound where, under a prefix
    equal to the bound's, it has a 0 where the bound has a 1): no carry chain, so an
    address decode is a few LUT levels."""
    if bound <= 0:
        return C(0, 1)
    if bound >= 1 << len(value):
        return C(1, 1)
    v = Value.cast(value)
    prefix, terms = C(1, 1), []
    for i in reversed(range(len(v))):
        if bound >> i & 1:
            terms.append(prefix & ~v[i])
            prefix = prefix & v[i]
        else:
            prefix = prefix & ~v[i]
    return Cat(*terms).any()


def tree_sum(terms, m=None):
    """The sum of ``terms`` (0 if none) as a balanced adder tree, so the critical path
    grows with log2 of the fan-in; every partial sum is wide enough to be exact.

    With the module ``m``, every partial sum is a kept wire: yosys then maps each add
    to a carry chain instead of merging the whole tree into one multi-operand adder of
    LUT full adders.
    """
    terms = list(terms)
    if not terms:
        return Const(0, 1)

    def add(a, b):
        if m is None:
            return a + b
        total = Signal((a + b).shape(), attrs={"keep": 1})
        m.d.comb += total.eq(a + b)
        return total

    while len(terms) > 1:
        nxt = [add(terms[k], terms[k + 1]) for k in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


def pipelined_sum(m, terms, *, fan_in: int = 4, name: str = "psum"):
    """The sum of ``terms`` through registered stages: while more than ``fan_in`` values
    remain, each group of ``fan_in`` is summed (a balanced tree) into a register. Returns
    the combinational sum of the last at most ``fan_in`` values, which is
    ``pipeline_stages(len(terms), fan_in)`` cycles behind the terms."""
    terms = list(terms)
    stage = 0
    while len(terms) > fan_in:
        nxt = []
        for k in range(0, len(terms), fan_in):
            part = tree_sum(terms[k:k + fan_in], m)
            reg = Signal(part.shape(), name=f"{name}{stage}_{k // fan_in}")
            m.d.sync += reg.eq(part)
            nxt.append(reg)
        terms = nxt
        stage += 1
    return tree_sum(terms, m)


def pipeline_stages(count: int, fan_in: int = 4) -> int:
    """Register stages ``pipelined_sum`` puts between ``count`` terms and their sum."""
    stages = 0
    while count > fan_in:
        count = -(-count // fan_in)
        stages += 1
    return stages


def onehot_select(onehot, values):
    """The one of ``values`` whose bit of ``onehot`` is set (0 when none is): an AND-OR
    of the values, no priority chain."""
    return reduce(lambda a, b: a | b, [Mux(onehot[k], v, 0) for k, v in enumerate(values)])
