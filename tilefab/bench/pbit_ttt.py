"""``tilefab bench pbit --ttt``: time to target on G-set Max-Cut, p-bits against
dwave-samplers' simulated annealer, both measured in the same run.

Target: a cut of at least ``ceil(frac x best-known)`` (99.5 % by default).

Restarts. Both solvers anneal S sweeps at a time and restart until a run's best cut
reaches the target; the time to target of one seed is the time of all its runs up to
and including the first that reaches it, and the figure is the median over ``seeds``
seeds. Each solver picks its own S from the same grid (the sweep count whose median is
smallest), so neither is held to a schedule that suits the other.

  * p-bits: seed k is the build of the array with generator seeds ``pbit_seeds(k)``
    and the initial state of seed k (``maxcut.Prepared.machine``). A restart is one
    more RUN on the same build: the spins and generators carry on from the last run
    (the hot start of the beta ramp randomises the state), as the hardware would be
    driven. A run costs its cycles on the bit-exact model (its cycle counters) plus
    its records (final and best state, energies, counts: 2 ceil(n/32) + 4 words) and
    the RUN word. Time = cycles / Fmax, Fmax from nextpnr-ecp5 (85F) of that graph's
    own build (``Prepared.array``), or ``--ttt-mhz`` when given.
  * peer: ``SimulatedAnnealingSampler.sample_ising`` with its default beta range and
    geometric schedule, ``num_sweeps`` = S. Each batch draws one read for every seed
    that has not reached the target yet, in one call; a read's time is the batch's wall
    time over its reads (this process, one thread), so call overhead is shared out.

The equal-sweeps table compares the first run of every p-bit seed with ``seeds`` reads
of the peer at ``--sweeps``: the mean and best cut of each.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..configs import pbit_format
from ..gen import pnr
from ..gen.emit import to_verilog
from ..gen.errors import ConfigError, TilefabError
from ..gen.pbit import graph, maxcut

DEFAULT_GRID = (50, 100, 200, 500, 1000, 2000, 5000, 10000)
DEFAULT_GRAPHS = "G1,G11,G12,G14,G22"
TARGETS = {"G1": 10, "G14": 10, "G22": 10, "G11": 100, "G12": 100}   # issue 13's ratios


def target_cut(best_known: int, frac: float) -> int:
    """The least integer cut that is at least ``frac`` of ``best_known``."""
    return int(math.ceil(frac * best_known - 1e-9))


@dataclass
class Sequence:
    """One seed's runs until the target: their times and whether the last one hit."""
    times: list = field(default_factory=list)
    cuts: list = field(default_factory=list)
    hit: bool = False

    @property
    def total(self) -> float:
        return sum(self.times) if self.hit else math.inf


@dataclass
class PointResult:
    """One solver at one sweep count: every seed's sequence."""
    sweeps: int
    seqs: list

    @property
    def median(self) -> float:
        return float(np.median([s.total for s in self.seqs]))

    @property
    def hits(self) -> int:
        return sum(s.hit for s in self.seqs)

    @property
    def median_runs(self) -> float:
        return float(np.median([len(s.times) if s.hit else math.inf for s in self.seqs]))


def pbit_point(prep: maxcut.Prepared, sweeps: int, target: int, seeds: int,
               max_runs: int, seconds_per_cycle: float, give_up: float = math.inf
               ) -> PointResult:
    """Seeds 1..``seeds`` of the build, each restarted until a run reaches ``target``
    (at most ``max_runs`` runs, or until its time passes ``give_up``)."""
    gr, k = prep.gr, prep.n_colours
    schedule = prep.schedule(sweeps)
    total_w = int(gr.weights.sum())
    extra = 2 * -(-gr.n // 32) + 5          # the RUN word and the run's records
    seqs = []
    for s in range(1, seeds + 1):
        mach = prep.machine(s)
        seq = Sequence()
        while len(seq.times) < max_runs and sum(seq.times) <= give_up:
            r = mach.run(schedule, k)
            cut = (total_w - r.best_energy) // 2
            seq.times.append((r.cycles + extra) * seconds_per_cycle)
            seq.cuts.append(cut)
            if cut >= target:
                seq.hit = True
                break
        seqs.append(seq)
    return PointResult(sweeps, seqs)


def peer_call(gr, sweeps: int, reads: int, seed: int):
    from dwave.samplers import SimulatedAnnealingSampler
    J = {(int(i), int(j)): float(w) for (i, j), w in zip(gr.edges, gr.weights)}
    t0 = time.perf_counter()
    ss = SimulatedAnnealingSampler().sample_ising({}, J, num_reads=reads, num_sweeps=sweeps,
                                                  seed=seed)
    wall = time.perf_counter() - t0
    cuts = np.rint((gr.weights.sum() - ss.record.energy) / 2).astype(np.int64)
    cuts = np.repeat(cuts, ss.record.num_occurrences)
    return cuts, wall


def peer_point(gr, sweeps: int, target: int, seeds: int, max_runs: int,
               give_up: float = math.inf, seed: int = 1) -> PointResult:
    """dwave-samplers' anneals in batches of one read per unfinished seed."""
    seqs = [Sequence() for _ in range(seeds)]
    for batch in range(max_runs):
        live = [q for q in seqs if not q.hit and sum(q.times) <= give_up]
        if not live:
            break
        cuts, wall = peer_call(gr, sweeps, len(live), seed * 100003 + batch)
        for q, c in zip(live, cuts):
            q.times.append(wall / len(live))
            q.cuts.append(int(c))
            q.hit = bool(c >= target)
    return PointResult(sweeps, seqs)


def search(point, grid, run_time, give_up_factor: float = 3.0):
    """The sweep counts of ``grid`` in order. A point is skipped when one run of it
    (``run_time(S, points so far)``, a lower bound or estimate) already takes longer
    than the best median so far, and the search stops after two points in a row that
    are worse than the best; within a point a seed gives up once its time passes
    ``give_up_factor`` x the best median (it could not beat it)."""
    best, points, worse = math.inf, [], 0
    for S in grid:
        if run_time(S, points) > best or worse >= 2:
            break
        p = point(S, give_up_factor * best)
        points.append(p)
        worse = worse + 1 if math.isfinite(best) and p.median >= best else 0
        best = min(best, p.median)
    return points


def pbit_run_bound(prep: maxcut.Prepared, seconds_per_cycle: float):
    """A run of S sweeps takes at least S x (colours, or ceil(n/lanes) decisions of
    the busiest lane) cycles."""
    per = prep.n_colours if prep.arch == "parallel" else -(-prep.gr.n // prep.lanes)
    return lambda S, points: S * per * seconds_per_cycle


def peer_run_estimate(S, points) -> float:
    """A read's time grows with its sweeps: the last point's mean read time, scaled."""
    if not points:
        return 0.0
    last = points[-1]
    times = [t for q in last.seqs for t in q.times]
    return float(np.mean(times)) * S / last.sweeps


def build_fmax(prep: maxcut.Prepared, name: str) -> tuple[float, str]:
    """nextpnr-ecp5 Fmax of ``prep``'s build (seed 1), and a description of it."""
    array = prep.array(1)
    top = f"pbit_{prep.arch}_{name.lower()}"
    desc = (f"{prep.arch} array, {prep.gr.n} p-bits, {prep.n_colours} colours"
            + (f", {prep.lanes} lanes, {prep.fields} fields" if prep.arch == "lanes" else
               f", degree <= {int(prep.gr.degrees().max())}"))
    r = pnr.fmax(to_verilog(array, top), top, "ecp5")
    return r.fmax_mhz, desc


def _fmt_time(t: float) -> str:
    if not math.isfinite(t):
        return "not reached"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def ttt_bench(args, gset_dir, best_known: dict) -> int:
    try:
        import dwave.samplers  # noqa: F401
    except ImportError:
        raise TilefabError("--ttt: the peer dwave-samplers is not installed "
                           "(pip install -e .[bench])") from None
    fmt = pbit_format()
    names = [g.strip() for g in args.graphs.split(",") if g.strip()]
    grid = sorted(set(args.ttt_sweeps))
    frac, seeds, max_runs = args.ttt_target, args.ttt_seeds, args.ttt_max_runs
    print(f"p-bit time to target: cut >= ceil({frac:g} x best-known), median of {seeds} "
          f"seeds, restarts of S sweeps (S searched in order over {', '.join(map(str, grid))} for "
          f"each solver), at most {max_runs} runs per seed")
    rows, equal = [], []
    for name in names:
        bk = best_known.get(name)
        if bk is None:
            raise ConfigError("--graphs", f"{name}: no best-known cut (known: "
                                          f"{', '.join(sorted(best_known))})")
        gr = graph.read_rudy(gset_dir / f"{name}.txt")
        target = target_cut(bk, frac)
        prep = maxcut.prepare(gr, fmt, arch=args.arch, lanes=args.lanes,
                              fields=args.ttt_fields)
        if args.ttt_mhz:
            mhz, desc = args.ttt_mhz, f"{prep.arch} array (clock assumed, --ttt-mhz)"
        else:
            t0 = time.perf_counter()
            try:
                mhz, desc = build_fmax(prep, name)
            except TilefabError as exc:
                print(f"{name}: no Fmax for its build ({exc}); pass --ttt-mhz")
                return 1
            desc += f", nextpnr {time.perf_counter() - t0:.0f} s"
        print(f"{name}: n {gr.n}, edges {len(gr.edges)}, max degree "
              f"{int(gr.degrees().max())}, target {target} (best-known {bk}); build: {desc}, "
              f"Fmax {mhz:.1f} MHz", flush=True)
        spc = 1 / (mhz * 1e6)
        pb = search(lambda S, g: pbit_point(prep, S, target, seeds, max_runs, spc, g), grid,
                    pbit_run_bound(prep, spc))
        pe = search(lambda S, g: peer_point(gr, S, target, seeds, max_runs, g), grid,
                    peer_run_estimate)
        for label, pts in (("p-bit", pb), ("peer", pe)):
            print("  " + label + ": " + "; ".join(
                f"S={p.sweeps} {p.hits}/{seeds} hit, median {_fmt_time(p.median)}"
                for p in pts), flush=True)
        bp, be = min(pb, key=lambda p: p.median), min(pe, key=lambda p: p.median)
        rows.append((name, gr.n, target, mhz, bp, be))
        at = [p for p in pb if p.sweeps == args.sweeps] or [
            pbit_point(prep, args.sweeps, math.inf, seeds, 1, spc)]
        ours = [s.cuts[0] for s in at[0].seqs]
        peer, _ = peer_call(gr, args.sweeps, seeds, 7)
        equal.append((name, args.sweeps, ours, peer))

    hdr = (f"{'graph':5s} {'n':>5s} {'target':>6s} {'Fmax':>6s} | {'p-bit S':>7s} "
           f"{'runs':>4s} {'TTT':>10s} | {'peer S':>6s} {'runs':>4s} {'TTT':>10s} | "
           f"{'speedup':>8s} {'target':>6s}")
    print(hdr)
    print("-" * len(hdr))
    for name, n, target, mhz, bp, be in rows:
        sp = be.median / bp.median if math.isfinite(bp.median) else 0.0
        want = TARGETS.get(name)
        ok = "" if want is None else (f">={want}x " + ("met" if sp >= want else "MISSED"))
        print(f"{name:5s} {n:5d} {target:6d} {mhz:6.1f} | {bp.sweeps:7d} "
              f"{bp.median_runs:4.0f} {_fmt_time(bp.median):>10s} | {be.sweeps:6d} "
              f"{be.median_runs:4.0f} {_fmt_time(be.median):>10s} | "
              f"{sp:7.1f}x {ok}")
    print("speedup = peer TTT / p-bit TTT; runs = median runs per seed (restarts + 1)")
    print(f"equal sweeps: the first run of {seeds} p-bit seeds against {seeds} peer reads")
    print(f"{'graph':5s} {'sweeps':>6s} | {'p-bit mean':>10s} {'best':>6s} | "
          f"{'peer mean':>10s} {'best':>6s} | p-bit mean >= peer mean")
    for name, S, ours, peer in equal:
        print(f"{name:5s} {S:6d} | {np.mean(ours):10.1f} {max(ours):6d} | "
              f"{np.mean(peer):10.1f} {int(max(peer)):6d} | "
              f"{'yes' if np.mean(ours) >= np.mean(peer) else 'no'}")
    return 0
