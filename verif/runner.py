"""One way to build and run a cocotb testbench on generated RTL.

``run_cocotb`` takes Verilog text (from ``tilefab.gen.emit``), builds it once per
simulator and content hash under the build cache, and runs a cocotb test module
against it. Parameters reach the testbench through environment variables (see
``tilefab.verif.params``). Builds are keyed by a hash of the Verilog, so
pytest-xdist workers that need the same RTL share one build, serialised by a
file lock, and never race on one folder.

Environment knobs:
  ``SIM=icarus``        run on Icarus instead of Verilator (when installed)
  ``WAVES=1``           record waveforms (VCD on Verilator, FST on Icarus)
  ``TILEFAB_CACHE=DIR`` where builds and runs go (default ``~/.cache/tilefab``)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from ..gen import toolchain
from ..gen.cache import cache_root, locked
from ..gen.errors import TilefabError
from ..gen.generate import generate

SIMULATORS = ("verilator", "icarus")
# Amaranth's Verilog widens and truncates implicitly; these warnings carry no signal.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                  "-Wno-PINCONNECTEMPTY", "-Wno-UNOPTFLAT", "-O3"]
TIMESCALE = ("1ns", "1ps")
# cocotb testbenches are bound by Python, not by the model: compiling the model
# without optimisation halves build time at no measurable cost in run time.
MAKE_OPT = ("OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "yes", "true", "on")


def choose_sim(sim: str | None = None) -> str:
    sim = sim or os.environ.get("SIM", "verilator")
    if sim not in SIMULATORS:
        raise TilefabError(f"SIM: {sim!r} is not a supported simulator, must be one of "
                           f"{', '.join(SIMULATORS)}")
    if sim == "icarus" and toolchain.icarus() is None:
        raise TilefabError("SIM=icarus: iverilog is not installed (apt-get install iverilog)")
    return sim


def build(verilog: str, toplevel: str, *, sim: str | None = None, waves: bool | None = None):
    """Build (or reuse) a simulator model of ``verilog``; returns (runner, build_dir)."""
    from cocotb_tools.runner import get_runner

    toolchain.apply()
    flags = os.environ.get("MAKEFLAGS", "")
    os.environ["MAKEFLAGS"] = " ".join([flags, *(f for f in MAKE_OPT if f not in flags)]).strip()
    sim = choose_sim(sim)
    waves = _flag("WAVES") if waves is None else waves
    # The model links against this interpreter's cocotb libraries: a build made by
    # another virtualenv (whose libraries may since have gone) is not reused.
    from cocotb_tools.config import libs_dir
    key = hashlib.sha256("\0".join([verilog, toplevel, sim, str(waves),
                                    json.dumps(VERILATOR_ARGS), json.dumps(MAKE_OPT),
                                    str(Path(libs_dir).resolve())]).encode()).hexdigest()[:16]
    build_dir = cache_root() / "sim" / f"{toplevel}-{sim}-{key}"
    runner = get_runner(sim)
    with locked(build_dir):
        stamp = build_dir / ".built"
        src = build_dir / f"{toplevel}.v"
        if not stamp.exists():
            build_dir.mkdir(parents=True, exist_ok=True)
            src.write_text(verilog)
            args = VERILATOR_ARGS if sim == "verilator" else []
            runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=args, timescale=TIMESCALE, waves=waves, always=True,
                         log_file=build_dir / "build.log")
            stamp.write_text(key)
    return runner, build_dir


def run_cocotb(verilog: str, toplevel: str, test_module: str, *, params: dict | None = None,
               testcase: str | None = None, sim: str | None = None, waves: bool | None = None,
               seed: int | None = None, tb_dir: str | Path | None = None) -> Path:
    """Build ``verilog`` and run cocotb ``test_module`` on it; raise if any test fails.

    ``params`` is JSON-encoded into ``TILEFAB_PARAMS`` for the testbench. Returns the
    run directory (where the log and any waveform are).
    """
    from cocotb_tools.runner import get_results

    waves = _flag("WAVES") if waves is None else waves
    runner, build_dir = build(verilog, toplevel, sim=sim, waves=waves)
    if tb_dir is not None and str(tb_dir) not in sys.path:
        sys.path.insert(0, str(tb_dir))
    params = params or {}
    pjson = json.dumps(params, sort_keys=True)
    tag = hashlib.sha256(f"{test_module}\0{testcase}\0{pjson}\0{seed}".encode()).hexdigest()[:12]
    run_dir = build_dir / "runs" / f"{test_module}-{testcase or 'all'}-{tag}-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir / "results.xml"
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    testcase=testcase,
                    build_dir=build_dir, test_dir=run_dir, results_xml=str(results),
                    extra_env={"TILEFAB_PARAMS": pjson}, seed=seed, waves=waves,
                    timescale=TIMESCALE, log_file=run_dir / "sim.log")
    except SystemExit as exc:
        raise AssertionError(f"cocotb {test_module}: simulation failed ({exc}); "
                             f"log: {run_dir / 'sim.log'}") from None
    n_tests, n_failed = get_results(results)
    if n_tests == 0:
        raise AssertionError(f"cocotb {test_module}: no test matched {testcase!r}")
    if n_failed:
        raise AssertionError(f"cocotb {test_module}: {n_failed} of {n_tests} tests failed; "
                             f"log: {run_dir / 'sim.log'}")
    if waves:
        for name in ("dump.vcd", f"{toplevel}.fst", "dump.fst"):
            for cand in (run_dir / name, build_dir / name):
                if cand.exists():
                    print(f"waveform: {cand}", file=sys.stderr)
    return run_dir


def run_generated(cfg: dict, top: str, test_module: str, *, params: dict | None = None,
                  **kwargs) -> Path:
    """Generate ``top`` for a resolved config and run ``test_module`` on it.

    The testbench finds the manifest (packet layout, ports, config) at
    ``params()["manifest"]``.
    """

    g = generate(cfg, top)
    merged = {"manifest": str(g.manifest_path), **(params or {})}
    return run_cocotb(g.text(), g.module, test_module, params=merged, **kwargs)
