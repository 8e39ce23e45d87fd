"""gen.pnr: nextpnr's Fmax of a synthesized block, cached, with clear errors."""

import pytest
from amaranth import Module, Signal
from amaranth.back import verilog
from tilefab.gen import pnr
from tilefab.gen.errors import TilefabError

LOG = """Info: Max frequency for clock '$glbnet$clk': 61.20 MHz (PASS at 12.00 MHz)
Info: Max frequency for clock '$glbnet$clk': 58.71 MHz (PASS at 12.00 MHz)
"""


def _counter(width: int) -> str:
    m = Module()
    count = Signal(width)
    out = Signal(width)
    m.d.sync += [count.eq(count + 1), out.eq(count ^ (count >> 1))]
    return verilog.convert(m, name="counter", ports=[out], emit_src=False)


def test_parse_takes_the_last_report():
    assert pnr.parse_fmax(LOG) == 58.71
    assert pnr.parse_fmax("Info: nothing here") is None


def test_fmax_of_a_counter_on_ice40_is_cached():
    v = _counter(24)
    first = pnr.fmax(v, "counter", "ice40", freq_mhz=12)
    assert 20 < first.fmax_mhz < 1000 and first.met
    again = pnr.fmax(v, "counter", "ice40", freq_mhz=12)
    assert again == first
    slow = pnr.fmax(v, "counter", "ice40", freq_mhz=5000)
    assert not slow.met and "misses 5000 MHz" in slow.line()


def test_unknown_family_is_named():
    with pytest.raises(TilefabError, match=r"family: 'xc7' is not supported, must be one of "
                                           r"ecp5, ice40"):
        pnr.fmax(_counter(4), "counter", "xc7")


def test_harness_keeps_the_block_behind_two_pins():
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from tilefab.gen.emit import to_verilog
    from tilefab.gen.generate import ports_of
    from tilefab.gen.synth import synthesize

    class Adder(wiring.Component):
        a: In(16)
        b: In(16)
        s: Out(17)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.s.eq(self.a + self.b)
            return m

    v = to_verilog(pnr.FmaxHarness(Adder()), "adder_h")
    assert sorted(p["name"] for p in ports_of(v, "adder_h")) == ["clk", "rst", "si", "so"]
    res = synthesize(v, "adder_h", "ecp5")
    assert res.ff >= 32 + 17 + 1                 # input chain, output registers, so
    assert res.lut >= 8                          # the adder survived
