"""Board clocking: PLL settings for iCE40 and ECP5, and the PLL instances.

``ice40_pll(fin, fout)`` and ``ecp5_pll(fin, fout)`` search the PLL's dividers for
the output closest to ``fout`` (exact where one exists) within the datasheet's
ranges, as icepll and ecppll do:

- iCE40 SB_PLL40 (SIMPLE feedback): fout = fin * (DIVF+1) / ((DIVR+1) * 2**DIVQ);
  PFD fin/(DIVR+1) in 10..133 MHz, VCO in 533..1066 MHz, DIVQ 1..6, DIVF 0..127,
  DIVR 0..15, fout 16..275 MHz.
- ECP5 EHXPLLL (feedback from CLKOP): fout = fin * CLKFB_DIV / CLKI_DIV, VCO =
  fout * CLKOP_DIV in 400..800 MHz, PFD fin/CLKI_DIV >= 3.125 MHz, fout 3.125..400 MHz.

``PllSettings.instance(clk_in, clk_out, locked)`` is the Amaranth ``Instance``.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Instance

from ..gen.errors import TilefabError


@dataclass(frozen=True)
class PllSettings:
    family: str
    fin_hz: int
    fout_hz: float
    params: dict

    def instance(self, clk_in, clk_out, locked):
        """The PLL primitive: ``clk_in`` is the pad (iCE40: an io port, SB_PLL40_PAD)
        or the buffered input clock (ECP5)."""
        p = self.params
        if self.family == "ice40":
            return Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"],
                p_DIVQ=p["DIVQ"], p_FILTER_RANGE=p["FILTER_RANGE"],
                io_PACKAGEPIN=clk_in, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clk_out, o_LOCK=locked)
        mhz = f"{self.fout_hz / 1e6:g}"
        return Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.fin_hz / 1e6:g}", a_FREQUENCY_PIN_CLKOP=mhz,
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_DIV"] // 2, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p["CLKFB_DIV"],
            i_RST=0, i_STDBY=0, i_CLKI=clk_in, i_CLKFB=clk_out, o_CLKOP=clk_out,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)


def _ice40_filter(pfd_mhz: float) -> int:
    for bound, rng in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if pfd_mhz < bound:
            return rng
    return 6


def ice40_pll(fin_hz: int, fout_hz: float) -> PllSettings:
    if not 16e6 <= fout_hz <= 275e6:
        raise TilefabError(f"--freq: {fout_hz / 1e6:g} MHz is not allowed on an iCE40 PLL, "
                           f"must be 16..275 MHz (or the board clock, "
                           f"{fin_hz / 1e6:g} MHz, with no PLL)")
    best = None
    for divr in range(16):
        pfd = fin_hz / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f = vco / 2 ** divq
                if best is None or abs(f - fout_hz) < abs(best[0] - fout_hz):
                    best = (f, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                    "FILTER_RANGE": _ice40_filter(pfd / 1e6)})
    return PllSettings("ice40", fin_hz, best[0], best[1])


def ecp5_pll(fin_hz: int, fout_hz: float) -> PllSettings:
    if not 3.125e6 <= fout_hz <= 400e6:
        raise TilefabError(f"--freq: {fout_hz / 1e6:g} MHz is not allowed on an ECP5 PLL, "
                           f"must be 3.125..400 MHz")
    best = None
    for refdiv in range(1, 129):
        if fin_hz / refdiv < 3.125e6:
            break
        for fbdiv in range(1, 81):
            f = fin_hz * fbdiv / refdiv
            for outdiv in range(128, 0, -1):
                if 400e6 <= f * outdiv <= 800e6:
                    break
            else:
                continue
            # Closest output first; among equals, the highest VCO (least jitter).
            key = (abs(f - fout_hz), -f * outdiv)
            if best is None or key < best[0]:
                best = (key, f, {"CLKI_DIV": refdiv, "CLKFB_DIV": fbdiv, "CLKOP_DIV": outdiv})
    return PllSettings("ecp5", fin_hz, best[1], best[2])


PLLS = {"ice40": ice40_pll, "ecp5": ecp5_pll}
