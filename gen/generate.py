"""Elaborate a resolved config into an Amaranth top, emit Verilog and a manifest.

Two tops come from one config: ``fabric`` (mesh + tiles + host port, what a user
builds) and ``mesh`` (the NoC alone with every router's local port exposed, what
the NoC tests and benchmark drive). Output is cached under the build cache by the
config hash and is byte-identical for identical configs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..golden.packet import PacketFormat
from ..hw.fabric import Fabric
from ..hw.noc.mesh import Mesh
from ..hw.noc.packet import Op, host_coord, packet_layout
from ..hw.tile import layout_positions
from . import toolchain
from .cache import cache_root, locked
from .config import config_hash, tile_params
from .emit import to_verilog
from .errors import TilefabError

TOPS = ("fabric", "mesh")


def packet_format(cfg: dict) -> PacketFormat:
    p = cfg["packet"]
    return PacketFormat(coord_bits=p["coord_bits"], addr_bits=p["addr_bits"],
                        data_bits=p["data_bits"], multicast=p.get("multicast", False))


def layout_for(cfg: dict):
    p = cfg["packet"]
    return packet_layout(coord_bits=p["coord_bits"], addr_bits=p["addr_bits"],
                         data_bits=p["data_bits"], multicast=p.get("multicast", False))


def top_name(cfg: dict, top: str) -> str:
    return cfg["name"] if top == "fabric" else f"{cfg['name']}_{top}"


def build_top(cfg: dict, top: str = "fabric"):
    if top not in TOPS:
        raise TilefabError(f"--top: {top!r} is not a top, must be one of {', '.join(TOPS)}")
    mesh, host = cfg["mesh"], cfg["host"]
    common = dict(layout=layout_for(cfg), cols=mesh["cols"], rows=mesh["rows"],
                  host=(host["x"], host["y"], host["side"]), router=mesh["router"],
                  fifo_depth=mesh["fifo_depth"], voq_depth=mesh["voq_depth"])
    if top == "mesh":
        return Mesh(counter_bits=cfg["counter_bits"], **common)
    tiles = {(t["x"], t["y"]): (t["kind"], {k: v for k, v in t.items()
                                             if k not in ("x", "y", "kind")})
             for t in cfg["tile_map"]}
    return Fabric(tiles=tiles, counter_bits=cfg["counter_bits"], **common)


def ports_of(verilog: str, module: str) -> list:
    """The top module's ports, read back from the emitted Verilog."""
    body = verilog[verilog.index(f"module {module}("):]
    body = body[:body.index("endmodule")]
    out = []
    for m in re.finditer(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\S+)\s*;", body, re.M):
        out.append({"name": m.group(3), "direction": "in" if m.group(1) == "input" else "out",
                    "width": int(m.group(2)) + 1 if m.group(2) else 1})
    return sorted(out, key=lambda p: p["name"])


def tile_manifests(cfg: dict) -> list:
    """Per tile: coordinates, kind, parameters and what a host needs to drive it."""
    out = []
    for t in cfg["tile_map"]:
        params = {k: v for k, v in t.items() if k not in ("x", "y", "kind")}
        out.append({"x": t["x"], "y": t["y"], "kind": t["kind"], "params": params,
                    "geometry": tile_params(t, cfg["packet"]).manifest()})
    return out


def gemm_geometry(tiles: list) -> dict | None:
    """The GEMM tiles' shared geometry and where they sit (the GEMM compiler's input)."""
    gemm = [t for t in tiles if t["kind"] == "gemm"]
    if not gemm:
        return None
    return {"params": gemm[0]["params"], "pes": [[t["x"], t["y"]] for t in gemm],
            **gemm[0]["geometry"]}


def manifest_for(cfg: dict, top: str, verilog: str, digest: str) -> dict:
    layout = layout_for(cfg)
    tiles = tile_manifests(cfg) if top == "fabric" else []
    return {
        "tilefab": __version__,
        "hash": digest,
        "top": top,
        "module": top_name(cfg, top),
        "config": cfg,
        "ports": ports_of(verilog, top_name(cfg, top)),
        "packet": {
            "width": layout.size,
            "fields": layout_positions(layout),
            "ops": {op.name: op.value for op in Op},
            "host_address": [host_coord(layout)] * 2,
        },
        "tiles": tiles,
        "gemm": gemm_geometry(tiles),
        "tools": toolchain.versions(),
    }


@dataclass
class Generated:
    module: str
    verilog: Path
    manifest_path: Path
    manifest: dict
    cached: bool

    @property
    def directory(self) -> Path:
        return self.verilog.parent

    def text(self) -> str:
        return self.verilog.read_text()


def generate(cfg: dict, top: str = "fabric", out_dir=None) -> Generated:
    """Emit ``top`` for ``cfg`` into the cache (once per hash); copy to ``out_dir`` if given."""
    out = None if out_dir is None else output_dir(out_dir)
    digest = config_hash(cfg, top)
    name = top_name(cfg, top)
    entry = cache_root() / "gen" / f"{name}-{digest}"
    vfile, mfile = entry / f"{name}.v", entry / "manifest.json"
    cached = True
    with locked(entry):
        if not mfile.exists():
            cached = False
            component = build_top(cfg, top)
            text = to_verilog(component, name)
            manifest = manifest_for(cfg, top, text, digest)
            entry.mkdir(parents=True, exist_ok=True)
            vfile.write_text(text)
            # The manifest is written last: its presence marks a complete entry.
            mfile.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    result = Generated(name, vfile, mfile, json.loads(mfile.read_text()), cached)
    if out is not None:
        try:
            shutil.copyfile(vfile, out / vfile.name)
            shutil.copyfile(mfile, out / mfile.name)
        except OSError as exc:
            raise TilefabError(f"-o {out}: cannot write there ({exc.strerror or exc})") \
                from None
        result = Generated(name, out / vfile.name, out / mfile.name, result.manifest, cached)
    return result


def output_dir(path) -> Path:
    """``path`` as an output folder, created if need be; ``TilefabError`` naming it if it
    is a file or cannot be created or written."""
    if not str(path).strip():
        raise TilefabError("-o: an empty path is not allowed, name an output folder")
    out = Path(path)
    try:
        if out.exists() and not out.is_dir():
            raise TilefabError(f"-o {out}: is a file, not a folder")
        out.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise TilefabError(f"-o {out}: cannot create this folder "
                           f"({getattr(exc, 'strerror', None) or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise TilefabError(f"-o {out}: this folder is not writable")
    return out
