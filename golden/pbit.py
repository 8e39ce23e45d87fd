"""p-bit Ising machine: bit-exact fixed-point model, ideal Gibbs sampler, exact Boltzmann.

Maths (DESIGN.md, REFERENCES.md). Spins m_i in {-1, +1}; local field
F_i = sum_j J_ij m_j + h_i; energy E(m) = -(1/2 m^T J m + h^T m) with J symmetric and
zero on the diagonal; the Boltzmann distribution is P(m) ~ exp(-beta E(m)). A Gibbs
update of p-bit i sets m_i = +1 with probability (1 + tanh(beta F_i)) / 2, i.e.
m_i = sgn(tanh(beta F_i) - r), r uniform in (-1, 1). Flipping m_i changes the energy by
2 m_i F_i (old m_i). Max-Cut: J = -W, h = 0, cut = (sum W - ... ) see ``cut_value``.

Fixed point (``PBitFormat``):
  * J_ij: signed ``w_bits`` integers, value J_q * 2^-w_frac; h_i: signed ``h_bits``
    integers with the same ``w_frac``, so F_q = sum J_q m + h_q exactly (no saturation:
    the hardware field is wide enough for every reachable value).
  * beta: unsigned ``beta_bits`` integer, value beta_q * 2^-beta_frac.
  * tanh table: ``lut_size`` entries, step 2^-lut_step_frac;
    T[k] = round(tanh(k * 2^-lut_step_frac) * 2^(rand_bits-1)).
    Index k = round-half-up(beta_q |F_q| / 2^s), s = beta_frac + w_frac - lut_step_frac;
    k >= lut_size saturates to T = 2^(rand_bits-1) (tanh = 1).
  * Random draw: one xorshift32 generator per p-bit (13, 17, 5), advanced once per
    update of that p-bit; u = top ``rand_bits`` bits of the new state.
    m_i = +1 iff u < 2^(rand_bits-1) + T  (F >= 0)  or  u < 2^(rand_bits-1) - T  (F < 0),
    so P(+1) = 1/2 + sign(F) T / 2^rand_bits exactly.
  * Quantile rule (``z_bits`` > 0, parallel array only). The draw is turned into a
    threshold on the field: m_i = +1 iff F_q > T, T = (Q[v] R(beta_q)) >> sh, with
      v     the top ``z_bits`` bits of u,
      Q[v]  = round(atanh((2v + 1) 2^-z_bits - 1) 2^QUANTILE_FRAC) (the quantile of
              the logistic law at the centre of bin v),
      R(b)  = round(2^RECIP_BITS / b) for b >= 1, R(0) = 2^(RECIP_BITS+1),
      sh    = RECIP_BITS + QUANTILE_FRAC - beta_frac - w_frac (a left shift if < 0).
    Ideally m_i = +1 iff beta F >= atanh(2U - 1) for U uniform, P = (1 + tanh beta F)/2;
    here P(+1) = #{v : T_v < F_q} / 2^z_bits, the Gibbs probability rounded to bins of
    2^-z_bits, with the quotient by beta taken through the rounded reciprocal. T does
    not depend on the field, so hardware computes it for a p-bit's next update while
    the current one is made (``PBitArray``) and an update is one comparison.

Schedule: colour classes update in order 0..n_colours-1 (one class per cycle; one
sweep is n_colours cycles); frozen p-bits (clamped) never update. A run is a list of
(beta_q, sweeps) entries. Energy is tracked incrementally (exact integers in units of
2^-w_frac) and the best energy/state is kept after every update cycle, keeping the
first state that reaches a new strict minimum.

Timing. The fully parallel array (``PBitArray``) spends one cycle per colour class,
two cycles on the energy at the start of a run and two at its end, while the last
update's energy and best state settle (``PARALLEL_RUN_OVERHEAD``), plus 2L, L =
``energy_stages(n)``: the energy tree is registered every two adder levels, so its sum
arrives L cycles later at the start and at the end. Under the quantile rule a run of C
classes starts max(0, C - 2 - L) cycles later (the first thresholds are made one class
per cycle from the run's first cycle), and a one-class run waits one cycle between
sweeps. The lane array (``PBitLanes``, model:
``PBitMachine(..., lanes=P)``) makes the same decisions in the same order (p-bits of one
colour share no edge, so the order within a class is immaterial) but reads one edge
per lane per cycle: p-bit i sits in lane i mod P and costs e_i = max(1, nonzero J_ij)
edge cycles; a class costs max_l sum of e_i over its unclamped p-bits in lane l, plus
``LANE_PASS_OVERHEAD`` cycles (end detection, pipeline drain, energy/best update), and
a run starts with an energy pass over all p-bits (max_l sum of e_i in lane l + the same
overhead).

Incremental fields (``PBitMachine(..., lanes=P, fields="incremental")``, model of
``PBitLanes(fields="incremental")``): every p-bit keeps F_i; a class decides from the
stored fields, then each flip of p-bit i adds 2 J_ij m_i(new) to every neighbour's F_j.
The edge memories hold, for every p-bit i, r_i = max_d |{j : J_ij != 0, j mod P = d}|
rows (``lane_rows``; lane d's row k is i's k-th neighbour in lane d, or padding), and
all lanes apply one row of one flipped p-bit per cycle. A class costs
max_l (its unclamped p-bits in lane l) + sum of r_i over its flips +
``FIELD_PASS_OVERHEAD``; a run starts with h into every field, a walk of all rows
(R = sum r_i) and an energy pass: 2 ceil(n/P) + R + ``FIELD_INIT_OVERHEAD``. Colour
c+1 decides only after colour c's last field write, so the decisions are those of the
recomputing array given the same field, and the spins do not depend on ``fields``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

MASK32 = np.uint32(0xFFFFFFFF)
LANE_PASS_OVERHEAD = 6
PARALLEL_RUN_OVERHEAD = 4
FIELD_PASS_OVERHEAD = 6      # decide: end + 2 drain; updates: end + 1 drain; boundary
FIELD_INIT_OVERHEAD = 8      # h pass end, row walk end + 2 drain, energy pass end + 2 drain, done
FIELD_MODES = ("recompute", "incremental")


def energy_stages(n: int) -> int:
    """L of an n-p-bit parallel array: its n energy terms are summed in groups of 4 into
    registers until at most 4 values are left."""
    stages = 0
    while n > 4:
        n = -(-n // 4)
        stages += 1
    return stages


def lane_rows(J, lanes: int) -> np.ndarray:
    """Rows r_i of p-bit i in every lane's edge memory with incremental fields: the most
    neighbours of i that any one lane (j mod lanes) holds; 0 for an uncoupled p-bit."""
    nz = np.asarray(J) != 0
    n = nz.shape[0]
    lane = np.arange(n) % lanes
    per = np.zeros((n, lanes), dtype=np.int64)
    for d in range(lanes):
        per[:, d] = nz[:, lane == d].sum(axis=1)
    return per.max(axis=1, initial=0)


# -- PRNG -------------------------------------------------------------------------------

def xorshift32(x):
    """Marsaglia's xorshift32 (13, 17, 5) on a uint32 array (or scalar)."""
    x = np.asarray(x, dtype=np.uint32)
    x = x ^ (x << np.uint32(13))
    x = x ^ (x >> np.uint32(17))
    x = x ^ (x << np.uint32(5))
    return x


def pbit_seeds(seed: int, n: int) -> list[int]:
    """Distinct non-zero 32-bit seeds for ``n`` p-bits, derived with splitmix64."""
    out, seen = [], set()
    state = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & (2**64 - 1)
    while len(out) < n:
        state = (state + 0x9E3779B97F4A7C15) & (2**64 - 1)
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        z ^= z >> 31
        s = z & 0xFFFFFFFF
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out


# -- fixed-point format -----------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _tanh_lut(lut_size: int, lut_step_frac: int, rand_bits: int) -> np.ndarray:
    """T[k] = floor(tanh(k 2^-lut_step_frac) 2^(rand_bits-1) + 1/2), read-only."""
    t = np.array([int(math.floor(math.tanh(k * 2.0 ** -lut_step_frac) * 2 ** (rand_bits - 1)
                                 + 0.5)) for k in range(lut_size)], dtype=np.int64)
    t.flags.writeable = False
    return t


@dataclass(frozen=True)
class PBitFormat:
    w_bits: int = 8
    w_frac: int = 0
    h_bits: int = 10
    beta_bits: int = 8
    beta_frac: int = 4
    lut_size: int = 64
    lut_step_frac: int = 3
    rand_bits: int = 16
    z_bits: int = 0

    @property
    def shift(self) -> int:
        return self.beta_frac + self.w_frac - self.lut_step_frac

    def lut(self) -> np.ndarray:
        return _tanh_lut(self.lut_size, self.lut_step_frac, self.rand_bits).copy()

    def w_range(self) -> tuple[int, int]:
        return -(1 << (self.w_bits - 1)), (1 << (self.w_bits - 1)) - 1

    def h_range(self) -> tuple[int, int]:
        return -(1 << (self.h_bits - 1)), (1 << (self.h_bits - 1)) - 1

    def beta_value(self, beta_q) -> float:
        return beta_q * 2.0 ** -self.beta_frac

    def beta_code(self, beta: float) -> int:
        q = int(round(beta * 2 ** self.beta_frac))
        return min(max(q, 0), (1 << self.beta_bits) - 1)

    def quantiles(self) -> np.ndarray:
        """The quantile rule's table Q[v] (``z_bits`` > 0)."""
        return _quantiles(self.z_bits).copy()

    def field_threshold(self, beta_q: int, v) -> np.ndarray:
        """The quantile rule's T for bins ``v`` at ``beta_q``: m = +1 iff F_q > T."""
        prod = _quantiles(self.z_bits)[np.asarray(v, dtype=np.int64)] * recip(int(beta_q))
        sh = RECIP_BITS + QUANTILE_FRAC - self.beta_frac - self.w_frac
        return prod >> sh if sh >= 0 else prod << -sh

    def threshold(self, beta_q: int, f_q) -> np.ndarray:
        """T for each field value: the table entry, or 2^(rand_bits-1) when saturated."""
        p = np.abs(np.asarray(f_q, dtype=np.int64)) * int(beta_q)
        s = self.shift
        if s > 0:
            k = (p + (1 << (s - 1))) >> s
        else:
            k = p << (-s)
        lut = _tanh_lut(self.lut_size, self.lut_step_frac, self.rand_bits)
        sat = k >= self.lut_size
        t = np.where(sat, 1 << (self.rand_bits - 1), lut[np.minimum(k, self.lut_size - 1)])
        return t

    def p_up(self, beta_q: int, f_q) -> np.ndarray:
        """Exact probability that the fixed-point p-bit goes to +1."""
        if self.z_bits:
            t = self.field_threshold(beta_q, np.arange(1 << self.z_bits))   # increasing
            f = np.asarray(f_q, dtype=np.int64)
            return np.searchsorted(t, f, side="left") / 2.0 ** self.z_bits
        t = self.threshold(beta_q, f_q)
        sgn = np.where(np.asarray(f_q) >= 0, 1, -1)
        return 0.5 + sgn * t / 2.0 ** self.rand_bits


QUANTILE_FRAC = 10      # fraction bits of the quantile table Q
RECIP_BITS = 16         # R(b) = round(2^RECIP_BITS / b)


@functools.lru_cache(maxsize=64)
def _quantiles(z_bits: int) -> np.ndarray:
    q = np.array([math.floor(math.atanh((2 * v + 1) * 2.0 ** -z_bits - 1)
                             * 2 ** QUANTILE_FRAC + 0.5) for v in range(1 << z_bits)],
                 dtype=np.int64)
    q.flags.writeable = False
    return q


def recip(beta_q: int) -> int:
    """R(beta_q) = round(2^RECIP_BITS / beta_q) (half up); R(0) = 2^(RECIP_BITS + 1)."""
    if beta_q == 0:
        return 1 << (RECIP_BITS + 1)
    return ((1 << (RECIP_BITS + 1)) + beta_q) // (2 * beta_q)


# -- energies ---------------------------------------------------------------------------

def energy(J, h, m) -> float:
    """E(m) = -(1/2 m^T J m + h^T m) for float or integer J, h; m in {-1, +1}."""
    m = np.asarray(m)
    return -(0.5 * m @ np.asarray(J) @ m + np.asarray(h) @ m)


def energy_int(J_q, h_q, m) -> int:
    """Exact integer energy in units of 2^-w_frac (J symmetric, zero diagonal)."""
    m = np.asarray(m, dtype=np.int64)
    quad = int(m @ (np.asarray(J_q, dtype=np.int64) @ m))
    assert quad % 2 == 0, "J must be symmetric with a zero diagonal"
    return -(quad // 2 + int(np.asarray(h_q, dtype=np.int64) @ m))


def cut_value(W, m) -> float:
    """Max-Cut value sum_{i<j} W_ij (1 - m_i m_j) / 2 for a symmetric weight matrix W."""
    m = np.asarray(m, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    return float((W.sum() - m @ W @ m) / 4.0)


def all_states(n: int) -> np.ndarray:
    """All 2^n spin vectors; row index = sum_i (m_i == +1) << i."""
    idx = np.arange(1 << n)
    return np.where((idx[:, None] >> np.arange(n)) & 1, 1, -1).astype(np.int64)


def state_index(m) -> np.ndarray:
    m = np.atleast_2d(np.asarray(m))
    return ((m > 0).astype(np.int64) << np.arange(m.shape[1])).sum(axis=1)


def boltzmann(J, h, beta: float) -> np.ndarray:
    """Exact Boltzmann distribution over ``all_states(n)`` by enumeration."""
    J, h = np.asarray(J, dtype=np.float64), np.asarray(h, dtype=np.float64)
    S = all_states(len(h)).astype(np.float64)
    E = -(0.5 * np.einsum("si,ij,sj->s", S, J, S) + S @ h)
    w = np.exp(-beta * (E - E.min()))
    return w / w.sum()


def sweep_matrix(fmt: PBitFormat, J_q, h_q, beta_q: int, colours, frozen=None,
                 n_colours: int | None = None) -> np.ndarray:
    """Exact one-sweep transition matrix of the fixed-point chain over ``all_states``.

    Built from the exact per-p-bit probabilities ``fmt.p_up``; only for small n.
    """
    J_q, h_q = np.asarray(J_q, dtype=np.int64), np.asarray(h_q, dtype=np.int64)
    n = len(h_q)
    colours = np.asarray(colours)
    frozen = np.zeros(n, bool) if frozen is None else np.asarray(frozen, bool)
    C = int(colours.max()) + 1 if n_colours is None else n_colours
    S = all_states(n)
    P = np.eye(1 << n)
    for c in range(C):
        members = np.flatnonzero((colours == c) & ~frozen)
        if len(members) == 0:
            continue
        F = S @ J_q.T + h_q
        pu = fmt.p_up(beta_q, F[:, members])
        T = np.zeros((1 << n, 1 << n))
        for combo in range(1 << len(members)):
            # colour-class members share no edge, so they update independently
            up = ((combo >> np.arange(len(members))) & 1).astype(bool)
            pr = np.prod(np.where(up, pu, 1.0 - pu), axis=1)
            new = S.copy()
            new[:, members] = np.where(up, 1, -1)
            np.add.at(T, (np.arange(1 << n), state_index(new)), pr)
        P = P @ T
    return P


def stationary(P) -> tuple[np.ndarray, float]:
    """Stationary vector of a transition matrix and its second eigenvalue modulus."""
    w, v = np.linalg.eig(P.T)
    order = np.argsort(-np.abs(w))
    pi = np.real(v[:, order[0]])
    lam2 = float(np.abs(w[order[1]])) if len(w) > 1 else 0.0
    return pi / pi.sum(), lam2


def tv_distance(p, q) -> float:
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def tv_bound(p, n_samples: int, lam: float = 0.0, z: float = 4.0) -> float:
    """Acceptance bound for TV(empirical, p) after ``n_samples`` draws.

    Independent draws: E|p_hat_i - p_i| <= sqrt(p_i (1 - p_i) / n), so
    E[TV] <= mu = 1/2 sum_i sqrt(p_i (1 - p_i) / n); TV has bounded differences 1/n,
    so McDiarmid gives P(TV > mu + t) <= exp(-2 n t^2); t = z / sqrt(2 n) makes the
    false-alarm probability exp(-z^2) (z = 4: 1e-7). Draws from a Markov chain whose
    correlations decay as lam^lag (lam: second eigenvalue modulus of the transition
    matrix between draws) carry the information of n_eff = n (1 - lam) / (1 + lam)
    independent draws (the variance inflation of a geometric autocorrelation).
    """
    p = np.asarray(p, dtype=np.float64)
    n = n_samples * (1.0 - lam) / (1.0 + lam)
    mu = 0.5 * float(np.sqrt(p * (1 - p) / n).sum())
    return mu + z / math.sqrt(2 * n)


# -- ideal float sampler ----------------------------------------------------------------

def gibbs_ideal(J, h, beta, sweeps: int, colours, rng: np.random.Generator, state=None,
                frozen=None, sample_every: int = 1):
    """Float Gibbs sampler, colour class by colour class (exact tanh, float uniforms).

    ``beta`` is a float or a per-sweep sequence. Returns (samples, final_state); a
    sample is taken after every ``sample_every``-th sweep.
    """
    J, h = np.asarray(J, dtype=np.float64), np.asarray(h, dtype=np.float64)
    n = len(h)
    colours = np.asarray(colours)
    frozen = np.zeros(n, bool) if frozen is None else np.asarray(frozen, bool)
    m = (rng.integers(0, 2, n) * 2 - 1).astype(np.float64) if state is None \
        else np.asarray(state, dtype=np.float64).copy()
    classes = [np.flatnonzero((colours == c) & ~frozen) for c in range(int(colours.max()) + 1)]
    betas = np.broadcast_to(np.asarray(beta, dtype=np.float64), (sweeps,))
    samples = []
    for sw in range(sweeps):
        for idx in classes:
            if len(idx) == 0:
                continue
            F = J[idx] @ m + h[idx]
            r = rng.uniform(-1.0, 1.0, len(idx))
            m[idx] = np.where(np.tanh(betas[sw] * F) > r, 1.0, -1.0)
        if (sw + 1) % sample_every == 0:
            samples.append(m.copy())
    return np.array(samples), m


# -- bit-exact machine ------------------------------------------------------------------

@dataclass
class RunResult:
    samples: list = field(default_factory=list)      # (state int8 array, energy int)
    state: np.ndarray | None = None
    energy: int = 0
    best_state: np.ndarray | None = None
    best_energy: int = 0
    update_cycles: int = 0
    updates: int = 0
    flips: int = 0                       # decisions that changed a spin
    sweep_energy: list = field(default_factory=list)  # energy after every sweep
    energy_cycles: int = 1               # energy pass at the start (and pipeline drain)

    @property
    def cycles(self) -> int:
        """Run cycles without output stalls: energy pass and drain plus the update cycles."""
        return self.energy_cycles + self.update_cycles


class _Rows:
    """Rows of J kept as (column, value) lists, so a sparse field costs O(edges)."""

    def __init__(self, dense: np.ndarray):
        r, c = np.nonzero(dense)
        self.cols, self.vals = c, dense[r, c]
        self.starts = np.searchsorted(r, np.arange(dense.shape[0]))
        self.rows = dense.shape[0]
        self.empty = np.bincount(r, minlength=self.rows) == 0

    def __matmul__(self, m):
        # A trailing zero keeps every start a valid index; reduceat gives an empty row
        # the element at its start, so empty rows are masked afterwards.
        prod = np.append(self.vals * m[self.cols], 0.0)
        return np.where(self.empty, 0.0, np.add.reduceat(prod, self.starts))


class PBitMachine:
    """Bit-exact model of the colour-sequential fixed-point p-bit array.

    ``J_q`` is an integer matrix (symmetric, zero diagonal) -- dense numpy or any object
    with ``@`` and row slicing; ``h_q`` integers; ``colours`` one colour per p-bit;
    ``frozen`` marks clamped p-bits; ``state`` the initial spins; ``seeds`` one
    non-zero 32-bit seed per p-bit. The machine keeps its state and PRNG states between
    runs, as the hardware does. ``lanes`` selects the cycle model of ``PBitLanes`` with
    that many lanes (None: the fully parallel ``PBitArray``) and ``fields`` that lane
    array's field mode: ``recompute`` sums every field from J every sweep,
    ``incremental`` keeps them in ``F`` (computed at the start of a run, then updated by
    every flip); the spins depend on neither.
    """

    def __init__(self, fmt: PBitFormat, J_q, h_q, colours, seeds, state=None, frozen=None,
                 lanes: int | None = None, fields: str = "recompute"):
        self.fmt = fmt
        self.J = np.asarray(J_q, dtype=np.float64)   # exact: |values| << 2^53
        self.h = np.asarray(h_q, dtype=np.int64)
        n = len(self.h)
        self.n = n
        lo, hi = fmt.w_range()
        if self.J.min(initial=0) < lo or self.J.max(initial=0) > hi:
            raise ValueError(f"J: values must lie in [{lo}, {hi}] for w_bits={fmt.w_bits}")
        lo, hi = fmt.h_range()
        if self.h.min(initial=0) < lo or self.h.max(initial=0) > hi:
            raise ValueError(f"h: values must lie in [{lo}, {hi}] for h_bits={fmt.h_bits}")
        self.colours = np.asarray(colours, dtype=np.int64)
        self.frozen = np.zeros(n, bool) if frozen is None else np.asarray(frozen, bool)
        self.rng = np.asarray(seeds, dtype=np.uint32).copy()
        if len(self.rng) != n or np.any(self.rng == 0):
            raise ValueError("seeds: need one non-zero 32-bit seed per p-bit")
        self.m = np.ones(n, dtype=np.int64) if state is None \
            else np.asarray(state, dtype=np.int64).copy()
        self._lut = fmt.lut()
        if lanes is not None and (not isinstance(lanes, int) or lanes < 1):
            raise ValueError(f"lanes must be a positive integer or None, not {lanes!r}")
        self.lanes = lanes
        if fields not in FIELD_MODES:
            raise ValueError(f"fields must be one of {', '.join(FIELD_MODES)}, not {fields!r}")
        if fields == "incremental" and lanes is None:
            raise ValueError("fields: incremental is a mode of the lane array; give lanes")
        self.fields_mode = fields
        self.F = None          # incremental: the stored fields, set at the start of a run
        self.flips = 0         # flips of the current (or last) run
        self.rows = lane_rows(self.J, lanes) if fields == "incremental" else None

    def lane_costs(self, classes) -> tuple[int, list[int]]:
        """(energy-pass cycles, cycles per class) of the lane array for ``classes``; with
        incremental fields a class also costs the rows of its flips (``rows``)."""
        if self.lanes is None:
            L = energy_stages(self.n)
            # the quantile rule makes a run's first thresholds one class per cycle,
            # 2 + L of them during the energy cycles
            prep = max(0, len(classes) - 2 - L) if self.fmt.z_bits else 0
            return PARALLEL_RUN_OVERHEAD + 2 * L + prep, [1] * len(classes)
        P = self.lanes
        if self.fields_mode == "incremental":
            lane = np.arange(self.n) % P
            decide = [int(np.bincount(lane[idx], minlength=P).max()) for idx in classes]
            return (2 * -(-self.n // P) + int(self.rows.sum()) + FIELD_INIT_OVERHEAD,
                    [d + FIELD_PASS_OVERHEAD for d in decide])
        entries = np.maximum(1, (self.J != 0).sum(axis=1))
        lane = np.arange(self.n) % P

        def pass_cost(idx):
            return int(np.bincount(lane[idx], weights=entries[idx], minlength=P).max()) \
                + LANE_PASS_OVERHEAD

        return pass_cost(np.arange(self.n)), [pass_cost(idx) for idx in classes]

    def fields(self, idx=None) -> np.ndarray:
        J = self.J if idx is None else self.J[idx]
        h = self.h if idx is None else self.h[idx]
        return np.rint(J @ self.m).astype(np.int64) + h

    def energy(self) -> int:
        quad = int(np.rint(self.m @ (self.J @ self.m)))
        return -(quad // 2 + int(self.h @ self.m))

    def _update(self, idx, beta_q: int, rows=None) -> int:
        """One update cycle for p-bits ``idx``; returns the energy change."""
        F = self.fields(idx) if rows is None else np.rint(rows @ self.m).astype(np.int64) \
            + self.h[idx]
        return self._decide(idx, beta_q, F)[0]

    def _update_stored(self, idx, beta_q: int) -> tuple[int, int]:
        """One class from the stored fields, then the flips' field updates; returns the
        energy change and the rows the lanes walk for the flips."""
        dE, flipped = self._decide(idx, beta_q, self.F[idx])
        f = idx[flipped]
        if len(f):
            self.F += np.rint(self.J[f].T @ (2 * self.m[f])).astype(np.int64)
        return dE, int(self.rows[f].sum())

    def _decide(self, idx, beta_q: int, F) -> tuple[int, np.ndarray]:
        """Decisions of p-bits ``idx`` from fields ``F``: (energy change, flipped mask)."""
        fmt = self.fmt
        self.rng[idx] = xorshift32(self.rng[idx])
        u = (self.rng[idx] >> np.uint32(32 - fmt.rand_bits)).astype(np.int64)
        if fmt.z_bits:
            up = F > fmt.field_threshold(beta_q, u >> (fmt.rand_bits - fmt.z_bits))
        else:
            t = fmt.threshold(beta_q, F)
            half = 1 << (fmt.rand_bits - 1)
            up = np.where(F >= 0, u < half + t, u < half - t)
        new = np.where(up, 1, -1)
        old = self.m[idx]
        flipped = new != old
        dE = int((2 * old * F)[flipped].sum())
        self.m[idx] = new
        self.flips += int(flipped.sum())
        return dE, flipped

    def run(self, schedule, n_colours: int | None = None, sample_every: int = 0,
            track_sweeps: bool = False) -> RunResult:
        """Run the (beta_q, sweeps) schedule; see the module docstring for the order."""
        C = int(self.colours.max()) + 1 if n_colours is None else n_colours
        classes = [np.flatnonzero((self.colours == c) & ~self.frozen) for c in range(C)]
        rows = [None if self.fields_mode == "incremental" else _Rows(self.J[idx])
                for idx in classes]      # gathered once, not every cycle
        res = RunResult()
        res.energy_cycles, costs = self.lane_costs(classes)
        stored = self.fields_mode == "incremental"
        if stored:
            self.F = self.fields()         # the run's first walk of every row
        self.flips = 0
        E = self.energy()
        best_E, best_m = E, self.m.copy()
        since_sample = 0
        swept = 0
        for beta_q, sweeps in schedule:
            swept += sweeps
            for _ in range(sweeps):
                for idx, J_rows, cost in zip(classes, rows, costs):
                    res.update_cycles += cost
                    res.updates += len(idx)
                    if len(idx) and stored:
                        dE, walked = self._update_stored(idx, beta_q)
                        E += dE
                        res.update_cycles += walked
                    elif len(idx):
                        E += self._update(idx, beta_q, J_rows)
                    if E < best_E:
                        best_E, best_m = E, self.m.copy()
                if track_sweeps:
                    res.sweep_energy.append(E)
                if sample_every:
                    since_sample += 1
                    if since_sample == sample_every:
                        since_sample = 0
                        res.samples.append((self.m.copy(), E))
        if self.fmt.z_bits and self.lanes is None and C == 1:
            # one class: a cycle between updates, while the next thresholds are made
            res.energy_cycles += max(0, swept - 1)
        res.state, res.energy = self.m.copy(), E
        res.best_state, res.best_energy = best_m, best_E
        res.flips = self.flips
        return res
