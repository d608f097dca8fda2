"""Article blobs (newsdedup/storage/blobs.py): the bulky fields in 48 partition slots, read back by every
reader, gone with their article, and articles stored before blobs read the same until migrated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.engine.engine import Engine
from newsdedup.engine.jobs import Job
from newsdedup.explain import explain
from newsdedup.ops import export
from newsdedup.ops.redis_cluster import RedisCluster
from newsdedup.storage import blobs
from tests.procs import (
    band_count,
    band_entries,
    check_index_invariants,
    check_removal_invariants,
    orphan_blobs,
)
from tests.textgen import light_edit, zh_article
from workers.consumer import Worker, process_available

SEED_TITLE = "渝中:92个公共法律服务平台 同期举行公众开放日活动"


def test_partition_tags_are_chosen_so_every_equal_split_of_slots_is_balanced() -> None:
    tags = keys.PARTITION_TAGS
    assert len(tags) == len(set(tags)) == keys.PARTITIONS == 48
    slots = [key_slot(t.encode()) for t in tags]
    for i, s in enumerate(slots):
        assert i * 16384 // 48 <= s < (i + 1) * 16384 // 48, (i, tags[i], s)
    for masters in (2, 3, 4, 6, 8, 12, 16):
        per = [sum(1 for s in slots if m * 16384 // masters <= s < (m + 1) * 16384 // masters)
               for m in range(masters)]
        assert per == [48 // masters] * masters, (masters, per)
    # every key of one blob is one key in its partition's slot; article n goes to partition n % 48
    for n in (0, 1, 47, 48, 12345, 2**32 - 1):
        assert keys.blob(n) == f"{{{tags[n % 48]}}}:x:{n}"
        assert key_slot(keys.blob(n).encode()) == slots[n % 48]


def _stored(r: redis.Redis, config: Config, seed_page_text: str) -> Dedup:
    d = Dedup(r, config)
    from tests.test_e2e import clean_body  # the seed page's story without the site's chrome
    body = clean_body(seed_page_text)
    d.submit([parse_article(a) for a in (
        {"id": "seed", "title": SEED_TITLE, "text": seed_page_text, "source": "华龙网"},
        {"id": "repost", "title": "渝中举行公共法律服务开放日", "text": body, "source": "另一个网站"},
        {"id": "edit", "title": "渝中举行公共法律服务开放日", "text": light_edit(body, 3), "source": "第三个网站"},
        {"id": "other", "title": "别的新闻", "text": zh_article(99, 900), "source": "另一个网站"})])
    process_available(r, config)
    return d


def _views(r: redis.Redis, config: Config, d: Dedup) -> dict[str, Any]:
    """What every reader of the bulky fields answers (article, cluster, compare, check, export)."""
    a = d.article("repost")
    return {
        "article": {i: d.article(i) for i in ("seed", "repost", "edit", "other")},
        "cluster": d.cluster(a["cluster_id"]),
        "compare": explain(r, config, "seed", "edit").report(),
        "check": d.check(parse_article({"title": "t", "text": d.article("repost")["text"]})[0]),
        "export": list(export.clusters(r, config, min_size=1)),
    }


def _numbers(r: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(keys.IDS).items()}


def _to_old_layout(r: redis.Redis, n: int) -> None:
    """Put article n's blob fields back into its hash, as an article stored before blobs."""
    fields = {k: v for k, v in r.hgetall(keys.blob(n)).items() if k != b"ver"}
    r.hset(keys.article(n), mapping=fields)  # type: ignore[arg-type]
    r.delete(keys.blob(n))


def test_bulky_fields_live_in_the_blob_and_every_reader_finds_them(
        redis_client: redis.Redis, config: Config, seed_page_text: str) -> None:
    r = redis_client
    d = _stored(r, config, seed_page_text)
    nums = _numbers(r)
    for i, n in nums.items():
        rec, blob = r.hgetall(keys.article(n)), r.hgetall(keys.blob(n))
        assert not set(rec) & {f.encode() for f in keys.BLOB_FIELDS}, (i, sorted(rec))
        assert blob[b"ver"] == rec[b"iver"] == b"1"
        assert len(blob[b"sig"]) == 4 * config.num_perm and blob[b"text"] and b"repeated" in blob
        assert b"size" in rec and b"tokens" in rec and b"title" in rec  # small fields stay
    assert b"page" in r.hgetall(keys.blob(nums["seed"]))  # the page is more than its kept text
    v = _views(r, config, d)
    assert v["article"]["seed"]["text"] and v["article"]["repost"]["duplicates"][0]["similarity"] > 0.5
    assert all(m["similarity"] is not None for m in v["cluster"]["members"])
    assert v["compare"]["a"]["page"] == "as_submitted" and v["compare"]["passages"]
    assert {x["id"] for x in v["check"]["duplicates"]} >= {"repost", "seed"}
    assert all(m["similarity"] is not None for c in v["export"] for m in c["members"])
    check_index_invariants(r)


def test_articles_stored_before_blobs_read_the_same_then_migrate(
        redis_client: redis.Redis, config: Config, seed_page_text: str) -> None:
    r = redis_client
    d = _stored(r, config, seed_page_text)
    before = _views(r, config, d)
    nums = _numbers(r)
    for n in nums.values():
        _to_old_layout(r, n)
    assert r.hexists(keys.article(nums["seed"]), "page") and not r.exists(keys.blob(nums["seed"]))
    check_index_invariants(r)
    assert _views(r, config, d) == before  # the fallback: the fields read from the article hash
    assert blobs.migrate_blobs(r, chunk=3) == len(nums)
    for n in nums.values():
        assert not r.hexists(keys.article(n), "sig") and r.hget(keys.blob(n), "ver") == b"1"
    assert _views(r, config, d) == before
    assert blobs.migrate_blobs(r) == 0  # done: nothing left to move
    check_index_invariants(r)


def test_an_old_layout_article_updated_or_removed_leaves_nothing_behind(
        redis_client: redis.Redis, config: Config, seed_page_text: str) -> None:
    r = redis_client
    d = _stored(r, config, seed_page_text)
    nums = _numbers(r)
    for n in nums.values():
        _to_old_layout(r, n)
    # an update: the old band entries go (found with the signature in the hash), the fields move to the blob
    d.submit([parse_article({"id": "other", "title": "别的新闻", "text": zh_article(98, 900)})])
    process_available(r, config)
    n = nums["other"]
    assert sum(1 for _, m in band_entries(r) if m == n) == band_count(config)
    assert not r.hexists(keys.article(n), "sig") and r.hget(keys.blob(n), "ver") == b"2"
    check_index_invariants(r)
    # a removal unbands an old-layout article with the signature in its hash
    d.delete("edit")
    assert nums["edit"] not in {m for _, m in band_entries(r)} and not r.exists(keys.article(nums["edit"]))
    check_removal_invariants(r, nums)


def test_a_removed_article_leaves_no_blob(redis_client: redis.Redis, config: Config, seed_page_text: str) -> None:
    r = redis_client
    d = _stored(r, config, seed_page_text)
    nums = _numbers(r)
    d.delete("repost")
    assert not r.exists(keys.blob(nums["repost"])) and r.exists(keys.blob(nums["seed"]))
    kept, removed = check_removal_invariants(r, nums)
    assert removed == {"repost"} and orphan_blobs(r) == set()
    # an orphan (a crash between the removal and the blob delete) is what the checker reports
    r.hset(keys.blob(nums["repost"]), mapping={"ver": 1, "sig": b"x"})
    assert orphan_blobs(r) == {nums["repost"]}
    with pytest.raises(AssertionError, match="half removed"):
        check_removal_invariants(r, nums)


def test_a_blob_is_replaced_by_its_own_or_a_newer_version_only(redis_client: redis.Redis) -> None:
    r = redis_client
    assert blobs.write(r, [(7, 2, {"sig": b"v2", "page": b"p2"})]) == [True]
    assert blobs.write(r, [(7, 1, {"sig": b"v1"})]) == [False]  # a slow worker of version 1
    assert r.hgetall(keys.blob(7)) == {b"ver": b"2", b"sig": b"v2", b"page": b"p2"}
    assert blobs.write(r, [(7, 3, {"sig": b"v3"})]) == [True]  # version 3 has no page: none is left
    assert r.hgetall(keys.blob(7)) == {b"ver": b"3", b"sig": b"v3"}
    blobs.drop_if(r, [(7, 2)])  # not its version: kept
    assert r.exists(keys.blob(7))
    blobs.drop_if(r, [(7, 3)])
    assert not r.exists(keys.blob(7))


@pytest.mark.slow
def test_blob_calls_run_on_a_cluster(redis_cluster: RedisCluster) -> None:
    client = ClusterClient.from_url(redis_cluster.url)
    try:
        ns = list(range(1000, 1200))
        assert blobs.write(client, [(n, 1, {"sig": str(n).encode(), "text": b"t"}) for n in ns]) == [True] * 200
        assert blobs.read(client, ns, ("sig",)) == [{b"sig": str(n).encode()} for n in ns]
        owners = {client.get_node_from_key(keys.blob(n)).port for n in ns}
        assert len(owners) == 3  # the blobs of one batch spread over every master
        blobs.drop_if(client, [(n, 1) for n in ns[:100]])
        blobs.drop(client, ns[100:])
        assert blobs.read(client, ns, ("sig",)) == [{}] * 200
    finally:
        client.close()


class _Racing(Engine):
    """The real engine, with a real concurrent write landing between its reads and its index step."""

    def __init__(self, client: redis.Redis, config: Config, meanwhile: Callable[[], object]) -> None:
        super().__init__(client, config)
        self.meanwhile = meanwhile

    def _index(self, jobs: list[Job]) -> None:
        self.meanwhile()
        super()._index(jobs)


@pytest.mark.parametrize("race", ["update", "delete"])
def test_a_worker_whose_article_moved_on_takes_its_blob_back(
        redis_client: redis.Redis, config: Config, race: str) -> None:
    r = redis_client
    d = Dedup(r, config)
    d.submit([parse_article({"id": "a", "text": zh_article(1, 600)})])
    n = _numbers(r)["a"]
    w = Worker(r, config, name="racing")
    w.engine = _Racing(r, config, lambda: d.submit([parse_article({"id": "a", "text": zh_article(2, 600)})])
                       if race == "update" else d.delete("a"))
    assert w.step(block_ms=None) == 1
    assert not r.exists(keys.blob(n))  # its version will never be visible: the blob it wrote is gone
    if race == "update":
        process_available(r, config)  # version 2, by a worker without a race
        assert r.hget(keys.blob(n), "ver") == b"2" and d.article("a")["status"] == "done"
    assert orphan_blobs(r) == set()
    check_index_invariants(r)
