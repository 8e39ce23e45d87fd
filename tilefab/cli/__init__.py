"""The ``tilefab`` command line.

Each area of tilefab adds its own subcommands through a ``register(commands,
bench)`` function: ``commands`` is the top-level subparser set, ``bench`` the
one under ``tilefab bench``. Errors a user can fix (``TilefabError``) print one
line and exit with status 2; argparse usage errors exit 2 as well.
"""

from __future__ import annotations

import argparse
import sys

from ..gen import toolchain
from ..gen.errors import TilefabError
from ..gen.loader import clip
from . import blocks, boards, core, formal, fuzz, gemm, imc, mlp, pbit, sparse, sweep

# Modules that contribute subcommands, in the order they appear in --help.
EXTENSIONS = (core, gemm, imc, pbit, sparse, mlp, blocks, sweep, fuzz, formal, boards)
MAX_ERROR = 400         # an error is one line of at most this many characters


def _doctor(args) -> int:
    missing = 0
    for tool in toolchain.tools():
        status = tool.version or "found" if tool.found else "MISSING"
        if not tool.found and tool.required:
            missing += 1
        flag = "" if tool.found else ("  (required)" if tool.required else "  (optional)")
        print(f"{tool.name:15s} {status:40.40s} {tool.purpose}{flag}")
        if tool.found:
            print(f"{'':15s} {tool.path}")
    env = toolchain.environment()
    print("environment:")
    for k, v in sorted(env.items()):
        print(f"  {k}={v}")
    if missing:
        print(f"{missing} required tool(s) missing", file=sys.stderr)
        return 1
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``tilefab sim: error: argument --seed: ...``), exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tilefab",
        description="Generate, simulate, benchmark and synthesize tile fabrics.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    doctor = commands.add_parser("doctor", help="list the tools tilefab uses and their versions")
    doctor.set_defaults(func=_doctor)
    bench_parser = commands.add_parser("bench", help="run a benchmark and print its figures")
    bench = bench_parser.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    for module in EXTENSIONS:
        module.register(commands, bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)     # usage errors: one line, SystemExit(2)
    try:
        return args.func(args) or 0
    except TilefabError as exc:
        print(f"tilefab: error: {clip(str(exc), MAX_ERROR, text=True)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


