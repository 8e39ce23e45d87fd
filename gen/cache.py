"""The build cache: generated RTL, simulator builds and synthesis runs, keyed by hash.

Everything lives under ``$TILEFAB_CACHE`` (default ``~/.cache/tilefab``). Writers
take a file lock per entry so parallel pytest-xdist workers never race.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("TILEFAB_CACHE", Path.home() / ".cache" / "tilefab"))


@contextlib.contextmanager
def locked(entry: Path):
    """Hold an exclusive lock on cache entry ``entry`` (a directory path)."""
    lock = entry.with_name(entry.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
