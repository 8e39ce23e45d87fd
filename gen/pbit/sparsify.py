"""Exact sparsification (Aadit et al., Nature Electronics 2022): bounded degree by copies.

A node of degree d > D is split into a chain of copies c_0 - c_1 - ... - c_{m-1}, each
holding a share of the node's edges (an end copy D - 1 of them, an inner copy D - 2),
so every node of the split graph has degree <= D. Consecutive copies are joined by a
ferromagnetic coupling, in Max-Cut terms an edge of negative weight -J_l, with

    J_l = min(sum |w| of the edges held before link l, sum |w| held after it) + 1.

Exactness: take a state whose chain disagrees somewhere. If at the last disagreeing link
the edges after it weigh less than before it, flip every copy after it; else flip every
copy before the first disagreeing link (those edges weigh less there, as the prefix sums
only grow along the chain). Either flip mends one link without breaking another and
changes the original edges' energy by at most 2 x the flipped edges' weight < 2 J_l, so
the energy falls: every ground state has all copies equal, and the split ground states
are the original ones. The cut is read from the original nodes as their first copy's
side; ``disagreements`` counts the copies that differ from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .graph import Graph


@dataclass
class Split:
    graph: Graph                 # the split graph; original node i is split node i (c_0)
    original: Graph
    owner: np.ndarray            # owner[k]: the original node of split node k
    copies: list                 # copies[i]: split nodes of node i, c_0 first
    j_copy: np.ndarray           # coupling of each chain link (the split graph's last edges)
    max_degree: int

    @property
    def split_nodes(self) -> int:
        return int(sum(len(c) > 1 for c in self.copies))

    def assignment(self, spins) -> np.ndarray:
        """Each original node's spin: its first copy's."""
        return np.asarray(spins)[: self.original.n]

    def disagreements(self, spins) -> int:
        """Copies whose spin differs from their node's first copy."""
        s = np.asarray(spins)
        return int((s != s[self.owner]).sum())

    def cut(self, spins) -> int:
        """The original graph's cut of the read-back assignment."""
        return self.original.cut(self.assignment(spins))


def _copies_for(d: int, D: int) -> int:
    if d <= D:
        return 1
    if d <= 2 * (D - 1):
        return 2
    return 2 + -(-(d - 2 * (D - 1)) // (D - 2))


def sparsify(gr: Graph, max_degree: int) -> Split:
    """Split ``gr`` so every node has degree <= ``max_degree`` (module docstring)."""
    D = max_degree
    if isinstance(D, bool) or not isinstance(D, (int, np.integer)) or D < 3:
        raise ConfigError("max_degree", f"{D!r} is not allowed, must be an integer >= 3 "
                                        f"(an inner copy keeps two chain links)")
    deg = gr.degrees()
    m = [_copies_for(int(d), D) for d in deg]
    copies = [[i] for i in range(gr.n)]
    nxt = gr.n
    for i in range(gr.n):
        copies[i] += list(range(nxt, nxt + m[i] - 1))
        nxt += m[i] - 1
    owner = np.empty(nxt, dtype=np.int64)
    for i, cs in enumerate(copies):
        owner[cs] = i
    # capacity of each copy for original edges: ends D - 1, inner D - 2, alone D
    cap = np.zeros(nxt, dtype=np.int64)
    for cs in copies:
        if len(cs) == 1:
            cap[cs[0]] = D
        else:
            cap[cs] = D - 2
            cap[cs[0]] = cap[cs[-1]] = D - 1
    slot = [0] * gr.n                     # the copy of node i now taking edges
    held = np.zeros(nxt, dtype=np.int64)  # |w| held by each copy
    load = np.zeros(nxt, dtype=np.int64)

    def take(i: int) -> int:
        while load[copies[i][slot[i]]] >= cap[copies[i][slot[i]]]:
            slot[i] += 1
        return copies[i][slot[i]]

    edges, weights = [], []
    for (i, j), w in zip(gr.edges, gr.weights):
        a, b = take(int(i)), take(int(j))
        load[a] += 1
        load[b] += 1
        held[a] += abs(int(w))
        held[b] += abs(int(w))
        edges.append((min(a, b), max(a, b)))
        weights.append(int(w))
    links = []
    for cs in copies:
        h = held[cs]
        for l in range(len(cs) - 1):
            links.append(int(min(h[: l + 1].sum(), h[l + 1:].sum())) + 1)
            edges.append((cs[l], cs[l + 1]))
            weights.append(-links[-1])
    g = Graph(nxt, np.array(edges, dtype=np.int64).reshape(-1, 2),
              np.array(weights, dtype=np.int64), name=gr.name)
    assert int(g.degrees().max(initial=0)) <= D
    return Split(g, gr, owner, copies, np.array(links, dtype=np.int64), D)
