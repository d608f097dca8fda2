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
themselves from a prefix they are given: those keys are not in KEYS.

Durability (``NEWSDEDUP_WAIT_REPLICAS=N``): every write a 202 or a ``done`` depends on goes through
:meth:`Scripts.call` (``run`` uses it), which then pipelines ``[EVALSHA, WAIT N timeout]`` on ONE
connection to the master owning the script's slot, because WAIT counts the replication offset of
its own connection's writes. Fewer acknowledgements than N raise :class:`StorageUnavailable`: the
write may or may not survive a failover, and the caller answers 503 (API) or leaves the queue
entry pending (worker); every write here is idempotent, so the retry is safe.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import AskError, MovedError, TryAgainError

from newsdedup.errors import StorageUnavailable
from newsdedup.storage.txn import Arg, Txn

# direct node calls (WAIT path on a cluster) redirected or refused this many times give up with a 503
_REDIRECTS = 5

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
    """The registered Lua scripts of one Redis client (EVALSHA with automatic reload).

    ``wait_replicas`` / ``wait_timeout_ms``: the config's ``wait_replicas`` and ``wait_timeout_ms``
    (0: writes do not wait for replicas).
    """

    def __init__(self, client: redis.Redis | RedisCluster, wait_replicas: int = 0, wait_timeout_ms: int = 5000
                 ) -> None:
        self.r = client
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
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

    def run(self, txn: Txn) -> bool:
        """Apply a transaction (waiting for replicas when configured); False when a check failed (the
        caller re-reads and retries)."""
        if not txn.keys:
            return True
        res = self.call(self.transact, txn.keys, txn.argv)
        return bool(int(res[0]) == 1)

    def call(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a write script (all ``keys`` in one slot) and, with ``wait_replicas``, wait until that many
        replicas hold it; raises StorageUnavailable when fewer acknowledge within the timeout."""
        if not self.wait_replicas or not keys:
            return script(keys=list(keys), args=list(args))
        res, acked = self._call_and_wait(script, list(keys), list(args))
        if acked < self.wait_replicas:
            raise StorageUnavailable(f"a write reached {acked} of the {self.wait_replicas} replicas "
                                     f"NEWSDEDUP_WAIT_REPLICAS asks for within {self.wait_timeout_ms} ms; retry "
                                     "shortly (it is safe: writes are idempotent)")
        return res

    def _call_and_wait(self, script: Script, keys: list[str], args: list[Arg]) -> tuple[Any, int]:
        """``[EVALSHA, WAIT]`` in one pipeline on one connection: the client's own, or on a cluster the
        connection of the master owning ``keys[0]``'s slot (redirections refresh the slot map and retry)."""
        if not isinstance(self.r, RedisCluster):
            return self._pipe(self.r, script, keys, args, asking=False)
        cluster = self.r
        node, asking = cluster.get_node_from_key(keys[0]), False
        for attempt in range(_REDIRECTS):
            try:
                return self._pipe(cluster.get_redis_connection(node), script, keys, args, asking=asking)
            except MovedError as exc:  # (a subclass of AskError) the slot has a new owner
                cluster.nodes_manager.move_slot(exc)
                node, asking = cluster.get_node_from_key(keys[0]), False
            except AskError as exc:  # the slot is migrating and this key is already on the target node
                target = cluster.nodes_manager.get_node(host=exc.host, port=exc.port)
                if target is None:
                    cluster.nodes_manager.initialize()
                    node, asking = cluster.get_node_from_key(keys[0]), False
                else:
                    node, asking = target, True
            except TryAgainError:  # multi-key call while its keys are split by a migration
                time.sleep(0.05 * (attempt + 1))
            except redis.exceptions.ConnectionError:
                cluster.nodes_manager.initialize()  # a dead master: read who owns the slot now
                if attempt >= 1:
                    raise
                node, asking = cluster.get_node_from_key(keys[0]), False
        raise StorageUnavailable("the Redis Cluster kept redirecting a write (slots are moving); retry shortly")

    def _pipe(self, client: redis.Redis, script: Script, keys: list[str], args: list[Arg], *, asking: bool
              ) -> tuple[Any, int]:
        pipe = client.pipeline(transaction=False)
        if asking:
            pipe.execute_command("ASKING")
        script(keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        out = pipe.execute()
        return out[-2], int(out[-1])
