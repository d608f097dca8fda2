"""NEWSDEDUP_WAIT_REPLICAS: a 202 or a done only once N replicas hold the write (real master/replica servers)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.errors import ConfigError, StorageUnavailable
from newsdedup.ops.redis_server import RedisServer
from newsdedup.storage.records import decoded
from service.app import create_app
from tests.procs import wait_until
from workers.consumer import Worker, process_available

TEXT = "The council approved the new budget for the city library on Tuesday evening after a long debate."


@pytest.mark.parametrize("raw", ["-1", "x", "1.5", "101"])
def test_setting_is_validated(raw: str) -> None:
    assert Config.from_env({}).wait_replicas == 0
    assert Config.from_env({"NEWSDEDUP_WAIT_REPLICAS": "2"}).wait_replicas == 2
    with pytest.raises(ConfigError, match="NEWSDEDUP_WAIT_REPLICAS"):
        Config.from_env({"NEWSDEDUP_WAIT_REPLICAS": raw})


def test_no_replica_answers_503_and_nothing_is_half_accepted(config: Config, redis_client: redis.Redis) -> None:
    """WAIT 1 on a Redis without replicas: 503 + Retry-After within the timeout (WAIT's own), never a 202.

    The write itself is one script: either all of it is there (a retry then finds it unchanged,
    never a second copy) or none of it.
    """
    cfg = config.replace(wait_replicas=1, redis_timeout=0.5, rate_limit=0)
    api = create_app(cfg).test_client()
    started = time.monotonic()
    r = api.post("/v1/articles", json={"id": "a", "title": "Budget", "text": TEXT})
    elapsed = time.monotonic() - started
    assert r.status_code == 503, r.data
    assert r.headers["Retry-After"].isdigit()
    assert r.get_json()["error"]["code"] == "storage_unavailable"
    assert "replicas" in r.get_json()["error"]["message"]
    assert elapsed < 0.5 + 3.0, elapsed  # WAIT's timeout plus slack for a loaded machine; never the 5 s default
    n = redis_client.hget(keys.IDS, "a")
    assert n is not None  # the master holds the whole write, not a part of it:
    assert redis_client.hget(keys.article(int(n)), "status") == b"queued"
    assert redis_client.exists(keys.payload(int(n)))
    assert [f[b"n"] for _, f in redis_client.xrange(keys.QUEUE)] == [n]
    # the client retries (here without waiting): the same article, no second queue entry
    plain = create_app(cfg.replace(wait_replicas=0)).test_client()
    r = plain.post("/v1/articles", json={"id": "a", "title": "Budget", "text": TEXT})
    assert r.status_code == 202 and r.get_json()["articles"][0]["status"] == "queued", r.data
    assert redis_client.xlen(keys.QUEUE) == 1 and redis_client.hlen(keys.IDS) == 1


def test_worker_treats_missing_acknowledgements_as_transient(config: Config, redis_client: redis.Redis) -> None:
    """A worker whose done cannot reach a replica neither fails the article nor counts an attempt."""
    plain = create_app(config.replace(rate_limit=0)).test_client()
    assert plain.post("/v1/articles", json={"id": "a", "title": "Budget", "text": TEXT}).status_code == 202
    w = Worker(redis_client, config.replace(wait_replicas=1, redis_timeout=0.3), name="w1")
    with pytest.raises(StorageUnavailable, match="replicas"):
        w.step(block_ms=None)
    n = int(redis_client.hget(keys.IDS, "a") or 0)
    assert redis_client.hget(keys.article(n), "attempts") == b"0"
    assert redis_client.hget(keys.article(n), "status") != b"failed"


@pytest.fixture(scope="module")
def master_and_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    with RedisServer(data_dir=None, appendonly=False) as master:
        assert master.port is not None
        with RedisServer(data_dir=None, appendonly=False,
                         extra_args=["--replicaof", "127.0.0.1", str(master.port)]) as replica:
            link = replica.client(decode_responses=True)
            wait_until(lambda: link.info("replication").get("master_link_status") == "up", 30,
                       message="the replica to sync with its master")
            yield master, replica


def test_one_replica_holds_the_article_when_the_202_arrives(master_and_replica: tuple[RedisServer, RedisServer]
                                                            ) -> None:
    master, replica = master_and_replica
    master.client().flushall()
    cfg = Config.from_env({}, redis_url=master.url, wait_replicas=1, rate_limit=0, visibility_timeout=1.0)
    on_replica = replica.client()
    api = create_app(cfg).test_client()
    for i in ("a", "b"):
        r = api.post("/v1/articles", json={"id": i, "title": "Budget", "text": TEXT})
        assert r.status_code == 202, r.data
        n = on_replica.hget(keys.IDS, i)  # read at once: no waiting for replication
        assert n is not None and on_replica.hget(keys.article(int(n)), "status") == b"queued"
    client = redis.Redis.from_url(master.url)
    assert process_available(client, cfg) == 2
    nb = int(on_replica.hget(keys.IDS, "b") or 0)
    assert decoded(on_replica.hget(keys.article(nb), "status")) == "done"  # done is on the replica when it returns
    assert on_replica.xlen(keys.QUEUE) == 0  # and so is the ack
    assert api.get("/v1/articles/b").get_json()["duplicate_of"] == "a"
    # more replicas than exist: 503, never a 202
    r = create_app(cfg.replace(wait_replicas=2, redis_timeout=0.3)).test_client().post(
        "/v1/articles", json={"id": "c", "title": "Other", "text": TEXT + " More."})
    assert r.status_code == 503 and "Retry-After" in r.headers
