"""The OpenAPI document is valid, complete, and describes what the app really answers.

Real responses (happy and error paths, for every operation) are validated
against the schema the document gives for their status code, including the
required headers, so the document cannot drift from the handlers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.ops.redis_server import free_port
from service import create_app
from service.openapi import build_openapi
from tests.textgen import near_copy, word_story
from workers.consumer import process_available as process

METHODS = ("get", "post", "put", "patch", "delete")
_VOCABULARY = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
               "quebec romeo sierra tango uniform victor whiskey xray yankee zulu north south east west")
WORDS = _VOCABULARY.split(" ")


def story(seed: int, n: int = 120) -> str:
    return word_story(seed, n, WORDS)


def deref(doc: dict[str, Any], node: Any) -> Any:
    """``node`` with every local ``$ref`` replaced by its target (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return deref(doc, target)
        return {k: deref(doc, v) for k, v in node.items()}
    if isinstance(node, list):
        return [deref(doc, v) for v in node]
    return node


class Checked:
    """A test client that checks each response's status, validates it against the served document and
    records coverage."""

    def __init__(self, app: Flask, seen: set[tuple[str, str, int]]) -> None:
        self.client: FlaskClient = app.test_client()
        self.doc: dict[str, Any] = self.client.get("/openapi.json").get_json()
        self.seen = seen

    def __call__(self, expect: int, method: str, template: str, path: str | None = None, body: Any = None,
                 **kw: Any) -> Any:
        """One request, which must answer ``expect``."""
        resp = self.send(method, template, path, body, **kw)
        assert resp.status_code == expect, \
            f"{method.upper()} {path or template} answered {resp.status_code}, not {expect}: {resp.data[:300]!r}"
        return resp

    def send(self, method: str, template: str, path: str | None = None, body: Any = None, **kw: Any) -> Any:
        """One request, whatever it answers (the caller checks the status)."""
        if body is not None:
            kw.setdefault("data", json.dumps(body))
            kw.setdefault("content_type", "application/json")
        resp = self.client.open(path or template, method=method.upper(), **kw)
        validate_response(self.doc, method, template, resp)
        self.seen.add((method.lower(), template, resp.status_code))
        return resp


def validate_response(doc: dict[str, Any], method: str, template: str, resp: Any) -> None:
    op = doc["paths"][template][method.lower()]
    status = str(resp.status_code)
    assert status in op["responses"], f"{method.upper()} {template} answered undocumented {status}: {resp.data!r}"
    spec = deref(doc, op["responses"][status])
    for name, header in spec.get("headers", {}).items():
        if header.get("required"):
            assert name in resp.headers, f"{method.upper()} {template} {status} lacks the {name} header"
        if name in resp.headers and header["schema"].get("type") == "integer":
            value = int(resp.headers[name])
            assert value >= header["schema"].get("minimum", value)
    content = spec.get("content")
    assert content, f"{status} documents no body"
    assert resp.mimetype in content, f"{method.upper()} {template} {status}: {resp.mimetype} not documented"
    body = resp.get_json() if resp.is_json else resp.get_data(as_text=True)
    OAS30Validator(content[resp.mimetype]["schema"]).validate(body)


@pytest.fixture
def cfg(config: Config) -> Config:
    return config.replace(rate_limit=0)


@pytest.fixture
def seen() -> Iterator[set[tuple[str, str, int]]]:
    yield set()


# -- the document itself ------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, {"api_keys": ("k",)}, {"api_keys": ("k",), "auth_reads": True},
                                       {"rate_limit": 0}, {"max_batch": 1, "max_body": 1000}])
def test_document_is_valid_openapi(overrides: dict[str, Any]) -> None:
    doc = build_openapi(Config(**overrides))
    validate_spec(doc)
    assert doc["openapi"] == "3.0.3"
    json.dumps(doc)  # plain JSON, nothing Python-only


def test_served_document_is_the_built_one(cfg: Config) -> None:
    app = create_app(cfg)
    assert app.test_client().get("/openapi.json").get_json() == build_openapi(cfg)


def test_every_route_is_documented_and_every_operation_exists(cfg: Config) -> None:
    app = create_app(cfg)
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith(("ui.", "docs.")):
            continue  # the web pages and /docs are HTML, not API operations
        template = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routed |= {(m.lower(), template) for m in rule.methods or () if m.lower() in METHODS}
    doc = build_openapi(cfg)
    documented = {(m, p) for p, item in doc["paths"].items() for m in item if m in METHODS}
    assert routed == documented


def test_every_operation_documents_its_errors(cfg: Config) -> None:
    doc = build_openapi(cfg.replace(api_keys=("k",), rate_limit=10))
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert "500" in codes
            if path not in ("/healthz", "/openapi.json"):
                assert {"429", "503"} <= codes or path == "/readyz", (method, path)
            if "requestBody" in op:
                assert {"400", "413"} <= codes, (method, path)
            if method in ("post", "delete") and path != "/v1/check":
                assert "401" in codes and op["security"] == [{"bearerAuth": []}], (method, path)
            for code, resp in op["responses"].items():
                if code.startswith(("4", "5")):
                    resolved = deref(doc, resp)
                    assert resolved["content"]["application/json"]["schema"] == deref(
                        doc, {"$ref": "#/components/schemas/Error"}), (method, path, code)


# -- real responses against the document -----------------------------------------------------------


def test_happy_paths_match_the_document(cfg: Config, redis_client: redis.Redis,
                                        seen: set[tuple[str, str, int]]) -> None:
    call = Checked(create_app(cfg), seen)
    text = story(21)
    call(200, "get", "/healthz")
    call(200, "get", "/readyz")
    call(200, "get", "/openapi.json")
    r = call(202, "post", "/v1/articles", body={"id": "o1", "title": "Original", "text": text, "source": "s.example",
                                                "url": "https://s.example/1",
                                                "published_at": "2024-05-01T12:00:00+02:00", "lang": "en",
                                                "tag": "ignored"})
    assert r.get_json()["articles"][0]["status"] == "queued"
    call(200, "get", "/v1/articles/{article_id}", "/v1/articles/o1")  # queued
    call(202, "post", "/v1/articles", body={"articles": [{"id": "o2", "html": f"<article><p>{near_copy(text)}</p>"
                                                                               "</article>"},
                                                         {"id": "o3", "text": story(22)},
                                                         {"id": "bad", "text": story(23)}]})
    n = int(redis_client.hget(keys.IDS, "bad") or 0)
    redis_client.set(keys.payload(n), b"corrupt")
    call(200, "get", "/v1/stats")
    process(redis_client, cfg)
    call(202, "post", "/v1/articles", body={"id": "o1", "title": "Original", "text": text, "source": "s.example",
                                            "url": "https://s.example/1",
                                            "published_at": "2024-05-01T12:00:00+02:00",
                                            "lang": "en"})  # unchanged: current status
    call(202, "post", "/v1/articles", body={"id": "o3", "text": story(24)})  # changed: updated
    for article_id in ("o1", "o2", "bad"):
        call(200, "get", "/v1/articles/{article_id}", f"/v1/articles/{article_id}")
    cid = call(200, "get", "/v1/articles/{article_id}", "/v1/articles/o2").get_json()["cluster_id"]
    assert cid
    call(200, "get", "/v1/clusters/{cluster_id}", f"/v1/clusters/{cid}")
    call(200, "get", "/v1/clusters")
    page = call(200, "get", "/v1/clusters", "/v1/clusters?min_size=1&limit=1").get_json()
    assert page["next_cursor"]
    call(200, "get", "/v1/clusters", "/v1/clusters", query_string={"min_size": 1, "limit": 2,
                                                                    "cursor": page["next_cursor"]})
    call(200, "post", "/v1/check", body={"text": near_copy(text), "x": 1})
    call(200, "post", "/v1/check", body={"html": "<p>" + story(25) + "</p>"})
    call(200, "get", "/v1/stats")
    assert call(200, "post", "/v1/admin/retry", body={"ids": ["bad"]}).get_json() == {"retried": ["bad"]}
    call(200, "post", "/v1/admin/retry", body={})
    call(200, "post", "/v1/admin/retry")
    call(200, "get", "/v1/articles/{article_id}/compare/{other_id}", "/v1/articles/o1/compare/o2")
    call(200, "get", "/v1/articles/{article_id}/compare/{other_id}", "/v1/articles/o2/compare/o3")
    call(200, "delete", "/v1/articles/{article_id}", "/v1/articles/o2")
    done = call(200, "post", "/v1/articles", "/v1/articles?wait=1", body={
        "id": "o1", "title": "Original", "text": text, "source": "s.example", "url": "https://s.example/1",
        "published_at": "2024-05-01T12:00:00+02:00", "lang": "en"})  # already done: the results at once
    assert done.get_json()["articles"][0]["cluster_id"]
    call(202, "post", "/v1/articles", "/v1/articles?wait=1", body={"id": "o9", "text": story(26)})  # no worker
    feed = call(200, "get", "/v1/events").get_json()
    assert {e["type"] for e in feed["events"]} == {"article.done", "article.failed", "article.deleted"}
    call(200, "get", "/v1/events", "/v1/events", query_string={"after": feed["events"][0]["cursor"], "limit": 1})
    call(200, "get", "/v1/events", "/v1/events?after=end")
    assert "newsdedup_articles_processed_total" in call(200, "get", "/metrics").get_data(as_text=True)
    ops = {(m, p) for m, p, s in seen if s < 300}
    doc = build_openapi(cfg)
    assert ops == {(m, p) for p, item in doc["paths"].items() for m in item if m in METHODS}


def test_error_paths_match_the_document(cfg: Config, seen: set[tuple[str, str, int]]) -> None:
    small = cfg.replace(max_batch=2, max_body=5000)
    call = Checked(create_app(small), seen)
    for path in ("/v1/articles", "/v1/check"):
        call(400, "post", path, data=b"{oops", content_type="application/json")
        call(400, "post", path, data=b'{"text": "\xff"}', content_type="application/json")
        call(400, "post", path, data=b'{"text": "x"}', content_type="text/plain")
        call(400, "post", path, data=b"[" * 100 + b"]" * 100, content_type="application/json")
        call(400, "post", path, body={"text": 1})
        call(400, "post", path, body={"title": "no body"})
        call(400, "post", path, body={"text": "a", "html": "b"})
        call(422, "post", path, body={"text": "..."})  # valid, but nothing to compare
        call(413, "post", path, body={"text": "x " * 3000})  # body over max_body
    call(413, "post", "/v1/articles", body={"articles": [{"text": "a"}, {"text": "b"}, {"text": "c"}]})  # > max_batch
    call(400, "post", "/v1/admin/retry", body={"ids": "nope"})
    call(404, "post", "/v1/admin/retry", body={"ids": ["nope"]})
    call(404, "get", "/v1/articles/{article_id}", "/v1/articles/missing")
    call(404, "get", "/v1/articles/{article_id}/compare/{other_id}", "/v1/articles/missing/compare/other")
    call(202, "post", "/v1/articles", body={"id": "q1", "text": "a story still waiting in the queue"})
    call(409, "get", "/v1/articles/{article_id}/compare/{other_id}", "/v1/articles/q1/compare/q1")  # not processed
    call(404, "delete", "/v1/articles/{article_id}", "/v1/articles/missing")
    call(404, "get", "/v1/clusters/{cluster_id}", "/v1/clusters/c12345")
    call(400, "get", "/v1/clusters", "/v1/clusters?limit=0")
    call(400, "get", "/v1/clusters", "/v1/clusters?cursor=zzz")
    # unknown routes and methods have no operation; they still use the Error schema
    error_schema = deref(call.doc, {"$ref": "#/components/schemas/Error"})
    for resp, status in ((call.client.get("/nowhere"), 404), (call.client.put("/v1/articles"), 405)):
        assert resp.status_code == status
        OAS30Validator(error_schema).validate(resp.get_json())


def test_auth_and_rate_limit_responses_match_the_document(cfg: Config, redis_client: redis.Redis,
                                                          seen: set[tuple[str, str, int]]) -> None:
    call = Checked(create_app(cfg.replace(api_keys=("k",), auth_reads=True, rate_limit=2)), seen)
    call(401, "get", "/v1/stats")
    call(401, "post", "/v1/articles", body={"text": "words"})
    call(401, "delete", "/v1/articles/{article_id}", "/v1/articles/x")
    call(401, "post", "/v1/admin/retry", body={})
    call(401, "post", "/v1/check", body={"text": "words"})
    call(401, "get", "/v1/clusters")
    call(401, "get", "/v1/clusters/{cluster_id}", "/v1/clusters/c1")
    call(401, "get", "/v1/articles/{article_id}", "/v1/articles/x")
    call(401, "get", "/v1/articles/{article_id}/compare/{other_id}", "/v1/articles/x/compare/y")
    assert {s for _, _, s in seen} == {401}
    auth = {"Authorization": "Bearer k"}
    # the limit counts per minute: if a minute boundary passes between the calls the count starts
    # over (one more try); the 401s above were not counted (authentication comes first)
    for _ in range(2):
        minute = int(time.time() // 60)
        got = [call.send("get", "/v1/stats", headers=auth).status_code for _ in range(3)]
        if int(time.time() // 60) == minute:
            break
        for key in redis_client.scan_iter(match=keys.rate_limit("*", 0)[:-1] + "*"):
            redis_client.delete(key)
    assert got == [200, 200, 429]


def test_storage_down_responses_match_the_document(cfg: Config, seen: set[tuple[str, str, int]]) -> None:
    app = create_app(cfg.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5))
    call = Checked(app, seen)
    call(503, "get", "/readyz")
    call(200, "get", "/healthz")
    call(503, "get", "/v1/stats")
    call(503, "get", "/v1/clusters")
    call(503, "get", "/v1/articles/{article_id}/compare/{other_id}", "/v1/articles/x/compare/y")
    call(503, "post", "/v1/articles", body={"text": "words"})
    call(503, "post", "/v1/check", body={"text": "some words to compare"})
    call(503, "delete", "/v1/articles/{article_id}", "/v1/articles/x")
    assert {s for _, _, s in seen} == {200, 503}
