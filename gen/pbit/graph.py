"""Graphs for p-bit arrays: G-set/rudy reader, DSATUR colouring, random sparse graphs.

A ``Graph`` has n nodes, 0-based undirected edges (i < j, no duplicates) and integer
weights. The rudy format (G-set) is: a first line ``n m``, then m lines ``i j w`` with
1-based node numbers. Reading errors name the file, the line and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...hw.tiles.pbit import LANES_MAX_N
from ..errors import ConfigError
from ..loader import clip, read_text
from ..names import safe_name

MAX_NODES = LANES_MAX_N       # the largest p-bit tile; also bounds the dense n x n W()
MAX_WEIGHT = (1 << 31) - 1    # far beyond any J width; keeps every sum inside int64
MAX_BYTES = 64 << 20          # G-set's largest files are a few MB
_INT = re.compile(r"[+-]?[0-9]+\Z")


@dataclass
class Graph:
    n: int
    edges: np.ndarray      # (m, 2) int, i < j
    weights: np.ndarray    # (m,)
    name: str = ""

    def W(self) -> np.ndarray:
        W = np.zeros((self.n, self.n), dtype=np.int64)
        W[self.edges[:, 0], self.edges[:, 1]] = self.weights
        W[self.edges[:, 1], self.edges[:, 0]] = self.weights
        return W

    def neighbours(self) -> list[list[int]]:
        nb = [[] for _ in range(self.n)]
        for i, j in self.edges:
            nb[i].append(int(j))
            nb[j].append(int(i))
        return [sorted(r) for r in nb]

    def degrees(self) -> np.ndarray:
        return np.bincount(self.edges.ravel(), minlength=self.n)

    def cut(self, spins) -> int:
        s = np.asarray(spins)
        return int((self.weights * (s[self.edges[:, 0]] != s[self.edges[:, 1]])).sum())


def from_edges(edges, n: int | None = None, name: str = "") -> Graph:
    """A graph from ``(i, j, w)`` edges with 0-based nodes (``n``: at least max node + 1)."""
    rows = []
    for k, e in enumerate(edges):
        try:
            i, j, w = e
        except (TypeError, ValueError):
            raise ConfigError(f"graph[{k}]", f"{e!r} is not an edge, must be (i, j, w)") from None
        for v in (i, j, w):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"graph[{k}]", f"{clip(e)}: nodes and weights must be "
                                                 f"integers")
        if i < 0 or j < 0 or i >= MAX_NODES or j >= MAX_NODES:
            raise ConfigError(f"graph[{k}]", f"{clip(e)}: nodes are 0-based, must be "
                                             f"0..{MAX_NODES - 1}")
        if abs(w) > MAX_WEIGHT:
            raise ConfigError(f"graph[{k}]", f"weight {clip(w)} is not allowed, must be "
                                             f"-{MAX_WEIGHT}..{MAX_WEIGHT}")
        if i == j:
            raise ConfigError(f"graph[{k}]", f"self-loop on node {i} is not allowed")
        rows.append((min(i, j), max(i, j), w))
    size = max((b for _, b, _ in rows), default=-1) + 1
    n = size if n is None else n
    if not isinstance(n, (int, np.integer)) or n > MAX_NODES:
        raise ConfigError("graph", f"n = {clip(n)} is not allowed, must be 1..{MAX_NODES}")
    if n < max(size, 1):
        raise ConfigError("graph", f"n = {n} is too small for node {size - 1}")
    seen = set()
    for k, (a, b, _) in enumerate(rows):
        if (a, b) in seen:
            raise ConfigError(f"graph[{k}]", f"duplicate edge {a} {b}")
        seen.add((a, b))
    edges_ = np.array([(a, b) for a, b, _ in rows], dtype=np.int64).reshape(-1, 2)
    return Graph(n, edges_, np.array([w for *_, w in rows], dtype=np.int64), name=name)


def read_rudy(path) -> Graph:
    """A rudy file through the guarded loader: UTF-8, at most ``MAX_BYTES``, at most
    ``MAX_NODES`` nodes, integer weights within ``MAX_WEIGHT``; the graph is named after
    the file, sanitised to a Verilog-safe identifier."""
    path = Path(path)
    text = read_text(path, "graph file", MAX_BYTES)
    lines = [(k + 1, ln.split()) for k, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise ConfigError(str(path), "empty graph file; expected a first line 'nodes edges'")
    lineno, head = lines[0]
    if len(head) != 2 or not all(t.isascii() and t.isdigit() and len(t) < 12 for t in head):
        raise ConfigError(f"{path}:{lineno}", "first line must be 'nodes edges' "
                                              "(two non-negative integers)")
    n, m = int(head[0]), int(head[1])
    if not 1 <= n <= MAX_NODES:
        raise ConfigError(f"{path}:{lineno}", f"nodes: {n} is not allowed, must be "
                                              f"1..{MAX_NODES} (the largest p-bit tile)")
    if m > n * (n - 1) // 2:
        raise ConfigError(f"{path}:{lineno}", f"edges: {m} is not allowed, a simple graph "
                                              f"of {n} nodes has at most {n * (n - 1) // 2}")
    body = lines[1:]
    if len(body) != m:
        raise ConfigError(f"{path}:{lineno}", f"header announces {m} edges but the file "
                                              f"has {len(body)} edge lines")
    edges, weights, seen = [], [], set()
    for lineno, tok in body:
        if len(tok) != 3 or not all(_INT.match(t) and len(t) < 24 for t in tok):
            raise ConfigError(f"{path}:{lineno}", "edge line must be 'i j w' "
                                                  "(three integers)")
        i, j, w = int(tok[0]), int(tok[1]), int(tok[2])
        if abs(w) > MAX_WEIGHT:
            raise ConfigError(f"{path}:{lineno}", f"weight {w} is not allowed, must be "
                                                  f"-{MAX_WEIGHT}..{MAX_WEIGHT}")
        if not (1 <= i <= n and 1 <= j <= n):
            raise ConfigError(f"{path}:{lineno}", f"node numbers must lie in [1, {n}], "
                                                  f"got {i} {j}")
        if i == j:
            raise ConfigError(f"{path}:{lineno}", f"self-loop on node {i} is not allowed")
        a, b = min(i, j) - 1, max(i, j) - 1
        if (a, b) in seen:
            raise ConfigError(f"{path}:{lineno}", f"duplicate edge {i} {j}")
        seen.add((a, b))
        edges.append((a, b))
        weights.append(w)
    return Graph(n, np.array(edges, dtype=np.int64).reshape(-1, 2),
                 np.array(weights, dtype=np.int64), name=safe_name(path.stem, "g"))


def dsatur(neighbours) -> np.ndarray:
    """DSATUR greedy colouring (Brelaz 1979): colour the most saturated node next."""
    n = len(neighbours)
    colours = -np.ones(n, dtype=np.int64)
    sat = [set() for _ in range(n)]
    deg = np.array([len(r) for r in neighbours])
    uncoloured = set(range(n))
    while uncoloured:
        v = max(uncoloured, key=lambda u: (len(sat[u]), deg[u], -u))
        c = 0
        while c in sat[v]:
            c += 1
        colours[v] = c
        uncoloured.discard(v)
        for u in neighbours[v]:
            sat[u].add(c)
    return colours


def check_colouring(neighbours, colours, n_colours: int | None = None):
    """Raise ConfigError naming the first conflict or out-of-range colour."""
    colours = np.asarray(colours)
    if n_colours is not None and colours.max() >= n_colours:
        raise ConfigError("n_colours", f"the graph needs {int(colours.max()) + 1} colours "
                                       f"but the array schedules only {n_colours}")
    for i, row in enumerate(neighbours):
        for j in row:
            if colours[i] == colours[j]:
                raise ConfigError("colours", f"neighbours {i} and {j} share colour "
                                             f"{colours[i]}; they would update together")


def random_sparse(n: int, max_degree: int, edges: int, rng: np.random.Generator,
                  weights=(-1, 1)) -> Graph:
    """A random graph with at most ``max_degree`` per node and up to ``edges`` edges."""
    deg = np.zeros(n, dtype=np.int64)
    seen, out = set(), []
    for _ in range(edges * 20):
        if len(out) == edges:
            break
        i, j = rng.integers(0, n, 2)
        a, b = int(min(i, j)), int(max(i, j))
        if a == b or (a, b) in seen or deg[a] >= max_degree or deg[b] >= max_degree:
            continue
        seen.add((a, b))
        deg[a] += 1
        deg[b] += 1
        out.append((a, b))
    w = rng.choice(np.asarray(weights), len(out))
    return Graph(n, np.array(out, dtype=np.int64).reshape(-1, 2), w.astype(np.int64))


def colour_groups(colours) -> list[list[int]]:
    """Groups holding at most one p-bit of each colour (the k-th of every class), for
    ``PBitArray(share=...)``: members never update in the same cycle."""
    colours = np.asarray(colours)
    classes = [np.flatnonzero(colours == c).tolist() for c in range(int(colours.max()) + 1)]
    depth = max(map(len, classes))
    return [[cls[k] for cls in classes if k < len(cls)] for k in range(depth)]
