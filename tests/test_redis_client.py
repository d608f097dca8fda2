"""connect(): one node or a Redis Cluster, detected (INFO cluster) or forced; a cluster is refused until the
slot-legal schema lands, at once and with a clear error, never with CROSSSLOT/MOVED half-way through."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.errors import ClusterNotSupported, ConfigError
from newsdedup.ops.redis_cluster import RedisCluster
from newsdedup.ops.redis_server import RedisServer, free_port
from newsdedup.storage.redis_client import connect, is_cluster
from service.app import create_app, make_redis
from tests.procs import PYTHON, base_env
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
def test_cluster_is_refused_clearly(one_master: RedisCluster) -> None:
    for mode in ("auto", "true"):
        cfg = Config.from_env({}, redis_url=one_master.url, redis_cluster=mode)
        for build in (connect, make_redis, make_client, create_app):
            with pytest.raises(ClusterNotSupported, match="cannot run on Redis Cluster yet") as info:
                build(cfg)  # type: ignore[operator]
            assert info.value.status == 503 and info.value.code == "cluster_not_supported"


@pytest.mark.slow
def test_cluster_forced_off_is_still_refused_before_the_first_write(one_master: RedisCluster) -> None:
    """NEWSDEDUP_REDIS_CLUSTER=false (or a Redis that was down at detection) on a cluster node: the engine
    checks before it writes, so the API answers a clear 503, never a CROSSSLOT error."""
    cfg = Config.from_env({}, redis_url=one_master.url, redis_cluster="false", rate_limit=0)
    client = connect(cfg)
    assert type(client) is redis.Redis and is_cluster(client) is True
    with pytest.raises(ClusterNotSupported):
        Dedup(client, cfg).engine.index.ensure_index()
    app = create_app(cfg)
    r = app.test_client().post("/v1/articles", json={"id": "a", "text": "some words to store here"})
    assert r.status_code == 503, r.data
    assert r.get_json()["error"]["code"] == "cluster_not_supported"
    assert client.dbsize() == 0  # nothing was written


@pytest.mark.slow
def test_worker_process_exits_with_the_message(one_master: RedisCluster) -> None:
    import subprocess

    res = subprocess.run([PYTHON, "-m", "newsdedup.cli", "worker"], env=base_env(REDIS_URL=one_master.url),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "newsdedup: error: REDIS_URL points at a Redis Cluster node" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_cluster_client_when_allowed(redis_cluster: RedisCluster) -> None:
    """What the schema session switches on: any node's URL (a replica's too) gives the cluster client."""
    for node in (redis_cluster.live_masters()[0], redis_cluster.replicas_of(redis_cluster.live_masters()[0])[0]):
        cfg = Config.from_env({}, redis_url=f"redis://127.0.0.1:{node.port}", redis_timeout=2.0)
        client = connect(cfg, allow_cluster=True)
        assert isinstance(client, ClusterClient)
        for i in range(300):
            client.set(f"rc:{i}", i)
        assert [client.get(f"rc:{i}") for i in range(300)] == [str(i).encode() for i in range(300)]
        client.close()
    down = Config.from_env({}, redis_url=f"redis://127.0.0.1:{free_port()}", redis_cluster="true", redis_timeout=0.5)
    with pytest.raises(Exception, match="slot map"):
        connect(down, allow_cluster=True)
