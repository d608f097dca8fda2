"""The LSH band table against a real Redis: it grows by splitting buckets and nothing is lost.

A tiny starting size and load force dozens of splits with a few dozen articles, so
the tests exercise what a million articles would do to the default table.
"""

from __future__ import annotations

import pytest
import redis

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.errors import IndexMismatch
from newsdedup.index.minhash import Banding
from newsdedup.retention.removal import Removal
from tests.procs import band_count, band_entries, band_states, band_table, check_index_invariants, cluster_of
from tests.textgen import en_article, light_edit, zh_article
from workers.consumer import process_available

N = 30


def originals() -> list[str]:
    return [zh_article(300 + i, 600) if i % 2 else en_article(300 + i, 200) for i in range(N)]


def state(r: redis.Redis) -> dict[str, int]:
    """The groups' states summed: entries in all groups, and the smallest level and its next."""
    groups = band_states(r)
    level, nxt = min((st.get("level", 0), st.get("next", 0)) for st in groups)
    return {"entries": sum(st.get("entries", 0) for st in groups), "level": level, "next": nxt}


def fill(d: Dedup, config: Config) -> list[str]:
    """Originals and their light edits, interleaved so that copies also meet inside a batch."""
    texts = originals()
    arts = []
    for i, t in enumerate(texts):
        # English loses a word per edited character: fewer edits keep it a clear duplicate
        arts += [{"id": f"o{i}", "text": t}, {"id": f"c{i}", "text": light_edit(t, i, 0.02 if i % 2 else 0.005)}]
    d.submit([parse_article(a) for a in arts])
    process_available(d.r, config)
    return texts


def test_the_table_splits_as_it_grows_and_every_copy_is_still_found(redis_client: redis.Redis,
                                                                    config: Config) -> None:
    cfg = config.replace(lsh_bucket_bits=0, lsh_bucket_load=4, worker_batch=16)
    d = Dedup(redis_client, cfg)
    texts = fill(d, cfg)
    st = state(redis_client)
    assert st["entries"] == 2 * N * band_count(cfg)
    for g, gst in enumerate(band_states(redis_client)):  # each group split from 1 bucket per band to many
        bands = len(range(g, band_count(cfg), keys.BAND_GROUPS))
        assert (1 << gst["level"]) + gst["next"] >= gst["entries"] / (4 * bands) > 8
    check_index_invariants(redis_client)
    for i, t in enumerate(texts):
        assert cluster_of(d, f"o{i}") == cluster_of(d, f"c{i}")
        found = {x["id"] for x in d.check(parse_article({"text": t})[0])["duplicates"]}
        assert {f"o{i}", f"c{i}"} <= found
    assert len({cluster_of(d, f"o{i}") for i in range(N)}) == N  # and no two stories merged


def test_deleting_after_splits_takes_out_exactly_that_articles_entries(redis_client: redis.Redis,
                                                                     config: Config) -> None:
    cfg = config.replace(lsh_bucket_bits=1, lsh_bucket_load=4)
    d = Dedup(redis_client, cfg)
    texts = fill(d, cfg)
    for i in range(0, N, 3):
        d.delete(f"o{i}")
    gone = len(range(0, N, 3))
    assert state(redis_client)["entries"] == (2 * N - gone) * band_count(cfg)
    remaining = {int(n) for n in redis_client.hvals(keys.IDS)}
    entries = band_entries(redis_client)
    assert {m for _, m in entries} == remaining and len(entries) == len(set(entries))
    for i in range(0, N, 3):
        found = {x["id"] for x in d.check(parse_article({"text": texts[i]})[0])["duplicates"]}
        assert f"o{i}" not in found and f"c{i}" in found


def to_legacy_layout(r: redis.Redis, config: Config) -> str:
    """Rewrite the band table as the fixed bucket hashes of the old layout; returns the old parameters."""
    for band, buckets in band_table(r).items():
        for entries in buckets.values():
            for value, member in entries:
                legacy = f"{keys.LEGACY_LSH_PREFIX}{band}:{value >> 22}"
                field = value.to_bytes(4, "little")
                r.hset(legacy, field, (r.hget(legacy, field) or b"") + member.to_bytes(4, "little"))
    r.delete(*r.keys("*:band:*"), *(keys.band_state(g) for g in range(keys.BAND_GROUPS)))
    b = Banding.for_threshold(config.lsh_threshold, config.num_perm)
    old = (f"num_perm={config.num_perm} bands={b.bands} rows={b.rows} bucket_bits=10 "
           f"shingle_cjk={config.shingle_cjk} shingle_latin={config.shingle_latin} tokens=v1")
    r.hset(keys.META, "index", old)
    return old


def test_an_index_in_the_old_fixed_bucket_layout_is_moved_not_refused(redis_client: redis.Redis,
                                                                    config: Config) -> None:
    texts = fill(Dedup(redis_client, config), config)
    before = sorted(band_entries(redis_client))
    to_legacy_layout(redis_client, config)
    assert redis_client.keys(keys.LEGACY_LSH_PREFIX + "*") and not redis_client.keys("*:band:*")

    cfg = config.replace(lsh_bucket_load=4)  # the moved table also splits on the way
    d = Dedup(redis_client, cfg)  # a process of the new version: the first call moves the index
    found = {x["id"] for x in d.check(parse_article({"text": texts[0]})[0])["duplicates"]}
    assert {"o0", "c0"} <= found
    assert redis_client.hget(keys.META, "index") == d.engine.index.index_params().encode()
    assert not redis_client.keys(keys.LEGACY_LSH_PREFIX + "*")
    assert sorted(band_entries(redis_client)) == before
    check_index_invariants(redis_client)

    # and the moved index keeps working: a new copy joins its story
    d.submit([parse_article({"id": "c1-again", "text": light_edit(texts[1], 99)})])
    process_available(redis_client, cfg)
    assert cluster_of(d, "c1-again") == cluster_of(d, "o1")


def test_a_foreign_index_layout_is_still_refused(redis_client: redis.Redis, config: Config) -> None:
    """Only the old layout of the same parameters is moved; other parameters stay a mismatch."""
    old = to_legacy_layout(redis_client, config).replace(f"shingle_cjk={config.shingle_cjk}",
                                                         f"shingle_cjk={config.shingle_cjk + 1}")
    redis_client.hset(keys.META, "index", old)
    redis_client.hset(f"{keys.LEGACY_LSH_PREFIX}0:1", b"abcd", b"\x01\x00\x00\x00")
    with pytest.raises(IndexMismatch, match="shingle_cjk"):
        Dedup(redis_client, config).check(parse_article({"text": zh_article(1, 600)})[0])
    assert redis_client.hget(keys.META, "index") == old.encode()
    assert redis_client.exists(f"{keys.LEGACY_LSH_PREFIX}0:1")


def test_removing_many_in_one_batch_takes_out_exactly_their_entries(redis_client: redis.Redis,
                                                                    config: Config) -> None:
    """A removal batch groups its entries per bucket; copies share buckets, so groups of several occur."""
    cfg = config.replace(lsh_bucket_bits=1, lsh_bucket_load=4)
    d = Dedup(redis_client, cfg)
    texts = fill(d, cfg)
    numbers = {k.decode(): int(v) for k, v in redis_client.hgetall(keys.IDS).items()}
    gone_ids = [f"o{i}" for i in range(0, N, 3)] + [f"c{i}" for i in range(0, N, 3) if i % 2]
    removal = Removal(redis_client, cfg)
    done = removal.remove([numbers[i] for i in gone_ids] + [numbers[gone_ids[0]]])  # one asked twice
    assert sorted(done.ids) == sorted(gone_ids)
    assert state(redis_client)["entries"] == (2 * N - len(gone_ids)) * band_count(cfg)
    remaining = {int(n) for n in redis_client.hvals(keys.IDS)}
    entries = band_entries(redis_client)
    assert {m for _, m in entries} == remaining and len(entries) == len(set(entries))
    check_index_invariants(redis_client)
    for i in range(0, N, 3):
        found = {x["id"] for x in d.check(parse_article({"text": texts[i]})[0])["duplicates"]}
        assert f"o{i}" not in found and (f"c{i}" in found) == (i % 2 == 0)
