"""tilefab: a generator of parameterized RTL for tile-level dataflow AI hardware.

The fixed top-level folders of the repository are its subpackages:
``tilefab.hw`` (Amaranth components), ``tilefab.golden`` (numpy models),
``tilefab.gen`` (config, elaboration, emission, workload compilers),
``tilefab.verif`` (cocotb harness, simulator runners, the runtime's backends) and
``tilefab.boards`` (board tops and bitstream builds); ``tilefab.cli`` and
``tilefab.bench`` sit on top. ``from tilefab import Fabric`` is the runtime.
"""

__version__ = "0.1.0"

from .verif.runtime import CocotbBackend, Fabric  # noqa: E402

__all__ = ["CocotbBackend", "Fabric", "__version__"]
