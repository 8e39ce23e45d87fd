"""The one guarded reader of every input file (fabric YAML, graph files, sweep specs).

Contract: a file is read whole up to a size bound and decoded as UTF-8 (an error
names the file and the byte offset); YAML is composed with aliases refused, depth
and node count bounded, duplicate keys refused naming both lines, mapping keys
plain strings, and only the plain scalar types (string, integer, float, boolean,
null) allowed: dates, ``!!binary``, sets and custom tags are refused with their
line. An integral float (``2.0``) is read as the integer 2. Every error is a
``LoadError`` (a ``ConfigError``) of one line, ``file:line: field: message``,
and never echoes more than ``ECHO`` characters of a value (``clip``).

``Lines`` maps a YAML path (a tuple of keys and indices) to its line, so checks
after loading can point at the line of the field they refuse.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from .errors import ConfigError

MAX_BYTES = 1 << 20          # a fabric YAML is a few hundred bytes
MAX_DEPTH = 32
MAX_NODES = 100_000
ECHO = 80

_PLAIN = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}


class LoadError(ConfigError):
    """An input file that cannot be read: names the file, the line and the field."""

    def __init__(self, file, message: str, line: int | None = None, field: str = ""):
        self.file, self.line, self.field = str(file), line, field
        where = clip(self.file, 200, text=True) + (f":{line}" if line else "")
        super().__init__(where, f"{field + ': ' if field else ''}{one_line(message)}")
        self.path = field


def clip(value, limit: int = ECHO, text: bool = False) -> str:
    """``value`` as short text for a message (``text``: a string as it is, else its repr):
    never fails, never longer than ``limit``."""
    try:
        out = value[:limit + 2] if text and isinstance(value, str) else _repr(value, limit)
    except Exception:                          # noqa: BLE001  (a message must never fail)
        out = f"<{type(value).__name__}>"
    out = one_line(out)
    return out if len(out) <= limit else out[:limit - 1] + "…"


def _repr(value, limit: int) -> str:
    if isinstance(value, str):
        return json.dumps(value[:limit + 2], ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, int):
        if value.bit_length() > 4 * limit:
            return f"an integer of {value.bit_length()} bits"
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}" if len(value) > 8 else \
            "[" + ", ".join(_repr(v, limit) for v in value[:8]) + "]"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes of binary data"
    return f"a {type(value).__name__}"


def one_line(text: str) -> str:
    return " ".join(str(text).split("\n")) if "\n" in str(text) else str(text)


def field_path(parts) -> str:
    """``("tiles", "at", 0, "x")`` -> ``tiles.at[0].x``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def read_bytes(path, what: str = "file", max_bytes: int = MAX_BYTES) -> bytes:
    """The file's bytes, or a ``LoadError`` naming it (missing, a folder, too large)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except IsADirectoryError:
        raise LoadError(path, f"is a directory, not a {what}") from None
    except OSError as exc:
        raise LoadError(path, f"cannot read {what} ({exc.strerror or exc})") from None
    except ValueError as exc:                  # an embedded NUL in the path
        raise LoadError(repr(str(path)), f"cannot read {what} ({exc})") from None
    if len(data) > max_bytes:
        raise LoadError(path, f"{what} is larger than {max_bytes} bytes, the most tilefab "
                              f"reads")
    return data


def read_text(path, what: str = "file", max_bytes: int = MAX_BYTES) -> str:
    """The file decoded as UTF-8; a bad byte is named by its offset and line."""
    data = read_bytes(path, what, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LoadError(path, f"not UTF-8: byte 0x{data[exc.start]:02x} at offset "
                              f"{exc.start} ({exc.reason})", line) from None
    return text.removeprefix("\ufeff")


class _Composer(yaml.SafeLoader):
    """A SafeLoader that composes a bounded node tree and refuses aliases."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise _Refused(ev.start_mark, f"YAML aliases (*{clip(ev.anchor, 40, text=True)}) are not "
                                          f"allowed; write the value out")
        self._depth += 1
        self._nodes += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(self.peek_event().start_mark,
                           f"nesting deeper than {MAX_DEPTH} levels is not allowed")
        if self._nodes > MAX_NODES:
            raise _Refused(self.peek_event().start_mark,
                           f"more than {MAX_NODES} YAML values is not allowed")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    def __init__(self, mark, message):
        self.mark, self.message = mark, message


class Lines(dict):
    """YAML path (tuple) -> 1-based line; ``line(path)`` falls back to the nearest parent."""

    def line(self, parts) -> int | None:
        parts = tuple(parts)
        while parts not in self and parts:
            parts = parts[:-1]
        return self.get(parts)


def parse_yaml(text: str, file="<string>") -> tuple[object, Lines]:
    """Parse one YAML document under the bounds above: ``(value, lines)``."""
    loader = None
    try:
        loader = _Composer(text)
        node = loader.get_single_node()
    except _Refused as exc:
        raise LoadError(file, exc.message, exc.mark.line + 1) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise LoadError(file, f"not valid YAML: {clip(exc.problem or exc.context, 120, text=True)}",
                        mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise LoadError(file, f"not valid YAML: character {exc.character!r} at offset "
                              f"{exc.position} is not allowed", line) from None
    except yaml.YAMLError as exc:
        raise LoadError(file, f"not valid YAML: {clip(str(exc), 120, text=True)}") from None
    except RecursionError:
        raise LoadError(file, f"nesting deeper than {MAX_DEPTH} levels is not allowed") \
            from None
    finally:
        if loader is not None:
            loader.dispose()
    lines = Lines()
    if node is None:
        return None, lines
    return _build(node, (), lines, loader, file), lines


def _build(node, path, lines, loader, file):
    line = node.start_mark.line + 1
    lines[path] = line
    where = field_path(path)

    def refuse(message):
        raise LoadError(file, message, line, where)

    if isinstance(node, yaml.MappingNode):
        if node.tag != "tag:yaml.org,2002:map":
            refuse(f"YAML tag {clip(node.tag, 40, text=True)} is not allowed (a plain mapping is)")
        out, first = {}, {}
        for knode, vnode in node.value:
            kline = knode.start_mark.line + 1
            if not isinstance(knode, yaml.ScalarNode) or knode.tag != "tag:yaml.org,2002:str":
                what = "a list or mapping" if not isinstance(knode, yaml.ScalarNode) else \
                    clip(knode.value)
                raise LoadError(file, f"mapping keys must be plain names, not {what}", kline,
                                where)
            key = knode.value
            if key == "<<":
                raise LoadError(file, "YAML merge keys (<<) are not allowed", kline, where)
            if key in first:
                raise LoadError(file, f"duplicate key {clip(key)} (first given at line "
                                      f"{first[key]})", kline, where)
            first[key] = kline
            out[key] = _build(vnode, path + (key,), lines, loader, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            refuse(f"YAML tag {clip(node.tag, 40, text=True)} is not allowed (a plain list is)")
        return [_build(v, path + (k,), lines, loader, file) for k, v in enumerate(node.value)]
    if node.tag == "tag:yaml.org,2002:timestamp":
        refuse(f"{clip(node.value)} is a date, which no field takes (quote it for a string)")
    if node.tag not in _PLAIN:
        refuse(f"YAML tag {clip(node.tag.replace('tag:yaml.org,2002:', '!!'), 40, text=True)} is not "
               f"allowed (plain strings, numbers, booleans and null are)")
    try:
        value = loader.construct_object(node, deep=True)
    except (ValueError, OverflowError, yaml.YAMLError):
        refuse(f"{clip(node.value)} is not a readable {node.tag.rsplit(':', 1)[-1]}")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() \
            and abs(value) < 2 ** 53:
        value = int(value)
    return value


def load_yaml(path, what: str = "config", max_bytes: int = MAX_BYTES) -> tuple[object, Lines]:
    """Read, decode and parse a YAML file under every bound: ``(value, lines)``."""
    return parse_yaml(read_text(path, what, max_bytes), path)
