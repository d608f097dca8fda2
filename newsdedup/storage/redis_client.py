"""The one way entry points (API, workers, admin commands) connect to Redis: one node or a Redis Cluster.

:func:`connect` builds a pooled client with bounded timeouts from ``REDIS_URL`` and decides
whether that URL names a Redis Cluster node: ``NEWSDEDUP_REDIS_CLUSTER=true|false`` says so,
``auto`` (the default) asks the server (``INFO cluster`` -> ``cluster_enabled:1``).

newsdedup cannot run on a Redis Cluster yet: its Lua scripts touch keys in many hash slots
(docs/cluster.md has the slot-legal schema that will lift this). Until then a cluster is
refused at once with :class:`ClusterNotSupported`, at connection time and again by
:func:`require_single_node` before the engine's first write (for a Redis that was down
when the process started), never with CROSSSLOT or MOVED errors halfway through a batch.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, overload

import redis
from redis.cluster import RedisCluster

from newsdedup.config import Config
from newsdedup.errors import ClusterNotSupported, ConfigError, StorageUnavailable

__all__ = ["ClusterNotSupported", "NO_REDIS_URL", "connect", "is_cluster", "require_single_node"]

log = logging.getLogger(__name__)

# Whether the key schema is slot-legal, so the engine may run on a Redis Cluster. The schema session
# (docs/cluster.md) turns it on; until then entry points refuse a cluster with ClusterNotSupported.
CLUSTER_SCHEMA = False

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


def require_single_node(client: Any) -> None:
    """Refuse a cluster node before the first write (the detection at connect time may have found Redis down).

    Storage errors propagate (the caller's retry/503 handling applies).
    """
    try:
        enabled = bool(int(client.info("cluster").get("cluster_enabled", 0)))
    except redis.ResponseError:
        return  # INFO restricted: only a standalone managed Redis does that in practice
    if enabled:
        raise ClusterNotSupported()


def _options(config: Config, read_margin: float) -> dict[str, Any]:
    return {"socket_timeout": config.redis_timeout + read_margin, "socket_connect_timeout": config.redis_timeout,
            "retry_on_timeout": False}


@overload
def connect(config: Config, *, read_margin: float = ..., allow_cluster: Literal[False] = ...) -> redis.Redis: ...


@overload
def connect(config: Config, *, read_margin: float = ..., allow_cluster: Literal[True]
            ) -> redis.Redis | RedisCluster: ...


def connect(config: Config, *, read_margin: float = 0.0, allow_cluster: bool = False
            ) -> redis.Redis | RedisCluster:
    """A client for ``config.redis_url`` with bounded timeouts, so a dead Redis costs a request seconds, not forever.

    ``read_margin`` seconds are added to the socket timeout for callers that block on the server
    (workers: XREADGROUP BLOCK). ``rediss://`` URLs turn on TLS, ``unix://`` uses a socket. With
    ``allow_cluster`` a cluster is answered with redis-py's cluster client; without it (every entry
    point today) with :class:`ClusterNotSupported`. redis-py connects lazily: when Redis is down in
    ``auto`` mode this returns the single-node client and :func:`require_single_node` checks later.
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
    if not allow_cluster:
        raise ClusterNotSupported()
    try:
        return RedisCluster.from_url(config.redis_url, **opts)
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException) as exc:
        # the cluster client reads the slot map when it is built, so it cannot be lazy
        raise StorageUnavailable(f"cannot read the slot map of the Redis Cluster at REDIS_URL ({exc}); check that "
                                 "its nodes are up and that cluster_state is ok") from exc
