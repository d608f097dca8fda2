"""Shared fixtures: one throwaway redis-server for the whole session, flushed before each test that asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from newsdedup.config import Config
from newsdedup.ops.redis_cluster import RedisCluster
from newsdedup.ops.redis_server import RedisServer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server (temporary data dir, free port) shared by the session; never restart it."""
    with RedisServer(data_dir=None) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real local Redis Cluster, 3 masters + 3 replicas, shared by the session (started on first use).

    A short node timeout makes a failover take a second or two; a test that kills a node must leave
    the cluster healthy again (restart it and ``wait_healthy``).
    """
    with RedisCluster(tmp_path_factory.mktemp("cluster"), node_timeout_ms=1000) as cluster:
        yield cluster


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A bytes client (decode_responses=False) on an empty database."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=False)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def config(redis_server: RedisServer, redis_client: redis.Redis) -> Config:
    """Defaults (the environment is ignored) pointed at the session Redis, flushed; short visibility timeout."""
    return Config.from_env({}, redis_url=redis_server.url, visibility_timeout=2.0)


@pytest.fixture(scope="session")
def seed_page_text() -> str:
    """The page the project was founded on: its article body appears twice among navigation and footers."""
    return (FIXTURES / "seed_page.txt").read_text(encoding="utf-8")
