"""N:M sparse B on the host: check the pattern, compress, encode the tile's words.

``compress(b, n, m)`` checks that every group of ``m`` consecutive K-rows of every
column of B holds at most ``n`` nonzeros (K padded with zero rows to a multiple
of ``m``) and returns the compressed form: per column, ``n`` values and ``n``
positions per group, nonzeros first in k order, then zero values at the lowest
unused positions (NVIDIA's 2:4 layout). A B that breaks the pattern raises
``OperandError`` naming the first group that does, column by column and then
along K: ``b[:, 3] group 2 (k 8..11): 3 nonzeros, at most 2 allowed for 2:4``.

``block_words(values, positions, params)`` encodes one lane block's steps as the
tile's value words and metadata words with the tile's own ``data.Layout``s
(``GemmParams.b_word_layout``, ``meta_word_layout``); ``tilefab.hw.tiles.gemm``
defines the words.
"""

from __future__ import annotations

import numpy as np

from ..errors import OperandError


def compress(b: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values, positions)``, each ceil(K / m) * n x columns, of an N:M sparse B."""
    k, cols = b.shape
    g = -(-k // m)
    padded = np.zeros((g * m, cols), dtype=np.int64)
    padded[:k] = b
    groups = padded.reshape(g, m, cols)
    counts = np.count_nonzero(groups, axis=1)                   # g x cols
    if np.any(counts > n):
        col = int(np.flatnonzero((counts > n).any(axis=0))[0])
        grp = int(np.flatnonzero(counts[:, col] > n)[0])
        raise OperandError(f"b[:, {col}] group {grp} (k {grp * m}..{min(k, grp * m + m) - 1}): "
                           f"{counts[grp, col]} nonzeros, at most {n} allowed for {n}:{m}")
    values = np.zeros((g, n, cols), dtype=np.int64)
    positions = np.zeros((g, n, cols), dtype=np.int64)
    for grp in range(g):
        for col in range(cols):
            column = groups[grp, :, col]
            keep = np.flatnonzero(column)
            # Fewer than n nonzeros: zero values at the lowest positions left over.
            spare = np.setdiff1d(np.arange(m), keep)[:n - keep.size]
            chosen = np.sort(np.concatenate([keep, spare]))
            positions[grp, :, col] = chosen
            values[grp, :, col] = column[chosen]
    return values.reshape(g * n, cols), positions.reshape(g * n, cols)


def block_words(values: np.ndarray, positions: np.ndarray, params) -> tuple[list, list]:
    """The value words and metadata words of one lane block (ks steps x up to lanes
    columns), encoded with the tile's layouts; missing lanes and the steps after ks
    that fill the last words get zero values and positions 0, 1, .., N-1 a group."""
    lanes, g, T, n = params.lanes, params.rows_per_b_word, params.meta_steps, params.n
    steps, cols = values.shape
    value_words, meta_words = -(-steps // g), -(-steps // T)
    full_v = np.zeros((meta_words * T, lanes), dtype=np.int64)
    full_p = np.repeat((np.arange(meta_words * T) % n)[:, None], lanes, axis=1)
    full_v[:steps, :cols], full_p[:steps, :cols] = values, positions
    vw = [params.b_word_layout.const(full_v[i * g:(i + 1) * g].tolist()).as_bits()
          for i in range(value_words)]
    mw = [params.meta_word_layout.const(full_p[i * T:(i + 1) * T].tolist()).as_bits()
          for i in range(meta_words)]
    return vw, mw
