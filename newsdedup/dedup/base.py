"""The operations the service offers, over one Redis client: what the entry points call.

Split by side: :mod:`writes` (submit, delete, retry) and :mod:`reads` (article, cluster,
clusters, stats, check). Every method turns "Redis is away" into
:class:`~newsdedup.errors.StorageUnavailable`; reads never write, and every write is one
atomic, checked transaction.
"""

from __future__ import annotations

from typing import Any

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.engine.engine import Engine
from newsdedup.errors import NotFound
from newsdedup.storage.redis_client import Client


class Service:
    """What both sides share: the Redis client, the configuration and the engine's stages."""

    def __init__(self, client: Client, config: Config) -> None:
        # redis-py types replies as unions over every decode mode; ours is always a bytes client
        self.r: Any = client
        self.cfg = config
        self.engine = Engine(client, config)

    def _number(self, article_id: str) -> int:
        n = self.r.hget(keys.IDS, article_id)
        if n is None:
            if self.r.exists(keys.tombstone(article_id)):
                raise NotFound(f"article {article_id!r} expired: it was older than the retention window "
                               "(NEWSDEDUP_RETENTION) and was removed", code="expired")
            raise NotFound(f"no article with id {article_id!r}")
        return int(n)
