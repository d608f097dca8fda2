"""Bytes per article in its hash and in its blob (issue 13: the bulky fields move to partition slots).

    .venv/bin/python bench/blob_memory.py [--articles 1000]

Indexes ``--articles`` bench-corpus articles (real ones from ../shared/data when present, else
synthetic) in-process into a private redis-server, then prints, averaged over every article:
``MEMORY USAGE <key> SAMPLES 0`` of the article hash and of the blob, of the same fields in one hash
(the layout before blobs), and ``HSTRLEN`` of each field, largest first. A figure, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import Corpus, drain  # noqa: E402

from newsdedup import keys  # noqa: E402
from newsdedup.articles import parse_article  # noqa: E402
from newsdedup.config import Config  # noqa: E402
from newsdedup.dedup import Dedup  # noqa: E402
from newsdedup.ops.redis_server import RedisServer  # noqa: E402
from workers.consumer import Worker  # noqa: E402


def sizes(r: Any, ns: list[int]) -> tuple[float, float, Counter[str]]:
    """(average MEMORY USAGE of the article hashes, of the blobs, total HSTRLEN per field)."""
    usage = {"article": 0, "blob": 0}
    fields: Counter[str] = Counter()
    for n in ns:
        for kind, key in (("article", keys.article(n)), ("blob", keys.blob(n))):
            usage[kind] += int(r.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)
            for f in r.hkeys(key):
                fields[f"{kind}.{f.decode()}"] += int(r.hstrlen(key, f))
    return usage["article"] / len(ns), usage["blob"] / len(ns), fields


def one_hash(r: Any, ns: list[int]) -> float:
    """Average MEMORY USAGE of the same fields in one hash, as articles were stored before blobs."""
    total, tmp = 0, "bench:tmp:onehash"
    for n in ns:
        fields = {**r.hgetall(keys.article(n)), **r.hgetall(keys.blob(n))}
        fields.pop(b"ver", None)  # the blob's own version field; the article's ver is kept
        fields[b"ver"] = r.hget(keys.article(n), "ver")
        r.delete(tmp)
        r.hset(tmp, mapping=fields)
        total += int(r.execute_command("MEMORY", "USAGE", tmp, "SAMPLES", "0"))
    r.delete(tmp)
    return total / len(ns)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=1000)
    a = ap.parse_args()
    with RedisServer(data_dir=None, appendonly=False) as srv:
        r = srv.client()
        cfg = Config.from_env({}, redis_url=srv.url)
        d, worker, corpus = Dedup(r, cfg), Worker(r, cfg, name="bench-blobs"), Corpus.build()
        for arts in corpus.batches(a.articles, 500):
            d.submit([parse_article(x.payload()) for x in arts])
            drain(worker, time.monotonic() + 3600)
        ns = sorted(int(v) for v in r.hvals(keys.IDS))
        art, blob, fields = sizes(r, ns)
        print(f"{len(ns)} articles ({len(corpus.real)} real in the corpus), Redis "
              f"{r.info('server')['redis_version']} ({r.info('memory')['mem_allocator']})")
        print(f"MEMORY USAGE per article: article hash {art:.0f} B, blob {blob:.0f} B "
              f"(blob share {blob / (art + blob):.0%})")
        print(f"the same fields in one hash (before blobs): {one_hash(r, ns):.0f} B")
        print("HSTRLEN per article, largest fields first (blob.ver included):")
        for f, total in fields.most_common():
            print(f"  {f:<24} {total / len(ns):8.0f} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
