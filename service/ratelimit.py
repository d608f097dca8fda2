"""Per-client fixed-window rate limiting in Redis, shared by all API processes.

One INCR+EXPIRE pipeline per request on ``nd:rl:{client}:{minute}``: cheap,
and every gunicorn worker and replica sees the same counters. Fixed windows
allow a burst of up to 2x at a minute boundary, which is fine for abuse
protection. When Redis is down the request fails with 503 anyway.
"""

from __future__ import annotations

import math
import time

from newsdedup import keys
from newsdedup.errors import RateLimited
from newsdedup.storage.redis_client import Client

WINDOW = 60


def check_rate(client: Client, who: str, limit: int, now: float | None = None) -> None:
    """Count one request for ``who``; raise RateLimited past ``limit`` per minute (0 = no limit)."""
    if limit <= 0:
        return
    now = time.time() if now is None else now
    minute = int(now // WINDOW)
    key = keys.rate_limit(who, minute)
    pipe = client.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, WINDOW * 2)
    count = int(pipe.execute()[0])
    if count > limit:
        retry_after = max(1, math.ceil((minute + 1) * WINDOW - now))
        raise RateLimited(f"more than {limit} requests this minute; retry in {retry_after} s",
                          retry_after=retry_after)
