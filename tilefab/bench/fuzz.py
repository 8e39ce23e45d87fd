"""``tilefab bench fuzz``: hostile and careless inputs to every command, counted by outcome.

Cases are drawn from a seeded generator: mutations of every example YAML (values set
to hostile ones, keys dropped or added, and text-level damage: alias bombs, duplicate
keys, bad UTF-8, deep nesting, odd tags, truncation, flipped bytes), rudy graph files,
CLI argument vectors with hostile values, and output paths onto files or unwritable
places. Each case runs ``tilefab.cli.main(argv)`` in a forked child with an address
space limit and a time limit, so a case can neither take the machine's memory nor
hang the run (its resident memory is watched). Outcomes:

- ``ok``: exit 0 on an input that may be valid;
- ``clean error``: exit 1 or 2 with one ``tilefab...: error:`` line (1: a checked
  result that failed);
- ``traceback``: an uncaught exception, or an error that is not one clean line;
- ``memory kill``: ``MemoryError``, a kill by a signal, or resident memory beyond
  ``MEMORY_LIMIT`` above the parent's (the child is then killed);
- ``vacuous pass``: exit 0 on an input that is invalid by construction;
- ``timeout``: still running at the time limit.

Valid configs are elaborated (``generate``, ``lint``, ``synth`` run for real) for the
first ``--elaborate`` of them; later ones are loaded and checked in process and
counted ``ok`` without RTL: elaboration takes seconds, the checks milliseconds.
"""

from __future__ import annotations

import collections
import copy
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import yaml

from ..gen import toolchain
from ..gen.config import load

OUTCOMES = ("ok", "clean error", "traceback", "memory kill", "vacuous pass", "timeout")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MEMORY_LIMIT = 1 << 30          # bytes of address space a case may add
TIMEOUT = 120.0
ELABORATE = 40                  # valid configs elaborated per run; the rest only loaded

# Values a careless or hostile user puts where a number or a name is expected.
HOSTILE = [0, -1, 1, 2, 2.0, 1.5, -0.0, 1e400, float("nan"), float("-inf"), 2 ** 64,
           10 ** 30, True, None, "", "x" * 100_000, "logic", "a-b", "a b", "²", "名前",
           [1], [], {}, {"a": 1}, "2020-01-01", "0x10", "1e3", "16", "wire", "module"]
# Text snippets that damage a YAML file.
DAMAGE = [
    ("bomb: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n"),
    "name: !!binary aGVsbG8=\n", "name: 2020-01-01\n", "? [a, b]\n: 1\n",
    "1: x\nb: y\n", "name: !foo bar\n", "mesh: !!set {a, b}\n", "<<: {a: 1}\n",
    "x: " + "[" * 400 + "]" * 400 + "\n", "x: " + "{a: " * 100 + "1" + "}" * 100 + "\n",
    "mesh:\n  cols: 2\n  cols: 3\n", "\t- broken\n", "--- \n---\n", "%YAML 9.9\n",
]
SEED_ARGS = ["-1", "-5", "4294967296", "nan", "1e3", "", "0x10", "9" * 5000, "1.5"]
COUNT_ARGS = ["0", "-5", "-1", "nan", "inf", "1e9", "10000000", "9" * 5000, "2.5", "x"]
FRACTION_ARGS = ["2.0", "-1", "nan", "inf", "1", "1.0", "-0.5", "1e400", "x"]


def _yaml_text(value) -> str:
    try:
        return yaml.safe_dump(value, allow_unicode=True, sort_keys=False)
    except Exception:                      # noqa: BLE001  (an unrepresentable value)
        return "mesh: {cols: 1, rows: 1}\n"


def _leaves(d, path=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(d, list):
        for k, v in enumerate(d):
            yield from _leaves(v, path + (k,))
    yield path


def _set(d, path, value):
    for p in path[:-1]:
        d = d[p]
    if value is _DELETE:
        del d[path[-1]]
    else:
        d[path[-1]] = value


_DELETE = object()


class Case:
    def __init__(self, target, argv, files=None, invalid=False):
        self.target, self.argv, self.files, self.invalid = target, argv, files or {}, invalid


def examples() -> list[Path]:
    return sorted(EXAMPLES.rglob("*.yaml"))


def mutate_yaml(rng: random.Random, example: Path) -> tuple[bytes, bool]:
    """A damaged copy of ``example``: ``(bytes, invalid by construction)``."""
    text = example.read_text()
    raw = yaml.safe_load(text)
    kind = rng.randrange(7)
    if kind == 6 and isinstance(raw, dict):
        # a plausible value, often legal: the extremes of the ranges
        paths = [p for p in _leaves(raw) if p and p[-1] not in ("x", "y")]
        path = rng.choice(paths)
        pool = [0, 1, 2, 3, 17] if path[-1] in ("cols", "rows") and "mesh" in path else \
            [1, 2, 0, 3, 4, 8, 16, 64, 256, 1024, 65532, 65535]   # a 16x16 mesh takes minutes
        try:
            _set(raw, path, rng.choice(pool))
        except (KeyError, IndexError, TypeError):
            pass
        return _yaml_text(raw).encode(), False
    if kind <= 1 and isinstance(raw, dict):
        for _ in range(rng.randint(1, 3)):
            paths = [p for p in _leaves(raw) if p]
            path = rng.choice(paths)
            try:
                _set(raw, path, _DELETE if rng.random() < 0.15 else
                     copy.deepcopy(rng.choice(HOSTILE)))
            except (KeyError, IndexError, TypeError):
                pass
        return _yaml_text(raw).encode(), False
    if kind == 2:
        extra = {rng.choice(["extra", 1, "1", "x-y", "mesh2"]): copy.deepcopy(rng.choice(HOSTILE))}
        return (_yaml_text(extra) + text).encode(), False
    if kind == 3:
        return (text + rng.choice(DAMAGE)).encode(), True
    data = bytearray(text.encode())
    if kind == 4:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice(b" :-[]{}&*!|>#'\"\t\n0129az") \
                if rng.random() < 0.8 else rng.randrange(256)
        return bytes(data), False
    return bytes(data[:rng.randrange(len(data))]) + rng.choice([b"", b"\xff\xfe", b"\x00"]), \
        False


def rudy(rng: random.Random) -> tuple[bytes, bool]:
    n = rng.choice([1, 2, 3, 5, 8, 0, 30_000, 10 ** 8])
    m = rng.randint(0, 6)
    lines = [f"{n} {m}"]
    for _ in range(m):
        i, j = rng.randint(1, max(1, min(n, 8))), rng.randint(1, max(1, min(n, 8)))
        w = rng.choice([1, -1, 3, 2 ** 64, 2 ** 31, "x", "1.5", "٣"])
        lines.append(f"{i} {j} {w}")
    bad = False
    r = rng.random()
    if r < 0.1:
        lines[0], bad = rng.choice(["² 0", "n m", "4", "4 3 2", "-4 3", "٤ 0"]), True
    elif r < 0.15:
        lines.append("1 2 ½")
        bad = True
    data = ("\n".join(lines) + "\n").encode()
    if r > 0.95:
        data, bad = data + b"\xff\xfe\n", True
    return data, bad


def make_case(rng: random.Random, k: int, tmp: Path) -> Case:
    exs = examples()
    target = rng.choice(["generate", "lint", "sim", "imc report", "imc mvm", "pbit maxcut",
                         "pbit factor", "synth", "argv", "output", "rudy", "bench noc"])
    cfg = tmp / f"c{k}.yaml"
    if target in ("generate", "lint", "sim", "imc report", "imc mvm", "synth"):
        data, bad = mutate_yaml(rng, rng.choice(exs))
        extra = {"generate": ["generate", str(cfg), "-o", str(tmp / f"o{k}")],
                 "lint": ["lint", str(cfg)], "sim": ["sim", str(cfg), "memory",
                                                     "--requests", rng.choice(COUNT_ARGS)],
                 "imc report": ["imc", "report", str(cfg)],
                 "imc mvm": ["imc", "mvm", str(cfg), "--seed", rng.choice(SEED_ARGS)],
                 "synth": ["synth", str(cfg), "--family", "ice40"]}[target]
        if not bad and (target == "synth" or target == "lint" and rng.random() < 0.9):
            # yosys takes minutes, Verilator seconds: synth only sees damaged files (its
            # runs are the synthesis tests' job), lint mostly
            data, bad = data + rng.choice(DAMAGE[:8]).encode(), True
        # sim/mvm carry a hostile argument
        invalid = bad or target in ("sim", "imc mvm")
        return Case(target, extra, {cfg: data}, invalid)
    if target in ("pbit maxcut", "rudy"):
        g = tmp / rng.choice([f"g{k}.rudy", f"g {k}-x.rudy", f"{k}logic.txt"])
        data, bad = rudy(rng)
        argv = ["pbit", "maxcut", str(g), "--backend", "golden", "--sweeps",
                rng.choice(["1", "2", "5", "0", "-3"] if rng.random() < 0.2 else ["1", "2"])]
        return Case(target, argv, {g: data}, bad or argv[-1] in ("0", "-3"))
    if target == "pbit factor":
        return Case(target, ["pbit", "factor", rng.choice(["0", "-15", "2" * 60, "nan",
                                                            "15x"]), "--backend", "golden"],
                    invalid=True)
    if target == "output":
        f = tmp / f"file{k}"
        f.write_text("x")
        out = rng.choice([str(f), str(f / "sub"), "/proc/tilefab", "/dev/null", ""])
        return Case(target, ["generate", str(rng.choice(exs)), "-o", out], invalid=True)
    if target == "bench noc":
        opt = rng.choice(["--mesh", "--points", "--warmup", "--measure", "--fifo-depth",
                          "--seed"])
        val = rng.choice(["0x0", "17x1", "4", "-1", "0", "nan", "9" * 50]) if opt == "--mesh" \
            else rng.choice(COUNT_ARGS if opt != "--seed" else SEED_ARGS)
        if opt in ("--warmup",) and val == "0":
            val = "-1"
        return Case(target, ["bench", "noc", opt, val], invalid=True)
    # argv: a hostile value in an option of a heavy command, which must never start
    ex = str(rng.choice(exs))
    cmd, opts = rng.choice([
        (["sim", ex], {"--requests": COUNT_ARGS, "--bad": FRACTION_ARGS, "--m": COUNT_ARGS,
                       "--n": COUNT_ARGS, "--k": COUNT_ARGS, "--vectors": COUNT_ARGS,
                       "--seed": SEED_ARGS, "--stall-in": FRACTION_ARGS,
                       "--stall-out": FRACTION_ARGS, "--sweeps": COUNT_ARGS,
                       "--factor": COUNT_ARGS + ["3"]}),
        (["imc", "mvm", ex], {"--vectors": COUNT_ARGS, "--seed": SEED_ARGS,
                              "--stall-in": FRACTION_ARGS, "--inputs": ["-1", "10000000"],
                              "--outputs": ["-1", "1e9"], "--show": ["-1", "x"]}),
        (["pbit", "maxcut", ex], {"--seed": SEED_ARGS, "--sweeps": COUNT_ARGS,
                                  "--stall-out": FRACTION_ARGS, "--lanes": ["3", "0", "128"],
                                  "--tile": ["1", "a,b", ""]}),
        (["imc", "report", ex], {"--figure": ["adc=nan", "adc=inf", "bogus=1", "x", "=",
                                              "adc=-1"], "--tile": ["x", "1"]}),
    ])
    opt = rng.choice(sorted(opts))
    return Case("argv", [*cmd, opt, rng.choice(opts[opt])], invalid=True)


def _child(argv, out_path, err_path):
    fd_out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    fd_err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd_out, 1)
    os.dup2(fd_err, 2)
    # fresh streams on fds 1 and 2, whatever the parent had put in sys (pytest's capture)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    code = 70
    try:
        os.chdir(os.path.dirname(out_path))     # a stray relative path lands in the scratch
        from ..cli import main
        code = main(argv)
        code = code if isinstance(code, int) else 0
    except SystemExit as exc:              # argparse: usage errors and --help
        code = exc.code if isinstance(exc.code, int) else 2
    except MemoryError:
        sys.stderr.write("MemoryError\n")
        code = 137
    except BaseException:                  # noqa: BLE001  (this is what is counted)
        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _rss(pid: int) -> int:
    """Resident bytes of ``pid`` (0 if gone). An address-space limit would not do:
    yosys under wasmtime reserves gigabytes it never touches."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def run_case(case: Case, tmp: Path, timeout: float = TIMEOUT) -> tuple[str, str]:
    """``(outcome, detail)`` of one case, run in a forked, limited child."""
    for path, data in case.files.items():
        Path(path).write_bytes(data)
    out, err = tmp / "stdout", tmp / "stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)           # its own group: a kill reaches yosys/Verilator children
        _child(case.argv, out, err)
    t0 = time.monotonic()
    base = _rss(os.getpid())
    polls = 0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        polls += 1
        if polls % 5 == 0 and _rss(pid) > base + MEMORY_LIMIT:
            _kill(pid)
            return "memory kill", " ".join(case.argv)[:200]
        if time.monotonic() - t0 > timeout:
            _kill(pid)
            return "timeout", " ".join(case.argv)
        time.sleep(0.002)
    try:
        os.killpg(pid, signal.SIGKILL)     # leftovers of the case, if any
    except OSError:
        pass
    stderr = err.read_text(errors="replace")
    stdout = out.read_text(errors="replace")
    if os.WIFSIGNALED(status):
        return "memory kill", f"signal {os.WTERMSIG(status)}"
    code = os.WEXITSTATUS(status)
    if code == 137:
        return "memory kill", " ".join(case.argv)[:200]
    if code == 0:
        if case.invalid:
            return "vacuous pass", " ".join(case.argv)[:200] + " | " + stdout[-200:]
        return "ok", ""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    clean = (code in (1, 2) and "Traceback" not in stderr and len(lines) <= 1
             and (not lines or (lines[0].startswith("tilefab") and "error:" in lines[0])
                  or code == 1))
    if code == 1 and "PASS" in stdout and case.invalid:
        return "vacuous pass", stdout[-200:]
    if clean and (code == 2 and lines or code == 1):
        return "clean error", ""
    return "traceback", f"{' '.join(case.argv)[:200]} -> exit {code}: {stderr[-600:]}"


def _needs_elaboration(case: Case) -> bool:
    """A generate/lint/synth case on a config that loads: it would elaborate RTL."""
    if case.target not in ("generate", "lint", "synth") or not case.files:
        return False
    for path, data in case.files.items():
        Path(path).write_bytes(data)
    try:
        load(next(iter(case.files)))
    except Exception:                      # noqa: BLE001  (the child will report it)
        return False
    return True


def run_fuzz(cases: int = 10_000, seed: int = 1, timeout: float = TIMEOUT,
             show: int = 5, progress: bool = True, elaborate: int = ELABORATE) -> dict:
    rng = random.Random(seed)
    toolchain.versions()           # found once here, inherited by every forked case
    counts = collections.Counter({o: 0 for o in OUTCOMES})
    by_target = collections.defaultdict(collections.Counter)
    bad = []
    skipped = 0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tilefab-fuzz-") as d:
        tmp = Path(d)
        for k in range(cases):
            case = make_case(rng, k % 64, tmp)
            if _needs_elaboration(case):
                if elaborate <= 0:
                    counts["ok"] += 1              # loaded and checked; RTL not elaborated
                    by_target[case.target]["ok"] += 1
                    skipped += 1
                    continue
                elaborate -= 1
            outcome, detail = run_case(case, tmp, timeout)
            counts[outcome] += 1
            by_target[case.target][outcome] += 1
            if outcome not in ("ok", "clean error"):
                bad.append((outcome, detail))
            for path in case.files:
                Path(path).unlink(missing_ok=True)
            if progress and (k + 1) % 500 == 0:
                print(f"  {k + 1} cases, {time.monotonic() - t0:.0f} s: "
                      + ", ".join(f"{o} {counts[o]}" for o in OUTCOMES), flush=True)
    return {"cases": cases, "seconds": time.monotonic() - t0, "counts": dict(counts),
            "not_elaborated": skipped,
            "by_target": {t: dict(c) for t, c in sorted(by_target.items())},
            "failures": bad}


def bench(args) -> int:
    print(f"fuzzing every command with {args.cases} hostile/careless cases (seed {args.seed}, "
          f"{MEMORY_LIMIT >> 20} MB and {args.timeout:g} s per case)")
    r = run_fuzz(args.cases, args.seed, args.timeout, elaborate=args.elaborate)
    print(f"{r['cases']} cases in {r['seconds']:.0f} s ({r['not_elaborated']} valid configs "
          f"loaded and checked without elaborating RTL)")
    print(f"{'target':<12} " + " ".join(f"{o:>13}" for o in OUTCOMES))
    for t, c in r["by_target"].items():
        print(f"{t:<12} " + " ".join(f"{c.get(o, 0):>13}" for o in OUTCOMES))
    print(f"{'total':<12} " + " ".join(f"{r['counts'][o]:>13}" for o in OUTCOMES))
    for outcome, detail in r["failures"][:args.show]:
        print(f"  {outcome}: {detail}")
    failed = sum(r["counts"][o] for o in ("traceback", "memory kill", "vacuous pass",
                                          "timeout"))
    return 1 if failed else 0
