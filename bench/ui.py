"""Render times of the web pages on a large index (issue 14's goal: cluster list and cluster page < 300 ms).

    .venv/bin/python bench/ui.py [--articles 100000] [--repeat 20] [--synthetic]

Fills a private redis-server through the engine itself (Dedup.submit + Worker steps, no HTTP),
with the bench corpus (real articles from ../shared/data when present, then synthetic ones with
~20 % planted near-duplicates), then renders each page with Flask's test client in this process
(Jinja rendering and every Redis read included; no network) and prints a markdown table of
median / p95 / max milliseconds. Nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import Corpus, drain  # noqa: E402

from newsdedup import keys  # noqa: E402
from newsdedup.articles import parse_article  # noqa: E402
from newsdedup.config import Config  # noqa: E402
from newsdedup.dedup import Dedup  # noqa: E402
from newsdedup.ops.redis_server import RedisServer  # noqa: E402
from service.app import create_app  # noqa: E402
from workers.consumer import Worker  # noqa: E402


def fill(r: redis.Redis, cfg: Config, corpus: Corpus, n: int, batch: int = 500) -> float:
    d = Dedup(r, cfg)
    worker = Worker(r, cfg, name="bench-ui")
    t0 = time.monotonic()
    for i, arts in enumerate(corpus.batches(n, batch)):
        d.submit([parse_article(a.payload()) for a in arts])
        drain(worker, time.monotonic() + 600)
        if i % 20 == 0:
            print(f"  {min(n, (i + 1) * batch)} / {n} articles indexed ({time.monotonic() - t0:.0f} s)",
                  file=sys.stderr)
    return time.monotonic() - t0


def timed(client: object, path: str, repeat: int) -> tuple[float, float, float, int]:
    times = []
    status = 0
    for _ in range(repeat):
        t = time.perf_counter()
        resp = client.get(path)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t) * 1000)
        status = resp.status_code
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], times[-1], status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--synthetic", action="store_true", help="synthetic articles only")
    args = ap.parse_args()
    corpus = Corpus.build(synthetic_only=args.synthetic)
    with RedisServer(data_dir=None) as server:
        r = redis.Redis.from_url(server.url)
        cfg = Config.from_env({}, redis_url=server.url)
        print(f"indexing {corpus.describe(args.articles)} articles ...", file=sys.stderr)
        took = fill(r, cfg, corpus, args.articles)
        app = create_app(cfg.replace(rate_limit=0), r)
        c = app.test_client()
        biggest = [x.decode() for x in r.zrevrange(keys.CLUSTER_SIZES, 0, 0)][0]
        recent = [x.decode() for x in r.zrevrange(keys.CLUSTERS, 0, 0)][0]
        members = sorted(int(m) for m in r.smembers(keys.cluster_members(recent)))
        a_id, b_id = (r.hget(keys.article(m), "id").decode() for m in members[:2])  # type: ignore[union-attr]
        word = corpus.get(args.articles // 2).title.split()[0][:4]
        pages = [
            ("/ui/clusters", "/ui/clusters"),
            ("/ui/clusters?page=200", "/ui/clusters?page=200"),
            ("/ui/clusters?min_size=1", "/ui/clusters?min_size=1"),
            ("/ui/clusters?min_size=3", "/ui/clusters?min_size=3"),
            ("/ui/clusters?q=<article id>", "/ui/clusters?q=" + quote(a_id)),
            (f"/ui/clusters?q={word} (headline words)", "/ui/clusters?min_size=1&q=" + quote(word)),
            (f"/ui/clusters/<largest: {biggest}>", f"/ui/clusters/{biggest}"),
            (f"/ui/clusters/<most recent: {recent}>", f"/ui/clusters/{recent}"),
            ("/ (overview)", "/"),
            ("/ui/compare/<a>/<b>", f"/ui/compare/{quote(a_id)}/{quote(b_id)}"),
        ]
        stats = Dedup(r, cfg).stats()
        print(f"\n{args.articles} articles ({corpus.describe(args.articles)}) indexed in {took:.0f} s: "
              f"{stats['clusters']} clusters, {stats['clusters_with_duplicates']} with duplicates, largest "
              f"{int(r.zscore(keys.CLUSTER_SIZES, biggest) or 0)} members; {args.repeat} renders per page, "
              "Flask test client in process\n")
        print("| page | median ms | p95 ms | max ms | status |")
        print("|---|---:|---:|---:|---:|")
        for label, path in pages:
            med, p95, worst, status = timed(c, path, args.repeat)
            print(f"| `{label}` | {med:.1f} | {p95:.1f} | {worst:.1f} | {status} |")
        r.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
