"""How fast the service reacts: stopping workers, answering while Redis is frozen. Prints figures only.

    .venv/bin/python bench/latency.py [--repeat 3] [--articles 300] [--redis-timeout 3]

The tests assert what these must do (exit 0, answer 503 / 200, never hang past a bound derived
from NEWSDEDUP_REDIS_TIMEOUT); how long it takes depends on the machine, so it is measured here:

* busy worker stop: a ``newsdedup worker`` (batches of 50) holding a batch gets SIGTERM; seconds
  until it has exited (it finishes the batch first);
* idle worker stop: the same on an empty queue, while it waits in XREADGROUP;
* frozen Redis: ``newsdedup serve`` with NEWSDEDUP_REDIS_TIMEOUT=--redis-timeout; Redis gets
  SIGSTOP; seconds for POST /v1/articles (503), GET /readyz (503) and GET /healthz (200).

Everything runs against a throwaway redis-server on 127.0.0.1; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import Service, Synthetic, install_exit_signals, wait_until

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.ops.redis_server import RedisServer, free_port

STEP_DEADLINE = 120.0


def env(redis_url: str, **settings: str) -> dict[str, str]:
    """This environment without NEWSDEDUP_* settings, plus REDIS_URL and ``settings``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_") and k != "REDIS_URL"}
    return {**out, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", **settings}


def in_xreadgroup(r: Any) -> bool:
    return any(c.get("cmd") == "xreadgroup" for c in r.client_list())


def holds_a_batch(r: Any) -> bool:
    try:
        return int(r.xpending(keys.QUEUE, keys.GROUP)["pending"]) > 0
    except Exception:  # the group does not exist yet
        return False


def timed_stop(svc: Service) -> float:
    assert svc.proc is not None
    t0 = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    rc = svc.proc.wait(STEP_DEADLINE)
    took = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"worker exited {rc}:\n{svc.log_tail()}")
    return took


def worker_stops(server: RedisServer, logs: Path, articles: int, busy: bool) -> float:
    r = server.client()
    r.flushall()
    if busy:
        syn = Synthetic()
        Dedup(r, Config(redis_url=server.url)).submit(
            [parse_article(syn.article(k).payload()) for k in range(articles)])
    svc = Service([sys.executable, "-m", "newsdedup.cli", "worker"],
                  env(server.url, NEWSDEDUP_WORKER_BATCH="50"), logs / "worker.log").start()
    try:
        ready = holds_a_batch if busy else in_xreadgroup
        if not wait_until(lambda: ready(r), STEP_DEADLINE, interval=0.005):
            raise SystemExit(f"the worker never got going:\n{svc.log_tail()}")
        return timed_stop(svc)
    finally:
        svc.stop()


def timed_request(url: str, method: str = "GET", body: Any = None) -> tuple[int, float]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=STEP_DEADLINE) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    return status, time.monotonic() - t0


def frozen_redis(server: RedisServer, logs: Path, redis_timeout: float, repeat: int) -> dict[str, list[float]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = Service([sys.executable, "-m", "newsdedup.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                   "--processes", "1", "--threads", "4"],
                  env(server.url, NEWSDEDUP_REDIS_TIMEOUT=str(redis_timeout)), logs / "api.log").start()
    out: dict[str, list[float]] = {"POST /v1/articles": [], "GET /readyz": [], "GET /healthz": []}
    try:
        for _ in range(repeat):
            def ready() -> bool:
                try:
                    return timed_request(base + "/readyz")[0] == 200
                except OSError:
                    return False

            if not wait_until(ready, STEP_DEADLINE):
                raise SystemExit(f"the API never became ready:\n{api.log_tail()}")
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
            try:
                calls: list[tuple[str, Callable[[], tuple[int, float]]]] = [
                    ("POST /v1/articles", lambda: timed_request(base + "/v1/articles", "POST", {"text": "words"})),
                    ("GET /readyz", lambda: timed_request(base + "/readyz")),
                    ("GET /healthz", lambda: timed_request(base + "/healthz"))]
                for name, call in calls:
                    status, took = call()
                    print(f"  frozen Redis: {name} -> {status} in {took:.2f}s", file=sys.stderr)
                    out[name].append(took)
            finally:
                os.kill(server.pid, signal.SIGCONT)
    finally:
        api.stop()
    return out


def row(name: str, xs: list[float]) -> str:
    return f"| {name} | {len(xs)} | {min(xs):.2f} | {statistics.median(xs):.2f} | {max(xs):.2f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--articles", type=int, default=300, help="queued for the busy-worker stop")
    ap.add_argument("--redis-timeout", type=float, default=3.0, help="NEWSDEDUP_REDIS_TIMEOUT of the API")
    args = ap.parse_args()
    install_exit_signals()
    results: dict[str, list[float]] = {"busy worker stop (SIGTERM)": [], "idle worker stop (SIGTERM)": []}
    with tempfile.TemporaryDirectory(prefix="nd-latency-") as tmp, RedisServer(data_dir=None) as server:
        logs = Path(tmp)
        for i in range(args.repeat):
            for busy, name in ((True, "busy worker stop (SIGTERM)"), (False, "idle worker stop (SIGTERM)")):
                results[name].append(worker_stops(server, logs, args.articles, busy))
                print(f"  run {i + 1}: {name} {results[name][-1]:.2f}s", file=sys.stderr)
        results.update(frozen_redis(server, logs, args.redis_timeout, args.repeat))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; NEWSDEDUP_REDIS_TIMEOUT={args.redis_timeout:g} "
          f"for the API\n")
    print("| measure | runs | min s | median s | max s |\n|---|---|---|---|---|")
    for name, xs in results.items():
        print(row(name, xs))


if __name__ == "__main__":
    main()
