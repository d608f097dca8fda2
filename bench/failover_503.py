"""How long a request waits for its 503 when the master of the data slot dies or freezes (local 3+3 cluster).

    .venv/bin/python bench/failover_503.py [--timeout 1.0]

For each case (SIGKILL: the node refuses connections; SIGSTOP: it accepts nothing and answers nothing)
it posts one article right after the fault with NEWSDEDUP_REDIS_TIMEOUT=--timeout and prints the
status and seconds, then heals the cluster. A figure of the plumbing, not a throughput benchmark.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.ops.redis_cluster import RedisCluster
from service.app import create_app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=1.0)
    timeout = ap.parse_args().timeout
    with RedisCluster(node_timeout_ms=3000) as cluster:
        for case in ("SIGKILL", "SIGSTOP"):
            cfg = Config.from_env({}, redis_url=cluster.url, rate_limit=0, redis_timeout=timeout)
            api = create_app(cfg).test_client()
            first = api.post("/v1/articles", json={"id": f"{case}-0", "text": "words to store before"})
            assert first.status_code == 202, first.data
            probe = cluster.client()
            owner = next(n for n in cluster.nodes if n.port == probe.get_node_from_key(keys.IDS).port)
            probe.close()
            if case == "SIGKILL":
                killed = cluster.kill_master(cluster.live_masters().index(owner))
            else:
                assert owner.pid is not None
                os.kill(owner.pid, signal.SIGSTOP)
            started = time.monotonic()
            r = api.post("/v1/articles", json={"id": f"{case}-1", "text": "words to store during the fault"})
            print(f"{case} of the data slot's master, NEWSDEDUP_REDIS_TIMEOUT={timeout}: {r.status_code} "
                  f"(Retry-After {r.headers.get('Retry-After')}) in {time.monotonic() - started:.2f} s")
            if case == "SIGKILL":
                cluster.wait_for_failover(killed)
                cluster.restart_node(killed)
            else:
                assert owner.pid is not None
                os.kill(owner.pid, signal.SIGCONT)
            cluster.wait_healthy()


if __name__ == "__main__":
    main()
