"""End to end: API, workers and Redis as real processes, driven over HTTP.

`newsdedup up`: start it on a fresh data directory, post planted duplicates and
the seed page, wait for the workers, read clusters back; stop it with Ctrl-C
(SIGINT) and check that nothing is left running; start it again on the same data
directory and find everything where it was.

`newsdedup ingest`: a JSON-lines file streamed into the real API and workers.
"""

from __future__ import annotations

import gzip
import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from newsdedup.ops.redis_server import RedisServer, free_port
from tests.procs import (
    PYTHON,
    Http,
    Proc,
    Procs,
    as_partition,
    base_env,
    check_index_invariants,
    make_corpus,
    partition,
    pid_alive,
    procs,  # noqa: F401 - fixture
    statuses,
    tail,
    wait_http_ready,
    wait_until,
)

pytestmark = pytest.mark.e2e

SEED_TITLE = "渝中:92个公共法律服务平台 同期举行公众开放日活动"


def clean_body(seed_page: str) -> str:
    """The seed page's story alone: from its first paragraph to the page footer, once."""
    lines = seed_page.split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("华龙网-新重庆客户端"))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("无障碍"))
    return "\n".join(lines[start:end]).strip()


def site_page(seed_page: str, story: str) -> str:
    """Another page of the seed's site: its navigation and footers (no story lines, no title) around ``story``."""
    body = set(clean_body(seed_page).split("\n"))
    chrome = [ln for ln in seed_page.split("\n") if ln.strip() and ln not in body and ln.strip() != SEED_TITLE]
    start = next(i for i, ln in enumerate(chrome) if ln.startswith("无障碍"))
    return "\n".join(chrome[:start] + story.split("\n") + chrome[start:])


def clusters_by_http(http: Http, ids: list[str]) -> dict[str, str]:
    out = {}
    for i in ids:
        resp = http.get("/v1/articles/" + quote(i, safe=""))
        assert resp.status == 200, (i, resp.status, resp.body)
        a = resp.json
        assert a["status"] == "done", a
        out[i] = a["cluster_id"]
    return out


def start_up(procs: Procs, data_dir: Path, workers: int) -> tuple[Proc, Http]:  # noqa: F811
    port = free_port()
    up = procs.up(port, data_dir, workers=workers, NEWSDEDUP_API_PROCESSES=2)
    http = Http(f"http://127.0.0.1:{port}")
    wait_http_ready(http, up, "/readyz", timeout=60)
    return up, http


def stop_with_ctrl_c(up: Proc, data_dir: Path) -> None:
    """SIGINT as a terminal's Ctrl-C: exit code 0 and nothing left behind (redis-server, gunicorn, workers)."""
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text().strip())
    assert pid_alive(redis_pid)
    children = up.remember_descendants()
    assert redis_pid in children
    up.signal(signal.SIGINT)
    assert up.wait(40) == 0, up.log()
    left = [p for p in children if pid_alive(p)]
    assert left == [], f"processes left running after `up` exited: {left}"


def test_up_serves_clusters_and_keeps_them_across_a_restart(tmp_path: Path, procs: Procs,  # noqa: F811
                                                            seed_page_text: str) -> None:
    data_dir = tmp_path / "var"
    up, http = start_up(procs, data_dir, workers=2)
    wait_until(lambda: "API listening on" in up.log(), 30, message="the banner")

    corpus = make_corpus(14, seed=9090, copies=(1, 3), singles=4)
    seed = {"id": "seed", "title": SEED_TITLE, "text": seed_page_text, "source": "华龙网"}
    repost = {"id": "seed-repost", "title": "渝中举行公共法律服务开放日", "text": clean_body(seed_page_text),
              "source": "另一个网站"}
    articles: list[dict[str, Any]] = corpus.articles + [seed, repost]
    resp = http.post("/v1/articles", {"articles": articles})
    assert resp.status == 202, resp.body
    assert [a["id"] for a in resp.json["articles"]] == [a["id"] for a in articles]
    assert {a["status"] for a in resp.json["articles"]} == {"queued"}

    wait_until(lambda: up.check_alive() or http.queue_left() == 0, 60, interval=0.2,
               message="the workers to process the batch")
    ids = [a["id"] for a in articles]
    cluster_of = clusters_by_http(http, ids)
    truth = corpus.truth() | {frozenset({"seed", "seed-repost"})}
    assert as_partition(cluster_of) == truth
    assert cluster_of["seed"] == cluster_of["seed-repost"]
    assert cluster_of["seed"] not in {cluster_of[i] for i in corpus.ids()}

    page = http.get("/v1/articles/seed").json
    assert page["repeated_blocks"], "the seed page carries its story twice"
    assert page["repeated_blocks"][0]["occurrences"] == 2
    assert {d["id"] for d in page["duplicates"]} == {"seed-repost"}

    listed = http.get("/v1/clusters?limit=500").json
    by_id = {c["cluster_id"]: {m["id"] for m in c["members"]} for c in listed["clusters"]}
    assert by_id[cluster_of["seed"]] == {"seed", "seed-repost"}
    multi = {g for g in truth if len(g) > 1}
    assert {frozenset(m) for m in by_id.values()} == multi
    one = http.get("/v1/clusters/" + cluster_of["seed"]).json
    assert one["size"] == 2 and {m["id"] for m in one["members"]} == {"seed", "seed-repost"}

    stats = http.get("/v1/stats").json
    assert stats["articles"] == len(articles)
    assert stats["clusters"] == len(truth) and stats["clusters_with_duplicates"] == len(multi)
    assert stats["queue"] == {"pending": 0, "in_flight": 0, "failed": 0}

    stop_with_ctrl_c(up, data_dir)

    # the same data directory: the embedded Redis replays its AOF
    up2, http2 = start_up(procs, data_dir, workers=1)
    assert http2.get("/v1/stats").json == stats
    assert clusters_by_http(http2, ids) == cluster_of
    assert http2.get("/v1/articles/seed").json["repeated_blocks"] == page["repeated_blocks"]
    # the LSH index survived too: one more copy of the seed story joins its cluster
    resp = http2.post("/v1/articles", {"id": "seed-again", "title": SEED_TITLE, "text": clean_body(seed_page_text)})
    assert resp.status == 202, resp.body
    wait_until(lambda: up2.check_alive() or http2.queue_left() == 0, 60, interval=0.2,
               message="the worker to process the new copy")
    assert http2.get("/v1/articles/seed-again").json["cluster_id"] == cluster_of["seed"]
    stop_with_ctrl_c(up2, data_dir)


def test_ingest_streams_a_file_into_the_real_service(tmp_path: Path, procs: Procs,  # noqa: F811
                                                     redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """`newsdedup ingest --wait` against gunicorn and a worker on the session's Redis: every line is
    accepted, and when the command returns every article is done, clustered as planted."""
    corpus = make_corpus(6, seed=4242, copies=(1, 2), singles=3)
    path = tmp_path / "set.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for a in corpus.articles:  # as labelled sets carry them: extra fields the service ignores
            f.write(json.dumps({**a, "label": corpus.story[a["id"]]}, ensure_ascii=False) + "\n")
    port = free_port()
    api = procs.serve(redis_server.url, port, processes=1, threads=4)
    procs.worker(redis_server.url, NEWSDEDUP_WORKER_BATCH=8)  # starts meanwhile; ingest --wait waits for it
    http = Http(f"http://127.0.0.1:{port}")
    wait_http_ready(http, api)

    ingest = procs.start("ingest", [PYTHON, "-m", "newsdedup.cli", "ingest", str(path), "--url", http.base_url,
                                    "--batch-size", "7", "--wait", "--wait-timeout", "120"], base_env())
    rc = ingest.wait(180)
    out = ingest.log()
    assert rc == 0, tail(out)
    summary = json.loads(out.strip().splitlines()[-1])
    n = len(corpus.articles)
    assert (summary["accepted"], summary["rejected"], summary["batches"]) == (n, 0, -(-n // 7)), summary
    assert "waited_seconds" in summary and "aborted" not in summary, summary
    # --wait returned: the queue is drained, every article done, as planted
    assert statuses(redis_client, corpus.ids()) == {i: "done" for i in corpus.ids()}
    assert partition(redis_client) == corpus.truth()
    assert http.get("/v1/stats").json["queue"] == {"pending": 0, "in_flight": 0, "failed": 0}
    check_index_invariants(redis_client)
