"""Mixture of experts with dynamic routing: gating, top-k, dispatch, combine, in integers.

Written from the spec (issue 10, item 4), never from the RTL or the runtime.

Operands. ``tokens`` X is T x D (one token per row), ``gate_w`` Wg is D x E and
``experts`` is E matrices W_e of D x O; all integers (a GEMM tile takes them in
its signed ``op_bits``).

Gating. The gate logits are the exact integer product G = X @ Wg (T x E).

Top-k. Token t goes to the ``top_k`` experts with the largest logits G[t, e],
listed in order of decreasing logit; equal logits are broken by the lowest
expert index (expert 1 before expert 3 when G[t, 1] == G[t, 3]). So
``indices[t]`` is the first k entries of the experts sorted by (-G[t, e], e);
its entries are distinct.

Dispatch. Expert e receives the tokens whose ``indices`` row holds e, in token
order: ``routes(indices, E)[e] = (token ids, k slots)``; its dense batch is
X[token ids] and its output Y_e = X[token ids] @ W_e. Expert e's load is the
number of tokens routed to it; the loads sum to T * k.

Combine. y[t, j] = X[t] @ W_{indices[t, j]} is the output of token t's j-th
expert (T x k x O). Two rules, both exact in integers (no softmax):

* ``"sum"`` (the default): out[t] = sum_j y[t, j], unweighted;
* ``"logit"``: out[t] = sum_j G[t, indices[t, j]] * y[t, j], each expert's
  output weighted by its integer gate logit (a fixed-point weighting with no
  normalisation: divide by sum_j G[t, indices[t, j]] outside if wanted).

Everything is int64; with op_bits w and D = K, |G| and |y| stay below
K * 2**(2w - 2), so ``"logit"`` needs top_k * (K * 2**(2w - 2))**2 < 2**63
(``logit_fits``), which the routing plan checks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

COMBINES = ("sum", "logit")


class MoeResult(NamedTuple):
    logits: np.ndarray        # T x E, the gate logits G
    indices: np.ndarray       # T x k, each token's experts, best first
    y: np.ndarray             # T x k x O, the per-(token, k) expert outputs
    out: np.ndarray           # T x O, combined
    load: np.ndarray          # E, tokens per expert


def gate_logits(tokens, gate_w) -> np.ndarray:
    """G = X @ Wg exactly, as int64."""
    return np.asarray(tokens, dtype=np.int64) @ np.asarray(gate_w, dtype=np.int64)


def top_k(logits, k: int) -> np.ndarray:
    """Per token (row), the k experts with the largest logits, best first; ties to the
    lowest expert index."""
    g = np.asarray(logits, dtype=np.int64)
    if g.ndim != 2:
        raise ValueError(f"logits: must be T x E, got shape {g.shape}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= g.shape[1]:
        raise ValueError(f"top_k: {k!r} is not allowed, must be 1..{g.shape[1]} (the number "
                         f"of experts)")
    # A stable sort of -G keeps equal logits in increasing expert order.
    return np.argsort(-g, axis=1, kind="stable")[:, :k].astype(np.int64)


def routes(indices, n_experts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per expert: (token ids, k slots) of the tokens routed to it, in token order."""
    idx = np.asarray(indices, dtype=np.int64)
    out = []
    for e in range(n_experts):
        t, j = np.nonzero(idx == e)          # row-major: token order
        out.append((t.astype(np.int64), j.astype(np.int64)))
    return out


def expert_load(indices, n_experts: int) -> np.ndarray:
    """Tokens per expert."""
    return np.bincount(np.asarray(indices, dtype=np.int64).reshape(-1),
                       minlength=n_experts).astype(np.int64)


def expert_outputs(tokens, experts, indices) -> np.ndarray:
    """y[t, j] = X[t] @ W_{indices[t, j]} (T x k x O)."""
    x = np.asarray(tokens, dtype=np.int64)
    w = np.asarray(experts, dtype=np.int64)
    idx = np.asarray(indices, dtype=np.int64)
    return np.einsum("td,tjdo->tjo", x, w[idx])


def combine(y, logits, indices, rule: str = "sum") -> np.ndarray:
    """out[t] from the per-(token, k) outputs by ``rule`` (module docstring)."""
    y = np.asarray(y, dtype=np.int64)
    if rule == "sum":
        return y.sum(axis=1)
    if rule == "logit":
        g = np.take_along_axis(np.asarray(logits, dtype=np.int64),
                               np.asarray(indices, dtype=np.int64), axis=1)
        return (g[:, :, None] * y).sum(axis=1)
    raise ValueError(f"combine: {rule!r} is not allowed, must be one of {', '.join(COMBINES)}")


def logit_fits(k: int, op_bits: int, top: int) -> bool:
    """Whether the ``"logit"`` combine of ``top`` experts stays inside int64."""
    bound = k * (1 << (2 * op_bits - 2))
    return top * bound * bound < 1 << 63


def moe(tokens, gate_w, experts, k: int, rule: str = "sum") -> MoeResult:
    """The whole layer: gating, top-k, dispatch (by token), combine."""
    logits = gate_logits(tokens, gate_w)
    indices = top_k(logits, k)
    y = expert_outputs(tokens, experts, indices)
    return MoeResult(logits, indices, y, combine(y, logits, indices, rule),
                     expert_load(indices, logits.shape[1]))
