"""tilefab sweep: grid points from a spec, metrics cached by the point's hash, the same
JSON from a second run and from a Dask local cluster, the Pareto front, clear errors."""

import json
from pathlib import Path

import pytest
import yaml
from tilefab.gen.errors import TilefabError

from tilefab import sweep
from tilefab.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples"


def _spec(tmp_path, **over):
    spec = {"config": str(EXAMPLES / "mlp2x2.yaml"), "metric": "mlp",
            "options": {"images": 30},
            "grid": {"crossbar.adc_bits": [4, 8], "crossbar.read_sigma": [0.0, 0.5]},
            "pareto": {"x": "energy_pj", "x_goal": "min", "y": "accuracy_crossbar",
                       "y_goal": "max"}}
    spec.update(over)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TILEFAB_CACHE", str(tmp_path / "cache"))


def test_points_apply_fields_to_every_tile_of_a_kind(tmp_path):
    spec = sweep.load_spec(_spec(tmp_path))
    points = spec.points()
    assert [p.values for p in points] == [
        {"crossbar.adc_bits": a, "crossbar.read_sigma": s} for a in (4, 8) for s in (0.0, 0.5)]
    for p in points:
        xbars = [t for t in p.config["tile_map"] if t["kind"] == "crossbar"]
        assert len(xbars) == 2 and all(t["adc_bits"] == p.values["crossbar.adc_bits"]
                                       for t in xbars)
    assert len({p.key for p in points}) == 4


def test_a_sweep_run_twice_gives_the_same_json_and_computes_nothing(tmp_path, cache,
                                                                     monkeypatch):
    path = _spec(tmp_path)
    first = sweep.main(path, tmp_path / "a", workers=1, progress=False, echo=lambda s: None)
    calls = []
    real = sweep.METRICS["mlp"]
    monkeypatch.setitem(sweep.METRICS, "mlp", (lambda c, o: calls.append(c) or real[0](c, o),
                                               real[1]))
    second = sweep.main(path, tmp_path / "b", workers=1, progress=False, echo=lambda s: None)
    assert calls == []                            # every point came from the cache
    assert (tmp_path / "a" / "results.json").read_bytes() == \
        (tmp_path / "b" / "results.json").read_bytes()
    assert first == second
    rows = first["rows"]
    acc = {(r["point"]["crossbar.adc_bits"], r["point"]["crossbar.read_sigma"]):
           r["metrics"]["accuracy_crossbar"] for r in rows}
    assert acc[(8, 0.0)] > acc[(4, 0.0)]          # more ADC bits, better accuracy
    energy = {r["point"]["crossbar.adc_bits"]: r["metrics"]["energy_pj"] for r in rows}
    assert energy[8] > energy[4]
    front = first["pareto"]["front"]
    assert front and all(0 <= i < 4 for i in front)
    csv = (tmp_path / "a" / "results.csv").read_text().splitlines()
    assert csv[0].startswith("crossbar.adc_bits,crossbar.read_sigma,") and len(csv) == 5
    assert (tmp_path / "a" / "pareto.png").stat().st_size > 1000


def test_pareto_front_keeps_only_undominated_points():
    rows = [{"metrics": {"e": e, "a": a}} for e, a in ((1, 0.5), (2, 0.9), (2, 0.6), (3, 0.9),
                                                      (0.5, 0.1))]
    assert sweep.pareto_front(rows, {"x": "e", "x_goal": "min", "y": "a",
                                     "y_goal": "max"}) == [0, 1, 4]


def test_the_dask_local_cluster_gives_the_same_results(tmp_path, cache):
    pytest.importorskip("distributed")
    path = _spec(tmp_path, grid={"crossbar.adc_bits": [3, 6]})
    local = sweep.run(sweep.load_spec(path), sweep.LocalExecutor(1), progress=False)
    for f in (Path(tmp_path / "cache" / "sweep").glob("*.json")):
        f.unlink()                                # make the cluster compute them again
    dask = sweep.run(sweep.load_spec(path), sweep.executor("dask", workers=2),
                     progress=False)
    assert json.dumps(dask, sort_keys=True) == json.dumps(local, sort_keys=True)


@pytest.mark.parametrize("over, message", [
    ({"metric": "speed"}, r"metric: 'speed' is not allowed, must be one of mlp, synth"),
    ({"grid": {}}, r"grid: must map at least one config field"),
    ({"grid": {"pbit.n": [8]}}, r"grid.pbit.n: the config has no 'pbit' tiles"),
    ({"grid": {"crossbar.adc_bits": [99]}}, r"point crossbar.adc_bits=99: .*adc_bits"),
    ({"options": {"colour": 1}}, r"options: .*metric mlp takes hidden, images, seed"),
    ({"pareto": {"x": "energy_pj", "y": "accuracy_crossbar", "y_goal": "up"}},
     r"pareto.y_goal: 'up' is not allowed, must be min or max"),
])
def test_bad_specs_are_named(tmp_path, over, message):
    with pytest.raises(TilefabError, match=message):
        sweep.load_spec(_spec(tmp_path, **over))


def test_cli(tmp_path, cache, capsys):
    path = _spec(tmp_path, grid={"crossbar.adc_bits": [6]}, options={"images": 10})
    assert main(["sweep", str(path), "-o", str(tmp_path / "o"), "--quiet",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 points on local" in out and (tmp_path / "o" / "results.csv").exists()
    assert main(["sweep", str(path), "--engine", "local", "--address", "x:1"]) == 2
    assert "--address is for --engine dask or ray" in capsys.readouterr().err
