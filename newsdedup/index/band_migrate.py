"""Moving an index of an older layout into the band groups, in place and resumably.

Two older layouts: one linear hash table for all bands (``nd:bands`` state and
``nd:band:{band}:{bucket}`` strings of 8-byte entries) and, before it, fixed bucket hashes
(``nd:lsh:{band}:{bucket}``; field = band value, value = packed members). A few legacy keys
at a time: their entries are inserted into their groups through the ordinary group script
(an entry already there is not added again), then the keys are deleted. A crash in between
repeats the insert harmlessly, and two processes starting together can both run it. The
index parameters switch (compare-and-set) once no legacy key is left. Workers of the older
version must be stopped first: they would keep writing the old layout.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from newsdedup import keys
from newsdedup.index.band_groups import BandGroups
from newsdedup.storage.txn import Txn

log = logging.getLogger(__name__)

KEYS_PER_CHUNK = 16  # legacy buckets per step (at 1M articles a fixed bucket holds ~1,000 entries)


def legacy_entries(key: bytes, raw: bytes | dict[bytes, bytes] | None) -> list[tuple[int, bytes, bytes]]:
    """The (band, 4-byte value, 4-byte member) entries of one legacy key as read (GET or HGETALL)."""
    band = int(key.decode().rsplit(":", 2)[1])
    out: list[tuple[int, bytes, bytes]] = []
    if isinstance(raw, bytes):  # single-table bucket: 8-byte entries
        out.extend((band, raw[i:i + 4], raw[i + 4:i + 8]) for i in range(0, len(raw) - 7, 8))
    elif isinstance(raw, dict):  # fixed bucket hash: value -> packed members
        for value, members in raw.items():
            if len(value) == 4:
                out.extend((band, value, members[i:i + 4]) for i in range(0, len(members) - 3, 4))
    return out


def _move(r: Any, groups: BandGroups, nbands: int, chunk: list[bytes], fixed: bool) -> int:
    pipe = r.pipeline(transaction=False)
    for key in chunk:
        if fixed:
            pipe.hgetall(key)
        else:
            pipe.get(key)
    entries = [e for key, raw in zip(chunk, pipe.execute()) for e in legacy_entries(key, raw)]
    if entries:
        values = np.zeros((len(entries), nbands), dtype=np.uint32)
        for i, (band, value, _) in enumerate(entries):
            values[i, band] = int.from_bytes(value, "little")
        groups.run("m", [m for _, _, m in entries], values, only=[[band] for band, _, _ in entries])
    r.delete(*chunk)  # (older layouts only ever ran on a standalone Redis)
    return len(entries)


def migrate_legacy(r: Any, groups: BandGroups, nbands: int, legacy: str, params: str) -> int:
    """Move every legacy bucket into the band groups, then switch the parameters from ``legacy`` to
    ``params``; entries moved."""
    log.info("moving the LSH index into %d band groups (once)", keys.BAND_GROUPS)
    moved = 0
    for prefix, fixed in ((keys.LEGACY_LSH_PREFIX, True), (keys.LEGACY_BAND_PREFIX, False)):
        while True:
            found = list(r.scan_iter(match=prefix + "*", count=1000))
            if not found:
                break
            for i in range(0, len(found), KEYS_PER_CHUNK):
                moved += _move(r, groups, nbands, found[i:i + KEYS_PER_CHUNK], fixed)
    r.delete(keys.LEGACY_BANDS)
    groups.scripts.run(Txn().expect_field(keys.META, "index", legacy).hset(keys.META, {"index": params}))
    if moved:
        log.info("moved %d LSH entries into the band groups", moved)
    return moved
