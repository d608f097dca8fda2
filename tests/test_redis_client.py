"""connect(): one node or a Redis Cluster, detected (INFO cluster) or forced; every entry point gets the cluster
client for a cluster node, and a single-node client that meets a cluster is refused before it writes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.errors import ClusterModeMismatch, ConfigError, StorageUnavailable
from newsdedup.ops.redis_cluster import RedisCluster
from newsdedup.ops.redis_server import RedisServer, free_port
from newsdedup.storage.redis_client import connect, is_cluster
from service.app import create_app, make_redis
from workers.consumer import process_available
from workers.worker import make_client


@pytest.fixture(scope="module")
def one_master() -> Iterator[RedisCluster]:
    """The smallest real cluster: one master holding all 16384 slots (cluster_enabled:1)."""
    with RedisCluster(masters=1, replicas=0) as c:
        yield c


def _kwargs(client: redis.Redis) -> dict[str, object]:
    return dict(client.connection_pool.connection_kwargs)


@pytest.mark.parametrize(("raw", "mode"), [("auto", "auto"), ("AUTO", "auto"), ("true", "true"), ("1", "true"),
                                           ("yes", "true"), ("false", "false"), ("off", "false")])
def test_setting(raw: str, mode: str) -> None:
    assert Config.from_env({"NEWSDEDUP_REDIS_CLUSTER": raw}).redis_cluster == mode


def test_setting_rejects_other_values() -> None:
    assert Config.from_env({}).redis_cluster == "auto"
    with pytest.raises(ConfigError, match="NEWSDEDUP_REDIS_CLUSTER.*true or false"):
        Config.from_env({"NEWSDEDUP_REDIS_CLUSTER": "maybe"})
    with pytest.raises(ConfigError, match="true, false or auto"):
        Config(redis_cluster="yes")


def test_single_node_gets_the_plain_client_with_bounded_timeouts(redis_server: RedisServer) -> None:
    for mode in ("auto", "false"):
        cfg = Config.from_env({}, redis_url=redis_server.url, redis_timeout=3.0, redis_cluster=mode)
        api, worker = make_redis(cfg), make_client(cfg)
        assert type(api) is redis.Redis and type(worker) is redis.Redis
        assert api.ping() and is_cluster(api) is False
        assert _kwargs(api)["socket_timeout"] == 3.0 and _kwargs(api)["socket_connect_timeout"] == 3.0
        assert _kwargs(api)["retry_on_timeout"] is False and _kwargs(api)["health_check_interval"] == 30
        assert _kwargs(worker)["socket_timeout"] == 5.0  # + 2 s for XREADGROUP BLOCK
        api.close()
        worker.close()


def test_unix_socket_and_missing_url() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        connect(Config.from_env({}))
    with RedisServer(unix_socket=True) as server:
        client = connect(Config.from_env({}, redis_url=server.url))
        assert client.ping()
        client.close()


def test_redis_down_at_start_is_not_an_error() -> None:
    """The API factory must succeed while Redis is down (/readyz answers 503 until it is back)."""
    cfg = Config.from_env({}, redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5)
    client = connect(cfg)
    assert type(client) is redis.Redis
    assert is_cluster(client) is None
    with pytest.raises(redis.ConnectionError):
        client.ping()


@pytest.mark.slow
def test_a_cluster_node_gives_the_cluster_client_everywhere(one_master: RedisCluster) -> None:
    """API, worker and admin commands all connect through connect(): a cluster node (detected or forced)
    gives redis-py's cluster client, and the API is ready on it."""
    for mode in ("auto", "true"):
        cfg = Config.from_env({}, redis_url=one_master.url, redis_cluster=mode, rate_limit=0)
        for build in (connect, make_redis, make_client):
            client = build(cfg)
            assert isinstance(client, ClusterClient) and is_cluster(client) is True
            client.close()
        app = create_app(cfg)
        assert isinstance(app.extensions["newsdedup.redis"], ClusterClient)
        r = app.test_client().get("/readyz")
        assert r.status_code == 200, r.data


@pytest.mark.slow
def test_single_node_client_on_a_cluster_is_refused_before_the_first_write(one_master: RedisCluster) -> None:
    """NEWSDEDUP_REDIS_CLUSTER=false (or a Redis that was down at detection) on a cluster node: the engine
    checks before it writes, so the API answers a clear 503, never a MOVED error halfway through."""
    ClusterClient.from_url(one_master.url).flushall()
    cfg = Config.from_env({}, redis_url=one_master.url, redis_cluster="false", rate_limit=0)
    client = connect(cfg)
    assert type(client) is redis.Redis and is_cluster(client) is True
    with pytest.raises(ClusterModeMismatch):
        Dedup(client, cfg).engine.index.ensure_index()
    app = create_app(cfg)
    r = app.test_client().post("/v1/articles", json={"id": "a", "text": "some words to store here"})
    assert r.status_code == 503, r.data
    assert r.get_json()["error"]["code"] == "cluster_mode_mismatch"
    assert client.dbsize() == 0  # nothing was written


@pytest.mark.slow
def test_submit_and_process_through_the_cluster_client(one_master: RedisCluster) -> None:
    """One master holding every slot: the whole path (submit, worker, read) runs on the cluster client."""
    ClusterClient.from_url(one_master.url).flushall()
    cfg = Config.from_env({}, redis_url=one_master.url, rate_limit=0, visibility_timeout=1.0)
    app = create_app(cfg)
    api = app.test_client()
    text = "The council approved the new budget for the city library on Tuesday evening after a long debate."
    for i in ("a", "b"):
        assert api.post("/v1/articles", json={"id": i, "title": "Budget", "text": text}).status_code == 202
    client = make_client(cfg)
    assert isinstance(client, ClusterClient)
    assert process_available(client, cfg) == 2
    body = api.get("/v1/articles/b").get_json()
    assert body["status"] == "done" and body["duplicate_of"] == "a", body


@pytest.mark.slow
def test_cluster_client_from_any_node(redis_cluster: RedisCluster) -> None:
    """Any node's URL (a replica's too) gives the cluster client; a cluster that cannot be reached is a 503."""
    for node in (redis_cluster.live_masters()[0], redis_cluster.replicas_of(redis_cluster.live_masters()[0])[0]):
        cfg = Config.from_env({}, redis_url=f"redis://127.0.0.1:{node.port}", redis_timeout=2.0)
        client = connect(cfg)
        assert isinstance(client, ClusterClient)
        for i in range(300):
            client.set(f"rc:{i}", i)
        assert [client.get(f"rc:{i}") for i in range(300)] == [str(i).encode() for i in range(300)]
        client.close()
    down = Config.from_env({}, redis_url=f"redis://127.0.0.1:{free_port()}", redis_cluster="true", redis_timeout=0.5)
    with pytest.raises(StorageUnavailable, match="slot map"):
        connect(down)
