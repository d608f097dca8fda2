"""Fault injection against real processes: a Redis with AOF, `newsdedup worker` / `serve` subprocesses.

Each test breaks something the way production breaks (SIGKILL, SIGTERM, an input
that fails every time, Redis going away) and then checks that every accepted
article is processed exactly once: done, in exactly one cluster, its number at
most once in every LSH bucket, counters back to zero, duplicates clustered as
planted. Nothing is mocked; synchronisation is polling with deadlines.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.errors import ValidationError
from newsdedup.ops.redis_server import RedisServer, free_port
from newsdedup.storage.records import pack_json
from tests.procs import (
    Http,
    Proc,
    Procs,
    Response,
    article_numbers,
    check_index_invariants,
    consumer_name,
    consumers,
    in_xreadgroup,
    make_corpus,
    partition,
    pending_of,
    procs,  # noqa: F401 - fixture
    statuses,
    wait_http_ready,
    wait_until,
    wait_worker_ready,
)
from tests.textgen import zh_article
from workers.consumer import process_available

pytestmark = pytest.mark.slow

VISIBILITY = "1.5"
FAST = {"NEWSDEDUP_VISIBILITY_TIMEOUT": VISIBILITY, "NEWSDEDUP_MAX_ATTEMPTS": "3"}


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with AOF fsynced on every write, on a fixed port so it can come back there."""
    server = RedisServer(data_dir=tmp_path / "redis", port=free_port(), appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        server.stop(graceful=False)


def submit(r: redis.Redis, articles: list[dict[str, Any]]) -> Dedup:
    d = Dedup(r, Config.from_env({}))
    d.submit([parse_article(a) for a in articles])
    return d


def entries_by_number(r: redis.Redis) -> dict[bytes, int]:
    return {eid: int(f[b"n"]) for eid, f in r.xrange(keys.QUEUE)}


def dead_letters(r: redis.Redis) -> dict[int, dict[bytes, bytes]]:
    return {int(f[b"n"]): f for _, f in r.xrange(keys.DEAD)}


def all_done(r: redis.Redis, ids: list[str]) -> bool:
    return all(s == "done" for s in statuses(r, ids).values())


def settled(r: redis.Redis) -> bool:
    """Nothing queued and nothing delivered but unacknowledged."""
    pending = int(r.xpending(keys.QUEUE, keys.GROUP)["pending"])
    return pending == 0 and int(r.hget(keys.META, "queued") or 0) == 0


def assert_exactly_once(r: redis.Redis, ids: list[str], failed: int = 0) -> None:
    """Everything done once: counters exactly zero (a double count would go negative), no pending entries."""
    st = statuses(r, ids)
    assert {i: s for i, s in st.items() if s != "done"} == {}
    assert int(r.hget(keys.META, "queued") or 0) == 0
    assert int(r.hget(keys.META, "failed") or 0) == failed
    assert int(r.xpending(keys.QUEUE, keys.GROUP)["pending"]) == 0
    check_index_invariants(r)


# --- 1. SIGKILL mid-batch ----------------------------------------------------------------------------------------

def test_sigkill_mid_batch_then_another_worker_finishes_everything_exactly_once(
        aof_redis: RedisServer, procs: Procs) -> None:  # noqa: F811
    r = aof_redis.client()
    corpus = make_corpus(120, seed=101, copies=(1, 3), singles=40)
    assert len(corpus.articles) >= 380
    submit(r, corpus.articles)
    entry_n = entries_by_number(r)

    a = procs.worker(aof_redis.url, "worker-a", NEWSDEDUP_WORKER_BATCH=50, **FAST)

    def indexed_not_linked() -> list[int]:
        """Articles of A's batch whose LSH insert is written but whose clustering is not (the worst moment)."""
        ns = [entry_n[p["message_id"]] for p in pending_of(r, a)]
        pipe = r.pipeline(transaction=False)
        for n in ns:
            pipe.hmget(keys.article(n), "iver", "status")
        return [n for n, (iver, st) in zip(ns, pipe.execute()) if iver == b"1" and st == b"queued"]

    # Kill A when part of its batch is indexed but not clustered if we catch that moment, else as soon
    # as the queue is half done with a batch in A's hands.
    def kill_moment() -> bool:
        a.check_alive()
        if not pending_of(r, a):
            return False
        return bool(indexed_not_linked()) or int(r.hget(keys.META, "queued") or 0) <= len(entry_n) // 2

    def frozen_holding_a_batch() -> bool:
        """SIGSTOP A at such a moment and look again while it cannot move: a fast A may otherwise
        finish its batch between the look and the kill."""
        if not kill_moment():
            return False
        a.signal(signal.SIGSTOP)
        if pending_of(r, a):
            return True
        a.signal(signal.SIGCONT)
        return False

    wait_until(frozen_holding_a_batch, 30, interval=0.002, message="worker A to hold a batch")
    a.kill()
    in_limbo = pending_of(r, a)
    half = indexed_not_linked()
    print(f"killed A with {len(in_limbo)} entries pending, {len(half)} indexed but not clustered")
    assert in_limbo, "A finished its batch before the kill; nothing was tested"

    b = procs.worker(aof_redis.url, "worker-b", NEWSDEDUP_WORKER_BATCH=50, **FAST)
    wait_until(lambda: b.check_alive() or (settled(r) and all_done(r, corpus.ids())), 120, interval=0.1,
               message="worker B to finish A's batch and the rest")
    assert pending_of(r, a) == []
    assert_exactly_once(r, corpus.ids())
    assert dead_letters(r) == {}
    assert partition(r) == corpus.truth()
    d = Dedup(r, Config.from_env({}, redis_url=aof_redis.url))
    assert d.stats()["queue"] == {"pending": 0, "in_flight": 0, "failed": 0}
    assert d.stats()["articles"] == len(corpus.articles)


# --- 2. poison ---------------------------------------------------------------------------------------------------

def test_permanently_broken_articles_fail_at_once_and_do_not_block_the_queue(
        aof_redis: RedisServer, procs: Procs) -> None:  # noqa: F811
    """Inputs the API accepts but no page can be made of, and a stored payload that cannot be read."""
    r = aof_redis.client()
    corpus = make_corpus(12, seed=202, copies=(1, 2))
    # what the API can tell at once it rejects: nothing to compare is a 4xx, never a later failure
    for unusable in ({"text": "___ ___ ___"}, {"html": "<html><body><script>var story = 'x';</script></body></html>"}):
        with pytest.raises(ValidationError):
            parse_article(unusable)
    poison = [
        # SVG text is markup the extractor does not read: only processing finds there is no text
        {"id": "svg-only", "title": "t", "html": "<html><body><svg><text>words here</text></svg></body></html>"},
        {"id": "svg-nested", "html": "<html><body><div><svg><g><text>story 42</text></g></svg></div></body></html>"},
        {"id": "corrupt-payload", "title": "t", "text": zh_article(5, 700)},
    ]
    arts = corpus.articles[:10] + poison + corpus.articles[10:]
    submit(r, arts)
    n_corrupt = article_numbers(r)["corrupt-payload"]
    r.set(keys.payload(n_corrupt), b"\x00not zlib at all\xff")

    w = procs.worker(aof_redis.url, "worker", NEWSDEDUP_WORKER_BATCH=4, **FAST)
    poison_ids = [p["id"] for p in poison]
    wait_until(lambda: w.check_alive() or settled(r), 30, interval=0.05, message="the queue to settle")

    d = Dedup(r, Config.from_env({}, redis_url=aof_redis.url))
    assert all_done(r, corpus.ids()), "a broken article blocked the others"
    assert partition(r, corpus.ids()) == corpus.truth()
    dead = dead_letters(r)
    nums = article_numbers(r)
    assert set(dead) == {nums[i] for i in poison_ids}
    reasons = {"svg-only": "no text found", "svg-nested": "no text found",
               "corrupt-payload": "stored payload cannot be read"}
    for i in poison_ids:
        a = d.article(i)
        assert a["status"] == "failed" and reasons[i] in (a["error"] or ""), a
        assert a["attempts"] == 1, "a permanent failure must not be retried"
        assert int(dead[nums[i]][b"attempts"]) == 1 and reasons[i] in dead[nums[i]][b"reason"].decode()
    assert d.stats()["queue"] == {"pending": 0, "in_flight": 0, "failed": 3}

    # fixing: a corrected re-post re-queues a failed article; a repaired record needs a retry
    d.submit([parse_article({"id": "svg-only", "title": "t", "text": zh_article(6, 700)})])
    d.submit([parse_article({"id": "svg-nested", "html": f"<html><body><p>{zh_article(7, 700)}</p></body></html>"})])
    r.set(keys.payload(n_corrupt), pack_json({"text": zh_article(5, 700)}))
    assert d.retry_failed()["retried"] == ["corrupt-payload"]
    assert d.stats()["queue"]["failed"] == 0
    wait_until(lambda: w.check_alive() or (settled(r) and all_done(r, poison_ids)), 30, interval=0.05,
               message="the fixed articles to be processed")
    assert_exactly_once(r, [a["id"] for a in arts])
    assert d.stats()["queue"] == {"pending": 0, "in_flight": 0, "failed": 0}


def test_article_that_raises_every_time_is_dead_lettered_after_max_attempts(
        aof_redis: RedisServer, procs: Procs) -> None:  # noqa: F811
    """A record that makes processing raise (not a ProcessingError): retried, then dead-lettered with the reason."""
    r = aof_redis.client()
    corpus = make_corpus(10, seed=303, copies=(1, 2))
    bad = {"id": "bad-record", "title": "fine title", "text": zh_article(8, 700)}
    arts = corpus.articles[:6] + [bad] + corpus.articles[6:]
    submit(r, arts)
    n_bad = article_numbers(r)["bad-record"]
    # an index version the engine cannot parse (as if written by another release): processing raises ValueError
    r.hset(keys.article(n_bad), mapping={"sig": b"\x01" * 512, "iver": "v1"})

    w = procs.worker(aof_redis.url, "worker", NEWSDEDUP_WORKER_BATCH=4, **FAST)
    d = Dedup(r, Config.from_env({}, redis_url=aof_redis.url))
    # Each failed delivery is counted in the record (attempts) while the entry stays queued; the third
    # is the last. Watch the record change until it is dead-lettered: whatever moments the polling sees,
    # attempts only grow, and it is never failed before the third.
    seen: list[tuple[str, int]] = []

    def dead_lettered() -> bool:
        w.check_alive()
        status, attempts = r.hmget(keys.article(n_bad), "status", "attempts")
        state = ((status or b"").decode(), int(attempts or 0))
        if not seen or seen[-1] != state:
            seen.append(state)
        return state[0] == "failed"

    wait_until(dead_lettered, 60, interval=0.02, message="the bad record to be dead-lettered")
    print("states of the bad record seen:", seen)
    assert [att for _, att in seen] == sorted(att for _, att in seen), seen
    assert all(st == "queued" for st, _ in seen[:-1]) and seen[-1] == ("failed", 3), seen
    # the batch it was in failed and was retried one by one: its batch-mates went through, never failing
    wait_until(lambda: w.check_alive() or (settled(r) and all_done(r, corpus.ids())), 30, interval=0.05,
               message="the other articles to be done")
    for i in corpus.ids():
        got = d.article(i)
        assert (got["attempts"], got["error"]) == (0, None), got
    a = d.article("bad-record")
    assert a["error"].startswith("gave up after 3 attempts: ValueError"), a["error"]
    assert a["attempts"] == 3
    dead = dead_letters(r)
    assert list(dead) == [n_bad] and int(dead[n_bad][b"attempts"]) == 3
    wait_until(lambda: settled(r), 30, message="the queue to settle")
    assert d.stats()["queue"] == {"pending": 0, "in_flight": 0, "failed": 1}
    assert partition(r, corpus.ids()) == corpus.truth()

    r.hdel(keys.article(n_bad), "sig", "iver")  # repaired
    assert d.retry_failed()["retried"] == ["bad-record"]
    wait_until(lambda: w.check_alive() or (settled(r) and all_done(r, ["bad-record"])), 30, interval=0.05,
               message="the repaired article to be processed")
    assert_exactly_once(r, [x["id"] for x in arts])
    assert d.article("bad-record")["error"] is None


def crash_every_time_it_holds(r: redis.Redis, procs: Procs, url: str, entry: bytes, attempts: int,  # noqa: F811
                              **settings: str) -> Proc:
    """Start a worker and SIGKILL it while it holds ``entry``, ``attempts`` times; returns a last worker left alive."""

    def holds(w: Proc, delivery: int) -> bool:
        w.check_alive()
        return any(p["message_id"] == entry and p["times_delivered"] == delivery for p in pending_of(r, w))

    for delivery in range(1, attempts + 1):
        w = procs.worker(url, f"worker-{delivery}", **settings)
        wait_until(lambda: holds(w, delivery), 30, interval=0.01,  # noqa: B023
                   message=f"delivery {delivery} of the crashing article")
        w.kill()
    return procs.worker(url, "worker-last", **settings)


def giant_among(corpus_articles: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    giant = {"id": "giant", "title": "长文", "text": zh_article(9, 300_000)}  # takes seconds to process
    return giant, corpus_articles[:8] + [giant] + corpus_articles[8:]


def test_article_that_crashes_its_worker_is_dead_lettered_after_max_attempts(
        aof_redis: RedisServer, procs: Procs) -> None:  # noqa: F811
    """A worker dies (SIGKILL, as the OOM killer would) every time it holds one article: after max_attempts
    deliveries the article is dead-lettered with a reason; everything else is done; a fixed re-post is done."""
    r = aof_redis.client()
    corpus = make_corpus(10, seed=404, copies=(1, 2))
    giant, arts = giant_among(corpus.articles)
    submit(r, arts)
    n_giant = article_numbers(r)["giant"]
    (giant_entry,) = [e for e, n in entries_by_number(r).items() if n == n_giant]
    last = crash_every_time_it_holds(r, procs, aof_redis.url, giant_entry, 3, NEWSDEDUP_WORKER_BATCH="1", **FAST)

    d = Dedup(r, Config.from_env({}, redis_url=aof_redis.url))
    wait_until(lambda: last.check_alive() or d.article("giant")["status"] == "failed", 30, interval=0.05,
               message="the giant article to be dead-lettered")
    a = d.article("giant")
    assert a["error"] == "gave up after 3 attempts (the worker handling it stopped responding)", a["error"]
    assert a["attempts"] == 3
    wait_until(lambda: last.check_alive() or (settled(r) and all_done(r, corpus.ids())), 30, interval=0.05,
               message="the other articles to be done")
    dead = dead_letters(r)
    assert list(dead) == [n_giant] and int(dead[n_giant][b"attempts"]) == 3
    assert partition(r, corpus.ids()) == corpus.truth()
    assert d.stats()["queue"] == {"pending": 0, "in_flight": 0, "failed": 1}

    # fixing: the article re-posted in a form the workers survive
    d.submit([parse_article({"id": "giant", "title": "长文", "text": zh_article(9, 3000)})])
    wait_until(lambda: last.check_alive() or (settled(r) and all_done(r, ["giant"])), 30, interval=0.05,
               message="the re-posted article to be processed")
    assert_exactly_once(r, [x["id"] for x in arts])
    assert d.stats()["queue"]["failed"] == 0




# --- 3. a crashing article among batch-mates ---------------------------------------------------------------------

@pytest.mark.slow
def test_crashing_article_does_not_take_its_batch_mates_to_the_dead_letters(
        aof_redis: RedisServer, procs: Procs) -> None:  # noqa: F811
    """Batches of 4: the article that kills its worker is read together with 3 innocent ones (a story's
    original and its copy among them), so they are abandoned with it. Entries abandoned once are retried
    together, entries already retried one at a time: only the crashing article uses up its attempts and is
    dead-lettered; its batch-mates end done, the copy in its original's cluster."""
    r = aof_redis.client()
    corpus = make_corpus(3, seed=505, copies=(1, 1), singles=2)
    by_id = {a["id"]: a for a in corpus.articles}
    orig = by_id["s000-orig"]
    (copy,) = [a for a in corpus.articles if corpus.story[a["id"]] == "s000" and a is not orig]
    single = by_id["s003-orig"]
    giant, _ = giant_among([])
    mates = [orig, copy, single]
    batch = [orig, giant, copy, single]
    rest = [a for a in corpus.articles if a not in mates]
    submit(r, batch + rest)
    nums = article_numbers(r)
    first = list(entries_by_number(r).items())[:4]
    assert [n for _, n in first] == [nums[a["id"]] for a in batch], "the batch is not the first 4 entries"
    (giant_entry,) = [e for e, n in first if n == nums["giant"]]
    mate_entries = {e for e, n in first if n != nums["giant"]}

    last = crash_every_time_it_holds(r, procs, aof_redis.url, giant_entry, 3, NEWSDEDUP_WORKER_BATCH="4", **FAST)
    # The moment of the third kill: the batch-mates were in the two crashing batches of 4 (delivered twice);
    # those the third worker took before the crashing article (one at a time) are done already.
    seen = {p["message_id"]: p["times_delivered"] for p in
            r.xpending_range(keys.QUEUE, keys.GROUP, min="-", max="+", count=100)}
    print("after the third kill, deliveries of the batch's pending entries:", {e: seen.get(e) for e, _ in first})
    assert seen.get(giant_entry) == 3
    for e in mate_entries:
        n = dict(first)[e]
        assert seen.get(e, 2) == 2 or r.hget(keys.article(n), "status") == b"done", \
            f"batch-mate {e!r} was delivered {seen.get(e)} times, as often as the crashing article"
    assert any(seen.get(e) == 2 for e in mate_entries), "no batch-mate shared the crashing batches"

    d = Dedup(r, Config.from_env({}, redis_url=aof_redis.url))
    wait_until(lambda: last.check_alive() or (settled(r) and d.article("giant")["status"] == "failed"
                                               and all_done(r, corpus.ids())), 30, interval=0.05,
               message="the crashing article to be dead-lettered and the others done")
    a = d.article("giant")
    assert a["error"] == "gave up after 3 attempts (the worker handling it stopped responding)", a["error"]
    dead = dead_letters(r)
    assert list(dead) == [nums["giant"]], f"innocent articles were dead-lettered: {set(dead) - {nums['giant']}}"
    for m in mates:
        got = d.article(m["id"])
        assert got["status"] == "done" and got["error"] is None, got
    assert d.article(copy["id"])["cluster_id"] == d.article(orig["id"])["cluster_id"]
    assert partition(r, corpus.ids()) == corpus.truth()
    assert d.stats()["queue"] == {"pending": 0, "in_flight": 0, "failed": 1}
    assert int(r.hget(keys.META, "failed") or 0) == 1
    check_index_invariants(r)


# --- 4. a page of many distinct lines ----------------------------------------------------------------------------

def many_distinct_lines(count: int) -> str:
    """``count`` short lines, all different once digits are abstracted: "ab cd" from 4 base-26 letters."""
    def letters(i: int) -> str:
        out = ""
        for _ in range(4):
            i, k = divmod(i, 26)
            out += chr(97 + k)
        return out

    return "\n".join(f"{w[:2]} {w[2:]}" for w in map(letters, range(count)))


@pytest.mark.slow
def test_a_page_with_many_distinct_lines_is_processed(redis_client: redis.Redis, config: Config) -> None:
    """~9,000 distinct line shapes in one page: the boilerplate lookup must not pass them to Lua's unpack at
    once (which fails near 8,000 values: the article failed every time and was dead-lettered)."""
    text = many_distinct_lines(9000)
    assert len(set(text.split("\n"))) == 9000 and 50_000 < len(text.encode()) < 60_000
    art = {"id": "many-lines", "title": "A long list", "text": text, "source": "Lists Daily"}
    d = Dedup(redis_client, config)
    d.submit([parse_article(art)])
    assert process_available(redis_client, config) >= 1
    got = d.article("many-lines")
    assert got["status"] == "done", got["error"]
    assert got["attempts"] == 0 and got["error"] is None
    assert d.stats()["queue"] == {"pending": 0, "in_flight": 0, "failed": 0}

    article, _ = parse_article(art)
    found = d.check(article)
    assert [x["id"] for x in found["duplicates"]] == ["many-lines"], found["duplicates"]
    assert found["cluster_id"] == got["cluster_id"]


# --- 5. Redis going away under ingest ----------------------------------------------------------------------------

@pytest.mark.slow
def test_redis_outages_during_ingest_answer_503_and_lose_nothing(
        aof_redis: RedisServer, procs: Procs) -> None:  # noqa: F811
    """Three outages while articles are ingested over HTTP and processed: a graceful stop, a crash (SIGKILL)
    and a freeze (SIGSTOP). Meanwhile the API answers 503 + Retry-After (never 500, never a hang past a bound
    derived from NEWSDEDUP_REDIS_TIMEOUT), /healthz stays 200 and /readyz says 503. Afterwards the same API
    and worker processes carry on by themselves, and every article that got a 202 is done, exactly once (AOF
    fsynced on every write)."""
    r = aof_redis.client()
    corpus = make_corpus(30, seed=606, copies=(1, 2), singles=10)
    todo = [corpus.articles[i:i + 8] for i in range(0, len(corpus.articles), 8)]
    # No answer may wait on Redis longer than the configured timeout: a bound derived from it, with room
    # for a loaded machine (an answer that hangs on the frozen Redis waits for the client's 30 s instead).
    redis_timeout = 3.0
    never_hangs_past = redis_timeout * 3 + 5
    settings = {"NEWSDEDUP_REDIS_TIMEOUT": str(redis_timeout), **FAST}
    port = free_port()
    api = procs.serve(aof_redis.url, port, processes=1, threads=4, **settings)
    http = Http(f"http://127.0.0.1:{port}", timeout=30)
    wait_http_ready(http, api)
    w = procs.worker(aof_redis.url, "worker", NEWSDEDUP_WORKER_BATCH=8, **settings)
    wait_worker_ready(r, w)
    accepted: list[str] = []
    answers: list[tuple[str, int, float]] = []

    def post(batch: list[dict[str, Any]], when: str) -> Response:
        resp = http.post("/v1/articles", {"articles": batch})
        answers.append((when, resp.status, round(resp.seconds, 2)))
        assert resp.status in (202, 503), f"{when}: {resp.status} {resp.body[:500]!r}"
        if resp.status == 202:
            assert [x["id"] for x in resp.json["articles"]] == [a["id"] for a in batch]
            accepted.extend(a["id"] for a in batch)
        else:
            assert "retry-after" in {k.lower() for k in resp.headers}, resp.headers
        return resp

    def post_until_accepted(batch: list[dict[str, Any]], when: str) -> None:
        """As a client honouring Retry-After would (a 503 is fine while Redis comes back, a 500 never)."""
        wait_until(lambda: post(batch, when).status == 202, 60, interval=0.2, message=f"{when}: a 202")

    def freeze() -> None:
        assert aof_redis.pid is not None
        os.kill(aof_redis.pid, signal.SIGSTOP)

    def thaw() -> None:
        assert aof_redis.pid is not None
        os.kill(aof_redis.pid, signal.SIGCONT)

    outages = [("graceful stop", aof_redis.stop, aof_redis.restart),
               ("SIGKILL", aof_redis.kill, aof_redis.restart),
               ("SIGSTOP", freeze, thaw)]
    for name, go_down, come_back in outages:
        for _ in range(2):  # work in the queue and in the worker's hands when Redis goes away
            post_until_accepted(todo.pop(0), f"before {name}")
        rejected = todo.pop(0)
        print(f"{name}: {int(r.hget(keys.META, 'queued') or 0)} articles queued, "
              f"{len(pending_of(r, w))} in the worker's hands when Redis goes away")
        go_down()
        try:
            with ThreadPoolExecutor(3) as pool:
                during_post = pool.submit(post, rejected, f"during {name}")
                ready = pool.submit(http.get, "/readyz", 30)
                health = pool.submit(http.get, "/healthz", 30)
                p, rd, h = during_post.result(), ready.result(), health.result()
        finally:
            come_back()
        print(f"{name}: POST {p.status} in {p.seconds:.2f}s (Retry-After {p.headers.get('Retry-After')}), "
              f"/readyz {rd.status} in {rd.seconds:.2f}s, /healthz {h.status} in {h.seconds:.2f}s")
        assert p.status == 503 and p.json["error"]["code"] == "storage_unavailable", (name, p.status, p.body)
        assert p.seconds < never_hangs_past, f"{name}: the 503 took {p.seconds:.1f}s"
        assert rd.status == 503 and rd.seconds < never_hangs_past, (name, rd.status, rd.seconds, rd.body)
        # liveness does not ask Redis: 200 even while it is frozen (a Redis call would have timed out: 503)
        assert h.status == 200 and h.seconds < never_hangs_past, (name, h.status, h.seconds)
        wait_http_ready(http, api, timeout=60)
        post_until_accepted(rejected, f"after {name}")  # the rejected batch again, as its client would
        # the worker reconnects by itself and drains the queue before the next outage
        wait_until(lambda: w.check_alive() or http.queue_left() == 0, 30, interval=0.1,
                   message=f"the worker to drain the queue after the {name}")
    while todo:
        post_until_accepted(todo.pop(0), "after the outages")
    wait_until(lambda: w.check_alive() or http.queue_left() == 0, 30, interval=0.1,
               message="the worker to drain the queue")
    print("POST answers:", answers)

    assert sorted(accepted) == sorted(corpus.ids())
    not_done = {}
    for i in accepted:
        got = http.get("/v1/articles/" + quote(i, safe=""))
        if got.status != 200 or got.json["status"] != "done":
            not_done[i] = (got.status, got.json)
    assert not_done == {}
    assert w.alive and api.alive, "the worker or the API did not survive the outages"
    assert consumer_name(w) in consumers(r)
    stats = http.get("/v1/stats").json
    assert stats["queue"] == {"pending": 0, "in_flight": 0, "failed": 0} and stats["articles"] == len(accepted)
    assert dead_letters(r) == {}
    assert_exactly_once(r, accepted)
    assert partition(r) == corpus.truth()


# --- 6. SIGTERM --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_mid_batch_exits_cleanly_and_leaves_nothing_in_limbo(
        aof_redis: RedisServer, procs: Procs) -> None:  # noqa: F811
    """SIGTERM to a worker holding a batch: it finishes the batch and exits 0; what it held is finished or left
    for another worker, which completes everything exactly once. An idle worker stops too.

    How long stopping takes is not asserted (that is speed); the waits only keep a hang from lasting
    forever: a busy worker may take as long as its batch does, an idle one waits on Redis for at most
    one blocking read, well inside a bound derived from NEWSDEDUP_REDIS_TIMEOUT."""
    r = aof_redis.client()
    corpus = make_corpus(110, seed=707, copies=(1, 2), singles=20)
    assert len(corpus.articles) >= 300
    submit(r, corpus.articles)
    redis_timeout = 3.0
    settings = {"NEWSDEDUP_REDIS_TIMEOUT": str(redis_timeout), **FAST}

    a = procs.worker(aof_redis.url, "worker-a", NEWSDEDUP_WORKER_BATCH=50, **settings)
    wait_until(lambda: a.check_alive() or bool(pending_of(r, a)), 30, interval=0.005,
               message="worker A to hold a batch")
    held = len(pending_of(r, a))
    t0 = time.monotonic()
    rc = a.terminate(timeout=120)  # a hang guard, not a speed claim
    took = time.monotonic() - t0
    left = pending_of(r, a)
    print(f"SIGTERM with {held} entries in A's hands: exit code {rc} after {took:.2f}s, {len(left)} left pending")
    assert rc == 0, a.log()[-3000:]
    assert "finishing the current batch" in a.log() and " stopped" in a.log(), a.log()[-3000:]
    assert "Traceback" not in a.log(), a.log()[-3000:]

    b = procs.worker(aof_redis.url, "worker-b", NEWSDEDUP_WORKER_BATCH=50, **settings)
    wait_until(lambda: b.check_alive() or (settled(r) and all_done(r, corpus.ids())), 120, interval=0.1,
               message="worker B to finish everything")
    assert pending_of(r, a) == []
    assert int(r.xpending(keys.QUEUE, keys.GROUP)["pending"]) == 0
    d = Dedup(r, Config.from_env({}, redis_url=aof_redis.url))
    assert d.stats()["queue"] == {"pending": 0, "in_flight": 0, "failed": 0}
    assert_exactly_once(r, corpus.ids())
    assert dead_letters(r) == {}
    assert partition(r) == corpus.truth()

    # an idle worker, blocked in XREADGROUP on the empty queue, stops promptly
    wait_until(lambda: b.check_alive() or in_xreadgroup(r, b), 30, interval=0.02,
               message="worker B to wait on the empty queue")
    t0 = time.monotonic()
    rc = b.terminate(timeout=redis_timeout * 3 + 5)  # raises TimeoutExpired if it hangs past that
    print(f"idle worker: exit code {rc} after {time.monotonic() - t0:.2f}s")
    assert rc == 0, b.log()[-3000:]
    assert "Traceback" not in b.log(), b.log()[-3000:]
