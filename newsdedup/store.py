"""Redis access for the engine: a compare-and-set transaction builder and script calls.

The engine decides in Python and writes through :class:`Txn` (checks + writes,
applied atomically by one Lua script) or the dedicated scripts in
:mod:`newsdedup.scripts`. The Redis client is passed in; nothing here connects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
from redis.commands.core import Script

from . import scripts
from .errors import StorageUnavailable

T = TypeVar("T")
Arg = str | bytes | int | float

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)


@contextmanager
def storage_errors() -> Iterator[None]:
    """Turn "Redis is away" into StorageUnavailable (503 + Retry-After for clients)."""
    try:
        yield
    except REDIS_DOWN as exc:
        raise StorageUnavailable(f"storage is unavailable ({type(exc).__name__}); retry shortly") from exc
    except redis.exceptions.ResponseError as exc:
        if "LOADING" in str(exc) or "MASTERDOWN" in str(exc) or "READONLY" in str(exc):
            raise StorageUnavailable(f"storage is not ready ({exc}); retry shortly") from exc
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

    def unband(self, state_key: str, prefix: str, initial_level: int, band: int, value: bytes,
               member4: bytes) -> Txn:
        """Remove one entry (band value, member) from the LSH band table."""
        return self._w("unband", self.k(state_key), prefix, initial_level, band, value, member4)


class Scripts:
    """The registered Lua scripts of one Redis client (EVALSHA with automatic reload)."""

    def __init__(self, client: redis.Redis) -> None:
        self.transact: Script = client.register_script(scripts.TRANSACT)
        self.index: Script = client.register_script(scripts.INDEX)
        self.lookup: Script = client.register_script(scripts.LOOKUP)
        self.migrate_buckets: Script = client.register_script(scripts.MIGRATE_BUCKETS)
        self.boilerplate: Script = client.register_script(scripts.BOILERPLATE)
        self.prune_boilerplate: Script = client.register_script(scripts.PRUNE_BOILERPLATE)
        self._hmget_flat: Script = client.register_script(scripts.HMGET_FLAT)
        self._load: Script = client.register_script(scripts.LOAD)
        self._cluster_state: Script = client.register_script(scripts.CLUSTER_STATE)

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
