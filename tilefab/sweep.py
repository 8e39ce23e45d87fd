"""Design-space sweeps: a grid over config fields, one metrics dict per point.

A spec (YAML) names a base ``config`` (a path relative to the spec), a ``metric``, its
``options``, a ``grid`` of config fields, and optionally the two metrics of a
``pareto`` front::

    config: ../mlp2x2.yaml
    metric: mlp
    options: {images: 360}
    grid:
      crossbar.adc_bits: [4, 6, 8]
      crossbar.read_sigma: [0.0, 0.2]
    pareto: {x: energy_pj, x_goal: min, y: accuracy_crossbar, y_goal: max}

A grid field is ``mesh.F``, ``packet.F`` or ``host.F`` (that section's field), or
``KIND.F`` (field ``F`` of every tile of kind ``KIND``). Every point is the base config
with one value per field, validated like any config (an error names the point and
the field). A point's metrics are a pure function of its config and the options:
``evaluate`` caches them under ``$TILEFAB_CACHE/sweep`` by a hash of both, so a sweep
run twice gives the same JSON and the second run computes nothing.

Metrics (``METRICS``): ``mlp`` -- the digits classifier's accuracy (float, int8, and on
the crossbar tiles by the bit-exact golden pipeline) and energy per inference
(``tilefab.mlp.accuracies``); ``synth`` -- yosys ``synth_ecp5`` resources of the
generated fabric.

Executors run the points: ``local`` (a process pool, the default), ``dask`` (a Dask
``distributed`` scheduler at an address, or a local cluster when none is given) and
``ray`` (``ray.init(address)``); the same spec gives the same results on each. Dask
``distributed`` is installed with tilefab; Ray is an optional extra (``pip install
'tilefab[ray]'``).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import itertools
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import __version__
from .gen.cache import cache_root, locked
from .gen.config import as_config, load
from .gen.errors import ConfigError, TilefabError
from .gen.loader import load_yaml

SECTIONS = ("mesh", "packet", "host")
GOALS = ("min", "max")
MAX_POINTS = 4096


def _metric_mlp(config: dict, options: dict) -> dict:
    from .gen import mlp as gm
    from .mlp import accuracies

    hidden, images = options.get("hidden", 32), options.get("images", 360)
    _, _, xte, yte = gm.digits_split()
    a = accuracies(config, gm.quantized(hidden), gm.train(hidden), xte[:images],
                   yte[:images], seed=options.get("seed", 1))
    return {"accuracy_float": a["float"], "accuracy_int8": a["int8"],
            "accuracy_crossbar": a["crossbar"], "energy_pj": a["energy_pj"],
            "images": a["images"]}


def _metric_synth(config: dict, options: dict) -> dict:
    from .gen.generate import generate
    from .gen.synth import synthesize

    g = generate(config)
    r = synthesize(g.text(), g.module, options.get("family", "ecp5"))
    return {"lut": r.lut, "ff": r.ff, "ram": r.ram, "dsp": r.dsp}


METRICS = {"mlp": (_metric_mlp, {"hidden", "images", "seed"}),
           "synth": (_metric_synth, {"family"})}
# Part of every point's cache key: raise it when a metric's definition changes.
METRIC_REVISION = 2


@dataclass(frozen=True)
class Point:
    index: int
    values: dict            # grid field -> value
    config: dict            # the resolved config
    metric: str
    options: dict

    @property
    def key(self) -> str:
        text = json.dumps([self.config, self.metric, self.options, __version__,
                           METRIC_REVISION],
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class Spec:
    name: str
    config: dict
    metric: str
    options: dict
    grid: dict              # field -> list of values, in spec order
    pareto: dict | None

    def points(self) -> list[Point]:
        fields = list(self.grid)
        out = []
        for n, combo in enumerate(itertools.product(*(self.grid[f] for f in fields))):
            values = dict(zip(fields, combo))
            out.append(Point(n, values, apply(self.config, values), self.metric,
                             dict(self.options)))
        return out


def apply(config: dict, values: dict) -> dict:
    """``config`` with each grid field set; validated (``ConfigError`` names the point)."""
    raw = copy.deepcopy(config)
    raw.pop("tile_map", None)
    for field, value in values.items():
        head, _, name = field.partition(".")
        if head in SECTIONS:
            raw.setdefault(head, {})[name] = value
            continue
        tiles = raw.get("tiles", {})
        hit = [t for t in [tiles.get("default", {}), *tiles.get("at", [])]
               if t.get("kind") == head]
        if not hit:
            raise ConfigError(f"grid.{field}", f"the config has no {head!r} tiles; a grid "
                                               f"field is mesh.F, packet.F, host.F or "
                                               f"KIND.F for a tile kind it has")
        for t in hit:
            t[name] = value
    try:
        return as_config(raw)
    except TilefabError as exc:
        point = ", ".join(f"{k}={v!r}" for k, v in values.items())
        raise ConfigError("grid", f"point {point}: {exc}") from None


def load_spec(path) -> Spec:
    path = Path(path)
    raw, _ = load_yaml(path, what="sweep spec")
    if not isinstance(raw, dict):
        raise ConfigError("spec", f"{path} must be a mapping with config, metric and grid")
    unknown = set(raw) - {"name", "config", "metric", "options", "grid", "pareto"}
    if unknown:
        raise ConfigError(min(unknown), "is not a spec field; allowed: name, config, "
                                              "metric, options, grid, pareto")
    metric = raw.get("metric")
    if metric not in METRICS:
        raise ConfigError("metric", f"{metric!r} is not allowed, must be one of "
                                    f"{', '.join(METRICS)}")
    options = raw.get("options") or {}
    if not isinstance(options, dict) or set(options) - METRICS[metric][1]:
        allowed = ", ".join(sorted(METRICS[metric][1]))
        raise ConfigError("options", f"{options!r}: metric {metric} takes {allowed}")
    if not isinstance(raw.get("config"), str):
        raise ConfigError("config", "must be the path of a fabric YAML (relative to the spec)")
    config = load(path.parent / raw["config"])
    grid = raw.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("grid", "must map at least one config field to a list of values")
    for field, values in grid.items():
        if not isinstance(field, str) or "." not in field:
            raise ConfigError(f"grid.{field}", "must be SECTION.FIELD or KIND.FIELD")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{field}", "must be a non-empty list of values")
    count = 1
    for values in grid.values():
        count *= len(values)
    if count > MAX_POINTS:
        raise ConfigError("grid", f"{count} points is too many, at most {MAX_POINTS}")
    pareto = raw.get("pareto")
    if pareto is not None:
        if not isinstance(pareto, dict) or not {"x", "y"} <= set(pareto):
            raise ConfigError("pareto", "must name metrics x and y (and x_goal, y_goal: "
                                        "min or max)")
        for axis in ("x_goal", "y_goal"):
            if pareto.setdefault(axis, "min" if axis == "x_goal" else "max") not in GOALS:
                raise ConfigError(f"pareto.{axis}", f"{pareto[axis]!r} is not allowed, must "
                                                    f"be min or max")
    name = raw.get("name") or path.stem
    spec = Spec(name, config, metric, options, dict(grid), pareto)
    spec.points()          # every point must validate before anything runs
    return spec


def _cache_file(point: Point) -> Path:
    return cache_root() / "sweep" / f"{point.metric}-{point.key}.json"


def evaluate(point: Point) -> dict:
    """The point's metrics, from the cache or computed (then cached)."""
    path = _cache_file(point)
    with locked(path):
        if path.exists():
            return json.loads(path.read_text())
        metrics = METRICS[point.metric][0](point.config, point.options)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(metrics, sort_keys=True))
        tmp.rename(path)
    return metrics


# -- executors: map(evaluate, points) in order -------------------------------------------

class LocalExecutor:
    name = "local"

    def __init__(self, workers: int = 2):
        self.workers = workers

    def map(self, fn, items):
        if self.workers <= 1:
            yield from map(fn, items)
            return
        with ProcessPoolExecutor(self.workers) as pool:
            yield from pool.map(fn, items)


class DaskExecutor:
    name = "dask"

    def __init__(self, address: str | None = None, workers: int = 2):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise TilefabError("--engine dask needs Dask distributed (pip install "
                               "distributed)") from None
        if address:
            self._cluster, self.client = None, Client(address)
        else:
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                         processes=True, dashboard_address=None)
            self.client = Client(self._cluster)

    def map(self, fn, items):
        try:
            for fut in self.client.map(fn, items, pure=False):
                yield fut.result()
        finally:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2):
        try:
            import ray
        except ImportError:
            raise TilefabError("--engine ray needs Ray (pip install 'tilefab[ray]')") from None
        self.ray = ray
        ray.init(address=address, num_cpus=None if address else workers,
                 ignore_reinit_error=True, include_dashboard=False)

    def map(self, fn, items):
        remote = self.ray.remote(fn)
        refs = [remote.remote(item) for item in items]
        for ref in refs:
            yield self.ray.get(ref)


ENGINES = {"local": LocalExecutor, "dask": DaskExecutor, "ray": RayExecutor}


def executor(engine: str = "local", address: str | None = None, workers: int = 2):
    if engine not in ENGINES:
        raise TilefabError(f"--engine: {engine!r} is not allowed, must be one of "
                           f"{', '.join(ENGINES)}")
    if engine == "local":
        if address:
            raise TilefabError("--address is for --engine dask or ray")
        return LocalExecutor(workers)
    return ENGINES[engine](address, workers)


# -- the run --------------------------------------------------------------------------

def pareto_front(rows: list, pareto: dict) -> list:
    """Indices of the rows no other row beats on both axes (ties kept)."""
    sx = 1 if pareto["x_goal"] == "min" else -1
    sy = 1 if pareto["y_goal"] == "min" else -1
    pts = [(sx * r["metrics"][pareto["x"]], sy * r["metrics"][pareto["y"]]) for r in rows]
    front = []
    for i, (x, y) in enumerate(pts):
        if not any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for x2, y2 in pts):
            front.append(i)
    return front


def run(spec: Spec, ex=None, *, progress: bool = True) -> dict:
    """Evaluate every point (cached ones are not recomputed); the results document."""
    ex = ex or LocalExecutor()
    points = spec.points()
    todo = [p for p in points if not _cache_file(p).exists()]
    results = {}
    with tqdm(total=len(points), desc=f"sweep {spec.name}", unit="point",
              disable=not progress) as bar:
        bar.update(len(points) - len(todo))
        for p, metrics in zip(todo, ex.map(evaluate, todo)):
            results[p.index] = metrics
            bar.update(1)
    rows = [{"point": p.values, "metrics": results.get(p.index) or evaluate(p)}
            for p in points]
    if spec.pareto:
        for field in ("x", "y"):
            if spec.pareto[field] not in rows[0]["metrics"]:
                raise ConfigError(f"pareto.{field}", f"{spec.pareto[field]!r} is not a "
                                                     f"metric of {spec.metric}: "
                                                     f"{', '.join(rows[0]['metrics'])}")
    doc = {"name": spec.name, "metric": spec.metric, "options": spec.options,
           "grid": spec.grid, "rows": rows}
    if spec.pareto:
        doc["pareto"] = {**spec.pareto, "front": pareto_front(rows, spec.pareto)}
    return doc


def write(doc: dict, out: Path) -> dict:
    """results.json, results.csv and (with a Pareto spec) pareto.png under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "csv": out / "results.csv"}
    paths["json"].write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    fields = list(doc["grid"])
    metrics = list(doc["rows"][0]["metrics"]) if doc["rows"] else []
    front = set(doc.get("pareto", {}).get("front", []))
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(fields + metrics + (["pareto"] if "pareto" in doc else []))
        for i, r in enumerate(doc["rows"]):
            w.writerow([r["point"][f] for f in fields] + [r["metrics"][m] for m in metrics]
                       + ([int(i in front)] if "pareto" in doc else []))
    if "pareto" in doc:
        paths["png"] = out / "pareto.png"
        _plot(doc, paths["png"])
    return paths


def _plot(doc: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    par = doc["pareto"]
    xs = [r["metrics"][par["x"]] for r in doc["rows"]]
    ys = [r["metrics"][par["y"]] for r in doc["rows"]]
    front = sorted(par["front"], key=lambda i: xs[i])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(xs, ys, s=18, color="0.6", label="points")
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "o-", color="C3",
            label="Pareto front")
    for i in front:
        ax.annotate(", ".join(f"{k.split('.')[-1]}={v}" for k, v in doc["rows"][i]["point"].items()),
                    (xs[i], ys[i]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{par['x']} ({par['x_goal']})")
    ax.set_ylabel(f"{par['y']} ({par['y_goal']})")
    ax.set_title(f"sweep {doc['name']}: {doc['metric']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(spec_path, out=None, *, engine="local", address=None, workers=2,
         progress=True, echo=print) -> dict:
    spec = load_spec(spec_path)
    t0 = time.perf_counter()
    doc = run(spec, executor(engine, address, workers), progress=progress)
    seconds = time.perf_counter() - t0
    paths = write(doc, Path(out) if out else Path("build") / "sweep" / spec.name)
    fields, front = list(spec.grid), set(doc.get("pareto", {}).get("front", []))
    metrics = list(doc["rows"][0]["metrics"])
    echo("  ".join(f"{f:>14s}" for f in fields + metrics) + ("  pareto" if spec.pareto else ""))
    for i, r in enumerate(doc["rows"]):
        cells = [r["point"][f] for f in fields] + [r["metrics"][m] for m in metrics]
        echo("  ".join(f"{v:>14.4g}" if isinstance(v, float) else f"{v!s:>14s}" for v in cells)
             + ("  *" if i in front else ""))
    echo(f"{len(doc['rows'])} points on {engine} in {seconds:.1f} s; wrote "
         f"{', '.join(str(p) for p in paths.values())}")
    return doc


__all__ = ["ENGINES", "METRICS", "DaskExecutor", "LocalExecutor", "Point", "RayExecutor",
           "Spec", "apply", "evaluate", "executor", "load_spec", "main", "pareto_front", "run",
           "write"]
