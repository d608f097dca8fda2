"""Concurrent workers decide exactly what one worker decides.

The same articles (stories with planted copies, the copies of a story next to
each other in the queue so that different workers handle them at the same
moment) are clustered once by four `newsdedup worker` processes racing on a
small batch size, and once by a single in-process consumer on a fresh
database. Both partitions must be the planted truth, and so identical.
"""

from __future__ import annotations

import pytest
import redis

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.ops.redis_server import RedisServer
from tests.procs import (
    Procs,
    band_states,
    check_index_invariants,
    consumer_name,
    consumers,
    make_corpus,
    partition,
    procs,  # noqa: F401 - fixture
    queue_settled,
    statuses,
    wait_until,
    wait_worker_ready,
)
from workers.consumer import process_available

pytestmark = pytest.mark.slow

WORKERS = 4


def test_four_racing_workers_cluster_exactly_like_one(redis_server: RedisServer, redis_client: redis.Redis,
                                                       procs: Procs) -> None:  # noqa: F811
    r = redis_client
    corpus = make_corpus(60, seed=7070, copies=(2, 4), singles=12, together=True)
    truth = corpus.truth()
    items = [parse_article(a) for a in corpus.articles]
    # a band table that starts at one bucket per band and splits every few articles: the
    # workers also race on growing it
    cfg = Config.from_env({}, redis_url=redis_server.url, lsh_bucket_bits=0, lsh_bucket_load=4)

    # four worker processes, all waiting on the empty queue before the first article arrives
    workers = [procs.worker(redis_server.url, f"worker-{i}", NEWSDEDUP_WORKER_BATCH=2,
                            NEWSDEDUP_VISIBILITY_TIMEOUT=5, NEWSDEDUP_LSH_BUCKET_BITS=0,
                            NEWSDEDUP_LSH_BUCKET_LOAD=4) for i in range(WORKERS)]
    for w in workers:
        wait_worker_ready(r, w)
    Dedup(r, cfg).submit(items)
    wait_until(lambda: [w.check_alive() for w in workers] and queue_settled(r), 120, interval=0.1,
               message="the four workers to process everything")
    assert set(statuses(r, corpus.ids()).values()) == {"done"}
    check_index_invariants(r)
    assert min(st["level"] for st in band_states(r)) >= 4  # each group grew from 1 to 16+ buckets per band
    raced = partition(r)
    # (Redis 6.2 lists a consumer only once something was delivered to it)
    assert {consumer_name(w) for w in workers} <= set(consumers(r)), "not every worker took part"
    for w in workers:
        assert w.terminate(timeout=30) == 0, w.log()  # idle: a hang guard, not a speed claim

    # the same submissions in the same order, one consumer, a fresh database
    r.flushall()
    Dedup(r, cfg).submit(items)
    process_available(r, cfg)
    assert set(statuses(r, corpus.ids()).values()) == {"done"}
    assert int(r.hget(keys.META, "queued") or 0) == 0
    check_index_invariants(r)
    alone = partition(r)

    assert raced == alone, (f"racing workers: {sorted(map(sorted, raced - alone))} | "
                            f"one worker: {sorted(map(sorted, alone - raced))}")
    assert alone == truth, f"extra: {sorted(map(sorted, alone - truth))} missing: {sorted(map(sorted, truth - alone))}"
