"""The one way entry points (API, workers, admin commands) connect to Redis: one node or a Redis Cluster.

:func:`connect` builds a pooled client with bounded timeouts from ``REDIS_URL`` and decides
whether that URL names a Redis Cluster node: ``NEWSDEDUP_REDIS_CLUSTER=true|false`` says so,
``auto`` (the default) asks the server (``INFO cluster`` -> ``cluster_enabled:1``). A cluster
node gives redis-py's :class:`~redis.cluster.RedisCluster`, a standalone Redis ``redis.Redis``;
the engine runs the same calls on both (every script's keys share one hash slot, keys.py).

The cluster client retries few times with a short backoff (:data:`CLUSTER_RETRIES`), so a call
during a failover fails within about ``(CLUSTER_RETRIES + 1) x NEWSDEDUP_REDIS_TIMEOUT`` (and
much sooner when the dead node refuses connections) and the caller answers 503 + Retry-After.
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from newsdedup.config import Config
from newsdedup.errors import ClusterModeMismatch, ConfigError, StorageUnavailable

__all__ = ["CLUSTER_RETRIES", "Client", "NO_REDIS_URL", "check_mode", "connect", "is_cluster"]

log = logging.getLogger(__name__)

Client: TypeAlias = redis.Redis | RedisCluster
"""What :func:`connect` returns; code that runs on both types its client with this."""

CLUSTER_RETRIES = 2
"""Retries of a cluster call after ConnectionError/Timeout/CLUSTERDOWN (the slot map is re-read before each)."""

NO_REDIS_URL = "REDIS_URL is not set; run `newsdedup up` (embedded Redis) or set REDIS_URL=redis://host:6379/0"


def is_cluster(client: Any) -> bool | None:
    """Whether the server behind ``client`` runs with cluster-enabled yes (``INFO cluster``).

    None when it cannot tell: Redis unreachable, or INFO refused (some managed Redis restrict it).
    """
    if isinstance(client, RedisCluster):
        return True
    try:
        return bool(int(client.info("cluster").get("cluster_enabled", 0)))
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None
    except redis.ResponseError as exc:
        log.debug("INFO cluster refused (%s); assuming a standalone Redis", exc)
        return None


def check_mode(client: Any) -> None:
    """Before the first write: a single-node client must not talk to a cluster node.

    That happens when Redis was down at start in ``auto`` mode (redis-py's single-node client
    connects lazily) or with ``NEWSDEDUP_REDIS_CLUSTER=false`` on a cluster: its calls would fail
    with MOVED halfway through a batch, so it is refused before anything is written.
    Storage errors propagate (the caller's retry/503 handling applies).
    """
    if isinstance(client, RedisCluster):
        return
    try:
        enabled = bool(int(client.info("cluster").get("cluster_enabled", 0)))
    except redis.ResponseError:
        return  # INFO restricted: only a standalone managed Redis does that in practice
    if enabled:
        raise ClusterModeMismatch()


def _options(config: Config, read_margin: float) -> dict[str, Any]:
    # WAIT blocks up to NEWSDEDUP_REDIS_TIMEOUT on the server: let its answer arrive before the socket gives up
    margin = read_margin + (0.5 if config.wait_replicas else 0.0)
    return {"socket_timeout": config.redis_timeout + margin, "socket_connect_timeout": config.redis_timeout,
            "retry_on_timeout": False}


def connect(config: Config, *, read_margin: float = 0.0) -> Client:
    """A client for ``config.redis_url`` with bounded timeouts, so a dead Redis costs a request seconds, not forever.

    ``read_margin`` seconds are added to the socket timeout for callers that block on the server
    (workers: XREADGROUP BLOCK). ``rediss://`` URLs turn on TLS, ``unix://`` uses a socket. A
    cluster node (detected or forced) gives the cluster client. redis-py's single-node client
    connects lazily: when Redis is down in ``auto`` mode this returns it and :func:`check_mode`
    checks before the first write.
    """
    if not config.redis_url:
        raise ConfigError(NO_REDIS_URL)
    opts = _options(config, read_margin)
    cluster: bool | None
    if config.redis_cluster == "auto":
        if config.redis_url.startswith("unix://"):
            cluster = False  # cluster nodes talk TCP to each other; a socket URL is a standalone Redis
        else:
            probe = redis.Redis.from_url(config.redis_url, **opts)
            try:
                cluster = is_cluster(probe)
            finally:
                probe.close()
    else:
        cluster = config.redis_cluster == "true"
    if not cluster:
        return redis.Redis.from_url(config.redis_url, health_check_interval=30, **opts)
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.1), CLUSTER_RETRIES)
    try:
        return RedisCluster.from_url(config.redis_url, retry=retry, **opts)
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException) as exc:
        # the cluster client reads the slot map when it is built, so it cannot be lazy
        raise StorageUnavailable(f"cannot read the slot map of the Redis Cluster at REDIS_URL ({exc}); check that "
                                 "its nodes are up and that cluster_state is ok") from exc
