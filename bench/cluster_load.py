"""Load split and throughput on a Redis Cluster (issue 13, "Figures"): the same articles end to end through the
real engine on one node and on a local 3-master cluster, in one run.

    .venv/bin/python bench/cluster_load.py [--articles 30000] [--workers 2] [--rounds 2] [--masters 3]
                                           [--redis-server PATH] [--json bench/results/cluster_load.json]

Each round runs one node and the cluster (``newsdedup.ops.redis_cluster.RedisCluster``, no replicas, AOF on
as ``newsdedup up`` runs Redis) in alternating order, each empty at the start: this process feeds ``Dedup.submit`` (what
POST /v1/articles runs) with ``retention.Stream`` articles while ``--workers`` forked processes run
``Worker.step`` (what the workers of ``newsdedup up`` run), all through ``storage.redis_client.connect`` (the
cluster client on the cluster). Posting pauses while more than ``--backlog`` articles are queued. The clock
runs from the first submit until every article is processed.

Figures per mode: articles/s (wall), and per master the Redis CPU per article (``INFO cpu`` user + sys
delta over the run / articles) against the single node's in the same round; the stream commands' share of
each master's Redis CPU time (``INFO commandstats`` usec of XADD, XACK, XDEL inside scripts and of XREADGROUP,
XAUTOCLAIM, XCLAIM, XPENDING from the workers, against the ``INFO cpu`` delta), to see whether the one queue
stream is a hot spot.
Nothing asserts; 2 shared cores: compare rows of one round only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import install_exit_signals
from retention import Stream

from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.ops.redis_cluster import RedisCluster
from newsdedup.ops.redis_server import RedisServer
from newsdedup.storage.redis_client import connect
from newsdedup.text.tokens import warm_up
from workers.consumer import Worker

SUBMIT_BATCH = 500
STREAM_COMMANDS = ("xadd", "xack", "xdel", "xreadgroup", "xautoclaim", "xclaim", "xpending", "xlen", "xinfo")


def _worker(url: str, index: int, done: Any, stop: Any) -> None:
    warm_up()
    cfg = Config(redis_url=url)
    w = Worker(connect(cfg, read_margin=5.0), cfg, name=f"load-{index}")
    while not stop.is_set():
        got = w.step(block_ms=200)
        if got:
            with done.get_lock():
                done.value += got


def node_stats(clients: dict[int, Any]) -> dict[int, dict[str, Any]]:
    out = {}
    for port, c in clients.items():
        info = c.info("all")
        out[port] = {"cpu": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
                     "usec": {k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in info.items()
                              if k.startswith("cmdstat_")},
                     "used_memory": int(info["used_memory"]), "keys": int(info.get("db0", {}).get("keys", 0))}
    return out


def run_one(url: str, masters: dict[int, Any], n: int, workers: int, backlog: int) -> dict[str, Any]:
    """Feed n articles and wait until processed; Redis CPU and command time per master over that span."""
    ctx = mp.get_context("fork")
    done, stop = ctx.Value("q", 0), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(url, i, done, stop), daemon=True) for i in range(workers)]
    for p in procs:
        p.start()
    cfg = Config(redis_url=url)
    d, stream = Dedup(connect(cfg), cfg), Stream()
    before = node_stats(masters)
    t0 = time.monotonic()
    fed = 0
    try:
        while done.value < n:
            if fed < n and fed - done.value < backlog:
                k = min(SUBMIT_BATCH, n - fed)
                d.submit([parse_article(stream.article(i).payload()) for i in range(fed, fed + k)])
                fed += k
            else:
                time.sleep(0.05)
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a worker process died (its traceback is on stderr)")
        secs = time.monotonic() - t0
    finally:
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    after = node_stats(masters)
    per = {}
    for port in masters:
        a, b = before[port], after[port]
        usec = {c: b["usec"][c] - a["usec"].get(c, 0) for c in b["usec"]}
        cpu_s = b["cpu"] - a["cpu"]
        stream_us = sum(usec.get(c, 0) for c in STREAM_COMMANDS)
        per[port] = {"cpu_us": cpu_s * 1e6 / n, "stream_share": stream_us / max(1.0, cpu_s * 1e6),
                     "used_memory": b["used_memory"], "keys": b["keys"],
                     "top": sorted(((c, v / n) for c, v in usec.items() if v), key=lambda t: -t[1])[:8]}
    return {"articles": n, "seconds": secs, "aps": n / secs, "masters": per}


def single(a: argparse.Namespace) -> dict[str, Any]:
    with RedisServer(die_with_parent=True) as server:
        c = server.client()
        out = run_one(server.url, {int(server.port or 0): c}, a.articles, a.workers, a.backlog)
        out["version"] = c.info("server")["redis_version"]
        c.close()
    return out


def cluster(a: argparse.Namespace) -> dict[str, Any]:
    with RedisCluster(masters=a.masters, replicas=0, die_with_parent=True) as rc:
        ms = {int(m.port or 0): m.client() for m in rc.live_masters()}
        out = run_one(f"redis://127.0.0.1:{next(iter(ms))}/0", ms, a.articles, a.workers, a.backlog)
        for m in ms.values():
            m.close()
    return out


def with_binary(binary: str | None) -> None:
    """Make ``find_redis_server()`` (PATH first) pick ``binary`` for every server this process starts."""
    if binary:
        d = tempfile.mkdtemp(prefix="nd-bin-")
        os.symlink(os.path.abspath(binary), os.path.join(d, "redis-server"))
        os.environ["PATH"] = d + os.pathsep + os.environ.get("PATH", "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--articles", type=int, default=30_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--masters", type=int, default=3)
    p.add_argument("--backlog", type=int, default=3_000)
    p.add_argument("--redis-server", default=None, help="binary for every node (default: find_redis_server())")
    p.add_argument("--json", default="bench/results/cluster_load.json")
    a = p.parse_args(argv)
    install_exit_signals()
    with_binary(a.redis_server)
    rounds = []
    for k in range(a.rounds):
        row: dict[str, Any] = {}
        for mode in (("single", "cluster") if k % 2 == 0 else ("cluster", "single")):  # alternate the order
            row[mode] = single(a) if mode == "single" else cluster(a)
        row["version"] = row["single"].pop("version")
        row["first"] = "single" if k % 2 == 0 else "cluster"
        rounds.append(row)
        show(k + 1, row)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"args": vars(a), "rounds": rounds}, indent=1))
    return 0


def show(k: int, row: dict[str, Any]) -> None:
    s, c = row["single"], row["cluster"]
    base = next(iter(s["masters"].values()))
    print(f"\nround {k} (redis-server {row['version']}, {s['articles']:,} articles each, {row['first']} first):")
    print(f"  throughput: one node {s['aps']:,.0f} a/s, cluster {c['aps']:,.0f} a/s ({c['aps'] / s['aps']:.2f}x)")
    print(f"  Redis CPU per article: one node {base['cpu_us']:.0f} us (stream commands {base['stream_share']:.1%} "
          f"of its CPU)")
    total = 0.0
    for port, m in sorted(c["masters"].items(), key=lambda t: -t[1]["cpu_us"]):
        total += m["cpu_us"]
        print(f"  master :{port}: {m['cpu_us']:.0f} us ({m['cpu_us'] / base['cpu_us']:.2f}x the one node), "
              f"{m['keys']:,} keys, {m['used_memory'] / 2**20:,.0f} MiB, stream commands {m['stream_share']:.1%}; "
              f"top: " + ", ".join(f"{cmd} {us:.0f}" for cmd, us in m["top"][:5]))
    print(f"  cluster total {total:.0f} us ({total / base['cpu_us']:.2f}x the one node)")


if __name__ == "__main__":
    sys.exit(main())
