"""The events feed in-process: expiry and delete events from the one removal path, cursors refused cleanly."""

from __future__ import annotations

import redis
from flask.testing import FlaskClient

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.retention.removal import Removal
from service import create_app
from tests.textgen import word_story
from workers.consumer import process_available


def client_for(config: Config) -> FlaskClient:
    return create_app(config.replace(rate_limit=0)).test_client()


def test_expiry_and_delete_are_events_and_expiry_is_counted(config: Config, redis_client: redis.Redis) -> None:
    c = client_for(config)
    assert c.post("/v1/articles", json={"articles": [{"id": "old/1", "text": word_story(1)},
                                                     {"id": "old/2", "text": word_story(1)},
                                                     {"id": "gone", "text": word_story(2)}]}).status_code == 202
    process_available(redis_client, config)
    end = c.get("/v1/events?after=end").get_json()["next_cursor"]
    n = int(redis_client.hget(keys.IDS, "old/1") or 0)
    assert Removal(redis_client, config).remove([n], expired=True).ids == ["old/1"]
    assert c.delete("/v1/articles/gone").status_code == 200
    feed = c.get(f"/v1/events?after={end}").get_json()["events"]
    assert [(e["type"], e["id"]) for e in feed] == [("article.expired", "old/1"), ("article.deleted", "gone")]
    assert feed[0]["cluster_id"] == c.get("/v1/articles/old%2F2").get_json()["cluster_id"]
    text = c.get("/metrics").get_data(as_text=True)
    assert "newsdedup_articles_expired_total 1.0" in text


def test_bad_cursors_and_waits_are_400(config: Config, redis_client: redis.Redis) -> None:
    c = client_for(config)
    for query in ("after=nope", "after=" + "A" * 65, "after=MTIz", "limit=0", "limit=1001", "wait=31", "wait=-1"):
        r = c.get("/v1/events?" + query)
        assert r.status_code == 400, (query, r.data)
        assert r.get_json()["error"]["code"] in ("invalid_cursor", "invalid_parameter"), query
    assert c.post("/v1/articles?wait=x", json={"text": word_story(3)}).status_code == 400
    assert c.get("/v1/events").get_json() == {"events": [], "next_cursor": "MC0w"}  # empty feed: cursor of 0-0
