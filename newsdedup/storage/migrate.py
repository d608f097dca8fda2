"""Moving data written before the cluster schema (key prefix ``nd:``) to today's names (``{nd}:``).

The rename is O(1) per key and keeps everything a key carries (TTLs, a stream's consumer
group and pending entries), so article numbers, cluster ids and queue entries stay valid.
It also moves the bulky fields of old article hashes into their blobs
(:func:`newsdedup.storage.blobs.migrate_blobs`). It runs once, from ``BandTable.ensure_index``,
before anything is written under the new names; the old ``nd:meta`` hash goes last, so an
interrupted run resumes at the next start. Workers and API processes of the earlier version must
be stopped first: they would keep writing old names. The LSH band table moves separately
(``BandTable`` migrates its own legacy layouts).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.cluster import RedisCluster

from newsdedup import keys
from newsdedup.storage.blobs import migrate_blobs
from newsdedup.storage.scripts import source

log = logging.getLogger(__name__)

OLD_META = keys.OLD_PREFIX + "meta"
CHUNK = 500


def _new_name(old: bytes) -> str:
    return keys.PREFIX + old.decode()[len(keys.OLD_PREFIX):]


def _kept_for_later(name: bytes) -> bool:
    """Old keys this rename leaves alone: the band table's legacy layouts, moved by BandTable."""
    return any(name.startswith(p.encode()) for p in keys.LEGACY_BAND_PREFIXES)


def migrate_prefix(client: Any) -> int:
    """Rename every ``nd:*`` key to its ``{nd}:*`` name on a standalone Redis that holds old data; keys moved."""
    if isinstance(client, RedisCluster) or not client.exists(OLD_META):
        return 0
    started = time.monotonic()
    log.info("renaming keys from the nd: prefix to {nd}: (once; the data is kept as it is)")
    rename = client.register_script(source("rename_keys"))
    moved = left = 0

    def flush(batch: list[bytes]) -> None:
        nonlocal moved, left
        if batch:
            m, lft = rename(keys=[k for old in batch for k in (old, _new_name(old))], args=[])
            moved, left = moved + int(m), left + int(lft)

    batch: list[bytes] = []
    for name in client.scan_iter(match=keys.OLD_PREFIX + "*", count=1000):
        if name == OLD_META.encode() or _kept_for_later(name):
            continue
        batch.append(name)
        if len(batch) >= CHUNK:
            flush(batch)
            batch = []
    flush(batch)
    moved_fields = migrate_blobs(client)  # the bulky fields of the old article hashes into their blobs
    flush([OLD_META.encode()])  # last: while it exists the next start resumes the rename
    if left:
        log.warning("%d old keys were left in place: their new names already held other data", left)
    log.info("renamed %d keys and moved the blob fields of %d articles in %.1f s", moved, moved_fields,
             time.monotonic() - started)
    return moved
