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

Durability (``NEWSDEDUP_WAIT_REPLICAS=N``): every write a 202 or a ``done`` depends on (``run``,
``features``, ``band_groups``) is followed by ``WAIT N timeout`` ON THE SAME CONNECTION, to the
master owning the call's slot, because WAIT counts the replication offset of its own connection's
writes (:meth:`Scripts.call`; band-group calls are pipelined per node, WAIT last). Fewer
acknowledgements than N raise :class:`StorageUnavailable`: the write may or may not survive a
failover, and the caller answers 503 (API) or leaves the queue entry pending (worker); every
write here is idempotent or version-checked, so the retry is safe.
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
from redis.exceptions import AskError, MovedError, NoScriptError, TryAgainError

from newsdedup.errors import StorageUnavailable
from newsdedup.storage.txn import Arg, Txn

# direct node calls (WAIT path on a cluster) redirected or refused this many times give up with a 503
_REDIRECTS = 5

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
    """The registered Lua scripts of one Redis client (EVALSHA with automatic reload).

    ``wait_replicas`` / ``wait_timeout_ms``: the config's ``wait_replicas`` and ``wait_timeout_ms``
    (0: writes do not wait for replicas).
    """

    def __init__(self, client: redis.Redis | RedisCluster, wait_replicas: int = 0, wait_timeout_ms: int = 5000
                 ) -> None:
        self.client = client
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
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
        return [bool(int(x)) for x in self.call(self._features, keys, args)]

    def band_groups(self, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Band-group script calls (keys, args), one per group, in one round trip.

        A non-transactional pipeline (on a cluster client, a ClusterPipeline that sends one
        batch per node): each call stays atomic on its own, which is all insert-and-read needs.
        """
        if self.wait_replicas:
            return self._calls_and_wait(self._band_group, calls)
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
        self._check_acked(acked)
        return res

    def _check_acked(self, acked: Any) -> None:
        if isinstance(acked, Exception):
            raise acked
        if int(acked) < self.wait_replicas:
            raise StorageUnavailable(f"a write reached {acked} of the {self.wait_replicas} replicas "
                                     f"NEWSDEDUP_WAIT_REPLICAS asks for within {self.wait_timeout_ms} ms; retry "
                                     "shortly (it is safe: writes are idempotent)")

    def _calls_and_wait(self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Several calls of one write script, each atomic on its own: one pipeline per master (the one
        owning each call's slot) ending with WAIT. A call redirected (MOVED/ASK/TRYAGAIN) is redone alone
        through :meth:`call`, which follows the redirection and waits for itself."""
        by_node: dict[str, tuple[redis.Redis, list[int]]] = {}
        for i, (k, _a) in enumerate(calls):
            if isinstance(self.client, RedisCluster):
                node = self.client.get_node_from_key(k[0])
                by_node.setdefault(node.name, (self.client.get_redis_connection(node), []))[1].append(i)
            else:
                by_node.setdefault("", (self.client, []))[1].append(i)
        out: list[Any] = [None] * len(calls)
        for conn, idx in by_node.values():
            pipe = conn.pipeline(transaction=False)
            for i in idx:
                script(keys=list(calls[i][0]), args=list(calls[i][1]), client=pipe)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            try:
                res = pipe.execute(raise_on_error=False)
            except redis.exceptions.ConnectionError:
                if isinstance(self.client, RedisCluster):
                    self.client.nodes_manager.initialize()  # a dead master: the next call reads who owns it now
                raise
            for i, got in zip(idx, res):
                if isinstance(got, AskError | TryAgainError):  # MovedError is an AskError
                    out[i] = self.call(script, calls[i][0], calls[i][1])
                elif isinstance(got, Exception):
                    raise got
                else:
                    out[i] = got
            self._check_acked(res[-1])
        return out

    def _call_and_wait(self, script: Script, keys: list[str], args: list[Arg]) -> tuple[Any, int]:
        """``[EVALSHA, WAIT]`` in one pipeline on one connection: the client's own, or on a cluster the
        connection of the master owning ``keys[0]``'s slot (redirections refresh the slot map and retry)."""
        if not isinstance(self.client, RedisCluster):
            return self._pipe(self.client, script, keys, args, asking=False)
        cluster = self.client
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
