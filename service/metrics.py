"""GET /metrics: the Prometheus text format, from the counters every process keeps in Redis.

See :mod:`newsdedup.observe.metrics` for why the counters live in Redis (any API
process answers a scrape with the whole service's figures, workers may run on
other machines). Queue figures are read at scrape time. A collector built per
scrape on a private registry, so nothing is kept in this process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from newsdedup import keys
from newsdedup.dedup import Dedup
from newsdedup.observe.metrics import HTTP_BUCKETS, LATENCY_BUCKETS
from newsdedup.storage.redis_client import Client
from newsdedup.storage.txn import storage_errors


def _histogram(name: str, doc: str, bounds: tuple[float, ...], per_bucket: dict[str, int], total: float,
               labels: dict[str, str] | None = None, family: HistogramMetricFamily | None = None
               ) -> HistogramMetricFamily:
    fam = family or HistogramMetricFamily(name, doc, labels=sorted(labels or {}))
    acc = 0
    buckets = []
    for b in [*map(repr, bounds), "+Inf"]:
        acc += per_bucket.get(b, 0)
        buckets.append((b, acc))
    label_values = [v for _, v in sorted((labels or {}).items())]
    fam.add_metric(label_values, buckets, total)
    return fam


class RedisCollector(Collector):
    """Reads nd:metrics and the queue state once per scrape."""

    def __init__(self, client: Any, dedup: Dedup) -> None:
        self.r = client
        self.dedup = dedup

    def collect(self) -> Iterator[Metric]:
        with storage_errors():
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(keys.METRICS).xlen(keys.DEAD).xrange(keys.QUEUE, "-", "+", count=1)
            pipe.hget(keys.META, "expired")
            raw, dead, oldest, expired = pipe.execute()
            stats = self.dedup.stats()
        m = {k.decode(): int(v) for k, v in raw.items()}
        sub = CounterMetricFamily("newsdedup_articles_submitted", "Articles accepted by POST /v1/articles, by "
                                  "result (queued: new, updated: new content, unchanged: a re-post)", labels=["result"])
        for result in ("queued", "updated", "unchanged"):
            sub.add_metric([result], m.get(f"submitted:{result}", 0))
        yield sub
        proc = CounterMetricFamily("newsdedup_articles_processed", "Articles the workers finished, by result",
                                   labels=["result"])
        for result in ("done", "failed"):
            proc.add_metric([result], m.get(f"processed:{result}", 0))
        yield proc
        yield CounterMetricFamily("newsdedup_duplicates_found", "Processed articles that joined a cluster of 2+",
                                  value=m.get("duplicates", 0))
        yield CounterMetricFamily("newsdedup_cluster_merges", "Existing clusters fused into another",
                                  value=m.get("merges", 0))
        yield CounterMetricFamily("newsdedup_dead_lettered", "Articles moved to the dead-letter stream",
                                  value=m.get("dead_lettered", 0))
        yield CounterMetricFamily("newsdedup_articles_expired", "Articles removed by retention (NEWSDEDUP_RETENTION)",
                                  value=int(expired or 0))
        yield CounterMetricFamily("newsdedup_redis_errors", "Redis errors seen by API processes",
                                  value=m.get("redis_errors", 0))
        q = stats["queue"]
        queue = GaugeMetricFamily("newsdedup_queue_articles", "Articles in the queue by state (failed: "
                                  "dead-lettered and not retried yet)", labels=["state"])
        for state in ("pending", "in_flight", "failed"):
            queue.add_metric([state], q[state])
        queue.add_metric(["dead_letter_stream"], int(dead))
        yield queue
        lag = 0.0
        if oldest:
            lag = max(0.0, time.time() - int(oldest[0][0].split(b"-")[0]) / 1000)
        yield GaugeMetricFamily("newsdedup_queue_lag_seconds", "Age of the oldest entry waiting in the queue",
                                value=lag)
        yield GaugeMetricFamily("newsdedup_articles", "Articles stored", value=stats["articles"])
        clusters = GaugeMetricFamily("newsdedup_clusters", "Clusters", labels=["kind"])
        clusters.add_metric(["all"], stats["clusters"])
        clusters.add_metric(["with_duplicates"], stats["clusters_with_duplicates"])
        yield clusters
        lat = {k.split(":", 1)[1]: v for k, v in m.items() if k.startswith("latency_le:")}
        yield _histogram("newsdedup_processing_latency_seconds", "From submit (queue entry) to done",
                         LATENCY_BUCKETS, lat, m.get("latency_sum_ms", 0) / 1000)
        requests = CounterMetricFamily("newsdedup_http_requests", "HTTP requests by endpoint, method and status",
                                       labels=["endpoint", "method", "status"])
        per_endpoint: dict[str, dict[str, int]] = {}
        for k, v in sorted(m.items()):
            if k.startswith("http:"):
                _, endpoint, method, status = k.split(":", 3)
                requests.add_metric([endpoint, method, status], v)
            elif k.startswith("http_le:"):
                _, endpoint, bound = k.split(":", 2)
                per_endpoint.setdefault(endpoint, {})[bound] = v
        yield requests
        duration = HistogramMetricFamily("newsdedup_http_request_duration_seconds", "HTTP request duration",
                                         labels=["endpoint"])
        for endpoint, per_bucket in sorted(per_endpoint.items()):
            _histogram("", "", HTTP_BUCKETS, per_bucket, m.get(f"http_sum_us:{endpoint}", 0) / 1e6,
                       {"endpoint": endpoint}, family=duration)
        yield duration


def exposition(client: Client, dedup: Dedup) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client, dedup))
    return generate_latest(registry)
