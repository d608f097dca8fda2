"""Counters for /metrics, kept in Redis (``nd:metrics``) so every process sees the same totals.

Why Redis and not prometheus-client's multiprocess mode: workers run on other
machines and API processes behind a load balancer; a scrape of /metrics reaches
one of them, and only counters shared in Redis make every answer the whole
service's figures (multiprocess files would show one machine's share). The
engine's counters are written inside the same transaction as the work they
count, so they are exact; HTTP counters cost one pipelined HINCRBY batch per
request. Redis errors cannot be counted in Redis while it is away: each process
keeps them and adds them on its next successful write.

Hash fields (all integers): ``submitted:<queued|updated|unchanged>``,
``processed:<done|failed>``, ``dead_lettered``, ``duplicates``, ``merges``,
``redis_errors``, ``latency_le:<bound>`` / ``latency_sum_ms`` / ``latency_count``
(submit to done), ``http:<endpoint>:<method>:<status>``,
``http_le:<endpoint>:<bound>`` / ``http_sum_us:<endpoint>`` / ``http_count:<endpoint>``.
Histogram buckets are stored per bucket (not cumulative); the collector sums them.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from typing import Any

from . import keys
from .store import Txn

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_lock = threading.Lock()
_unsent_redis_errors = 0


def bucket(bounds: tuple[float, ...], seconds: float) -> str:
    """The label of the smallest bucket holding ``seconds`` ("+Inf" past the last)."""
    i = bisect.bisect_left(bounds, seconds)
    return repr(bounds[i]) if i < len(bounds) else "+Inf"


def latency_fields(seconds: Iterable[float]) -> dict[bytes, int]:
    """Histogram increments for submit-to-done latencies (added to the cluster transaction)."""
    out: dict[bytes, int] = {}
    total_ms = count = 0
    for s in seconds:
        k = f"latency_le:{bucket(LATENCY_BUCKETS, s)}".encode()
        out[k] = out.get(k, 0) + 1
        total_ms += max(0, int(s * 1000))
        count += 1
    if count:
        out[b"latency_sum_ms"] = total_ms
        out[b"latency_count"] = count
    return out


def count(txn: Txn, fields: dict[bytes, int]) -> Txn:
    """Add counters to a transaction (nothing when all are zero)."""
    nonzero = {k: v for k, v in fields.items() if v}
    return txn.hincrn(keys.METRICS, nonzero) if nonzero else txn


def note_redis_error() -> None:
    """Count a Redis error in this process until it can be written."""
    global _unsent_redis_errors
    with _lock:
        _unsent_redis_errors += 1


def take_redis_errors() -> int:
    global _unsent_redis_errors
    with _lock:
        n, _unsent_redis_errors = _unsent_redis_errors, 0
    return n


def record_http(r: Any, endpoint: str, method: str, status: int, seconds: float) -> None:
    """One request's counters, in one round trip (best effort: a failure keeps no partial state)."""
    errors = take_redis_errors()
    pipe = r.pipeline(transaction=False)
    pipe.hincrby(keys.METRICS, f"http:{endpoint}:{method}:{status}", 1)
    pipe.hincrby(keys.METRICS, f"http_le:{endpoint}:{bucket(HTTP_BUCKETS, seconds)}", 1)
    pipe.hincrby(keys.METRICS, f"http_sum_us:{endpoint}", max(0, int(seconds * 1e6)))
    pipe.hincrby(keys.METRICS, f"http_count:{endpoint}", 1)
    if errors:
        pipe.hincrby(keys.METRICS, "redis_errors", errors)
    try:
        pipe.execute()
    except Exception:
        global _unsent_redis_errors
        with _lock:
            _unsent_redis_errors += errors + 1
