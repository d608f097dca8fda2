"""The retention window with the real thing: `newsdedup worker` processes sweeping a real Redis, a 3 s window.

Articles are processed first (by workers without a window, or in the test), then workers that
run with NEWSDEDUP_RETENTION=3s sweep them away: the tests wait for observable states with
deadlines, never for the clock alone, and check what must hold after any sweep, including one
whose worker was SIGKILLed between two batches.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
import redis

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.errors import NotFound
from newsdedup.ops.redis_server import RedisServer
from tests.procs import (
    Proc,
    Procs,
    article_numbers,
    band_entries,
    band_states,
    check_removal_invariants,
    consumer_name,
    make_corpus,
    procs,  # noqa: F401 - fixture
    queue_settled,
    statuses,
    wait_until,
    wait_worker_ready,
)
from workers.consumer import process_available

pytestmark = pytest.mark.slow

WINDOW = {"NEWSDEDUP_RETENTION": "3s", "NEWSDEDUP_SWEEP_INTERVAL": "0.3s", "NEWSDEDUP_VISIBILITY_TIMEOUT": "2"}


def submit(d: Dedup, articles: list[dict[str, Any]]) -> None:
    d.submit([parse_article(a) for a in articles])


def nothing_left(r: redis.Redis) -> None:
    """No article, cluster, band entry, time-index entry or learned line shape is left; the band table counts 0."""
    assert r.hlen(keys.IDS) == 0 and r.zcard(keys.EXPIRY) == 0
    assert band_entries(r) == [] and sum(st.get("entries", 0) for st in band_states(r)) == 0
    assert not r.exists(keys.UNBAND)
    patterns = [keys.PREFIX + s for s in ("a:*", "p:*", "c:*", "cm:*")]
    patterns += ["*:band:*", keys.boilerplate("*")]
    left = [k for pattern in patterns for k in r.scan_iter(match=pattern, count=1000)]
    assert left == []
    assert r.zcard(keys.CLUSTERS) == 0 and r.zcard(keys.SINGLES) == 0


def test_articles_expire_under_running_workers(redis_server: RedisServer, redis_client: redis.Redis,
                                               procs: Procs) -> None:  # noqa: F811
    r = redis_client
    d = Dedup(r, Config.from_env({}, redis_url=redis_server.url))
    corpus = make_corpus(20, seed=1203, copies=(1, 3), singles=10)
    submit(d, corpus.articles)
    # first without a window: every story is clustered with its copies, and found by /v1/check
    plain = [procs.worker(redis_server.url, f"plain-{k}", NEWSDEDUP_VISIBILITY_TIMEOUT="2") for k in range(2)]
    wait_until(lambda: [w.check_alive() for w in plain] and queue_settled(r)
               and set(statuses(r, corpus.ids()).values()) == {"done"}, 60, message="the corpus to be processed")
    for w in plain:
        assert w.terminate() == 0
    before = article_numbers(r)
    story = next(g for g in corpus.truth() if len(g) >= 3)
    text = next(a["text"] for a in corpus.articles if a["id"] in story)
    assert len(d.check(parse_article({"text": text})[0])["duplicates"]) >= 2
    assert d.stats()["clusters_with_duplicates"] >= 15 and d.stats()["expired"] == 0

    # then workers with a 3 s window: everything older goes, in atomic batches
    swept = [procs.worker(redis_server.url, f"window-{k}", **WINDOW) for k in range(2)]
    wait_until(lambda: [w.check_alive() for w in swept] and d.stats()["articles"] == 0, 30,
               message="every article to expire")
    st = d.stats()
    assert st["expired"] == len(corpus.articles) and st["clusters"] == 0
    assert st["queue"] == {"pending": 0, "in_flight": 0, "failed": 0}
    kept, removed = check_removal_invariants(r, before, crashed=True)
    assert kept == set() and removed == set(before)
    nothing_left(r)
    for i in corpus.ids():
        with pytest.raises(NotFound) as e:
            d.article(i)
        assert e.value.code == "expired"
        assert r.pttl(keys.tombstone(i)) > 0
    assert d.check(parse_article({"text": text})[0])["duplicates"] == []  # no longer a candidate
    wait_until(lambda: not r.exists(keys.SWEEP_LEASE), 10, message="the sweep lease to be released")

    # a re-post of the expired story (under an old id and a new one) founds a new cluster of its own
    old_id = sorted(story)[0]
    old_cluster = keys.cluster_id(min(before[i] for i in story))
    submit(d, [{"id": old_id, "text": text}, {"id": "repost", "text": text}])
    wait_until(lambda: set(statuses(r, [old_id, "repost"]).values()) == {"done"}, 10,
               message="the re-posts to be processed (before they expire in turn)")
    a, b = d.article(old_id), d.article("repost")
    assert a["cluster_id"] == b["cluster_id"] == keys.cluster_id(article_numbers(r)[old_id]) != old_cluster
    assert [x["id"] for x in a["duplicates"]] == ["repost"]
    # and they expire in turn
    wait_until(lambda: d.stats()["articles"] == 0, 30, message="the re-posts to expire")
    assert d.stats()["expired"] == len(corpus.articles) + 2
    nothing_left(r)


def holds_lease(r: redis.Redis, w: Proc) -> bool:
    token = r.get(keys.SWEEP_LEASE)
    return token is not None and token.startswith(consumer_name(w).encode() + b":")


def test_worker_sigkilled_mid_sweep_leaves_nothing_half_removed(redis_server: RedisServer,
                                                                redis_client: redis.Redis,
                                                                procs: Procs) -> None:  # noqa: F811
    r = redis_client
    cfg = Config.from_env({}, redis_url=redis_server.url)
    d = Dedup(r, cfg)
    corpus = make_corpus(160, seed=1204, copies=(1, 3), singles=300)
    assert len(corpus.articles) >= 750
    submit(d, corpus.articles)  # one transaction: every article has the same ingestion time
    process_available(r, cfg)
    before = article_numbers(r)
    total = len(before)
    assert total == len(corpus.articles)

    a = procs.worker(redis_server.url, "sweeper-a", **WINDOW)
    wait_worker_ready(r, a)

    def mid_sweep() -> bool:
        a.check_alive()
        return holds_lease(r, a) and 0 < r.zcard(keys.EXPIRY) < total

    def frozen_mid_sweep() -> bool:
        """SIGSTOP A in the middle of its sweep and look again while it cannot move."""
        if not mid_sweep():
            return False
        a.signal(signal.SIGSTOP)
        if holds_lease(r, a) and 0 < r.zcard(keys.EXPIRY) < total:
            return True
        a.signal(signal.SIGCONT)
        return False

    wait_until(frozen_mid_sweep, 30, interval=0.002, message="worker A to be in the middle of its sweep")
    a.kill()
    assert r.pttl(keys.SWEEP_LEASE) > 0  # the dead worker's lease is still there: it runs out by itself
    # every article wholly there or wholly gone (A may die between a removal and its blob deletes:
    # orphan blobs are allowed, see newsdedup/storage/blobs.py)
    kept, removed = check_removal_invariants(r, before, crashed=True)
    print(f"killed A mid-sweep: {len(removed)} removed, {len(kept)} left")
    assert kept and removed
    assert d.stats()["expired"] == len(removed)

    b = procs.worker(redis_server.url, "sweeper-b", **WINDOW)
    wait_until(lambda: b.check_alive() or (r.hlen(keys.IDS) == 0 and not r.exists(keys.SWEEP_LEASE)), 30,
               message="worker B to take the lease over and finish the sweep")
    kept, removed = check_removal_invariants(r, before, crashed=True)
    assert kept == set() and removed == set(before)
    assert d.stats()["expired"] == total
    nothing_left(r)
