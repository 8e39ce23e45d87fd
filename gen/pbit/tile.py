"""Host side of the p-bit tile (``hw.tiles.pbit``): requests, reply decoding, golden results.

Pure functions, no simulator. ``ops`` is a session of ``driver.Program`` /
``driver.Run`` / ``driver.Read`` as for a bare array: ``requests_for`` turns it
into the tile's requests (every ctrl word of ``driver.encode`` chunked into
WRITEs at ``CTRL + k``; each Run's RUN word and each Read become an EXEC whose
tag is ``first_tag + job``), ``decode_replies`` reassembles the record flits
(the REPLYs whose ``addr`` is a job tag, in order) into ``driver.Result``s and
``golden_results`` predicts those from the bit-exact model.

Words are packed with the tile's ``data.Layout`` objects (``PBitTileParams``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...golden.pbit import PBitFormat, lane_rows, pbit_seeds
from ...hw.noc.packet import Op
from ...hw.pbit.lanes import edge_depth_for
from ...hw.tiles.pbit import PARALLEL_MAX_N, PBitTileParams
from ..errors import ConfigError
from . import driver


class Expected(NamedTuple):
    """What the tile sends back for a session: record flits, DONEs and their tags."""
    reply_flits: int
    dones: int
    tags: tuple


def tile_format(params: PBitTileParams) -> PBitFormat:
    """The number formats of a p-bit tile (J, h, beta, tanh table, draws)."""
    return driver.fmt_of(params.config())


def sized_for(values: dict, J, n_colours: int, arch: str = "auto") -> dict:
    """A p-bit tile's parameters (``values``, as in a config) resized to hold the problem
    ``J`` with ``n_colours`` colour classes: ``n`` = the problem's p-bits, ``n_colours``
    at least the classes; for ``arch: lanes`` also ``max_degree`` and ``edge_depth``
    (lane ``l`` holds p-bits ``l, l + lanes, ...``, each with one entry per coupling and
    at least one; with ``fields: incremental`` every lane holds the rows of every p-bit,
    ``golden.pbit.lane_rows``), the depth rounded up to a power of two. ``arch`` ``auto`` is
    ``parallel`` up to ``PARALLEL_MAX_N`` p-bits, else ``lanes``. The formats stay."""
    J = np.asarray(J)
    n = max(2, len(J))
    v = dict(values)
    if arch == "auto":
        arch = "parallel" if n <= PARALLEL_MAX_N else "lanes"
    v.update(arch=arch, n=n, n_colours=max(int(v.get("n_colours", 1)), int(n_colours)))
    if arch == "lanes":
        lanes = int(v.get("lanes", 1))
        entries = np.ones(n, dtype=np.int64)
        entries[:len(J)] = driver.lane_entries(J)
        per_lane = np.bincount(np.arange(n) % lanes, weights=entries, minlength=lanes)
        depth = max(int(per_lane.max()), -(-n // lanes))
        if v.get("fields") == "incremental":       # every lane holds every p-bit's rows
            Jn = np.zeros((n, n), dtype=np.int64)
            Jn[:len(J), :len(J)] = J
            depth = max(depth, int(lane_rows(Jn, lanes).sum()))
        v["edge_depth"] = edge_depth_for(depth)
        v["max_degree"] = max(1, int((J != 0).sum(axis=1).max(initial=0)))
    return v


def records_of(params: PBitTileParams, op) -> int:
    """``out`` records a Run or Read produces (samples, then the final records)."""
    nch = params.config()["n_chunks"]
    final = 2 * nch + 4
    if isinstance(op, driver.Read):
        return final
    samples = 0
    if op.sample_every:
        samples = sum(s for _, s in op.schedule) // op.sample_every
    return samples * (nch + 1) + final


def _check_size(params: PBitTileParams, op: driver.Program):
    n = params.n
    J = np.asarray(op.J)
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ConfigError("J", f"must be a square matrix, got shape {J.shape}")
    if J.shape[0] > n:
        raise ConfigError("J", f"the problem has {J.shape[0]} p-bits, above the tile's n={n}")


def _chunks(params: PBitTileParams, word: int) -> list[int]:
    c = params.ctrl_chunks_layout.from_bits(word)
    return [c[k] for k in range(params.ctrl_chunks)]


def _writes(params: PBitTileParams, word: int) -> list[tuple[int, int, int]]:
    return [(Op.WRITE.value, params.ctrl_base + k, chunk)
            for k, chunk in enumerate(_chunks(params, word))]


def descriptor(params: PBitTileParams, op) -> int:
    """The EXEC descriptor of a Run (checked by ``driver.check_run``) or a Read."""
    if isinstance(op, driver.Read):
        fields = {"sample_every": 0, "colours": 0, "last": 0, "read": 1}
    else:
        driver.check_run(params.config(), op)
        fields = {"sample_every": op.sample_every, "colours": op.n_colours - 1,
                  "last": len(op.schedule) - 1, "read": 0}
    return params.descriptor_layout.const(fields).as_value().value


def requests_for(params: PBitTileParams, ops, *, first_tag: int = 0
                 ) -> tuple[list[tuple[int, int, int]], Expected]:
    """``[(op, addr, data), ...]`` for one tile running ``ops``, and what comes back.

    Tags count up from ``first_tag`` and must stay below the status window so that
    record flits are told from status REPLYs.
    """
    cfg = params.config()
    reqs, tags, flits = [], [], 0
    for op in ops:
        if isinstance(op, driver.Program):
            _check_size(params, op)
            for word in driver.encode(cfg, params.neighbours, [op]):
                reqs += _writes(params, word)
        elif isinstance(op, (driver.Run, driver.Read)):
            if isinstance(op, driver.Run):
                # driver.encode checks the run; its last word (RUN) becomes the EXEC.
                words = driver.encode(cfg, params.neighbours, [op])
                assert params.ctrl_layout.from_bits(words[-1]).op == int(params.ops.RUN)
                for word in words[:-1]:
                    reqs += _writes(params, word)
            tag = first_tag + len(tags)
            if not 0 <= tag < params.status_base:
                raise ConfigError("first_tag", f"job tags must lie in [0, "
                                               f"{params.status_base - 1}] (below the status "
                                               f"registers), got {tag}")
            tags.append(tag)
            reqs.append((Op.EXEC.value, tag, descriptor(params, op)))
            flits += records_of(params, op) * params.record_chunks
        else:
            raise TypeError(f"unknown operation {op!r}")
    return reqs, Expected(flits, len(tags), tuple(tags))


def record_words(params: PBitTileParams, reply_datas) -> list[int]:
    """The ``out`` records carried by record flits (``record_chunks`` each, in order)."""
    R = params.record_chunks
    datas = [int(d) for d in reply_datas]
    if len(datas) % R:
        raise ValueError(f"{len(datas)} record flits is not a whole number of "
                         f"{R}-flit records")
    lay, mask = params.record_chunks_layout, (1 << params.out_layout.size) - 1
    # the tile pads a record with zeros up to R chunks; drop them all the same
    return [lay.const(datas[i:i + R]).as_value().value & mask for i in range(0, len(datas), R)]


def decode_replies(params: PBitTileParams, reply_datas) -> list[driver.Result]:
    """One ``driver.Result`` per Run/Read from the data of the record flits, in order."""
    return driver.decode(params.config(), record_words(params, reply_datas))


def golden_records(params: PBitTileParams, ops) -> list[int]:
    """Every ``out`` record the tile's array emits for ``ops``, from the bit-exact model."""
    seen_program = False
    for op in ops:
        if isinstance(op, driver.Program):
            _check_size(params, op)
            driver.check_program(params.config(), params.neighbours, op)
            seen_program = True
        elif isinstance(op, (driver.Run, driver.Read)) and not seen_program:
            raise ConfigError("ops", "the golden model needs a Program before the first "
                                     "Run or Read")
        elif isinstance(op, driver.Run):
            driver.check_run(params.config(), op)
    return driver.golden_records(params.config(), pbit_seeds(params.seed, params.n), ops)


def golden_results(params: PBitTileParams, ops) -> list[driver.Result]:
    """What ``decode_replies`` should return for ``ops``: the bit-exact model's results."""
    return driver.decode(params.config(), golden_records(params, ops))


def done_records(params: PBitTileParams, ops) -> list[int]:
    """The ``data`` of each job's DONE: the records of that Run or Read."""
    return [records_of(params, op) for op in ops if isinstance(op, (driver.Run, driver.Read))]

