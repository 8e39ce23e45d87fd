"""Fabric configuration: the YAML schema, its validation and the resolved config.

A config names a mesh (``cols`` x ``rows``, FIFO depth), the packet field widths,
where the host port hangs off the mesh, and a tile map: a default tile and
per-coordinate overrides, each a ``kind`` with that kind's parameters.

Validation is done by ``jsonschema`` against ``SCHEMA`` and then by checks that
span fields (the host on an edge, coordinates inside the mesh); every error
names its YAML path, the value and what is allowed, e.g.
``mesh.cols: 0 is not allowed, must be 1..16``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import jsonschema

from .. import __version__, hw
from ..golden.packet import coord_bits_for
from ..hw.fabric import TILE_KINDS
from . import toolchain
from .errors import ConfigError
from .loader import LoadError, clip, load_yaml
from .names import check_name

MAX_DIM = 16
COUNTER_BITS = 32



def tile_kinds() -> dict:
    """Kind name -> the JSON schema of its parameters, derived from ``Tile.Params.PARAMS``."""
    return {kind: {p.name: p.schema() for p in cls.Params.PARAMS}
            for kind, cls in TILE_KINDS.items()}


PACKET_FIELDS = ("data_bits", "addr_bits", "coord_bits")

_int = lambda lo, hi, **kw: {"type": "integer", "minimum": lo, "maximum": hi, **kw}  # noqa: E731

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["mesh"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$",
                 "default": "fabric"},
        "counter_bits": _int(8, 64, default=COUNTER_BITS,
                             description="width of every status counter (routers' drop "
                                         "counters, tiles, the host bridge); they wrap"),
        "mesh": {
            "type": "object",
            "additionalProperties": False,
            "required": ["cols", "rows"],
            "properties": {
                "cols": _int(1, MAX_DIM),
                "rows": _int(1, MAX_DIM),
                "fifo_depth": _int(1, 64, default=2),
                "router": {"enum": ["fifo", "voq"], "default": "fifo",
                           "description": "fifo: one FIFO per input; voq: virtual output "
                                          "queues with crossbar input speedup"},
                "voq_depth": _int(1, 64, default=4,
                                  description="entries per virtual output queue (voq)"),
            },
        },
        "packet": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "data_bits": _int(1, 256, default=32),
                "addr_bits": _int(4, 32, default=16),
                "coord_bits": _int(1, 8),
                "multicast": {"type": "boolean", "default": False,
                              "description": "add mcast, dst_x1, dst_y1: packets for a "
                                             "rectangle of tiles"},
            },
        },
        "host": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "x": _int(0, MAX_DIM - 1, default=0),
                "y": _int(0, MAX_DIM - 1, default=0),
                "side": {"enum": ["west", "north", "east", "south"], "default": "west"},
            },
        },
        "tiles": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "default": {"type": "object", "default": {"kind": "memory"},
                            "required": ["kind"]},
                "at": {
                    "type": "array",
                    "default": [],
                    "items": {
                        "type": "object",
                        "required": ["x", "y", "kind"],
                        "properties": {"x": _int(0, MAX_DIM - 1), "y": _int(0, MAX_DIM - 1)},
                    },
                },
            },
        },
    },
}


def _is_integer(_checker, v) -> bool:
    # strict: 2.0 is not an integer here (the loader has already read a YAML 2.0 as 2)
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(_checker, v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}))


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _message(err: jsonschema.ValidationError) -> str:
    v, schema = err.instance, err.schema
    if err.validator in ("minimum", "maximum"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        rng = f"{lo}..{hi}" if lo is not None and hi is not None else (
            f">= {lo}" if lo is not None else f"<= {hi}")
        return f"{clip(v)} is not allowed, must be {rng}"
    if err.validator == "type":
        finite = " (finite)" if isinstance(v, float) and err.validator_value == "number" else ""
        return f"{clip(v)} is not allowed, must be of type {err.validator_value}{finite}"
    if err.validator == "enum":
        return (f"{clip(v)} is not allowed, must be one of "
                f"{', '.join(map(str, err.validator_value))}")
    if err.validator == "pattern":
        return f"{clip(v)} is not allowed, must match {err.validator_value}"
    if err.validator == "additionalProperties":
        extra = sorted(set(v) - set(schema.get("properties", {})), key=str)
        return (f"unknown field {', '.join(_key(k) for k in extra[:4])}"
                f"{' and more' if len(extra) > 4 else ''}; allowed fields: "
                f"{', '.join(schema.get('properties', {}))}")
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in v]
        return f"{', '.join(map(repr, missing))} is missing (required)"
    return f"{clip(v)} is not allowed ({err.validator} {clip(err.validator_value)})"


def _key(k) -> str:
    return repr(k) if isinstance(k, str) and len(k) <= 40 else clip(k, 40)


def _validate(instance, schema, base=()):
    """The first error (by YAML path) as one line naming its field, and how many follow."""
    errors = sorted(_Validator(schema).iter_errors(instance),
                    key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        raise ConfigError(_path(base + tuple(e.absolute_path)), _message(e) + more)


def _fill_defaults(instance: dict, schema: dict) -> dict:
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(instance[key], sub)
    return instance


def _tile(spec: dict, where: tuple) -> dict:
    path = _path(where)
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in TILE_KINDS:
        raise ConfigError(f"{path}.kind", f"{clip(kind)} is not a tile "
                                          f"kind, must be one of {', '.join(sorted(TILE_KINDS))}")
    params = {k: v for k, v in spec.items() if k not in ("kind", "x", "y")}
    schema = {"type": "object", "additionalProperties": False,
              "properties": tile_kinds()[kind]}
    _validate(params, schema, base=where)
    return {"kind": kind, **_fill_defaults(params, schema)}


def resolve(raw) -> dict:
    """Validate a config (already parsed from YAML) and return it with defaults filled."""
    if not isinstance(raw, dict):
        raise ConfigError("", "a fabric config must be a YAML mapping with at least 'mesh'")
    _validate(raw, SCHEMA)
    cfg = _fill_defaults(copy.deepcopy(raw), SCHEMA)
    why = check_name(cfg["name"])
    if why:
        raise ConfigError("name", f"{clip(cfg['name'])} is not allowed, {why}")
    cols, rows = cfg["mesh"]["cols"], cfg["mesh"]["rows"]

    need = coord_bits_for(cols, rows)
    pkt = cfg["packet"]
    if "coord_bits" in pkt and pkt["coord_bits"] < need:
        raise ConfigError("packet.coord_bits",
                          f"{pkt['coord_bits']} is not allowed, must be {need}..8 for a "
                          f"{cols}x{rows} mesh (the all-ones coordinate addresses the host)")
    pkt.setdefault("coord_bits", need)

    host = cfg["host"]
    if host["x"] >= cols:
        raise ConfigError("host.x", f"{host['x']} is not allowed, must be 0..{cols - 1}")
    if host["y"] >= rows:
        raise ConfigError("host.y", f"{host['y']} is not allowed, must be 0..{rows - 1}")
    edge = {"west": ("x", 0), "east": ("x", cols - 1),
            "north": ("y", 0), "south": ("y", rows - 1)}[host["side"]]
    if host[edge[0]] != edge[1]:
        raise ConfigError(f"host.{edge[0]}",
                          f"{host[edge[0]]} is not allowed with side {host['side']}, must be "
                          f"{edge[1]} (the host port sits on the mesh edge)")

    default = _tile(cfg["tiles"]["default"], ("tiles", "default"))
    grid = {(x, y): dict(default) for y in range(rows) for x in range(cols)}
    seen = {}
    for k, spec in enumerate(cfg["tiles"]["at"]):
        x, y = spec["x"], spec["y"]
        if x >= cols:
            raise ConfigError(f"tiles.at[{k}].x", f"{x} is not allowed, must be 0..{cols - 1}")
        if y >= rows:
            raise ConfigError(f"tiles.at[{k}].y", f"{y} is not allowed, must be 0..{rows - 1}")
        if (x, y) in seen:
            raise ConfigError(f"tiles.at[{k}]", f"({x}, {y}) is already given by "
                                               f"tiles.at[{seen[(x, y)]}]")
        seen[(x, y)] = k
        grid[(x, y)] = _tile(spec, ("tiles", "at", k))

    for (x, y), t in grid.items():
        where = f"tiles.at[{seen[(x, y)]}]" if (x, y) in seen else "tiles.default"
        tile_params(t, pkt, where)
    cfg["tile_map"] = [{"x": x, "y": y, **grid[(x, y)]}
                       for y in range(rows) for x in range(cols)]
    return cfg


def tile_params(tile: dict, pkt: dict, where: str = "tiles"):
    """The kind's checked parameter object; rules spanning the packet widths raise here."""
    params = {k: v for k, v in tile.items() if k not in ("kind", "x", "y")}
    try:
        return TILE_KINDS[tile["kind"]].Params(data_bits=pkt["data_bits"],
                                               addr_bits=pkt["addr_bits"], **params)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        context = ", ".join(f"{k} {v}" for k, v in params.items())
        if field in PACKET_FIELDS:
            raise ConfigError(f"packet.{field}", f"{message} ({tile['kind']} tile at {where}: "
                                                 f"{context})") from None
        raise ConfigError(f"{where}.{field}", f"{message} (packet.data_bits "
                                              f"{pkt['data_bits']}, addr_bits "
                                              f"{pkt['addr_bits']})") from None


def load(path) -> dict:
    """Read (through the guarded loader) and resolve a YAML config file; an error names
    the file, the line of the field it refuses and the field."""
    raw, lines = load_yaml(path, "config")
    try:
        return resolve(raw)
    except ConfigError as exc:
        parts = _parts(exc.path)
        line = lines.line(parts) if parts else None
        raise LoadError(path, str(exc), line) from None


def _parts(path: str) -> tuple:
    """``tiles.at[0].x`` -> ``("tiles", "at", 0, "x")``."""
    out = []
    for dotted in path.split("."):
        name, *idx = dotted.split("[")
        if name:
            out.append(name)
        out += [int(i.rstrip("]")) for i in idx if i.rstrip("]").isdigit()]
    return tuple(out)


def hw_source_hash() -> str:
    """A hash of the Amaranth sources, so an edited block never reuses stale RTL."""

    root = Path(hw.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def as_config(config) -> dict:
    """A resolved config from a YAML path, a raw mapping or an already resolved one."""
    if isinstance(config, dict):
        return config if "tile_map" in config else resolve(config)
    return load(config)


def config_hash(cfg: dict, top: str = "fabric") -> str:
    """A content hash of everything that determines the generated RTL."""

    blob = json.dumps({"config": cfg, "top": top, "tilefab": __version__,
                       "hw": hw_source_hash(), "tools": toolchain.versions()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
