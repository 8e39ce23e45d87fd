"""Invertible logic: gate Hamiltonians summed into one Ising problem.

Each gate is a penalty over 0/1 variables that is 0 on the gate's truth table and >= 1
elsewhere:
  AND   c = a b          P = 3c + ab - 2ac - 2bc        (Camsari et al., PRX 2017)
  half adder a+b = s+2c  P = (a + b - s - 2c)^2
  full adder a+b+ci = s+2co  P = (a + b + ci - s - 2co)^2
A circuit's penalty is the sum over its gates, so its ground states are exactly the
consistent assignments, whichever terminals are clamped: clamp the inputs and it
computes forwards; clamp the outputs of a multiplier and its ground states are the
factorizations. With x = (1 + m)/2 a penalty becomes an Ising energy
E = -(1/2 m^T J m + h^T m) + const; ``Circuit.ising`` returns J and h scaled by 4 so
every gate here has integer couplings (the AND gate comes out as Camsari's
J = [[0,-1,2],[-1,0,2],[2,2,0]], h = [1,1,-2]).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


class Circuit:
    def __init__(self):
        self.names: list[str] = []
        self.quad = defaultdict(float)     # (i, j), i < j -> coefficient of x_i x_j
        self.lin = defaultdict(float)
        self.clamps: dict[int, int] = {}

    @property
    def n(self) -> int:
        return len(self.names)

    def node(self, name: str) -> int:
        self.names.append(name)
        return len(self.names) - 1

    def _q(self, i, j, v):
        if i == j:
            self.lin[i] += v               # x^2 = x for binary x
        else:
            self.quad[(min(i, j), max(i, j))] += v

    def square(self, terms):
        """Add (sum v_i x_i)^2 for terms [(node, v), ...]."""
        for a, (i, vi) in enumerate(terms):
            self.lin[i] += vi * vi
            for j, vj in terms[a + 1:]:
                self._q(i, j, 2 * vi * vj)

    def and_gate(self, a: int, b: int, name: str | None = None) -> int:
        c = self.node(name or f"and({self.names[a]},{self.names[b]})")
        self.lin[c] += 3
        self._q(a, b, 1)
        self._q(a, c, -2)
        self._q(b, c, -2)
        return c

    def or_gate(self, a: int, b: int, name: str | None = None) -> int:
        # P = a + b + c + ab - 2ac - 2bc, zero exactly on c = a | b
        c = self.node(name or f"or({self.names[a]},{self.names[b]})")
        self.lin[a] += 1
        self.lin[b] += 1
        self.lin[c] += 1
        self._q(a, b, 1)
        self._q(a, c, -2)
        self._q(b, c, -2)
        return c

    def half_adder(self, a: int, b: int, tag: str = "") -> tuple[int, int]:
        s, c = self.node(f"s{tag}"), self.node(f"c{tag}")
        self.square([(a, 1), (b, 1), (s, -1), (c, -2)])
        return s, c

    def full_adder(self, a: int, b: int, ci: int, tag: str = "") -> tuple[int, int]:
        s, co = self.node(f"s{tag}"), self.node(f"co{tag}")
        self.square([(a, 1), (b, 1), (ci, 1), (s, -1), (co, -2)])
        return s, co

    def clamp(self, node: int, value: int):
        self.clamps[node] = int(bool(value))

    def penalty(self, x) -> float:
        x = np.asarray(x, dtype=np.float64)
        return (sum(v * x[i] for i, v in self.lin.items())
                + sum(v * x[i] * x[j] for (i, j), v in self.quad.items()))

    def ising(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer J, h with E(m) = 4 penalty(x) + const, for m = 2x - 1."""
        J = np.zeros((self.n, self.n))
        h = np.zeros(self.n)
        for i, v in self.lin.items():            # v x = v/2 + v/2 m
            h[i] -= 2 * v
        for (i, j), v in self.quad.items():      # v x x' = v/4 (1 + m + m' + m m')
            h[i] -= v
            h[j] -= v
            J[i, j] -= v
            J[j, i] -= v
        if np.any(J != np.rint(J)) or np.any(h != np.rint(h)):
            raise ValueError("circuit penalties must have integer coefficients")
        return J.astype(np.int64), h.astype(np.int64)

    def neighbours(self) -> list[list[int]]:
        nb = [set() for _ in range(self.n)]
        for (i, j), v in self.quad.items():
            if v:
                nb[i].add(j)
                nb[j].add(i)
        return [sorted(s) for s in nb]


def and_circuit() -> Circuit:
    c = Circuit()
    a, b = c.node("A"), c.node("B")
    c.and_gate(a, b, "C")
    return c


def or_circuit() -> Circuit:
    c = Circuit()
    a, b = c.node("A"), c.node("B")
    c.or_gate(a, b, "C")
    return c


def full_adder_circuit() -> Circuit:
    c = Circuit()
    a, b, ci = c.node("A"), c.node("B"), c.node("Cin")
    c.full_adder(a, b, ci, tag="")
    return c


@dataclass
class Multiplier:
    circuit: Circuit
    a: list[int]        # node of each bit of the first factor, LSB first
    b: list[int]
    p: list[int]        # product bits, LSB first

    def value(self, spins, bits) -> int:
        return sum(1 << k for k, i in enumerate(bits) if spins[i] > 0)


def multiplier(na: int, nb: int) -> Multiplier:
    """An na x nb-bit array multiplier of AND gates and adders, column by column."""
    if na < 1 or nb < 1:
        raise ConfigError("bits", f"factor widths must be >= 1, got {na} and {nb}")
    c = Circuit()
    a = [c.node(f"a{k}") for k in range(na)]
    b = [c.node(f"b{k}") for k in range(nb)]
    cols = defaultdict(list)
    for i in range(na):
        for j in range(nb):
            cols[i + j].append(c.and_gate(a[i], b[j], f"pp{i}{j}"))
    p, w = [], 0
    while cols.get(w):
        col = cols[w]
        k = 0
        while len(col) > 1:
            if len(col) >= 3:
                x, y, z = col.pop(0), col.pop(0), col.pop(0)
                s, co = c.full_adder(x, y, z, tag=f"{w}_{k}")
            else:
                x, y = col.pop(0), col.pop(0)
                s, co = c.half_adder(x, y, tag=f"{w}_{k}")
            col.append(s)
            cols[w + 1].append(co)
            k += 1
        p.append(col[0])
        w += 1
    return Multiplier(c, a, b, p)


def factor_circuit(N: int, na: int | None = None, nb: int | None = None) -> Multiplier:
    """A multiplier with its product bits clamped to N (bits above N clamped to 0)."""
    if not isinstance(N, int) or N < 4:
        raise ConfigError("N", f"must be an integer >= 4, got {N!r}")
    L = N.bit_length()
    nb = nb or (L + 1) // 2
    na = na or (L + 1) // 2
    mult = multiplier(na, nb)
    if len(mult.p) < L:
        raise ConfigError("bits", f"{na}x{nb}-bit factors give {len(mult.p)}-bit products, "
                                  f"too few for N={N} ({L} bits)")
    for k, node in enumerate(mult.p):
        mult.circuit.clamp(node, (N >> k) & 1)
    return mult
