"""The work queue: a Redis stream (:data:`newsdedup.keys.QUEUE`) read by one consumer group."""

from __future__ import annotations

import redis

from newsdedup import keys
from newsdedup.storage.redis_client import Client


def ensure_group(client: Client) -> None:
    """Create the queue stream and its consumer group once (idempotent)."""
    try:
        client.xgroup_create(keys.QUEUE, keys.GROUP, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
