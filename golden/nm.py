"""N:M structured sparsity along K: the pattern, compression, decompression, the product.

Written from the spec (the NVIDIA 2:4 layout), never from the RTL.

Pattern. B (K x cols) is N:M sparse along K when, in every column, every group
of M consecutive rows (group g = rows [g*M, g*M + M)) holds at most N nonzeros.
K is padded with zero rows to a multiple of M: G = ceil(K / M) groups.

Compressed form. Per column, N values and N positions (the offset inside the
group, log2 M bits) per group: ``values`` and ``positions`` are (G*N) x cols,
row ``g*N + j`` being the j-th stored entry of group g ("step" g*N + j).
Positions strictly increase inside a group. The canonical compression keeps a
group's nonzeros in order of k and, when there are fewer than N, pads with zero
values at the lowest unused positions: (1, 2, 0, 0) -> values (1, 2), positions
(0, 1); (0, 0, 3, 0) -> values (0, 3), positions (0, 2); an all-zero group ->
values (0, 0), positions (0, 1).

Decompression puts every stored value at row ``g*M + position``, adding values
that share a row (only positions that do not increase can make them share), so
that it agrees with the sparse product: ``sparse_matmul`` multiplies each stored
value by A's column ``g*M + position`` (0 beyond A's K) and sums, which is what a
MAC that selects its A element by position computes, and equals ``a @
decompress(...)``.
"""

from __future__ import annotations

import numpy as np

SPARSITY = {"dense": None, "2:4": (2, 4), "4:8": (4, 8)}


def parse_sparsity(sparsity: str) -> tuple[int, int] | None:
    """``(N, M)`` of ``"N:M"``, None for ``"dense"``; ValueError naming the choices."""
    if sparsity not in SPARSITY:
        raise ValueError(f"sparsity: {sparsity!r} is not allowed, must be one of "
                         f"{', '.join(SPARSITY)}")
    return SPARSITY[sparsity]


def _columns(b, name: str) -> np.ndarray:
    b = np.asarray(b)
    if b.ndim != 2:
        raise ValueError(f"{name}: must be a 2-D matrix (K x columns), got shape {b.shape}")
    if not np.issubdtype(b.dtype, np.integer):
        raise ValueError(f"{name}: must hold integers, got dtype {b.dtype}")
    return b.astype(np.int64)


def groups(k: int, m: int) -> int:
    """[G] groups of M rows covering K rows."""
    return -(-k // m)


def _padded(b: np.ndarray, m: int) -> np.ndarray:
    k = b.shape[0]
    out = np.zeros((groups(k, m) * m, b.shape[1]), dtype=np.int64)
    out[:k] = b
    return out


def violation(b, n: int, m: int, name: str = "b") -> str | None:
    """The first group breaking N:M, column by column then along K, or None.

    E.g. ``b[:, 3] group 2 (k 8..11): 3 nonzeros, at most 2 allowed for 2:4``.
    """
    b = _columns(b, name)
    k = b.shape[0]
    counts = (_padded(b, m) != 0).reshape(-1, m, b.shape[1]).sum(axis=1)   # G x cols
    bad = np.argwhere((counts > n).T)                                       # (col, group)
    if not len(bad):
        return None
    col, grp = (int(v) for v in bad[0])
    last = min(grp * m + m, k) - 1
    return (f"{name}[:, {col}] group {grp} (k {grp * m}..{last}): {counts[grp, col]} "
            f"nonzeros, at most {n} allowed for {n}:{m}")


def compress(b, n: int, m: int, name: str = "b") -> tuple[np.ndarray, np.ndarray]:
    """The canonical ``(values, positions)`` of an N:M sparse B, each (G*N) x cols.

    ValueError (the ``violation`` message) if B breaks the pattern.
    """
    message = violation(b, n, m, name)
    if message:
        raise ValueError(message)
    b = _padded(_columns(b, name), m)
    cols = b.shape[1]
    blocks = b.reshape(-1, m, cols).transpose(0, 2, 1)      # G x cols x M
    nonzero = blocks != 0
    # Stored positions: the nonzeros, then the lowest zero positions, sorted; a stable
    # sort on "is zero" puts nonzeros first in k order and zeros after in k order.
    order = np.argsort(~nonzero, axis=2, kind="stable")[:, :, :n]
    positions = np.sort(order, axis=2)                      # G x cols x N
    values = np.take_along_axis(blocks, positions, axis=2)
    return (values.transpose(0, 2, 1).reshape(-1, cols),
            positions.transpose(0, 2, 1).reshape(-1, cols))


def _compressed(values, positions, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    values, positions = np.asarray(values, np.int64), np.asarray(positions, np.int64)
    if values.ndim != 2 or values.shape != positions.shape or values.shape[0] % n:
        raise ValueError(f"values {values.shape} and positions {positions.shape} must be "
                         f"the same (G*N) x cols shape with N = {n}")
    if positions.size and (positions.min() < 0 or positions.max() >= m):
        raise ValueError(f"positions must be in 0..{m - 1} for M = {m}")
    return values, positions


def decompress(values, positions, n: int, m: int, k: int | None = None) -> np.ndarray:
    """Dense B (k x cols, default G*M rows) with each value added at row g*M + position."""
    values, positions = _compressed(values, positions, n, m)
    steps, cols = values.shape
    g = steps // n
    rows = (np.arange(steps)[:, None] // n) * m + positions
    out = np.zeros((g * m, cols), dtype=np.int64)
    np.add.at(out, (rows, np.broadcast_to(np.arange(cols), rows.shape)), values)
    k = g * m if k is None else k
    if np.any(out[k:]):
        raise ValueError(f"stored values at rows >= k = {k}")
    return out[:k]


def well_formed(positions, n: int) -> bool:
    """Positions strictly increase inside every group of N steps (each column)."""
    p = np.asarray(positions).reshape(-1, n, *np.shape(positions)[1:])
    return bool(np.all(np.diff(p, axis=1) > 0))


def sparse_matmul(a, values, positions, n: int, m: int) -> np.ndarray:
    """A (rows x K) times the compressed B, exactly: each stored value of step t =
    g*N + j times A's column g*M + position, read as 0 at K and beyond."""
    values, positions = _compressed(values, positions, n, m)
    a = np.asarray(a, dtype=np.int64)
    steps = values.shape[0]
    g = steps // n
    a_pad = np.zeros((a.shape[0], max(g * m, a.shape[1])), dtype=np.int64)
    a_pad[:, :a.shape[1]] = a
    cols = (np.arange(steps)[:, None] // n) * m + positions         # steps x cols
    picked = a_pad[:, cols]                                          # rows x steps x cols
    return np.einsum("rtc,tc->rc", picked, values)


def prune(b, n: int, m: int) -> np.ndarray:
    """B made N:M sparse along K: in each group the N entries of largest magnitude
    stay (ties to the lower k), the rest become 0."""
    b = _columns(b, "b")
    k, cols = b.shape
    blocks = _padded(b, m).reshape(-1, m, cols)
    rank = np.argsort(np.argsort(-np.abs(blocks), axis=1, kind="stable"), axis=1,
                      kind="stable")
    return np.where(rank < n, blocks, 0).reshape(-1, cols)[:k]
