"""The Lua scripts newsdedup runs in Redis (``lua/*.lua``); every key a script touches is in its KEYS.

``transact.lua`` is a small compare-and-set interpreter: Python reads a snapshot,
decides (clustering policy, submissions, deletes) and sends the checks that
must still hold plus the writes to make; Redis runs the checks and the writes
atomically or nothing at all. Policy stays in testable Python, atomicity in Redis.

``band_group.lua`` inserts a batch into one band group's LSH table and returns, for
each article, the members that already shared a band value with it (or looks values
up, or removes entries). Insert-and-read in one atomic step per group means two
copies processed at the same moment by two workers can never miss each other: both
insert-and-reads of a band value they share run in the same group's script, and
whichever runs second sees the first. The table is a linear hash table (Litwin) over
Redis strings, described in :mod:`newsdedup.keys`; the client names every bucket the
script may need in KEYS (:mod:`newsdedup.index.band_groups`), so the script builds no key
name and all keys of a call share the group's hash slot. ``features.lua`` writes the
articles' features (version-checked) before their band entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from newsdedup.storage.txn import Txn

# scripts that run after the band-table library (band_table.lua): they read or write buckets
_NEEDS_BAND_TABLE = frozenset({"band_group"})


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
        self._features: Script = client.register_script(source("features"))
        self._band_group: Script = client.register_script(source("band_group"))
        self.boilerplate: Script = client.register_script(source("boilerplate"))
        self.prune_boilerplate: Script = client.register_script(source("prune_boilerplate"))
        self._hmget_flat: Script = client.register_script(source("hmget_flat"))
        self._load: Script = client.register_script(source("load"))
        self._cluster_state: Script = client.register_script(source("cluster_state"))

    def features(self, keys: Sequence[str], args: Sequence[Any]) -> list[bool]:
        """Write articles' features where their version still holds (``features.lua``); written or not, per article."""
        return [bool(int(x)) for x in self._features(keys=list(keys), args=list(args))]

    def band_groups(self, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Band-group script calls (keys, args), one per group, in one round trip.

        A non-transactional pipeline (on a cluster client, a ClusterPipeline that sends one
        batch per node): each call stays atomic on its own, which is all insert-and-read needs.
        """
        if len(calls) == 1:
            return [self._band_group(keys=list(calls[0][0]), args=list(calls[0][1]))]
        pipe = self.client.pipeline(transaction=False)
        for k, a in calls:  # EVALSHA as a plain command: a ClusterPipeline refuses Script objects
            pipe.execute_command("EVALSHA", self._band_group.sha, len(k), *k, *a)
        res: list[Any] = pipe.execute(raise_on_error=False)
        for i, got in enumerate(res):
            if isinstance(got, NoScriptError):  # a node that has not seen the script (restarted, new)
                res[i] = self._band_group(keys=list(calls[i][0]), args=list(calls[i][1]))
            elif isinstance(got, Exception):
                raise got
        return res

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
