"""What NEWSDEDUP_WAIT_REPLICAS costs a submit: POST /v1/articles latency with WAIT 0 and 1 on a local master + replica.

    .venv/bin/python bench/wait_cost.py [--n 300]

In-process API (Flask test client), one article per request, a master and a replica on loopback: the
figure is the extra round trip and replication delay of WAIT, not a throughput benchmark.
"""

from __future__ import annotations

import argparse
import statistics
import time

from newsdedup.config import Config
from newsdedup.ops.redis_server import RedisServer
from service.app import create_app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    n = ap.parse_args().n
    with RedisServer(data_dir=None, appendonly=False) as master, \
            RedisServer(data_dir=None, appendonly=False, extra_args=["--replicaof", "127.0.0.1", str(master.port)]) \
            as replica:
        link = replica.client(decode_responses=True)
        deadline = time.monotonic() + 30
        while link.info("replication").get("master_link_status") != "up" and time.monotonic() < deadline:
            time.sleep(0.05)
        for wait in (0, 1, 0, 1):
            api = create_app(Config.from_env({}, redis_url=master.url, rate_limit=0, wait_replicas=wait)).test_client()
            ms = []
            for i in range(n):
                t0 = time.perf_counter()
                r = api.post("/v1/articles", json={"id": f"w{wait}-{i}-{time.time_ns()}", "title": "T",
                                                   "text": f"story number {i} about the council budget and more"})
                ms.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 202, r.data
            ms.sort()
            print(f"WAIT_REPLICAS={wait}: {n} submits, median {statistics.median(ms):.2f} ms, "
                  f"p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms")


if __name__ == "__main__":
    main()
