"""The retention window (issue 12): settings, the time index, the sweep batch, tombstones, the shared removal path.

Everything runs against the real Redis of the session. Which articles are expired is decided
by their stored retention time, not by the clock racing the test: under
NEWSDEDUP_RETENTION_BY=published an article published in 2001 is expired at once while one
without published_at counts from its ingestion (an hour's window away). The tests with worker
processes and a window of a few seconds are in tests/test_retention_procs.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.cli import main as cli_main
from newsdedup.config import Config, parse_duration
from newsdedup.dedup import Dedup
from newsdedup.errors import ConfigError, NotFound
from newsdedup.retention.removal import Removal
from newsdedup.retention.sweeper import CALL_SECONDS, MAX_BATCH, Sweeper, next_batch, retention_ms
from newsdedup.storage.records import decoded
from newsdedup.text.boilerplate import source_key
from tests.procs import (
    article_numbers,
    band_entries,
    band_states,
    check_index_invariants,
    check_removal_invariants,
    make_corpus,
)
from workers.consumer import process_available

OLD = "2001-09-09T01:46:40Z"  # 1,000,000,000 s: long before any window


# --- settings ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "seconds"), [("30d", 2_592_000), ("12h", 43_200), ("90m", 5_400), ("45s", 45),
                                              (" 1.5H ", 5_400), ("0", 0), ("0s", 0), ("0d", 0)])
def test_retention_durations(raw: str, seconds: float) -> None:
    assert parse_duration("NEWSDEDUP_RETENTION", raw, 1, 1e10, zero=True) == seconds
    assert Config.from_env({"NEWSDEDUP_RETENTION": raw}).retention == seconds


@pytest.mark.parametrize(("raw", "says"), [("30", "no unit"), ("30x", "not a duration"), ("-5d", "not a duration"),
                                           ("d", "not a duration"), ("0.5s", "out of range"),
                                           ("40000d", "out of range"), ("1e3s", "not a duration")])
def test_bad_retention_says_how_to_fix_it(raw: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        Config.from_env({"NEWSDEDUP_RETENTION": raw})
    assert says in e.value.message and "NEWSDEDUP_RETENTION" in e.value.message and "30d" in e.value.message


def test_retention_by_and_sweep_interval() -> None:
    assert Config.from_env({}).retention == 0 and Config.from_env({}).retention_by == "ingested"
    assert Config.from_env({"NEWSDEDUP_RETENTION_BY": "Published"}).retention_by == "published"
    with pytest.raises(ConfigError, match="use ingested or published"):
        Config.from_env({"NEWSDEDUP_RETENTION_BY": "updated"})
    # default: a tenth of the window, within [5 s, 60 s]
    assert Config.from_env({"NEWSDEDUP_RETENTION": "30d"}).sweep_seconds == 60
    assert Config.from_env({"NEWSDEDUP_RETENTION": "3s"}).sweep_seconds == 5
    assert Config.from_env({"NEWSDEDUP_RETENTION": "5m"}).sweep_seconds == 30
    assert Config.from_env({"NEWSDEDUP_RETENTION": "5m", "NEWSDEDUP_SWEEP_INTERVAL": "0.5s"}
                           ).sweep_seconds == 0.5
    with pytest.raises(ConfigError, match="NEWSDEDUP_SWEEP_INTERVAL"):
        Config.from_env({"NEWSDEDUP_SWEEP_INTERVAL": "0"})


def test_retention_time_of_an_article() -> None:
    ingested = 1_700_000_000_000
    by_pub = Config(retention=60, retention_by="published")
    assert retention_ms(Config(retention=60), ingested, OLD) == ingested  # by ingestion: published_at is ignored
    assert retention_ms(by_pub, ingested, OLD) == 1_000_000_000_000
    assert retention_ms(by_pub, ingested, "2023-11-14T22:13:19+01:00") == 1_699_996_399_000
    assert retention_ms(by_pub, ingested, None) == ingested  # no published_at: ingested time
    assert retention_ms(by_pub, ingested, "2099-01-01T00:00:00Z") == ingested  # in the future: clamped
    assert retention_ms(by_pub, ingested, "1960-01-01T00:00:00Z") == ingested  # before 1970: implausible


# --- the sweep batch and the shared removal path -----------------------------------------------------------------

def published_config(config: Config) -> Config:
    return config.replace(retention=3600.0, retention_by="published")


def submit(d: Dedup, articles: list[dict[str, Any]]) -> None:
    d.submit([parse_article(a) for a in articles])


def stories(r: redis.Redis, config: Config) -> tuple[Dedup, list[list[dict[str, Any]]]]:
    """Stories with 1-3 copies each, processed; in submission order within each story."""
    corpus = make_corpus(24, seed=1212, copies=(1, 3), singles=6)
    groups: dict[str, list[dict[str, Any]]] = {}
    for a in corpus.articles:
        groups.setdefault(corpus.story[a["id"]], []).append(a)
    return Dedup(r, config), list(groups.values())


def test_sweep_batch_shrinks_clusters_keeps_their_ids_and_leaves_tombstones(
        redis_client: redis.Redis, config: Config) -> None:
    cfg = published_config(config)
    d, groups = stories(redis_client, cfg)
    # per story: expire its first article (the canonical one), its last, all, or none
    plan = {}
    for k, g in enumerate(groups):
        how = ("first", "last", "all", "none")[k % 4]
        for j, a in enumerate(g):
            old = how == "all" or (how == "first" and j == 0) or (how == "last" and j == len(g) - 1 and j > 0)
            plan[a["id"]] = old
            submit(d, [{**a, "published_at": OLD} if old else a])  # one by one: numbers follow story order
    process_available(redis_client, cfg)
    before = article_numbers(redis_client)
    clusters = {a["id"]: d.article(a["id"])["cluster_id"] for g in groups for a in g}
    assert any(len(set(clusters[a["id"]] for a in g)) == 1 and len(g) > 1 for g in groups)  # duplicates found
    expired = {i for i, old in plan.items() if old}

    sweeper = Sweeper(redis_client, cfg)
    assert sweeper.expired_count() == len(expired) > 20
    assert sweeper.sweep_batch(limit=7) == 7  # one atomic batch of 7
    kept, removed = check_removal_invariants(redis_client, before)
    assert len(removed) == 7 and removed <= expired
    res = sweeper.sweep()
    assert res.removed == len(expired) - 7 and not res.more
    assert sweeper.sweep_batch() == 0 and sweeper.expired_count() == 0
    kept, removed = check_removal_invariants(redis_client, before)
    assert removed == expired and kept == set(before) - expired

    seen: dict[str, int] = {}
    for g in groups:
        left = [a["id"] for a in g if not plan[a["id"]]]
        cid = clusters[g[0]["id"]]
        if len(set(clusters[a["id"]] for a in g)) != 1:
            continue  # a copy the engine did not join (not what this test is about)
        shape = ("gone" if not left else "whole" if len(left) == len(g) else
                 "founder alone" if len(left) == 1 and cid == keys.cluster_id(before[left[0]]) else
                 "one left" if len(left) == 1 else "shrunk")
        if len(left) == 1 and len(g) > 1:  # down to one member: still explicit, listed with the singles
            assert redis_client.hget(keys.cluster(cid), "size") == b"1"
            assert redis_client.zscore(keys.SINGLES, cid) is not None
        seen[shape] = seen.get(shape, 0) + 1
        if not left:  # every member gone: so is the cluster
            assert not redis_client.exists(keys.cluster(cid), keys.cluster_members(cid))
            assert redis_client.zscore(keys.CLUSTERS, cid) is None and redis_client.zscore(keys.SINGLES, cid) is None
            with pytest.raises(NotFound):
                d.cluster(cid)
            continue
        view = d.cluster(cid)  # the id does not change while any member remains
        assert view["cluster_id"] == cid and view["size"] == len(left)
        assert sorted(m["id"] for m in view["members"]) == sorted(left)
        canonical = min(left, key=lambda i: before[i])  # re-elected when the canonical one expired
        assert view["canonical_id"] == canonical
        for i in left:
            a = d.article(i)
            assert a["cluster_id"] == cid
            assert a["duplicate_of"] == (None if i == canonical else canonical)
            assert sorted(x["id"] for x in a["duplicates"]) == sorted(set(left) - {i})
    assert set(seen) == {"gone", "whole", "founder alone", "one left", "shrunk"}, seen  # every case was met

    for i in expired:
        with pytest.raises(NotFound) as e:
            d.article(i)
        assert e.value.code == "expired"
        ttl = redis_client.pttl(keys.tombstone(i))
        assert 3_500_000 < ttl <= 3_600_000  # kept for one window again
    assert {m for _, m in band_entries(redis_client)} <= {before[i] for i in kept}
    # boilerplate state is what the stories still stored taught it
    want: dict[str, dict[bytes, int]] = {}
    for i in kept:
        src, url, shapes = redis_client.hmget(keys.article(before[i]), "source", "url", "bpsh")
        if shapes is not None:
            counts = want.setdefault(keys.boilerplate(source_key(decoded(src), decoded(url))), {})
            for sh in [keys.BP_DOCS_FIELD] + [shapes[k:k + 8] for k in range(0, len(shapes), 8)]:
                counts[sh] = counts.get(sh, 0) + 1
    got = {k.decode(): {f: int(v) for f, v in redis_client.hgetall(k).items()}
           for k in redis_client.scan_iter(match=keys.boilerplate("*"))}
    assert got == want and len(got) >= 3
    st = d.stats()
    assert st["expired"] == len(expired) and st["articles"] == len(kept)


def test_a_repost_after_expiry_founds_a_new_cluster(redis_client: redis.Redis, config: Config) -> None:
    cfg = published_config(config)
    d, groups = stories(redis_client, cfg)
    story = next(g for g in groups if len(g) >= 3)
    submit(d, [{**a, "published_at": OLD} for a in story])
    process_available(redis_client, cfg)
    cid = d.article(story[0]["id"])["cluster_id"]
    assert {d.article(a["id"])["cluster_id"] for a in story} == {cid}
    assert d.check(parse_article({"text": story[0]["text"]})[0])["duplicates"]  # found while stored
    Sweeper(redis_client, cfg).sweep()
    assert d.check(parse_article({"text": story[0]["text"]})[0])["duplicates"] == []  # no longer a candidate
    assert band_entries(redis_client) == [] and sum(st.get("entries", 0) for st in band_states(redis_client)) == 0
    assert list(redis_client.scan_iter(match=keys.boilerplate("*"))) == []  # what they taught is taken back
    # the same story again, under the same id and a new one: a new cluster, no duplicate of the expired copies
    submit(d, [{"id": story[0]["id"], "text": story[0]["text"]}, {"id": "again", "text": story[0]["text"]}])
    process_available(redis_client, cfg)
    a, b = d.article(story[0]["id"]), d.article("again")
    assert a["cluster_id"] == b["cluster_id"] != cid
    assert a["cluster_id"] == keys.cluster_id(article_numbers(redis_client)[story[0]["id"]])
    assert [x["id"] for x in a["duplicates"]] == ["again"]
    check_index_invariants(redis_client)


def test_delete_and_expiry_share_one_path(redis_client: redis.Redis, config: Config) -> None:
    cfg = published_config(config)
    d, groups = stories(redis_client, cfg)
    story = next(g for g in groups if len(g) >= 3)
    submit(d, story)
    process_available(redis_client, cfg)
    before = article_numbers(redis_client)
    d.delete(story[0]["id"])  # DELETE: no tombstone, not counted as expired
    with pytest.raises(NotFound) as e:
        d.article(story[0]["id"])
    assert e.value.code == "not_found" and d.stats()["expired"] == 0
    kept, removed = check_removal_invariants(redis_client, before)
    assert removed == {story[0]["id"]}
    # removing a number twice (a sweep that is redone) changes nothing more; the stale index entry is dropped
    redis_client.zadd(keys.EXPIRY, {str(before[story[0]["id"]]): 1})
    assert Removal(redis_client, cfg).remove([before[story[0]["id"]]]).stale == 1
    assert check_removal_invariants(redis_client, before) == (kept, removed)
    assert d.stats()["expired"] == 0
    with pytest.raises(NotFound):
        d.delete(story[0]["id"])


def test_queued_articles_expire_too_and_the_worker_skips_them(redis_client: redis.Redis, config: Config) -> None:
    cfg = published_config(config)
    d, groups = stories(redis_client, cfg)
    submit(d, [{**a, "published_at": OLD} for a in groups[0]])
    assert d.stats()["queue"]["pending"] == len(groups[0])
    assert Sweeper(redis_client, cfg).sweep().removed == len(groups[0])
    st = d.stats()
    assert st["queue"]["pending"] == 0 and st["articles"] == 0 and st["expired"] == len(groups[0])
    process_available(redis_client, cfg)  # the stream entries are acknowledged as deleted
    assert redis_client.xlen(keys.QUEUE) == 0 and band_entries(redis_client) == []


def test_sweep_command(redis_client: redis.Redis, config: Config, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = published_config(config)
    d, groups = stories(redis_client, cfg)
    submit(d, [{**a, "published_at": OLD} for a in groups[0]] + groups[1])
    process_available(redis_client, cfg)
    monkeypatch.setenv("REDIS_URL", cfg.redis_url or "")
    monkeypatch.setenv("NEWSDEDUP_RETENTION_BY", "published")
    monkeypatch.delenv("NEWSDEDUP_RETENTION", raising=False)
    assert cli_main(["sweep", "--dry-run"]) == 2
    assert "NEWSDEDUP_RETENTION is not set" in capsys.readouterr().err
    monkeypatch.setenv("NEWSDEDUP_RETENTION", "1h")
    assert cli_main(["sweep", "--dry-run"]) == 0
    assert f'"expired": {len(groups[0])}' in capsys.readouterr().out
    assert d.stats()["articles"] == len(groups[0]) + len(groups[1])
    assert cli_main(["sweep"]) == 0
    assert f'"removed": {len(groups[0])}' in capsys.readouterr().out
    assert d.stats()["articles"] == len(groups[1])
    redis_client.set(keys.SWEEP_LEASE, "someone-else", px=60_000)  # a worker is sweeping
    monkeypatch.setattr("newsdedup.ops.sweep.LEASE_WAIT_SECONDS", 0.3)
    assert cli_main(["sweep"]) == 1
    assert "holds the sweep lease" in capsys.readouterr().err


def test_one_sweeper_at_a_time_under_a_lease(redis_client: redis.Redis, config: Config) -> None:
    cfg = published_config(config).replace(sweep_interval=0.2)
    a, b = Sweeper(redis_client, cfg, name="a"), Sweeper(redis_client, cfg, name="b")
    assert a.lease_ms == 10_000  # twice the interval, at least 10 s: how long a dead holder blocks the others
    assert a.acquire() and not b.acquire()
    assert not b.renew()
    b.release()  # not its lease: nothing happens
    assert redis_client.get(keys.SWEEP_LEASE) == a.token.encode()
    redis_client.pexpire(keys.SWEEP_LEASE, 50)
    assert a.renew() and redis_client.pttl(keys.SWEEP_LEASE) > 5000  # renewed by its holder
    a.release()
    assert not redis_client.exists(keys.SWEEP_LEASE) and b.acquire()
    b.release()


def test_tick_sweeps_when_due_and_returns_at_once_otherwise(redis_client: redis.Redis, config: Config) -> None:
    cfg = published_config(config).replace(sweep_interval=3600.0)
    d, groups = stories(redis_client, cfg)
    submit(d, [{**a, "published_at": OLD} for a in groups[0]] + groups[1])
    process_available(redis_client, cfg)
    assert Sweeper(redis_client, cfg.replace(retention=0.0)).tick() == 0  # no window: never sweeps
    assert d.stats()["expired"] == 0
    s = Sweeper(redis_client, cfg)
    assert s.tick() == len(groups[0])  # due at once after start
    assert not redis_client.exists(keys.SWEEP_LEASE)  # released when done
    submit(d, [{**a, "id": a["id"] + "-late", "published_at": OLD} for a in groups[2]])
    assert s.tick() == 0 and d.stats()["expired"] == len(groups[0])  # not due again for an interval
    assert Sweeper(redis_client, cfg).tick() == len(groups[2])  # another worker's turn comes


def test_the_sweep_batch_adapts_to_keep_calls_short() -> None:
    """A call that took longer than CALL_SECONDS shrinks the next batch, a quick one grows it, within bounds."""
    assert next_batch(20, 20, 4 * CALL_SECONDS) < 20  # 4x too slow: towards 5
    assert next_batch(20, 20, CALL_SECONDS / 4) > 20  # 4x too quick: towards 80
    assert next_batch(20, 20, CALL_SECONDS) == 20
    assert next_batch(1, 1, 100 * CALL_SECONDS) == 1 and next_batch(MAX_BATCH, 50, 1e-6) == MAX_BATCH
    assert next_batch(20, 0, 0.0) == 20  # nothing removed: nothing learnt
    assert next_batch(10, 10, 1e-6) == 15  # however quick, it grows by half at most
    b = 20
    for _ in range(10):  # at 1 ms per article it settles on the batch that takes CALL_SECONDS
        b = next_batch(b, b, b * 0.001)
    assert abs(b - CALL_SECONDS / 0.001) <= 1
