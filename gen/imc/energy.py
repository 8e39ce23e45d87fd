"""Energy per MVM of an analog crossbar with the emulator's organisation.

Event counts per MVM (``B`` input planes, ``S`` slices, ``R x C`` cells, ``p1``
the fraction of input bits that are 1, ``A`` = ``adc_share`` columns per ADC):

- ADC: one conversion per column, slice and plane: ``B * S * C``, on
  ``S * C / A`` ADCs (``A * B`` conversions each per MVM). Sharing leaves the
  conversions, and so the ADC energy, unchanged; it divides the ADC count (area)
  by ``A`` and multiplies the MVM time by ``A``.
- DAC: the inputs are bit-serial, so the DAC is a 1-bit word-line driver; one
  charge of a word line per row, slice, plane whose bit is 1 and phase: the
  array is read once per phase, with column ``k`` of each group connected to its
  ADC in phase ``k``: ``p1 * B * S * R * A``.
- cell read: both devices of every pair on an active row of a connected column
  conduct for the read time, each column once per plane:
  ``p1 * B * S * R * C * 2`` device reads at their conductance.
- digital shift-add: one accumulator add per column, slice and plane,
  ``out_bits`` wide: ``B * S * C``.

Time per MVM (``mvm_ns``): ``A * B`` reads, each as long as the longer of the
read integration and one SAR conversion (``adc_bits + 1`` ADC cycles).

Figures (``FIGURES``, overridable from the config's ``energy`` section); each
is cited where it is defined. The MAC count is ``R * C`` per MVM (one MVM of
``in_bits``-bit inputs by ``levels**slices``-level weights); TOPS/W counts a
MAC as 2 operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...golden.imc import CrossbarParams, output_bound

FIGURES = {
    # NeuroSim (Peng et al., DNN+NeuroSim; REFERENCES.md "Energy") models the SAR
    # ADC of a column at 22 nm as (0.7213 * log2(L) + 3.3041) uW for L output levels.
    "adc_power_slope_uw": 0.7213,
    "adc_power_offset_uw": 3.3041,
    # A SAR ADC resolves one bit per comparator cycle plus one sampling cycle; the
    # 1 ns cycle is an assumption (a 1 GHz SAR clock), not a NeuroSim figure.
    "adc_cycle_ns": 1.0,
    # Read voltage across a device: 0.2 V is a typical non-disturbing read bias
    # for RRAM/PCM arrays (assumption; NeuroSim's default read voltages are of
    # this order).
    "v_read": 0.2,
    # Device conductance range: aihwkit's PCM model uses gmax = 25 uS
    # (REFERENCES.md, aihwkit); gmin 0.1 uS (on/off 250) is an assumption.
    "g_max_us": 25.0,
    "g_min_us": 0.1,
    # Integration time of one bit-plane read (assumption: matches one ADC sample).
    "t_read_ns": 1.0,
    # Word-line capacitance per cell crossed (wire plus access device gate); 0.2 fF
    # is an assumption of the order NeuroSim derives for 22-45 nm cell pitches.
    "c_wl_per_cell_ff": 0.2,
    # Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm, 0.9 V): 32-bit
    # integer add 0.1 pJ (8-bit 0.03 pJ); scaled linearly with the adder width.
    "add_pj_per_32bit": 0.1,
    # Fraction of input bits that are 1 (random inputs).
    "input_one_fraction": 0.5,
}


@dataclass
class EnergyReport:
    per_mvm_pj: dict          # component -> pJ per MVM
    macs: int
    adcs: int = 0             # ADCs of the array (slices * cols / adc_share)
    conversions: int = 0      # ADC conversions per MVM
    mvm_ns: float = 0.0       # time of one MVM

    @property
    def conversions_per_adc(self) -> int:
        return self.conversions // self.adcs if self.adcs else 0

    @property
    def total_pj(self) -> float:
        return sum(self.per_mvm_pj.values())

    @property
    def per_mac_fj(self) -> float:
        return 1e3 * self.total_pj / self.macs

    @property
    def tops_per_watt(self) -> float:
        # 2 ops per MAC; ops / pJ * 1e12 / 1e12.
        return 2 * self.macs / self.total_pj

    def shares(self) -> dict:
        total = self.total_pj
        return {k: v / total for k, v in self.per_mvm_pj.items()}

    def lines(self) -> list[str]:
        out = [f"{'component':12s} {'pJ/MVM':>10s} {'fJ/MAC':>10s} {'share':>7s}"]
        for k, v in self.per_mvm_pj.items():
            out.append(f"{k:12s} {v:10.3f} {1e3 * v / self.macs:10.3f} "
                       f"{100 * v / self.total_pj:6.1f}%")
        out.append(f"{'total':12s} {self.total_pj:10.3f} {self.per_mac_fj:10.3f} {100:6.1f}%")
        return out


def adc_energy_pj(bits: int, f: dict = FIGURES) -> float:
    """Energy of one SAR conversion with ``bits`` bits (0 = ideal ADC, no cost)."""
    if bits == 0:
        return 0.0
    power_uw = f["adc_power_slope_uw"] * bits + f["adc_power_offset_uw"]
    return power_uw * 1e-6 * (bits + 1) * f["adc_cycle_ns"] * 1e-9 * 1e12


def mean_level(p: CrossbarParams, weights=None) -> float:
    """Mean conductance level of one device, over both devices of every pair."""
    if weights is None:
        # Uniform random weights: the active device of a slice holds a uniform digit,
        # the other sits at level 0.
        return (p.levels - 1) / 4
    mag = np.abs(np.asarray(weights, dtype=np.int64))
    digits = [(mag // p.levels ** s) % p.levels for s in range(p.slices)]
    return float(np.mean(digits)) / 2


def energy_per_mvm(p: CrossbarParams, overrides: dict | None = None,
                   weights=None) -> EnergyReport:
    f = dict(FIGURES)
    f.update(overrides or {})
    B, S, R, C, A = p.in_bits, p.slices, p.rows, p.cols, p.adc_share
    p1 = f["input_one_fraction"]
    conversions = B * S * C
    level = mean_level(p, weights)
    g_us = f["g_min_us"] + level / (p.levels - 1) * (f["g_max_us"] - f["g_min_us"])
    cell_pj = f["v_read"] ** 2 * g_us * 1e-6 * f["t_read_ns"] * 1e-9 * 1e12
    wl_pj = C * 2 * f["c_wl_per_cell_ff"] * 1e-15 * f["v_read"] ** 2 * 1e12
    out_bits = output_bound(p).bit_length() + 1
    add_pj = f["add_pj_per_32bit"] * out_bits / 32
    per = {
        "adc": conversions * adc_energy_pj(p.adc_bits, f),
        "dac": p1 * B * S * R * A * wl_pj,
        "cell_read": p1 * B * S * R * C * 2 * cell_pj,
        "shift_add": conversions * add_pj,
    }
    t_conv = (p.adc_bits + 1) * f["adc_cycle_ns"] if p.adc_bits else 0.0
    return EnergyReport(per_mvm_pj=per, macs=R * C, adcs=p.adcs, conversions=conversions,
                        mvm_ns=A * B * max(f["t_read_ns"], t_conv))
