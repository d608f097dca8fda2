"""Ids as users have them: / ? # % : and full URLs, reachable percent-encoded, returned exactly as given."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from newsdedup.config import Config
from service import create_app
from tests.textgen import word_story
from workers.consumer import process_available

ODD_IDS = ["https://example.com/news/2024/05/a?id=7&x=%41#top", "a/compare/b", "50%", "%2F", "%252F", "a:b",
           "?", "#", "a//b", "/", "..", "新闻/一", "x" * 256]


@pytest.fixture
def client(config: Config, redis_client: redis.Redis) -> FlaskClient:
    app: Flask = create_app(config.replace(rate_limit=0))
    return app.test_client()


def test_odd_ids_round_trip(client: FlaskClient, config: Config, redis_client: redis.Redis) -> None:
    arts = [{"id": i, "title": f"t{k}", "text": word_story(k)} for k, i in enumerate(ODD_IDS)]
    r = client.post("/v1/articles", json={"articles": arts})
    assert r.status_code == 202, r.data
    assert [a["id"] for a in r.get_json()["articles"]] == ODD_IDS
    assert [a["href"] for a in r.get_json()["articles"]] == ["/v1/articles/" + quote(i, safe="") for i in ODD_IDS]
    process_available(redis_client, config)
    for i in ODD_IDS:
        got = client.get("/v1/articles/" + quote(i, safe=""))
        assert got.status_code == 200, (i, got.data)
        assert got.get_json()["id"] == i and got.get_json()["status"] == "done"
    one = client.post("/v1/articles", json={"id": "u/1?#", "text": word_story(99)})
    assert one.headers["Location"] == "/v1/articles/u%2F1%3F%23"
    assert client.delete("/v1/articles/" + quote("a/compare/b", safe="")).get_json() == {"id": "a/compare/b",
                                                                                       "deleted": True}
    assert client.get("/v1/articles/" + quote("a/compare/b", safe="")).status_code == 404
    assert client.get("/v1/articles/a").status_code == 404  # not a prefix match of "a/compare/b"
    a, b = (quote(i, safe="") for i in ("https://example.com/news/2024/05/a?id=7&x=%41#top", "a/compare/b"))
    gone = client.get(f"/v1/articles/{a}/compare/{b}")  # b was deleted: the 404 names it, whole
    assert gone.status_code == 404 and "a/compare/b" in gone.get_json()["error"]["message"], gone.data
    assert client.get(f"/v1/articles/{a}/compare/{quote('%2F', safe='')}").status_code == 200
    assert client.get(f"/ui/compare/{a}/{quote('%2F', safe='')}").status_code == 200


@pytest.mark.parametrize("path", ["/v1/articles/a/compare/b", "/v1/articles/https://example.com/x",
                                  "/v1/articles/a/b", "/v1/articles/a//b", "/v1/articles/a/"])
def test_a_literal_slash_separates_route_parts(client: FlaskClient, path: str) -> None:
    """Even when an article with the slashed id exists, the unencoded path is not it."""
    client.post("/v1/articles", json={"id": path.removeprefix("/v1/articles/"), "text": word_story(1)})
    r = client.get(path)
    assert r.status_code in (404, 405) and r.get_json()["error"]["code"] in ("not_found", "method_not_allowed")


def test_without_a_raw_uri_ids_still_decode_once(client: FlaskClient) -> None:
    """A server that gives no RAW_URI/REQUEST_URI: the decoded path is used and never decoded twice."""
    client.post("/v1/articles", json={"id": "%41", "text": word_story(2)})
    r = client.get("/v1/articles/%2541", environ_overrides={"RAW_URI": None, "REQUEST_URI": None})
    assert r.status_code == 200 and r.get_json()["id"] == "%41"
