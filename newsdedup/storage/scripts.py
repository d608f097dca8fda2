"""The Lua scripts newsdedup runs in Redis (``lua/*.lua``); every key they touch is in KEYS but band-table buckets.

``transact.lua`` is a small compare-and-set interpreter: Python reads a snapshot,
decides (clustering policy, submissions, deletes) and sends the checks that
must still hold plus the writes to make; Redis runs the checks and the writes
atomically or nothing at all. Policy stays in testable Python, atomicity in Redis.

``index.lua`` inserts a batch into the LSH band table and returns, for each
article, the members that already shared a band value with it. Insert-and-read
in one atomic step means two copies processed at the same moment by two
workers can never miss each other: whichever is inserted second sees the first.

The band table is a linear hash table (Litwin) over Redis strings, described in
:mod:`newsdedup.keys`. Its bucket keys follow from the table's state, which only
a script can read atomically, so the scripts that touch it (``index.lua``,
``lookup.lua``, ``transact.lua``'s ``unband``, ``migrate_buckets.lua``) name bucket keys
themselves from a prefix they are given: those keys are not in KEYS. (Scripts
here already span many hash slots; newsdedup does not support Redis Cluster.)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.resources import files

import redis
from redis.commands.core import Script

from newsdedup.storage.txn import Txn

# scripts that run after the band-table library (band_table.lua): they read or write buckets
_NEEDS_BAND_TABLE = frozenset({"transact", "index", "lookup", "migrate_buckets"})


@cache
def source(name: str) -> str:
    """The Lua source of script ``name`` as sent to Redis (the band-table library in front where needed)."""
    text = files("newsdedup.storage").joinpath("lua", name + ".lua").read_text(encoding="utf-8")
    if name in _NEEDS_BAND_TABLE:
        return source("band_table") + text
    return text


class Scripts:
    """The registered Lua scripts of one Redis client (EVALSHA with automatic reload)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.transact: Script = client.register_script(source("transact"))
        self.index: Script = client.register_script(source("index"))
        self.lookup: Script = client.register_script(source("lookup"))
        self.migrate_buckets: Script = client.register_script(source("migrate_buckets"))
        self.boilerplate: Script = client.register_script(source("boilerplate"))
        self.prune_boilerplate: Script = client.register_script(source("prune_boilerplate"))
        self._hmget_flat: Script = client.register_script(source("hmget_flat"))
        self._load: Script = client.register_script(source("load"))
        self._cluster_state: Script = client.register_script(source("cluster_state"))

    def hmget_many(self, hash_keys: Sequence[str], fields: Sequence[str]) -> list[list[bytes | None]]:
        """The same fields of many hashes: one command per 1,000 keys instead of one per key."""
        out: list[list[bytes | None]] = []
        nf = len(fields)
        for i in range(0, len(hash_keys), 1000):
            flat = self._hmget_flat(keys=list(hash_keys[i:i + 1000]), args=list(fields))
            out.extend(flat[k:k + nf] for k in range(0, len(flat), nf))
        return out

    def load(self, pairs: Sequence[tuple[str, str]], fields: Sequence[str]
             ) -> list[tuple[dict[bytes, bytes], bytes | None]]:
        """For (hash, string) key pairs: the hash's given fields (those present) and the string."""
        out: list[tuple[dict[bytes, bytes], bytes | None]] = []
        nf, bfields = len(fields), [f.encode() for f in fields]
        for i in range(0, len(pairs), 500):
            chunk = pairs[i:i + 500]
            flat = self._load(keys=[k for pair in chunk for k in pair], args=list(fields))
            for k in range(0, len(flat), nf + 1):
                rec = {f: v for f, v in zip(bfields, flat[k:k + nf]) if v is not None}
                out.append((rec, flat[k + nf]))
        return out

    def cluster_state(self, cluster_pairs: Sequence[tuple[str, str]]) -> list[tuple[bytes | None, list[bytes]]]:
        """For (cluster hash, member set) pairs: the version (None: implicit singleton) and members."""
        out: list[tuple[bytes | None, list[bytes]]] = []
        for i in range(0, len(cluster_pairs), 1000):
            chunk = cluster_pairs[i:i + 1000]
            flat = self._cluster_state(keys=[k for pair in chunk for k in pair], args=[])
            out.extend((flat[k], flat[k + 1].split(b",") if flat[k + 1] else [])
                       for k in range(0, len(flat), 2))
        return out

    def run(self, txn: Txn, client: redis.Redis | None = None) -> bool:
        """Apply a transaction; False when a check failed (the caller re-reads and retries)."""
        if not txn.keys:
            return True
        res = self.transact(keys=txn.keys, args=txn.argv, client=client)
        return bool(int(res[0]) == 1)
