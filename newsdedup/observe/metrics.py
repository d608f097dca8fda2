"""Counters for /metrics, kept in Redis (``nd:metrics``) so every process sees the same totals.

Why Redis and not prometheus-client's multiprocess mode: workers run on other
machines and API processes behind a load balancer; a scrape of /metrics reaches
one of them, and only counters shared in Redis make every answer the whole
service's figures (multiprocess files would show one machine's share). The
engine's counters are written inside the same transaction as the work they
count, so they are exact. HTTP counters are added up in each process and written
by a background thread once a second (and before a scrape answered by that
process), so a request never waits on a metrics write, not even while Redis
hangs (/healthz must answer at once then). Redis errors cannot be counted in
Redis while it is away: they wait in the process with the rest until a write
succeeds. A process that dies loses at most its last second of HTTP counts.

Hash fields (all integers): ``submitted:<queued|updated|unchanged>``,
``processed:<done|failed>``, ``dead_lettered``, ``duplicates``, ``merges``,
``redis_errors``, ``latency_le:<bound>`` / ``latency_sum_ms`` / ``latency_count``
(submit to done), ``http:<endpoint>:<method>:<status>``,
``http_le:<endpoint>:<bound>`` / ``http_sum_us:<endpoint>`` / ``http_count:<endpoint>``.
Histogram buckets are stored per bucket (not cumulative); the collector sums them.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Iterable
from typing import Any

from newsdedup import keys
from newsdedup.storage.txn import Txn

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

FLUSH_INTERVAL = 1.0


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


class ProcessCounters:
    """This process's counts not written yet; a daemon thread flushes them into ``nd:metrics``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._client: Any = None

    def add(self, deltas: dict[str, int]) -> None:
        with self._lock:
            for k, v in deltas.items():
                self._pending[k] = self._pending.get(k, 0) + v

    def request(self, r: Any, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request (no I/O here)."""
        self.add({f"http:{endpoint}:{method}:{status}": 1, f"http_le:{endpoint}:{bucket(HTTP_BUCKETS, seconds)}": 1,
                  f"http_sum_us:{endpoint}": max(0, int(seconds * 1e6)), f"http_count:{endpoint}": 1})
        self._start(r)

    def redis_error(self) -> None:
        self.add({"redis_errors": 1})

    def flush(self, r: Any) -> None:
        """Write what is pending in one round trip; on failure keep it (and count the error)."""
        with self._lock:
            todo, self._pending = self._pending, {}
        if not todo:
            return
        pipe = r.pipeline(transaction=False)
        for k, v in todo.items():
            pipe.hincrby(keys.METRICS, k, v)
        try:
            pipe.execute()
        except Exception:
            todo["redis_errors"] = todo.get("redis_errors", 0) + 1
            self.add(todo)
            raise

    def _start(self, r: Any) -> None:
        self._client = r  # the app's client (one app per process in production)
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._client = r
            self._thread = threading.Thread(target=self._run, name="newsdedup-metrics", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(FLUSH_INTERVAL):
            with contextlib.suppress(Exception):  # kept for the next round; Redis may be away
                self.flush(self._client)


counters = ProcessCounters()  # one per process (the thread starts on first use, so after a fork)
