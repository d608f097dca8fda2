"""Throughput and memory of ``newsdedup export`` (issue 15).

    python bench/export.py [--articles 100000] [--format jsonl] [--min-size 2]

Fills a throwaway Redis through the engine directly (``Dedup.submit`` then the
worker loop in this process, not HTTP; untimed), with synthetic articles (20 %
near-duplicates, see benchlib), then runs ``newsdedup export`` as a subprocess
with REDIS_URL pointing there, twice (min-size 2, then 1: every article) and
prints, per run, clusters and articles written, seconds, articles per second
and the subprocess's peak RSS. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Corpus, drain  # noqa: E402

from newsdedup.articles import parse_article  # noqa: E402
from newsdedup.config import Config  # noqa: E402
from newsdedup.dedup import Dedup  # noqa: E402
from newsdedup.ops.redis_server import RedisServer  # noqa: E402
from workers.consumer import Worker  # noqa: E402


def fill(r: redis.Redis, n: int) -> float:
    cfg = Config()
    d = Dedup(r, cfg)
    w = Worker(r, cfg, name="bench-export")
    corpus = Corpus.build(synthetic_only=True)
    t0 = time.monotonic()
    for batch in corpus.batches(n, 500):
        d.submit([parse_article(a.payload()) for a in batch])
        drain(w, time.monotonic() + 3600)
        print(f"filled {batch[-1].id}", file=sys.stderr, flush=True)
    return time.monotonic() - t0


def export(url: str, fmt: str, min_size: int, out: Path) -> dict[str, float]:
    env = {**os.environ, "REDIS_URL": url}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "newsdedup.cli", "export", "--format", fmt, "--min-size",
                           str(min_size), "--out", str(out)], env=env, capture_output=True, text=True, check=True)
    seconds = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(proc.stderr.strip().splitlines()[-1])
    return {"min_size": min_size, **summary, "seconds": round(seconds, 2),
            "articles_per_second": round(summary["articles"] / seconds),
            "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            "peak_rss_mb": round(after.ru_maxrss / 1024, 1), "output_mb": round(out.stat().st_size / 2**20, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=100_000)
    ap.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    args = ap.parse_args()
    with RedisServer(die_with_parent=True) as server, tempfile.TemporaryDirectory() as tmp:
        r = server.client(socket_timeout=120)
        filled = fill(r, args.articles)
        print(json.dumps({"articles": args.articles, "fill_seconds": round(filled, 1),
                          "redis_used_memory_mb": round(int(r.info("memory")["used_memory"]) / 2**20, 1)}))
        for min_size in (2, 1):
            print(json.dumps(export(server.url, args.format, min_size, Path(tmp) / f"out.{args.format}")),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
