"""Fitting into a news pipeline, against the real service (gunicorn API + worker processes, real Redis).

The Python client end to end, its retries on a real 429 and a real 503, ``?wait``
on both sides of its timeout, the events feed resumed from a cursor across a
worker crash and restart, /metrics after a known workload, and a request id
followed from the API's log into the worker's.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from newsdedup import keys
from newsdedup.client import Client, NotFoundError, RateLimitedError
from newsdedup.ops.redis_server import RedisServer, free_port
from tests.procs import (
    Http,
    Proc,
    Procs,
    make_corpus,
    partition,
    pending_of,
    procs,  # noqa: F401 - fixture
    wait_http_ready,
    wait_until,
    wait_worker_ready,
)
from tests.textgen import word_story

pytestmark = pytest.mark.e2e


def start_api(procs: Procs, url: str, **settings: Any) -> tuple[Proc, str]:  # noqa: F811
    port = free_port()
    api = procs.serve(url, port, processes=1, threads=4, **settings)
    base = f"http://127.0.0.1:{port}"
    wait_http_ready(Http(base), api)
    return api, base


def start_worker(procs: Procs, r: redis.Redis, url: str, name: str = "worker", **settings: Any) -> Proc:  # noqa: F811
    w = procs.worker(url, name, **settings)
    wait_worker_ready(r, w)
    return w


@pytest.fixture
def session_url(redis_server: RedisServer, redis_client: redis.Redis) -> str:
    return redis_server.url  # flushed by redis_client


def test_client_against_the_real_service(procs: Procs, session_url: str,  # noqa: F811
                                         redis_client: redis.Redis) -> None:
    _, base = start_api(procs, session_url, NEWSDEDUP_MAX_BATCH=4)
    start_worker(procs, redis_client, session_url)
    nd = Client(base, timeout=30)
    corpus = make_corpus(4, seed=515, copies=(1, 2), singles=2)
    arts = [{**a, "id": f"https://news.example/{a['id']}?p=1#x"} for a in corpus.articles]  # ids with / ? # :
    assert nd.limits() == (4, 8 * 1024 * 1024)  # learned from the server
    res = nd.submit(arts, wait=25)
    assert nd.requests >= 1 + (len(arts) + 3) // 4  # batched by the server's max of 4
    assert [a["id"] for a in res.articles] == [a["id"] for a in arts]
    assert res.results is not None and all(a["status"] == "done" for a in res.results)
    one = nd.get(arts[0]["id"])
    assert one["id"] == arts[0]["id"] and one["cluster_id"]
    groups: dict[str, set[str]] = {}
    for a in res.results:
        groups.setdefault(str(a["cluster_id"]), set()).add(a["id"].split("/")[3].split("?")[0])
    assert {frozenset(g) for g in groups.values()} == corpus.truth()
    listed = list(nd.clusters(min_size=2, page_size=1))  # every page
    assert len(listed) == sum(1 for g in corpus.truth() if len(g) > 1)
    assert nd.cluster(listed[0]["cluster_id"])["size"] == listed[0]["size"]
    assert nd.check({"text": arts[0]["text"]})["duplicates"]
    done = [e for e in nd.events(wait=0) if e["type"] == "article.done"]
    assert sorted(e["id"] for e in done) == sorted(a["id"] for a in arts)
    new = {"id": "late/1", "text": word_story(77)}
    cursor = done[-1]["cursor"]
    nd.submit(new)
    assert nd.wait(["late/1"], timeout=25)["late/1"]["status"] == "done"
    assert [e["id"] for e in nd.events(after=cursor, wait=0)] == ["late/1"]
    assert nd.delete("late/1") == {"id": "late/1", "deleted": True}
    with pytest.raises(NotFoundError) as info:
        nd.get("late/1")
    assert info.value.status == 404 and info.value.code == "not_found"
    assert nd.stats()["articles"] == len(arts)
    plain = Http(base).get("/v1/articles/" + quote(arts[0]["id"], safe=""))  # percent-encoded through gunicorn
    assert plain.status == 200 and plain.json["id"] == arts[0]["id"]


def test_client_retries_a_real_429(procs: Procs, session_url: str, redis_client: redis.Redis) -> None:  # noqa: F811
    _, base = start_api(procs, session_url, NEWSDEDUP_RATE_LIMIT=2)
    slept: list[float] = []

    def end_the_minute() -> None:
        for key in redis_client.scan_iter(match=keys.rate_limit("*", 0).removesuffix("0") + "*"):
            redis_client.delete(key)

    def window_ends(seconds: float) -> None:
        """The client honours Retry-After; the test ends the server's minute instead of waiting it out."""
        slept.append(seconds)
        end_the_minute()

    nd = Client(base, sleep=window_ends)
    for _ in range(3):
        assert nd.stats()["articles"] == 0
    assert nd.retries == 1 and len(slept) == 1 and 1 <= slept[0] <= 60  # the server's Retry-After
    end_the_minute()
    stubborn = Client(base, max_retries=1, sleep=lambda s: None)
    stubborn.stats()
    stubborn.stats()
    with pytest.raises(RateLimitedError) as info:
        stubborn.stats()
    assert info.value.status == 429 and info.value.retry_after >= 1 and "after 2 attempts" in info.value.message


def test_client_retries_a_real_503(procs: Procs, tmp_path: Path) -> None:  # noqa: F811
    server = RedisServer(data_dir=tmp_path / "redis", port=free_port())
    server.start()
    try:
        _, base = start_api(procs, server.url, NEWSDEDUP_REDIS_TIMEOUT=1)
        assert server.pid is not None
        slept: list[float] = []

        def thaw(seconds: float) -> None:
            slept.append(seconds)
            os.kill(server.pid, signal.SIGCONT)  # type: ignore[arg-type]

        nd = Client(base, sleep=thaw, timeout=30)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            res = nd.submit({"id": "during-outage", "text": word_story(5)})
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert [a["status"] for a in res.articles] == ["queued"]
        assert nd.retries >= 1 and slept[0] >= 1  # the 503's Retry-After
        assert server.client().hget(keys.IDS, "during-outage") is not None
    finally:
        server.stop(graceful=False)


def test_wait_on_both_sides_of_its_timeout(procs: Procs, session_url: str,  # noqa: F811
                                           redis_client: redis.Redis) -> None:
    _, base = start_api(procs, session_url)
    http = Http(base, timeout=60)
    # no worker: nothing can finish; the request blocks on Redis for its 2 s, then answers 202
    redis_client.config_resetstat()
    late = http.post("/v1/articles?wait=2", {"articles": [{"id": "w1", "text": word_story(1)}]})
    assert late.status == 202 and late.json["articles"][0]["status"] == "queued"
    calls = {k: v["calls"] for k, v in redis_client.info("commandstats").items()}
    assert calls.get("cmdstat_xread", 0) <= 2  # one blocking read (in chunks under the socket timeout), no polling
    w = start_worker(procs, redis_client, session_url)
    on_time = http.post("/v1/articles?wait=25", {"articles": [{"id": "w2", "text": word_story(1)},
                                                              {"id": "w3", "text": word_story(2)}]})
    assert on_time.status == 200, on_time.body
    got = on_time.json["articles"]
    assert [a["id"] for a in got] == ["w2", "w3"] and {a["status"] for a in got} == {"done"}
    assert got[0]["cluster_id"] == Http(base).get("/v1/articles/w1").json["cluster_id"]  # w1 was done meanwhile
    assert got[0]["duplicates"] and got[0]["duplicates"][0]["id"] == "w1"
    w.terminate()
    assert http.post("/v1/articles?wait=31", {"id": "w4", "text": word_story(3)}).status == 400


def test_events_resume_from_a_cursor_across_a_worker_crash(procs: Procs, session_url: str,  # noqa: F811
                                                          redis_client: redis.Redis) -> None:
    fast = {"NEWSDEDUP_VISIBILITY_TIMEOUT": "1.5", "NEWSDEDUP_WORKER_BATCH": "4"}
    _, base = start_api(procs, session_url)
    nd = Client(base)
    corpus = make_corpus(12, seed=77, copies=(1, 2), singles=4)
    first, second = corpus.articles[:15], corpus.articles[15:]
    a = start_worker(procs, redis_client, session_url, "worker-a", **fast)
    nd.submit(first)
    page = nd.events_page(limit=5, wait=20)  # a consumer reads part of the feed and keeps its cursor
    seen = [e["id"] for e in page["events"] if e["type"] == "article.done"]
    cursor = page["next_cursor"]
    nd.submit(second)
    wait_until(lambda: pending_of(redis_client, a) or redis_client.hget(keys.META, "queued") == b"0", 30,
               message="worker A to hold a batch")
    a.kill()  # mid-batch, most likely: its entries stay pending and are redelivered
    start_worker(procs, redis_client, session_url, "worker-b", **fast)
    ids = [x["id"] for x in corpus.articles]
    nd.wait(ids, timeout=60)
    for e in nd.events(after=cursor, wait=0, limit=7):  # the consumer comes back with its cursor
        assert e["type"] in ("article.done", "cluster.merged"), e  # a copy may bridge two halves of a story
        if e["type"] == "article.done":
            seen.append(e["id"])
    assert sorted(seen) == sorted(ids)  # nothing missed, nothing twice
    assert set(partition(redis_client)) == corpus.truth()


def metric(families: dict[str, Any], name: str, **labels: str) -> float:
    """The value of the sample ``name`` (as exposed, e.g. with _total) with these labels."""
    for fam in families.values():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_after_a_known_workload(procs: Procs, session_url: str,  # noqa: F811
                                        redis_client: redis.Redis) -> None:
    _, base = start_api(procs, session_url, NEWSDEDUP_MAX_BATCH=10)
    start_worker(procs, redis_client, session_url)
    nd = Client(base)
    corpus = make_corpus(10, seed=4242, copies=(1, 3), singles=5)
    ids = [a["id"] for a in corpus.articles]
    nd.submit(corpus.articles)
    nd.submit(corpus.articles[:3])  # unchanged re-posts
    nd.wait(ids, timeout=60)
    with pytest.raises(NotFoundError):
        nd.get("no-such-article")
    text = Http(base).get("/metrics").body.decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    n = len(ids)
    posts = (n + 9) // 10 + 1
    assert metric(fams, "newsdedup_articles_submitted_total", result="queued") == n
    assert metric(fams, "newsdedup_articles_submitted_total", result="unchanged") == 3
    assert metric(fams, "newsdedup_articles_processed_total", result="done") == n
    assert metric(fams, "newsdedup_articles_processed_total", result="failed") == 0
    groups = partition(redis_client)
    assert groups == corpus.truth()
    assert metric(fams, "newsdedup_duplicates_found_total") == sum(len(g) - 1 for g in groups)
    merges = [e for e in nd.events(wait=0) if e["type"] == "cluster.merged"]
    assert metric(fams, "newsdedup_cluster_merges_total") == sum(len(e["merged"]) for e in merges)
    assert metric(fams, "newsdedup_processing_latency_seconds_count") == n
    assert metric(fams, "newsdedup_processing_latency_seconds_bucket", le="+Inf") == n
    submits = metric(fams, "newsdedup_http_requests_total", endpoint="submit_articles", method="POST", status="202")
    assert submits == posts
    assert metric(fams, "newsdedup_http_requests_total", endpoint="get_article", method="GET", status="404") == 1
    assert metric(fams, "newsdedup_http_request_duration_seconds_count", endpoint="submit_articles") == posts
    for state in ("pending", "in_flight", "failed", "dead_letter_stream"):
        assert metric(fams, "newsdedup_queue_articles", state=state) == 0
    assert metric(fams, "newsdedup_queue_lag_seconds") == 0
    assert metric(fams, "newsdedup_articles") == n
    # the read policy: with keys and NEWSDEDUP_AUTH_READS a scrape needs one
    _, closed = start_api(procs, session_url, NEWSDEDUP_API_KEYS="k1", NEWSDEDUP_AUTH_READS="true")
    assert Http(closed).get("/metrics").status == 401
    req = urllib.request.Request(closed + "/metrics", headers={"Authorization": "Bearer k1"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert f"newsdedup_articles {float(n)}" in resp.read().decode()


def json_lines(proc: Proc) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as one JSON object (a line that is not fails the test)."""
    return [json.loads(line) for line in proc.log().splitlines() if line.strip()]


def test_a_request_id_goes_from_the_api_log_into_the_worker_log(procs: Procs, session_url: str,  # noqa: F811
                                                                redis_client: redis.Redis) -> None:
    settings = {"NEWSDEDUP_LOG_FORMAT": "json", "NEWSDEDUP_API_KEYS": "sekrit-key-1"}
    api, base = start_api(procs, session_url, **settings)
    w = start_worker(procs, redis_client, session_url, **settings)
    marker = "Zanzibarquokka"
    nd = Client(base, api_key="sekrit-key-1", request_id="trace-42/abc")
    nd.submit({"id": "traced/1", "title": marker, "text": word_story(3) + " " + marker})
    nd.wait(["traced/1"], timeout=30)
    anonymous = Http(base).post("/v1/articles", {"id": "x", "text": "words here"})
    assert anonymous.status == 401 and len(anonymous.headers["X-Request-ID"]) == 32  # one is made up
    api_lines, worker_lines = json_lines(api), wait_until(
        lambda: [ln for ln in json_lines(w) if ln.get("request_id") == "trace-42/abc"], 10, message="worker line")
    posted = [ln for ln in api_lines if ln.get("request_id") == "trace-42/abc" and ln.get("path") == "/v1/articles"]
    assert posted and posted[0]["status"] == 202 and posted[0]["method"] == "POST"
    assert {"time", "level", "logger", "message"} <= set(posted[0])
    assert worker_lines[0]["article_id"] == "traced/1" and worker_lines[0]["logger"] == "workers.consumer"
    for proc in (api, w):
        assert "sekrit-key-1" not in proc.log() and marker not in proc.log()
