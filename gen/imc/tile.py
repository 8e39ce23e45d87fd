"""Host side of the crossbar tile protocol: an MVM ``y = w @ x`` as packets, and back.

``plan_mvm(tiles, w, x, seed=...)`` maps the operands to the tiles' integer
ranges, cuts the ``(m, k)`` matrix into blocks of ``rows`` inputs by ``cols``
outputs (zero padded) and makes each block a job on one tile: job ``n`` runs on
tile ``n % len(tiles)`` in pass ``n // len(tiles)`` (a later pass reprograms the
tile), blocks in order of output block then input block. A job's requests are
``WRITE SEED``, ``rows * cols`` ``WRITE PROG`` (row-major, row = input) and, per
input vector, its X words and an ``EXEC`` whose tag is the vector's index. The
runtime sends them in order and collects, per job, the data of its REPLY flits;
``plan.assemble`` sums the partial outputs over the input blocks.

Noise seeds: job ``n`` reseeds its tile with ``(seed + n * 0x9E3779B9) mod 2**32``,
so every block draws its own noise and ``golden_outputs`` predicts every bit.

Words are packed and unpacked with the layouts the tile declares
(``CrossbarTileParams.x_layout``, ``prog_layout``, ``seed_layout``,
``result_layout``), never with shifts of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...golden.imc import CrossbarModel, CrossbarParams, estimate, map_inputs, map_weights
from ...golden.packet import Op
from ...hw.tiles.crossbar import PROG_ADDR, SEED_ADDR, X_BASE, CrossbarTileParams
from ..errors import ConfigError, TilefabError
from .energy import energy_per_mvm

SEED_STRIDE = 0x9E3779B9


@dataclass
class Job:
    """One block of the matrix on one tile."""
    tile: tuple                 # (x, y) of the tile
    block: tuple                # (output block, input block)
    seed: int                   # noise seed written first
    weights: np.ndarray         # (rows, cols) integers as programmed, row = input
    inputs: np.ndarray          # (vectors, rows) integers
    requests: list              # [(op, addr, data), ...] in order
    expected: tuple             # (REPLY flits, DONE flits) the tile sends back
    tags: list                  # EXEC tag of each vector, in order


@dataclass
class MvmResult:
    y: np.ndarray               # integer outputs, (m,) or (batch, m)
    estimate: np.ndarray        # float outputs in units of w @ x


@dataclass
class MvmPlan:
    params: CrossbarTileParams
    jobs: list
    shape: tuple                # (m, k)
    batch: int
    vector: bool                # x was one vector: outputs have shape (m,)
    w_scale: float              # units of w per integer weight
    x_scale: float              # units of x per integer input
    passes: int
    w_int: np.ndarray = field(repr=False, default=None)
    x_int: np.ndarray = field(repr=False, default=None)

    def decode(self, job: Job, words) -> np.ndarray:
        """A job's REPLY data words (or REPLY packets) as its outputs (vectors, cols)."""
        p = self.params
        words = list(words)
        if words and hasattr(words[0], "op"):
            words = [w.data for w in words if w.op == Op.REPLY]
        n_vec = len(job.inputs)
        F, R = p.flits_per_vector, p.results_per_flit
        if len(words) != n_vec * F:
            raise TilefabError(f"job {job.block} on tile {job.tile}: {len(words)} REPLY "
                               f"flits, expected {n_vec * F} ({n_vec} vectors x {F})")
        out = np.zeros((n_vec, p.cols), dtype=np.int64)
        for v in range(n_vec):
            for f in range(F):
                word = p.result_layout.from_bits(int(words[v * F + f]))
                for r in range(min(R, p.cols - f * R)):
                    out[v, f * R + r] = word[f"r{r}"]
        return out

    def assemble(self, replies_per_job) -> MvmResult:
        """Integer outputs summed over input blocks, and their estimate in units of w @ x."""
        p = self.params
        if len(replies_per_job) != len(self.jobs):
            raise TilefabError(f"{len(replies_per_job)} reply lists for {len(self.jobs)} jobs")
        m = self.shape[0]
        mb = -(-m // p.cols)
        y = np.zeros((self.batch, mb * p.cols), dtype=np.int64)
        est = np.zeros((self.batch, mb * p.cols))
        scale = self.w_scale * self.x_scale
        for job, words in zip(self.jobs, replies_per_job):
            part = self.decode(job, words)
            cols = slice(job.block[0] * p.cols, (job.block[0] + 1) * p.cols)
            y[:, cols] += part
            est[:, cols] += estimate(golden_params(p), part) * scale
        y, est = y[:, :m], est[:, :m]
        if self.vector:
            y, est = y[0], est[0]
        return MvmResult(y=y, estimate=est)


def golden_params(p: CrossbarTileParams) -> CrossbarParams:
    """The golden model's parameters of a crossbar tile's array (the block's integers)."""
    return CrossbarParams(**p.block)


def _operand(name: str, a, ndims: tuple, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise ConfigError(name, f"must be {what} of numbers, not of {a.dtype}")
    if a.ndim not in ndims:
        raise ConfigError(name, f"must be {what}, not {a.ndim}-D with shape {a.shape}")
    if a.size == 0:
        raise ConfigError(name, f"must be {what} with at least one element, not shape "
                                f"{a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ConfigError(name, "must hold finite numbers, found NaN or infinity")
    return a


def _integers_within(a: np.ndarray, lo: int, hi: int) -> bool:
    return a.dtype.kind in "iu" and int(a.min()) >= lo and int(a.max()) <= hi


def _check_tiles(tiles) -> CrossbarTileParams:
    if not isinstance(tiles, (list, tuple)) or not tiles:
        raise ConfigError("tiles", "must be a non-empty list of ((x, y), CrossbarTileParams)")
    first = None
    seen = set()
    for n, item in enumerate(tiles):
        try:
            (tx, ty), params = item
        except (TypeError, ValueError):
            raise ConfigError(f"tiles[{n}]", f"must be ((x, y), CrossbarTileParams), "
                                             f"not {item!r}") from None
        if not isinstance(params, CrossbarTileParams):
            raise ConfigError(f"tiles[{n}]", f"must hold a CrossbarTileParams, not "
                                             f"{type(params).__name__}")
        if (tx, ty) in seen:
            raise ConfigError(f"tiles[{n}]", f"tile {(tx, ty)} is listed twice")
        seen.add((tx, ty))
        if first is None:
            first = params
        elif params != first:
            raise ConfigError(f"tiles[{n}]", f"every crossbar tile of one MVM must have the "
                                             f"same parameters; {params!r} differs from "
                                             f"{first!r}")
    return first


def plan_mvm(tiles, w, x, *, seed: int = 0) -> MvmPlan:
    """The jobs that compute ``y = w @ x`` on ``tiles``; see the module docstring."""
    p = _check_tiles(tiles)
    cb = golden_params(p)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
            0 <= seed < 1 << 32):
        raise ConfigError("seed", f"must be an integer in [0, 2**32), not {seed!r}")
    w = _operand("w", w, (2,), "a 2-D matrix (m outputs, k inputs)")
    m, k = w.shape
    x = _operand("x", x, (1, 2), "a vector (k,) or a batch (batch, k)")
    vector = x.ndim == 1
    xs = x.reshape(1, -1) if vector else x
    if xs.shape[1] != k:
        raise ConfigError("x", f"must have length k = {k} (the columns of w, shape {w.shape})"
                               f", not {xs.shape[1]}")

    # Operands already in the tile's integer ranges are used as they are.
    if _integers_within(w, -cb.w_max, cb.w_max):
        w_int, w_scale = w.astype(np.int64), 1.0
    else:
        w_int, w_scale = map_weights(w, cb)
    if _integers_within(xs, *cb.x_range):
        x_int, x_scale = xs.astype(np.int64), 1.0
    else:
        x_int, x_scale = map_inputs(xs, cb)

    rows, cols = p.rows, p.cols
    kb, mb = -(-k // rows), -(-m // cols)
    # Zero padding to whole blocks; the array holds W^T blocks (row = input).
    wt = np.zeros((kb * rows, mb * cols), dtype=np.int64)
    wt[:k, :m] = w_int.T
    xp = np.zeros((len(x_int), kb * rows), dtype=np.int64)
    xp[:, :k] = x_int

    coords = [tuple(c) for c, _ in tiles]
    jobs = []
    for bj in range(mb):
        for bi in range(kb):
            n = len(jobs)
            job_seed = (int(seed) + n * SEED_STRIDE) & 0xFFFF_FFFF
            weights = wt[bi * rows:(bi + 1) * rows, bj * cols:(bj + 1) * cols]
            inputs = xp[:, bi * rows:(bi + 1) * rows]
            requests, tags = _requests(p, job_seed, weights, inputs)
            jobs.append(Job(tile=coords[n % len(coords)], block=(bj, bi), seed=job_seed,
                            weights=weights, inputs=inputs, requests=requests,
                            expected=(len(inputs) * p.flits_per_vector, len(inputs)),
                            tags=tags))
    return MvmPlan(params=p, jobs=jobs, shape=(m, k), batch=len(x_int), vector=vector,
                   w_scale=float(w_scale), x_scale=float(x_scale),
                   passes=-(-len(jobs) // len(coords)), w_int=w_int,
                   x_int=x_int[0] if vector else x_int)


def _word(layout, fields: dict) -> int:
    return layout.const(fields).as_value().value


def _requests(p: CrossbarTileParams, seed: int, weights, inputs):
    reqs = [(Op.WRITE, SEED_ADDR, _word(p.seed_layout, {"seed": seed}))]
    reqs += [(Op.WRITE, PROG_ADDR, _word(p.prog_layout, {"weight": int(wv)}))
             for wv in weights.reshape(-1)]
    P = p.inputs_per_word
    tags = []
    for v, vec in enumerate(inputs):
        for kw in range(p.x_words):
            slots = vec[kw * P:(kw + 1) * P]
            reqs.append((Op.WRITE, X_BASE + kw,
                         _word(p.x_layout, {f"x{j}": int(s) for j, s in enumerate(slots)})))
        tag = v % (1 << p.addr_bits)
        tags.append(tag)
        reqs.append((Op.EXEC, tag, 0))
    return reqs, tags


def encode_results(p: CrossbarTileParams, outputs) -> list:
    """REPLY data words of a job's outputs (vectors, cols), as the tile sends them."""
    F, R = p.flits_per_vector, p.results_per_flit
    words = []
    for y in np.asarray(outputs, dtype=np.int64):
        for f in range(F):
            chunk = y[f * R:(f + 1) * R]
            words.append(_word(p.result_layout, {f"r{r}": int(v) for r, v in enumerate(chunk)}))
    return words


def golden_job_outputs(plan: MvmPlan, job: Job) -> np.ndarray:
    """The job's integer outputs (vectors, cols) by the bit-exact ``CrossbarModel``."""
    model = CrossbarModel(golden_params(plan.params), seed=job.seed)
    model.program(job.weights)
    return np.stack([model.mvm(x) for x in job.inputs])


def golden_replies(plan: MvmPlan) -> list:
    """Per job, the data words of the REPLY flits the tile sends, in order."""
    return [encode_results(plan.params, golden_job_outputs(plan, job)) for job in plan.jobs]


def golden_outputs(plan: MvmPlan) -> np.ndarray:
    """The integer outputs ``plan.assemble`` returns, as ``CrossbarModel`` predicts them."""
    return plan.assemble(golden_replies(plan)).y


def energy_pj(plan: MvmPlan, overrides: dict | None = None) -> float:
    """Total energy of the plan: ``energy_per_mvm`` of each block, per vector."""
    return float(sum(energy_per_mvm(golden_params(plan.params), overrides, job.weights).total_pj
                     * len(job.inputs) for job in plan.jobs))


__all__ = ["golden_params", "Job", "MvmPlan", "MvmResult", "plan_mvm", "golden_outputs", "golden_replies",
           "golden_job_outputs", "encode_results", "energy_pj"]
