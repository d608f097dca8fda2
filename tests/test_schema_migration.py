"""Data written before the cluster schema (prefix ``nd:``) keeps working: renamed once, in place.

The old layout is made from today's by renaming every key back to the old prefix (the
migration's exact inverse), including a queued article whose stream entry is pending.
"""

from __future__ import annotations

import redis

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.storage.migrate import OLD_META, migrate_prefix
from tests.procs import check_index_invariants, cluster_of, partition
from tests.textgen import light_edit, stories_and_copies
from workers.consumer import process_available


def before_ids(groups: set[frozenset[str]]) -> list[str]:
    return sorted(i for g in groups for i in g)


def to_old_prefix(r: redis.Redis) -> int:
    """Rename every key of today's schema to the prefix data had before it; keys renamed."""
    names = list(r.scan_iter(match=keys.PREFIX + "*", count=1000))
    for name in names:
        r.rename(name, keys.OLD_PREFIX + name.decode()[len(keys.PREFIX):])
    return len(names)


def test_old_prefix_data_is_renamed_once_and_everything_reads_and_processes(redis_client: redis.Redis,
                                                                             config: Config) -> None:
    d = Dedup(redis_client, config)
    texts, arts = stories_and_copies(40, 6, 3)
    d.submit([parse_article(a) for a in arts])
    process_available(redis_client, config)
    before = partition(redis_client)
    # one more copy stays queued: its stream entry must survive the rename and be processed after it
    d.submit([parse_article({"id": "c5", "text": light_edit(texts[5], 5, 0.01)})])
    before_stats = d.stats()
    blob = keys.blob(int(redis_client.hget(keys.IDS, "o1") or 0))
    sig = redis_client.hget(blob, "sig")
    assert sig is not None
    # the layout before blobs too: the bulky fields back in the article hash
    redis_client.hset(keys.article(int(redis_client.hget(keys.IDS, "o1") or 0)), "sig", sig or b"")
    redis_client.delete(blob)
    moved = to_old_prefix(redis_client)
    assert moved > 20 and not list(redis_client.scan_iter(match=keys.PREFIX + "*"))
    assert redis_client.exists(OLD_META)

    fresh = Dedup(redis_client, config)
    fresh.engine.index.ensure_index()  # what a worker (or the API's first write) does when it starts
    assert fresh.article("o1")["status"] == "done"
    assert redis_client.hget(blob, "sig") == sig  # moved into its blob by the same migration
    assert not redis_client.exists(OLD_META) and not list(redis_client.scan_iter(match=keys.OLD_PREFIX + "*"))
    assert fresh.stats()["articles"] == before_stats["articles"]
    assert partition(redis_client, before_ids(before)) == before
    process_available(redis_client, config)
    assert fresh.article("c5")["status"] == "done"
    assert cluster_of(fresh, "c5") == cluster_of(fresh, "o5")
    for i in range(3):
        assert cluster_of(fresh, f"c{i}") == cluster_of(fresh, f"o{i}")
    check_index_invariants(redis_client)
    assert migrate_prefix(redis_client) == 0  # once


def test_a_hash_written_under_both_names_is_merged_without_overwriting(redis_client: redis.Redis) -> None:
    redis_client.hset(OLD_META, mapping={"index": "old", "failed": 3})
    redis_client.hset(keys.META, mapping={"index": "new"})
    assert migrate_prefix(redis_client) == 1
    assert redis_client.hgetall(keys.META) == {b"index": b"new", b"failed": b"3"}
    assert not redis_client.exists(OLD_META)
