"""Host side of the SpMV tile protocol: ``y = A x`` (CSR) as packets, and back.

``plan_spmv(tiles, a, x)`` checks the operands (a clear ``ConfigError`` before
anything is sent: non-monotone ``indptr``, a column out of range, a shape that does
not match ``x``, values that are not integers of the tiles' ``value_bits``), cuts
the work into *virtual rows* -- the nonzeros of one row within one block of
``x_depth`` columns, in pieces of at most ``lane_depth`` -- and schedules them:

- per column block, virtual rows go to the least loaded tile (longest first), so
  every tile gets about the same number of nonzeros;
- on a tile, rows are dealt in rounds of ``lanes`` (longest first), each round's
  rows to the least loaded lanes, so all lanes of a tile finish together and every
  row keeps one accumulator (no hazard); a job holds rounds while its lanes' entries
  and its rows fit, and the next job (pass) waits for the previous job's DONE.

Empty rows are never sent (their y is 0). A job's requests are its x block (when
the tile does not hold it yet), its row pointers, its nonzeros and one ``EXEC``
(``addr = tag``, ``data = rows``), each storage WRITE carrying as many consecutive
words as the tile takes per flit (its ``nz_per_word``, ``ptr_per_word``,
``x_per_word``). ``plan.assemble`` adds the virtual rows' sums
into ``y``. Words are packed and unpacked with the tile's layouts
(``SpmvTileParams.nz_word_layout``, ``ptr_layout``, ``x_layout``, ``exec_layout``,
``result_layout``), never with shifts of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...golden.packet import Op
from ...golden.sparse import SpmvTileRun, spmv_exact, spmv_tile
from ...hw.tiles.spmv import SpmvTileParams
from ..errors import ConfigError, TilefabError


@dataclass
class SpmvJob:
    """One EXEC on one tile: ``rows`` local rows, local row ``r`` on lane ``r % lanes``."""
    tile: tuple
    index: int                      # the job's place among its tile's jobs (its pass)
    block: int                      # column block: x[block * x_depth : ...]
    owners: list                    # per local row, the row of A it adds to (-1: padding)
    ends: list                      # per local row, its end pointer in its lane
    entries: list                   # per lane, its (value, local column) words
    x: np.ndarray                   # the x block, as the tile's gather holds it
    requests: list = field(default_factory=list)    # [(op, addr, data, after_done)]
    tag: int = 0

    @property
    def rows(self) -> int:
        return len(self.owners)

    @property
    def nonzeros(self) -> int:
        return sum(len(e) for e in self.entries)


@dataclass
class SpmvPlan:
    params: SpmvTileParams
    jobs: list
    shape: tuple
    nnz: int
    indptr: np.ndarray = field(repr=False)
    indices: np.ndarray = field(repr=False)
    data: np.ndarray = field(repr=False)
    x: np.ndarray = field(repr=False)

    @property
    def passes(self) -> int:
        return 1 + max((j.index for j in self.jobs), default=-1)

    def expected(self, job: SpmvJob) -> tuple:
        """(REPLY flits, DONEs) the tile sends back for ``job``."""
        return self.params.flits_for(job.rows), 1

    def decode(self, job: SpmvJob, words) -> np.ndarray:
        """A job's REPLY data words as its local rows' sums."""
        p = self.params
        words = list(words)
        R = p.results_per_flit
        if len(words) != p.flits_for(job.rows):
            raise TilefabError(f"job {job.index} on tile {job.tile}: {len(words)} REPLY "
                               f"flits, expected {p.flits_for(job.rows)}")
        out = np.zeros(job.rows, dtype=np.int64)
        for r in range(job.rows):
            out[r] = p.result_layout.from_bits(int(words[r // R]))[f"y{r % R}"]
        return out

    def assemble(self, replies_per_job) -> np.ndarray:
        if len(replies_per_job) != len(self.jobs):
            raise TilefabError(f"{len(replies_per_job)} reply lists for {len(self.jobs)} jobs")
        y = np.zeros(self.shape[0], dtype=np.int64)
        for job, words in zip(self.jobs, replies_per_job):
            sums = self.decode(job, words)
            for r, owner in enumerate(job.owners):
                if owner >= 0:
                    y[owner] += sums[r]
        return y

    def golden(self) -> np.ndarray:
        """``y = A x`` by the exact model."""
        return spmv_exact(self.indptr, self.indices, self.data, self.x)

    def golden_job(self, job: SpmvJob) -> SpmvTileRun:
        """The tile model's run of ``job``."""
        p = self.params
        return spmv_tile(job.ends, job.entries, job.x, rows=job.rows, lanes=p.lanes,
                         lane_depth=p.lane_depth, x_depth=p.x_depth)

    def golden_replies(self) -> list:
        """Per job, the REPLY data words the tile sends."""
        return [encode_results(self.params, self.golden_job(j).y) for j in self.jobs]


# -- checking the operands --------------------------------------------------------------

def _integers(name: str, a, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise ConfigError(name, f"must be {what} (1-D), not shape {a.shape}")
    if a.size and a.dtype.kind not in "biuf":
        raise ConfigError(name, f"must hold numbers, not {a.dtype}")
    if a.dtype.kind == "f" and (not np.isfinite(a).all() or np.any(a != np.round(a))):
        raise ConfigError(name, "must hold integers (the tile computes exactly); found "
                                    "a fraction, NaN or infinity")
    return a.astype(np.int64)


def as_csr(a) -> tuple:
    """``(indptr, indices, data, shape)`` of a scipy.sparse matrix or of ``(indptr,
    indices, data[, shape])``; ``shape`` is None when not given."""
    if hasattr(a, "tocsr"):
        c = a.tocsr()
        return np.asarray(c.indptr), np.asarray(c.indices), np.asarray(c.data), c.shape
    if isinstance(a, (tuple, list)) and len(a) in (3, 4):
        shape = tuple(a[3]) if len(a) == 4 else None
        return a[0], a[1], a[2], shape
    raise ConfigError("a", f"must be a scipy.sparse matrix or (indptr, indices, data[, "
                           f"shape]), not {type(a).__name__}")


def check_csr(a, x, value_bits: int) -> tuple:
    """Checked ``(indptr, indices, data, x, (m, n))``; ``ConfigError`` naming the fault."""
    indptr, indices, vals, shape = as_csr(a)
    indptr = _integers("a.indptr", indptr, "a vector of m + 1 row pointers")
    indices = _integers("a.indices", indices, "a vector of column indices")
    vals = _integers("a.data", vals, "a vector of values")
    x = _integers("x", x, "a vector")
    if indptr.size < 1 or indptr[0] != 0:
        raise ConfigError("a.indptr", "must start at 0 (m + 1 row pointers)")
    steps = np.diff(indptr)
    if np.any(steps < 0):
        r = int(np.argmax(steps < 0))
        raise ConfigError("a.indptr", f"must not decrease: indptr[{r + 1}] = "
                                      f"{indptr[r + 1]} < indptr[{r}] = {indptr[r]}")
    nnz = int(indptr[-1])
    if len(indices) != len(vals) or nnz > len(indices):
        raise ConfigError("a.indptr", f"ends at {nnz}, but indices has {len(indices)} and "
                                      f"data {len(vals)} entries (they must agree)")
    indices, vals = indices[:nnz], vals[:nnz]
    m = len(indptr) - 1
    n = len(x) if shape is None else int(shape[1])
    if shape is not None and int(shape[0]) != m:
        raise ConfigError("a.shape", f"{tuple(shape)} has {shape[0]} rows, indptr {m}")
    if len(x) != n:
        raise ConfigError("x", f"must have length n = {n} (the columns of a, shape "
                               f"{(m, n)}), not {len(x)}")
    if nnz and (indices.min() < 0 or indices.max() >= n):
        bad = int(np.argmax((indices < 0) | (indices >= n)))
        raise ConfigError("a.indices", f"column {indices[bad]} (nonzero {bad}) is out of "
                                       f"range, must be 0..{n - 1}")
    lo, hi = -(1 << (value_bits - 1)), (1 << (value_bits - 1)) - 1
    for name, v in (("a.data", vals), ("x", x)):
        if v.size and (v.min() < lo or v.max() > hi):
            raise ConfigError(name, f"must hold integers in {lo}..{hi} (value_bits "
                                    f"{value_bits}); found {int(v.min())}..{int(v.max())}")
    return indptr, indices, vals, x, (m, n)


def _check_tiles(tiles) -> SpmvTileParams:
    if not isinstance(tiles, (list, tuple)) or not tiles:
        raise ConfigError("tiles", "must be a non-empty list of ((x, y), SpmvTileParams)")
    first = tiles[0][1]
    for n, (xy, params) in enumerate(tiles):
        if not isinstance(params, SpmvTileParams):
            raise ConfigError(f"tiles[{n}]", f"must hold SpmvTileParams, not "
                                             f"{type(params).__name__}")
        if params != first:
            raise ConfigError(f"tiles[{n}]", f"every spmv tile of one SpMV must have the "
                                             f"same parameters; {params!r} differs from "
                                             f"{first!r}")
    return first


# -- planning ---------------------------------------------------------------------------

def _virtual_rows(indptr, indices, vals, n, p: SpmvTileParams) -> dict:
    """Column block -> [(row, [(value, local col)])], each at most ``lane_depth`` long."""
    out = {}
    X, N = p.x_depth, p.lane_depth
    for i in range(len(indptr) - 1):
        lo, hi = int(indptr[i]), int(indptr[i + 1])
        cols, vs = indices[lo:hi], vals[lo:hi]
        blocks = cols // X
        for b in np.unique(blocks):
            sel = blocks == b
            words = [(int(v), int(c - b * X)) for v, c in zip(vs[sel], cols[sel])]
            for s in range(0, len(words), N):
                out.setdefault(int(b), []).append((i, words[s:s + N]))
    return out


def _jobs_of_tile(vrows, p: SpmvTileParams) -> list:
    """A tile's virtual rows of one block as jobs, each a list per lane of its rows
    ``(row, words)`` in order (``(-1, [])`` pads a round)."""
    L, N = p.lanes, p.lane_depth
    vrows = sorted(vrows, key=lambda v: -len(v[1]))
    jobs, lanes, load = [], None, None
    for s in range(0, len(vrows), L):
        chunk = vrows[s:s + L]
        if lanes is not None:
            order = sorted(range(L), key=lambda k: load[k])
            fits = (len(lanes[0]) + 1) * L <= p.row_depth and all(
                load[order[j]] + len(v[1]) <= N for j, v in enumerate(chunk))
            if not fits:
                jobs.append(lanes)
                lanes = None
        if lanes is None:
            lanes, load, order = [[] for _ in range(L)], [0] * L, list(range(L))
        got = {order[j]: v for j, v in enumerate(chunk)}
        for k in range(L):
            v = got.get(k, (-1, []))
            lanes[k].append(v)
            load[k] += len(v[1])
    if lanes is not None:
        jobs.append(lanes)
    return jobs


def _word(layout, fields: dict) -> int:
    return layout.const(fields).as_value().value


def _slots(entries, lanes: int) -> list:
    """The nonzero slots ``j * lanes + lane`` in order, a ``(value, col)`` or ``None``
    where a lane is shorter than the longest."""
    depth = max((len(e) for e in entries), default=0)
    return [entries[lane][j] if j < len(entries[lane]) else None
            for j in range(depth) for lane in range(lanes)]


def _packed(layout, field: str, base: int, words: list) -> list:
    """WRITEs of ``words`` at ``base, base + 1, ...``, as many per flit as ``layout``
    has fields ``field0, field1, ...``; a flit of ``None`` only is not sent."""
    per = sum(1 for name, _ in layout if name.startswith(field))
    out = []
    for at in range(0, len(words), per):
        group = words[at:at + per]
        if all(w is None for w in group):
            continue
        fields = {}
        for i, w in enumerate(group):
            if w is not None:
                fields[f"{field}{i}"] = {"value": w[0], "col": w[1]} if field == "nz" else w
        out.append((Op.WRITE, base + at, _word(layout, fields)))
    return out


def plan_spmv(tiles, a, x) -> SpmvPlan:
    """The jobs that compute ``y = a @ x`` on ``tiles``; see the module docstring."""
    p = _check_tiles(tiles)
    indptr, indices, vals, x, (m, n) = check_csr(a, x, p.value_bits)
    coords = [tuple(c) for c, _ in tiles]
    L = p.lanes
    per_tile = {c: [] for c in coords}          # tile -> [(block, lanes)]
    for b, vrows in sorted(_virtual_rows(indptr, indices, vals, n, p).items()):
        load = {c: 0 for c in coords}
        share = {c: [] for c in coords}
        for v in sorted(vrows, key=lambda v: -len(v[1])):
            c = min(coords, key=lambda c: load[c])
            share[c].append(v)
            load[c] += max(1, len(v[1]))
        for c in coords:
            if share[c]:
                per_tile[c] += [(b, lanes) for lanes in _jobs_of_tile(share[c], p)]
    jobs = []
    for c in coords:
        held = None                              # the x block the tile holds
        for k, (b, lanes) in enumerate(per_tile[c]):
            xb = np.zeros(p.x_depth, dtype=np.int64)
            part = x[b * p.x_depth:(b + 1) * p.x_depth]
            xb[:len(part)] = part
            rows = len(lanes[0]) * L
            owners, ends = [], []
            pos = [0] * L
            for r in range(rows):
                row, words = lanes[r % L][r // L]
                pos[r % L] += len(words)
                owners.append(row)
                ends.append(pos[r % L])
            while rows > 1 and owners[-1] < 0:
                owners.pop()
                ends.pop()
                rows -= 1
            entries = [[w for _, words in lanes[lane] for w in words] for lane in range(L)]
            tag = k % (1 << p.addr_bits)
            job = SpmvJob(tile=c, index=k, block=b, owners=owners, ends=ends,
                          entries=entries, x=xb, tag=tag)
            reqs = []
            if held != b:
                reqs += _packed(p.x_layout, "x", p.x_base, [int(v) for v in part])
                held = b
            reqs += _packed(p.ptr_layout, "end", p.ptr_base, ends)
            reqs += _packed(p.nz_word_layout, "nz", 0, _slots(entries, L))
            reqs.append((Op.EXEC, tag, _word(p.exec_layout, {"rows": rows})))
            job.requests = [(op, addr, d, k) for op, addr, d in reqs]
            jobs.append(job)
    return SpmvPlan(params=p, jobs=jobs, shape=(m, n), nnz=int(indptr[-1]), indptr=indptr,
                    indices=indices, data=vals, x=x)


def encode_results(p: SpmvTileParams, sums) -> list:
    """REPLY data words of a job's local-row sums, as the tile sends them."""
    R = p.results_per_flit
    sums = [int(s) for s in sums]
    return [_word(p.result_layout, {f"y{r}": v for r, v in enumerate(sums[f:f + R])})
            for f in range(0, len(sums), R)]


__all__ = ["SpmvJob", "SpmvPlan", "as_csr", "check_csr", "encode_results", "plan_spmv"]
