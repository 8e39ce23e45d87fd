"""Board tops: the board-sim backend over the bit-level UART, clocking, the build and
program commands' errors, and (marked synth) a real iCEBreaker build."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tilefab.boards.build import DoesNotFit, _pnr_misfit, build_board, check_fit
from tilefab.boards.clocking import ecp5_pll, ice40_pll
from tilefab.boards.platforms import BOARDS
from tilefab.gen.board_top import uart_divisor
from tilefab.gen.config import load
from tilefab.gen.errors import TilefabError
from tilefab.verif.runtime import Fabric

from tilefab.cli import main
from tilefab.cli.boards import bench_board

SMALL = "examples/board_icebreaker.yaml"
ULX3S = "examples/board_ulx3s.yaml"


@pytest.fixture(scope="module")
def board_sim():
    return Fabric(SMALL, backend="board-sim", seed=3)


def test_board_sim_memory_exact(board_sim):
    fab = board_sim
    mem = fab.tiles_of("memory")[0]
    values = {3: 0xDEADBEEF, 7: 0x12345678, 0: 1}
    for addr, v in values.items():
        fab.write(*mem.xy, addr, v)
    assert {a: fab.read(*mem.xy, a) for a in values} == values
    status = fab.status(*mem.xy)
    assert status["errors"] == 0 and status["dropped"] == 0
    # Every flit crossed the line as bits: the host's UART sent and got whole frames.
    assert fab.backend.uart.bytes_in > 0 and fab.backend.uart.bytes_out > 0
    assert fab.backend.link.rx_bad == 0 and fab.backend.link.rx_lost == 0


def test_board_sim_gemm_exact(board_sim):
    rng = np.random.default_rng(7)
    a = rng.integers(-8, 8, (5, 4))          # the example's GEMM PE: int4, K <= 4
    b = rng.integers(-8, 8, (4, 3))
    run = board_sim.gemm(a, b, in_stall=0.2)
    assert run.golden_ok, run.mismatch
    np.testing.assert_array_equal(run.c, a @ b)
    # Cycle counts are the board top's clock cycles: at least the line time of the
    # flits moved (10 bits of `divisor` cycles per byte, both directions overlap).
    be = board_sim.backend
    line = max(run.flits_in, run.flits_out) * be.geometry["flit_bytes"] * 10 * be.divisor
    assert run.cycles >= line


def test_board_sim_throughput_below_line_rate():
    got = bench_board(SMALL, flits=48)
    for name in ("host_to_board", "board_to_host"):
        r = got[name]
        # 48 WRITEs and the READ that fences them; 48 REPLYs back.
        assert r["payload_bytes"] == (49 if name == "host_to_board" else 48) * got["flit_bytes"]
        # Never above baud/10 bytes/s (8N1), and framing costs little when frames are full.
        assert 0.5 < r["fraction"] <= 1.0, (name, r)


def test_pll_settings():
    p = ice40_pll(12_000_000, 24e6)
    assert p.fout_hz == 24e6
    v = p.params
    assert 533e6 <= 12e6 * (v["DIVF"] + 1) / (v["DIVR"] + 1) <= 1066e6
    q = ecp5_pll(25_000_000, 50e6)
    assert q.fout_hz == 50e6
    assert 400e6 <= q.fout_hz * q.params["CLKOP_DIV"] <= 800e6
    near = ice40_pll(12_000_000, 33.3e6)
    assert near.fout_hz != 33.3e6 and abs(near.fout_hz - 33.3e6) < 1e6
    with pytest.raises(TilefabError, match="16..275 MHz"):
        ice40_pll(12_000_000, 5e6)


def test_uart_divisor():
    assert uart_divisor(12e6, 1_000_000) == (12, 0.0)
    assert uart_divisor(25e6, 1_000_000) == (25, 0.0)
    d, err = uart_divisor(33e6, 1_000_000)
    assert d == 33 and err == 0.0
    with pytest.raises(TilefabError, match="divisor of 4"):
        uart_divisor(12e6, 3_000_000)
    d, err = uart_divisor(12e6, 921_600)              # 923 077 baud, within tolerance
    assert d == 13 and abs(err - 0.0016) < 1e-4
    with pytest.raises(TilefabError, match=r"off by -4.00 %"):
        uart_divisor(12e6, 2_500_000)


def test_fit_check_names_resource():
    b = BOARDS["icebreaker"]
    check_fit(b, {"lut": 5000, "ff": 4000, "bram": 30, "dsp": 8}, "iCE40UP5K")
    with pytest.raises(DoesNotFit, match=r"needs 7921 LUT and the device has 5280"):
        check_fit(b, {"lut": 7921, "ff": 10, "bram": 1, "dsp": 0}, "iCE40UP5K")
    with pytest.raises(DoesNotFit, match=r"needs 31 BRAM and the device has 30"):
        check_fit(b, {"lut": 1, "ff": 1, "bram": 31, "dsp": 0}, "iCE40UP5K")
    log = "Info: Device utilisation:\nInfo: \t ICESTORM_LC:  6000/  5280   113%\n"
    assert _pnr_misfit(log) == "the design needs 6000 ICESTORM_LC and the device has 5280"


def _cli(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_build_bad_board_exits_2(capsys):
    rc, text = _cli(capsys, "build", SMALL, "--board", "arty")
    assert rc == 2
    assert "--board: 'arty' is not a board" in text and "icebreaker, ulx3s-85f" in text


def test_build_missing_tool_exits_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TILEFAB_CACHE", str(tmp_path))
    monkeypatch.setenv("NEXTPNR_ICE40", str(tmp_path / "no-such-nextpnr-ice40"))
    rc, text = _cli(capsys, "build", SMALL, "--board", "icebreaker")
    assert rc == 2
    assert "nextpnr-ice40: NEXTPNR_ICE40=" in text and "is not an executable" in text
    assert not list(tmp_path.glob("boards/*/top.il")), "nothing was built"


def test_build_bad_freq_exits_2(capsys):
    rc, text = _cli(capsys, "build", SMALL, "--board", "icebreaker", "--freq", "5")
    assert rc == 2 and "--freq: 5 MHz is not allowed on an iCE40 PLL" in text


def test_program_without_board_exits_2(capsys, tmp_path):
    (tmp_path / "top.bin").write_bytes(b"\xff" * 64)
    rc, text = _cli(capsys, "program", "--board", "icebreaker", str(tmp_path))
    assert rc == 2
    # Either the loader ran and found no board, or it could not start (no libusb):
    # both say so and what to do.
    assert ("no icebreaker board found on USB" in text and "plug the board in" in text) or \
        ("system library" in text and "apt-get install" in text), text


def test_program_without_bitstream_exits_2(capsys, tmp_path):
    rc, text = _cli(capsys, "program", "--board", "ulx3s-85f", str(tmp_path))
    assert rc == 2 and "no top.bit for ulx3s-85f here" in text


@pytest.mark.synth
def test_build_icebreaker_example(tmp_path):
    """The iCEBreaker example builds, fits and meets 24 MHz (about 4.5 minutes)."""
    report = build_board(load(SMALL), "icebreaker", freq_mhz=24, out_dir=tmp_path)
    assert (tmp_path / "top.bin").stat().st_size > 100_000     # a UP5K image is ~104 kB
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["met"] and report.fmax_mhz >= 24
    util = report.utilization["ICESTORM_LC"]
    assert 0 < util["used"] <= util["available"] == 5280
    kinds = {name.split()[-1] for name in report.blocks if name.startswith("tile")}
    assert kinds == {"memory", "gemm"}
    assert any(name.startswith("router") for name in report.blocks)
    assert report.blocks["bridge (UART + framing)"]["lut"] > 0


def test_loader_missing_library_is_named():
    from tilefab.boards.program import _missing_library
    text = ("openFPGALoader: error while loading shared libraries: libusb-1.0.so.0: cannot "
            "open shared object file: No such file or directory")
    assert _missing_library(text) == "libusb-1.0.so.0"
    assert _missing_library("unable to open ftdi device: -3 (device not found)") is None
