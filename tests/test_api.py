"""The HTTP API through Flask's test client, against a real Redis and the real engine.

Every endpoint's happy path and every documented error; articles reach ``done``
by running the worker inline (``process_available``), as the workers would.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.errors import ConfigError
from newsdedup.ops.redis_server import free_port
from newsdedup.retention.sweeper import Sweeper
from service import create_app
from tests.procs import check_index_invariants, cluster_record
from tests.textgen import near_copy, word_story
from workers.consumer import process_available as process

_VOCABULARY = ("city council budget vote school road tax river bridge mayor election police weather storm market "
               "price energy hospital train airport union strike court judge report minister museum festival "
               "team season coach player record rain flood harvest farmer factory worker bank loan rate housing "
               "rent")
WORDS = _VOCABULARY.split(" ")


def story(seed: int, n: int = 120) -> str:
    return word_story(seed, n, WORDS)


def err(resp: Any) -> dict[str, Any]:
    """The error object of an error response, after checking the common shape."""
    body = resp.get_json()
    assert resp.mimetype == "application/json", resp.data[:200]
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "field"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


@pytest.fixture
def cfg(config: Config) -> Config:
    """The session Redis, rate limiting off (tests that need it turn it on)."""
    return config.replace(rate_limit=0)


@pytest.fixture
def app(cfg: Config) -> Iterator[Flask]:
    app = create_app(cfg)
    yield app
    app.extensions["newsdedup.redis"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post_json(client: FlaskClient, path: str, body: Any, **kw: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", **kw)


# -- operations -------------------------------------------------------------------------------


def test_healthz_and_readyz(client: FlaskClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.get_json() == {"status": "ready"}


def test_openapi_is_served(client: FlaskClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"] == "3.0.3" and "/v1/articles" in doc["paths"]


# -- articles -------------------------------------------------------------------------------


def test_submit_process_and_get(client: FlaskClient, redis_client: redis.Redis, cfg: Config) -> None:
    text = story(1)
    r = post_json(client, "/v1/articles", {"id": "a 1ü?", "title": "Budget", "text": text,
                                           "source": "example.org", "url": "https://example.org/a1",
                                           "published_at": "2024-05-01T12:00:00Z", "lang": "en",
                                           "category": "x"})
    assert r.status_code == 202
    body = r.get_json()
    (item,) = body["articles"]
    assert item["id"] == "a 1ü?" and item["status"] == "queued"
    assert item["href"] == "/v1/articles/" + quote("a 1ü?", safe="")
    assert item["ignored_fields"] == ["category"]
    assert r.headers["Location"] == item["href"]

    r = client.get(item["href"])
    assert r.status_code == 200
    art = r.get_json()
    assert art["status"] == "queued" and art["processed_at"] is None and art["cluster_id"] is None
    assert art["title"] == "Budget" and art["source"] == "example.org" and art["lang"] == "en"
    assert art["ingested_at"].endswith("Z")

    assert process(redis_client, cfg) >= 1
    art = client.get(item["href"]).get_json()
    assert art["status"] == "done" and art["processed_at"] and art["error"] is None
    assert art["tokens"] > 50 and art["duplicates"] == [] and art["duplicate_of"] is None


def test_duplicates_cluster_and_listing(client: FlaskClient, redis_client: redis.Redis, cfg: Config) -> None:
    text = story(2)
    r = post_json(client, "/v1/articles", {"articles": [{"id": "orig", "title": "Original", "text": text},
                                                        {"id": "other", "text": story(3)}]})
    assert r.status_code == 202 and "Location" not in r.headers
    process(redis_client, cfg)
    r = post_json(client, "/v1/articles", {"id": "copy", "title": "Copy", "text": near_copy(text)})
    assert r.status_code == 202
    process(redis_client, cfg)

    copy = client.get("/v1/articles/copy").get_json()
    orig = client.get("/v1/articles/orig").get_json()
    other = client.get("/v1/articles/other").get_json()
    assert copy["cluster_id"] is not None and copy["cluster_id"] == orig["cluster_id"] != other["cluster_id"]
    assert copy["duplicate_of"] == "orig"
    (dup,) = copy["duplicates"]
    assert dup["id"] == "orig" and dup["similarity"] > 0.5 and 0 <= dup["containment"] <= 1
    assert [d["id"] for d in orig["duplicates"]] == ["copy"]

    cid = copy["cluster_id"]
    r = client.get(f"/v1/clusters/{cid}")
    assert r.status_code == 200
    cl = r.get_json()
    assert cl["cluster_id"] == cid and cl["size"] == 2 and cl["canonical_id"] == "orig"
    assert sorted(m["id"] for m in cl["members"]) == ["copy", "orig"]
    assert cl["created_at"] and cl["updated_at"]

    r = client.get("/v1/clusters")
    assert r.status_code == 200
    page = r.get_json()
    assert [c["cluster_id"] for c in page["clusters"]] == [cid] and page["next_cursor"] is None

    # singletons are clusters of size 1: min_size=1 lists them too, and paging walks them all
    seen, cursor = [], None
    for _ in range(10):
        q = "/v1/clusters?min_size=1&limit=1" + (f"&cursor={quote(cursor, safe='')}" if cursor else "")
        page = client.get(q).get_json()
        seen += [c["cluster_id"] for c in page["clusters"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted({cid, other["cluster_id"]})

    stats = client.get("/v1/stats").get_json()
    assert stats["articles"] == 3 and stats["clusters"] >= 1
    assert stats["queue"] == {"pending": 0, "in_flight": 0, "failed": 0}


def test_repost_same_content_is_a_no_op_and_changed_content_requeues(client: FlaskClient,
                                                                     redis_client: redis.Redis,
                                                                     cfg: Config) -> None:
    art = {"id": "r1", "text": story(4)}
    assert post_json(client, "/v1/articles", art).get_json()["articles"][0]["status"] == "queued"
    process(redis_client, cfg)
    again = post_json(client, "/v1/articles", art)
    assert again.status_code == 202 and again.get_json()["articles"][0]["status"] == "done"
    changed = post_json(client, "/v1/articles", {**art, "text": story(5)})
    assert changed.get_json()["articles"][0]["status"] == "queued"
    assert client.get("/v1/stats").get_json()["queue"]["pending"] == 1
    check_index_invariants(redis_client)  # queued again: still in its cluster until processed
    process(redis_client, cfg)
    assert client.get("/v1/articles/r1").get_json()["status"] == "done"
    check_index_invariants(redis_client)


def test_derived_ids_are_stable(client: FlaskClient) -> None:
    a = post_json(client, "/v1/articles", {"text": story(6), "url": "https://example.org/x"}).get_json()
    b = post_json(client, "/v1/articles", {"text": story(6), "url": "https://example.org/x"}).get_json()
    assert a["articles"][0]["id"] == b["articles"][0]["id"]


def test_delete(client: FlaskClient, redis_client: redis.Redis, cfg: Config) -> None:
    text = story(7)
    post_json(client, "/v1/articles", {"articles": [{"id": "d1", "text": text}, {"id": "d2", "text": near_copy(text)}]})
    process(redis_client, cfg)
    cid = client.get("/v1/articles/d1").get_json()["cluster_id"]
    assert client.get(f"/v1/clusters/{cid}").get_json()["size"] == 2
    r = client.delete("/v1/articles/d2")
    assert r.status_code == 200 and r.get_json() == {"id": "d2", "deleted": True}
    assert client.get("/v1/articles/d2").status_code == 404
    assert client.delete("/v1/articles/d2").status_code == 404
    d1 = client.get("/v1/articles/d1").get_json()
    assert d1["duplicates"] == [] and d1["cluster_id"] == cid
    n1 = int(redis_client.hget(keys.IDS, "d1") or 0)
    assert cluster_record(redis_client, cid) == {"size": 1, "canonical": n1, "members": {n1}, "zsets": {"singles"}}
    view = client.get(f"/v1/clusters/{cid}").get_json()
    assert (view["size"], [m["id"] for m in view["members"]]) == (1, ["d1"])
    assert client.get("/v1/clusters").get_json()["clusters"] == []  # min_size 2 by default
    assert client.get("/v1/stats").get_json()["articles"] == 1
    check_index_invariants(redis_client)


def test_an_expired_article_answers_404_expired(redis_client: redis.Redis, cfg: Config) -> None:
    windowed = cfg.replace(retention=3600.0, retention_by="published")
    app = create_app(windowed)
    client = app.test_client()
    old = "2001-09-09T01:46:40Z"  # long before the window: expired at the next sweep
    post_json(client, "/v1/articles", {"articles": [{"id": "e1", "text": story(11), "published_at": old},
                                                    {"id": "e2", "text": story(12)}]})
    process(redis_client, windowed)
    assert Sweeper(redis_client, windowed).sweep().removed == 1
    r = client.get("/v1/articles/e1")
    assert r.status_code == 404 and err(r)["code"] == "expired" and "NEWSDEDUP_RETENTION" in err(r)["message"]
    assert client.delete("/v1/articles/e1").status_code == 404
    assert client.get("/v1/articles/e2").status_code == 200
    assert client.get("/v1/stats").get_json()["expired"] == 1
    redis_client.delete(keys.tombstone("e1"))  # what its TTL does after one window
    assert err(client.get("/v1/articles/e1"))["code"] == "not_found"
    app.extensions["newsdedup.redis"].close()


def test_check_finds_duplicates_without_storing(client: FlaskClient, redis_client: redis.Redis,
                                                cfg: Config) -> None:
    text = story(8)
    post_json(client, "/v1/articles", {"id": "c1", "text": text})
    process(redis_client, cfg)
    before = client.get("/v1/stats").get_json()
    r = post_json(client, "/v1/check", {"text": near_copy(text), "title": "t", "extra": 1})
    assert r.status_code == 200
    res = r.get_json()
    assert [d["id"] for d in res["duplicates"]] == ["c1"]
    assert res["duplicates"][0]["similarity"] > 0.5
    assert res["cluster_id"] == client.get("/v1/articles/c1").get_json()["cluster_id"]
    assert res["tokens"] > 50 and res["ignored_fields"] == ["extra"]
    assert client.get("/v1/stats").get_json() == before

    r = post_json(client, "/v1/check", {"text": story(9)})
    assert r.status_code == 200 and r.get_json()["duplicates"] == [] and r.get_json()["cluster_id"] is None
    r = post_json(client, "/v1/check", {"html": "<html><body><p>" + story(10) + "</p></body></html>"})
    assert r.status_code == 200


def test_retry_failed(client: FlaskClient, redis_client: redis.Redis, cfg: Config) -> None:
    post_json(client, "/v1/articles", {"articles": [{"id": "f1", "text": story(11)},
                                                    {"id": "ok", "text": story(12)}]})
    n = int(redis_client.hget(keys.IDS, "f1") or 0)
    redis_client.set(keys.payload(n), b"not zlib")  # a corrupt record fails permanently
    process(redis_client, cfg)
    failed = client.get("/v1/articles/f1").get_json()
    assert failed["status"] == "failed" and failed["error"] and failed["attempts"] >= 1
    assert client.get("/v1/stats").get_json()["queue"]["failed"] == 1

    r = post_json(client, "/v1/admin/retry", {"ids": ["ok"]})  # not failed: nothing to do
    assert r.status_code == 200 and r.get_json() == {"retried": []}
    r = post_json(client, "/v1/admin/retry", {"ids": ["no-such-article"]})
    assert r.status_code == 404
    r = client.post("/v1/admin/retry")  # empty body = all failed
    assert r.status_code == 200 and r.get_json() == {"retried": ["f1"]}
    assert client.get("/v1/articles/f1").get_json()["status"] == "queued"
    assert post_json(client, "/v1/admin/retry", {}).get_json() == {"retried": []}


# -- input errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("data, content_type", [
    (b"{not json", "application/json"),
    (b"", "application/json"),
    (b'{"text": "caf\xe9"}', "application/json"),  # latin-1, not UTF-8
    (b'{"text": NaN}', "application/json"),
    (b'{"text": "x"} trailing', "application/json"),
    (b'{"text": "x"}', "text/plain"),
    (b'{"text": "x"}', "application/x-www-form-urlencoded"),
    (b'{"text": "x"}', "application/json; charset=latin-1"),
    (b'{"text": "x"}', None),
    (b"[" * 65 + b"]" * 65, "application/json"),
    (b'{"a":' * 200 + b"1" + b"}" * 200, "application/json"),
    (b"[" * 100_000, "application/json"),
])
def test_bad_json_is_400_invalid_json(client: FlaskClient, data: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/v1/articles", "/v1/check"):
        r = client.post(path, data=data, headers=headers)
        assert r.status_code == 400, r.data
        assert err(r)["code"] == "invalid_json"


def test_nesting_at_the_limit_is_fine_and_brackets_in_strings_do_not_count(client: FlaskClient) -> None:
    r = client.post("/v1/check", data="[" * 64 + "]" * 64, content_type="application/json")
    assert r.status_code == 400 and err(r)["code"] == "invalid_request"  # parsed, then not an article
    r = post_json(client, "/v1/check", {"text": "[{" * 500 + " words here"})
    assert r.status_code == 200


@pytest.mark.parametrize("body, status, code, field", [
    ([], 400, "invalid_request", None),
    ("text", 400, "invalid_request", None),
    ({"text": 5}, 400, "invalid_request", "text"),
    ({"text": "words", "title": ["x"]}, 400, "invalid_request", "title"),
    ({"title": "only a title"}, 400, "missing_content", "text"),
    ({"text": "words", "html": "<p>words</p>"}, 400, "ambiguous_content", "text"),
    ({"text": "   "}, 400, "empty_content", "text"),
    ({"text": "!!! ???"}, 422, "no_content", "text"),
    ({"text": "words", "id": "x" * 257}, 400, "invalid_id", "id"),
    ({"text": "words", "id": ""}, 400, "invalid_id", "id"),
    ({"text": "words", "id": "a\x00b"}, 400, "invalid_id", "id"),
    ({"text": "words", "id": " a"}, 400, "invalid_id", "id"),
    ({"text": "words", "id": "a\u2028b"}, 400, "invalid_id", "id"),
    ({"text": "words", "id": 7}, 400, "invalid_request", "id"),
    ({"text": "words", "title": "a\x07b"}, 400, "invalid_request", "title"),
    ({"text": "words", "published_at": "yesterday"}, 400, "invalid_date", "published_at"),
    ({"text": "words", "published_at": "2024-02-30T00:00:00Z"}, 400, "invalid_date", "published_at"),
    ({"text": "words", "lang": "english please"}, 400, "invalid_request", "lang"),
    ({"text": "words", "url": "  "}, 400, "invalid_request", "url"),
    ({"text": "w" * 2_000_001}, 400, "field_too_long", "text"),
    ({"text": "bad \ud800 surrogate"}, 400, "invalid_request", "text"),
])
def test_invalid_articles(client: FlaskClient, body: Any, status: int, code: str, field: str | None) -> None:
    for path in ("/v1/articles", "/v1/check"):
        r = post_json(client, path, body)
        assert r.status_code == status, r.data
        e = err(r)
        assert e["code"] == code and e.get("field") == field


@pytest.mark.parametrize("body, status, code, field", [
    ({"articles": "no"}, 400, "invalid_request", "articles"),
    ({"articles": []}, 400, "invalid_request", "articles"),
    ({"articles": [{"text": "fine"}, {"text": 1}]}, 400, "invalid_request", "articles[1].text"),
    ({"articles": [{"id": "x", "text": "one"}, {"id": "x", "text": "two"}]}, 400, "duplicate_id",
     "articles[1].id"),
    ({"articles": [{"text": f"t{i}"} for i in range(4)]}, 413, "batch_too_large", None),
])
def test_invalid_batches(cfg: Config, body: Any, status: int, code: str, field: str | None) -> None:
    client = create_app(cfg.replace(max_batch=3)).test_client()
    r = post_json(client, "/v1/articles", body)
    assert r.status_code == status, r.data
    e = err(r)
    assert e["code"] == code and e.get("field") == field
    assert client.get("/v1/stats").get_json()["articles"] == 0  # all or nothing


def test_batch_at_the_limit_is_accepted(cfg: Config) -> None:
    client = create_app(cfg.replace(max_batch=3)).test_client()
    r = post_json(client, "/v1/articles", {"articles": [{"text": f"text {i}"} for i in range(3)]})
    assert r.status_code == 202 and len(r.get_json()["articles"]) == 3


def test_body_over_the_size_limit_is_413(cfg: Config) -> None:
    client = create_app(cfg.replace(max_body=1000)).test_client()
    big = json.dumps({"text": "word " * 400})
    r = client.post("/v1/articles", data=big, content_type="application/json")
    assert r.status_code == 413 and err(r)["code"] == "payload_too_large"
    # without Content-Length (chunked; gunicorn sets wsgi.input_terminated): reading stops at the limit
    r = client.post("/v1/check", input_stream=io.BytesIO(big.encode()), content_type="application/json",
                    headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 413 and err(r)["code"] == "payload_too_large"
    ok = client.post("/v1/check", data=json.dumps({"text": "word " * 100}), content_type="application/json")
    assert ok.status_code == 200


def test_unknown_route_and_method(client: FlaskClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and err(r)["code"] == "not_found"
    r = client.put("/v1/articles")
    assert r.status_code == 405 and err(r)["code"] == "method_not_allowed"
    assert "POST" in r.headers["Allow"]
    r = client.delete("/v1/clusters")
    assert r.status_code == 405 and err(r)["code"] == "method_not_allowed"


def test_not_found(client: FlaskClient) -> None:
    for path in ("/v1/articles/nope", "/v1/clusters/c999", "/v1/clusters/not-a-cluster"):
        r = client.get(path)
        assert r.status_code == 404 and err(r)["code"] == "not_found"
    assert client.delete("/v1/articles/nope").status_code == 404


@pytest.mark.parametrize("query", [
    "limit=0", "limit=501", "limit=abc", "limit=1.5", "limit=", "limit=-1", "limit=+5", "limit=1_0",
    "min_size=0", "min_size=x", "min_size=99999999999", "cursor=", "cursor=garbage", "cursor=" + "x" * 300,
])
def test_bad_cluster_query_params(client: FlaskClient, query: str) -> None:
    r = client.get("/v1/clusters?" + query)
    assert r.status_code == 400, r.data
    e = err(r)
    assert e["field"] == query.split("=")[0]


def test_good_cluster_query_params(client: FlaskClient) -> None:
    for q in ("limit=1", "limit=500", "min_size=1", "min_size=5&limit=10", "unknown=ignored"):
        assert client.get("/v1/clusters?" + q).status_code == 200


def test_retry_body_errors(client: FlaskClient) -> None:
    for body, field in (([], None), ({"ids": "x"}, "ids"), ({"ids": [1]}, "ids"), ({"ids": [""]}, "ids"),
                        ({"other": 1}, "other")):
        r = post_json(client, "/v1/admin/retry", body)
        assert r.status_code == 400, (body, r.data)
        assert err(r).get("field") == field


# -- auth -------------------------------------------------------------------------------


def test_auth_on_writes(cfg: Config, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-key-value"
    client = create_app(cfg.replace(api_keys=("other-key", secret))).test_client()
    article = {"id": "k1", "text": story(13)}
    for r in (post_json(client, "/v1/articles", article),
              post_json(client, "/v1/articles", article, headers={"Authorization": "Bearer wrong"}),
              post_json(client, "/v1/articles", article, headers={"Authorization": f"Basic {secret}"}),
              client.delete("/v1/articles/k1"),
              post_json(client, "/v1/admin/retry", {})):
        assert r.status_code == 401, r.data
        assert err(r)["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert secret not in r.get_data(as_text=True)
    auth = {"Authorization": f"Bearer {secret}"}
    assert post_json(client, "/v1/articles", article, headers=auth).status_code == 202
    assert post_json(client, "/v1/articles", article, headers={"Authorization": "bearer other-key"}).status_code \
        == 202
    # reads and check stay open
    assert client.get("/v1/articles/k1").status_code == 200
    assert client.get("/v1/stats").status_code == 200
    assert post_json(client, "/v1/check", {"text": story(13)}).status_code == 200
    assert client.delete("/v1/articles/k1", headers=auth).status_code == 200
    assert post_json(client, "/v1/admin/retry", {}, headers=auth).status_code == 200
    assert all(secret not in rec.getMessage() for rec in caplog.records)


def test_auth_on_reads(cfg: Config) -> None:
    client = create_app(cfg.replace(api_keys=("k",), auth_reads=True)).test_client()
    for path in ("/v1/stats", "/v1/clusters", "/v1/articles/x", "/v1/clusters/c1"):
        r = client.get(path)
        assert r.status_code == 401 and err(r)["code"] == "unauthorized"
    assert post_json(client, "/v1/check", {"text": "some words"}).status_code == 401
    assert client.get("/v1/stats", headers={"Authorization": "Bearer k"}).status_code == 200
    # probes and the document stay public
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert client.get(path).status_code == 200


# -- rate limiting -------------------------------------------------------------------------------


def test_rate_limit(cfg: Config, redis_client: redis.Redis) -> None:
    client = create_app(cfg.replace(rate_limit=3, api_keys=("secret-one", "secret-two"))).test_client()
    for _ in range(3):
        assert client.get("/v1/stats").status_code == 200
    r = client.get("/v1/stats")
    assert r.status_code == 429 and err(r)["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert client.get("/healthz").status_code == 200  # probes are never limited
    # another address, and each API key, has its own budget
    assert client.get("/v1/stats", environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 200
    one, two = {"Authorization": "Bearer secret-one"}, {"Authorization": "Bearer secret-two"}
    for _ in range(3):
        assert client.get("/v1/stats", headers=one).status_code == 200
    assert client.get("/v1/stats", headers=one).status_code == 429
    assert client.get("/v1/stats", headers=two).status_code == 200
    counters = list(redis_client.scan_iter(match=keys.PREFIX + "rl:*"))
    assert len(counters) == 4  # two addresses, two keys; keys are stored hashed, with an expiry
    assert all(b"secret" not in k and 0 < redis_client.ttl(k) <= 120 for k in counters)


# -- storage failures and the factory ------------------------------------------------------------


@pytest.fixture
def dead_redis_app(cfg: Config) -> Flask:
    return create_app(cfg.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5,
                                  rate_limit=100))


def test_redis_down_is_503_with_retry_after(dead_redis_app: Flask) -> None:
    client = dead_redis_app.test_client()
    assert client.get("/healthz").status_code == 200
    for r in (client.get("/readyz"), client.get("/v1/stats"), client.get("/v1/articles/x"),
              post_json(client, "/v1/articles", {"text": "some words"})):
        assert r.status_code == 503, r.data
        assert err(r)["code"] == "storage_unavailable"
        assert int(r.headers["Retry-After"]) >= 1


def test_unexpected_errors_are_500_and_redis_errors_503(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    dedup = app.extensions["newsdedup"]
    monkeypatch.setattr(dedup, "stats", lambda: 1 / 0)
    r = app.test_client().get("/v1/stats")
    assert r.status_code == 500 and err(r) == {"code": "internal_error", "message": err(r)["message"]}
    assert "ZeroDivision" not in r.get_data(as_text=True)

    def down() -> None:
        raise redis.exceptions.ConnectionError("boom")

    monkeypatch.setattr(dedup, "stats", down)
    r = app.test_client().get("/v1/stats")
    assert r.status_code == 503 and r.headers["Retry-After"]


def test_factory_requires_redis_url() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        create_app(Config())


def test_factory_does_not_connect_and_supports_tls_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Config(redis_url=f"rediss://127.0.0.1:{free_port()}/0", max_body=1234))
    client = app.extensions["newsdedup.redis"]
    assert client.connection_pool.connection_class is redis.SSLConnection
    assert app.config["MAX_CONTENT_LENGTH"] == 1234
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("NEWSDEDUP_MAX_BATCH", "7")
    assert create_app().extensions["newsdedup.config"].max_batch == 7


def test_given_redis_client_is_used(cfg: Config, redis_client: redis.Redis) -> None:
    app = create_app(cfg, redis_client=redis_client)
    assert app.extensions["newsdedup.redis"] is redis_client
    assert app.test_client().get("/readyz").status_code == 200


def test_double_slashes_are_not_redirected(client: FlaskClient) -> None:
    r = client.get("/v1/articles/a//b")
    assert r.status_code == 404 and err(r)["code"] == "not_found"


def test_rate_limit_window_and_retry_after(redis_client: redis.Redis) -> None:
    from newsdedup.errors import RateLimited
    from service.ratelimit import check_rate

    minute_end = 60 * 1000 + 59.5
    check_rate(redis_client, "c", 1, now=minute_end)
    with pytest.raises(RateLimited) as exc:
        check_rate(redis_client, "c", 1, now=minute_end)
    assert exc.value.retry_after == 1
    check_rate(redis_client, "c", 1, now=minute_end + 1)  # a new window
    check_rate(redis_client, "c", 0, now=minute_end)  # 0 = off


def test_wsgi_module_builds_the_app_from_the_environment(monkeypatch: pytest.MonkeyPatch, cfg: Config) -> None:
    import importlib
    import sys

    monkeypatch.setenv("REDIS_URL", str(cfg.redis_url))
    monkeypatch.delitem(sys.modules, "service.wsgi", raising=False)
    wsgi = importlib.import_module("service.wsgi")
    assert wsgi.app.test_client().get("/readyz").status_code == 200
    monkeypatch.delitem(sys.modules, "service.wsgi")


def test_an_index_built_with_other_parameters_is_refused_not_mixed(cfg: Config, client: FlaskClient,
                                                                   redis_client: redis.Redis) -> None:
    """Changing NEWSDEDUP_SHINGLE_CJK (or num_perm, the bands) on a live index would hide duplicates."""
    assert client.post("/v1/articles", json={"id": "p1", "text": story(1)}).status_code == 202
    process(redis_client, cfg)
    other = create_app(cfg.replace(shingle_cjk=cfg.shingle_cjk + 1)).test_client()
    for resp in (other.post("/v1/articles", json={"id": "p2", "text": story(2)}),
                 other.post("/v1/check", json={"text": story(1)})):
        assert resp.status_code == 503
        e = err(resp)
        assert e["code"] == "index_mismatch" and "NEWSDEDUP_SHINGLE_CJK" in e["message"]
        assert f"shingle_cjk={cfg.shingle_cjk + 1}" in e["message"]
    assert redis_client.hget(keys.IDS, "p2") is None  # nothing written
    with pytest.raises(ConfigError, match=f"shingle_cjk={cfg.shingle_cjk + 1}"):
        process(redis_client, cfg.replace(shingle_cjk=cfg.shingle_cjk + 1))
    # the band table's starting size and load are not index parameters: the table's state is in Redis
    resized = create_app(cfg.replace(lsh_bucket_bits=cfg.lsh_bucket_bits + 3, lsh_bucket_load=7)).test_client()
    assert resized.post("/v1/check", json={"text": story(1)}).get_json()["duplicates"][0]["id"] == "p1"
    assert client.post("/v1/check", json={"text": story(1)}).get_json()["duplicates"][0]["id"] == "p1"
