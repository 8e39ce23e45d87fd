"""tilefab: a generator of parameterized RTL for tile-level dataflow AI hardware.

The fixed top-level folders of the repository are its subpackages:
``tilefab.hw`` (Amaranth components), ``tilefab.golden`` (numpy models),
``tilefab.gen`` (config, elaboration, CLI), ``tilefab.verif`` (cocotb harness and
simulator runners) and ``tilefab.boards`` (board tops and bitstream builds).
"""

__version__ = "0.1.0"
