"""The compare-and-set transaction builder, and how "Redis is away" reaches callers.

The engine decides in Python and writes through :class:`Txn`: checks that must
still hold plus the writes to make, applied atomically by the ``transact.lua``
script (see :class:`newsdedup.storage.scripts.Scripts`) or not at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis

from newsdedup.errors import StorageUnavailable

T = TypeVar("T")
Arg = str | bytes | int | float

REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # with BusyLoadingError and the pool's MaxConnectionsError
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError; "TTL exhausted" (redirected too often)
    redis.exceptions.TryAgainError,  # a multi-key call while a migration splits its slot's keys
    redis.exceptions.SlotNotCoveredError,  # the client's slot map has a hole (a failover is under way)
)
"""redis-py errors meaning "Redis, or the part of a cluster that owns the slot, is away right now"."""

# replies of a server that is alive but cannot serve the call yet (a failover or a restart is under way)
DOWN_REPLIES = ("LOADING", "MASTERDOWN", "READONLY", "MISCONF", "OOM", "TRYAGAIN", "CLUSTERDOWN")
# what redis-py's cluster client raises (RedisClusterException) when no node answers or the slot map
# is incomplete; others of its kind ("all keys must map to the same key slot") are bugs and surface
_CLUSTER_UNREACHABLE = ("cannot be connected", "not covered", "could not agree", "No targets were found",
                        "has no redis_connection")


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` should be retried later (503 + Retry-After; the worker leaves its entries pending).

    A CROSSSLOT reply or the cluster client's "same key slot" refusal is a bug in a key schema, not
    an outage: it is not transient, so it surfaces (500, and in tests).
    """
    if isinstance(exc, (StorageUnavailable, *REDIS_DOWN)):
        return True
    if isinstance(exc, redis.exceptions.ClusterCrossSlotError):
        return False
    if isinstance(exc, redis.exceptions.ResponseError):  # redis-py strips the code it maps to a class
        return getattr(exc, "status_code", None) in DOWN_REPLIES or str(exc).startswith(DOWN_REPLIES)
    if isinstance(exc, redis.exceptions.RedisClusterException):
        return not isinstance(exc, redis.exceptions.CrossSlotTransactionError) and \
            any(part in str(exc) for part in _CLUSTER_UNREACHABLE)
    return False


@contextmanager
def storage_errors() -> Iterator[None]:
    """Turn "Redis is away" (one node, or the cluster's owner of a slot) into StorageUnavailable (503 + Retry-After)."""
    try:
        yield
    except StorageUnavailable:
        raise
    except Exception as exc:
        if transient(exc):
            raise StorageUnavailable(f"storage is unavailable ({type(exc).__name__}); retry shortly") from exc
        raise


def guarded(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with storage_errors():
            return fn(*args, **kwargs)
    return wrapper


class Txn:
    """Checks that must still hold and writes to make, sent as one atomic script call."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        self.argv: list[Arg] = []
        self.writes = 0

    def k(self, key: str) -> str:
        i = self._index.get(key)
        if i is None:
            self.keys.append(key)
            i = self._index[key] = len(self.keys)
        return str(i)

    def add_keys(self, new_keys: list[str]) -> None:
        """Register many distinct keys at once (indexes follow the order given)."""
        start = len(self.keys)
        self.keys.extend(new_keys)
        self._index.update((k, start + i + 1) for i, k in enumerate(new_keys))
        if len(self._index) != len(self.keys):
            raise ValueError("add_keys needs keys not registered yet")

    def _add(self, name: str, *args: Arg) -> Txn:
        self.argv.extend((name, len(args), *args))
        return self

    # checks
    def expect_field(self, key: str, field: str, value: Arg | None) -> Txn:
        """HGET key field must equal value (None: must be absent)."""
        return self.expect_fields(key, {field: value})

    def expect_fields(self, key: str, expected: dict[str, Arg | None]) -> Txn:
        """Several fields of one hash at once (one HMGET); None: the field must be absent."""
        flat: list[Arg] = []
        for f, v in expected.items():
            flat.extend((f, "" if v is None else v))
        return self._add("eqm", self.k(key), *flat) if flat else self

    def expect_exists(self, key: str, exists: bool) -> Txn:
        return self._add("exists", self.k(key), 1 if exists else 0)

    # writes
    def _w(self, name: str, *args: Arg) -> Txn:
        self.writes += 1
        return self._add(name, *args)

    def hset(self, key: str, mapping: dict[str, Arg]) -> Txn:
        if not mapping:
            return self
        flat: list[Arg] = []
        for f, v in mapping.items():
            flat.extend((f, v))
        return self._w("hset", self.k(key), *flat)

    def hdel(self, key: str, *fields: str) -> Txn:
        return self._w("hdel", self.k(key), *fields) if fields else self

    def hincrby(self, key: str, field: str, delta: int) -> Txn:
        return self._w("hincrby", self.k(key), field, delta)

    def hincrn(self, key: str, deltas: dict[bytes, int]) -> Txn:
        """Add to many fields of one hash (a single instruction per 500 fields)."""
        flat: list[Arg] = []
        for f, d in deltas.items():
            flat.extend((f, d))
        for i in range(0, len(flat), 1000):
            self._w("hincrn", self.k(key), *flat[i:i + 1000])
        return self

    def sadd(self, key: str, members: list[int]) -> Txn:
        for i in range(0, len(members), 1000):
            self._w("sadd", self.k(key), *members[i:i + 1000])
        return self

    def srem(self, key: str, members: list[int]) -> Txn:
        for i in range(0, len(members), 1000):
            self._w("srem", self.k(key), *members[i:i + 1000])
        return self

    def set(self, key: str, value: Arg) -> Txn:
        return self._w("set", self.k(key), value)

    def append(self, key: str, record: Arg) -> Txn:
        return self._w("append", self.k(key), record)

    def cut(self, key: str, record: Arg, separator: str) -> Txn:
        """Remove one exact ``record`` (ending in ``separator``) from a string of such records."""
        return self._w("cut", self.k(key), record, separator)

    def cut_many(self, key: str, records: list[bytes], separator: str) -> Txn:
        """Remove exact ``records`` (distinct, each ending in ``separator``) from a string of such records.

        One read and one write of the string for all of them: a removal batch rewrites a
        headline chunk (~100 KB, also appended to the AOF) once, not once per article.
        """
        for i in range(0, len(records), 1000):
            self._w("cutm", self.k(key), separator, *records[i:i + 1000])
        return self

    def incr_expiring(self, key: str, delta: int, ttl_ms: int) -> Txn:
        """INCRBY then PEXPIRE: a time-bucketed counter that goes away by itself."""
        return self._w("incrx", self.k(key), delta, ttl_ms)

    def delete(self, *keys: str) -> Txn:
        for i in range(0, len(keys), 1000):
            self._w("del", *(self.k(k) for k in keys[i:i + 1000]))
        return self

    def zadd(self, key: str, score: float, *members: str) -> Txn:
        """Add (or re-score) members, all with one score."""
        for i in range(0, len(members), 500):
            self._w("zadd", self.k(key), repr(float(score)), *members[i:i + 500])
        return self

    def zrem(self, key: str, *members: str) -> Txn:
        for i in range(0, len(members), 1000):
            self._w("zrem", self.k(key), *members[i:i + 1000])
        return self

    def xack(self, key: str, group: str, *entry_ids: str | bytes) -> Txn:
        """Acknowledge and delete stream entries."""
        for i in range(0, len(entry_ids), 1000):
            self._w("xack", self.k(key), group, *entry_ids[i:i + 1000])
        return self

    def xadd(self, key: str, fields: dict[str, Arg], maxlen: int | None = None) -> Txn:
        """Append an entry; with ``maxlen`` the stream is trimmed to about that many (MAXLEN ~)."""
        flat: list[Arg] = []
        for f, v in fields.items():
            flat.extend((f, v))
        if maxlen is not None:
            return self._w("xaddcap", self.k(key), maxlen, *flat)
        return self._w("xadd", self.k(key), *flat)

    def hdecr(self, key: str, counts: dict[bytes, int]) -> Txn:
        """Take ``count`` off each field that is there; a field that reaches 0 is deleted (never negative).

        One HMGET for all fields, then one command per field (sum a batch's counts first).
        """
        flat: list[Arg] = []
        for f, c in counts.items():
            if c > 0:
                flat.extend((f, c))
        for i in range(0, len(flat), 1000):
            self._w("hdecr", self.k(key), *flat[i:i + 1000])
        return self

    def set_px(self, key: str, value: Arg, ttl_ms: int) -> Txn:
        """SET with an expiry (a key that cleans itself up)."""
        return self._w("setpx", self.k(key), value, max(1, int(ttl_ms)))

