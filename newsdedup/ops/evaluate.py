"""``newsdedup eval``: score the engine on a labelled set, optionally beside off-the-shelf baselines.

A labelled set is JSON lines of articles as a client would POST them plus
``label`` (same label = same story) and optionally ``family`` (how a copy was
made; ``original``, ``hard_negative_*``, ...). The engine runs exactly as the
service does (same validation, same queue, same worker code) against a
throwaway Redis, with the default configuration unless the environment says
otherwise.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from math import comb
from pathlib import Path
from typing import Any

from newsdedup import keys
from newsdedup.articles import KNOWN_FIELDS, parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.errors import ValidationError
from workers.consumer import process_available


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    p = str(path)
    opener: Any = gzip.open if p.endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# ------------------------------------------------------------------ scoring


def score(rows: list[dict[str, Any]], predicted: Mapping[str, str | None]) -> dict[str, Any]:
    """Pairwise precision/recall/F1, ARI, recall per family and hard-negative false merges."""
    truth = {r["id"]: r["label"] for r in rows}
    pred = {i: (predicted.get(i) or f"__single__{i}") for i in truth}
    joint = Counter((truth[i], pred[i]) for i in truth)
    tp = sum(comb(n, 2) for n in joint.values())
    t_pairs = sum(comb(n, 2) for n in Counter(truth.values()).values())
    p_pairs = sum(comb(n, 2) for n in Counter(pred.values()).values())
    precision = tp / p_pairs if p_pairs else 1.0
    recall = tp / t_pairs if t_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n_pairs = comb(len(truth), 2)
    expected = t_pairs * p_pairs / n_pairs if n_pairs else 0.0
    max_index = (t_pairs + p_pairs) / 2
    ari = (tp - expected) / (max_index - expected) if max_index != expected else 1.0
    original = {r["label"]: r["id"] for r in rows if r.get("family") in ("original", "natural_clean")}
    fam_hits: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        fam = r.get("family", "?")
        if fam in ("original", "natural_clean") or fam.startswith("hard_negative"):
            continue
        o = original.get(r["label"])
        if o:
            fam_hits[fam].append(int(pred[r["id"]] == pred[o]))
    members: dict[str, set[str]] = defaultdict(set)
    for i in truth:
        members[pred[i]].add(truth[i])
    negs = [r for r in rows if str(r.get("family", "")).startswith("hard_negative")]
    false_merge = sum(len(members[pred[r["id"]]]) > 1 for r in negs)
    return {
        "articles": len(truth), "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
        "ari": round(ari, 4),
        "recall_by_family": {f: round(sum(v) / len(v), 3) for f, v in sorted(fam_hits.items())},
        "hard_negative_false_merge_rate": round(false_merge / len(negs), 4) if negs else None,
    }


# ------------------------------------------------------------------ the engine


def run_engine(rows: list[dict[str, Any]], config: Config, batch: int = 500) -> tuple[dict[str, str | None], float]:
    """Cluster ids for every row, as the service assigns them, on a throwaway Redis."""
    import redis

    from newsdedup.ops.redis_server import RedisServer

    with RedisServer(data_dir=None, appendonly=False) as server:
        client: Any = redis.Redis.from_url(server.url)
        cfg = config.replace(redis_url=server.url)
        dedup = Dedup(client, cfg)
        started = time.perf_counter()
        items = []
        for r in rows:
            obj = {k: r[k] for k in KNOWN_FIELDS if k in r}
            try:
                items.append(parse_article(obj, max_text_chars=cfg.max_text_chars, max_id_length=cfg.max_id_length))
            except ValidationError as exc:
                print(f"skipping {r.get('id')!r}: {exc.message}", file=sys.stderr)
        for i in range(0, len(items), batch):
            dedup.submit(items[i:i + batch])
        process_available(client, cfg)
        elapsed = time.perf_counter() - started
        ids = [a.id for a, _ in items]
        nums = client.hmget(keys.IDS, ids) if ids else []
        pipe = client.pipeline(transaction=False)
        for n in nums:
            pipe.hget(keys.article(int(n)), "cluster")
        clusters = pipe.execute()
        out = {i: (c.decode() if c else None) for i, c in zip(ids, clusters)}
        client.close()
    return out, elapsed


# ------------------------------------------------------------------ baselines (what users glue together)


def _naive_shingles(text: str, lang: str) -> set[bytes]:
    if lang == "zh":
        s = re.sub(r"\s+", "", text)
        return {s[i:i + 5].encode() for i in range(max(1, len(s) - 4))}
    w = text.lower().split()
    return {" ".join(w[i:i + 3]).encode() for i in range(max(1, len(w) - 2))}


def _lang(row: dict[str, Any]) -> str:
    if row.get("lang"):
        return str(row["lang"])[:2]
    body = row.get("text") or row.get("html") or ""
    return "zh" if len(re.findall(r"[\u4e00-\u9fff]", body)) > len(body) / 4 else "en"


class _DSU:
    def __init__(self) -> None:
        self.p: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.p.setdefault(x, x)
        while self.p[x] != x:
            self.p[x] = self.p[self.p[x]]
            x = self.p[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.p[self.find(a)] = self.find(b)


def minhash_naive(rows: Iterable[dict[str, Any]], threshold: float) -> dict[str, str]:
    """datasketch MinHash (128 perms) over raw-text shingles, MinHashLSH, connected components."""
    from datasketch import MinHash, MinHashLSH

    lsh, dsu = MinHashLSH(threshold=threshold, num_perm=128), _DSU()
    rows = list(rows)
    for r in rows:
        m = MinHash(num_perm=128)
        m.update_batch(list(_naive_shingles(r.get("text") or r.get("html", ""), _lang(r))))
        for other in lsh.query(m):
            dsu.union(r["id"], other)
        lsh.insert(r["id"], m)
    return {r["id"]: dsu.find(r["id"]) for r in rows}


def simhash_naive(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The simhash package's default features, SimhashIndex k=3, connected components."""
    import logging

    from simhash import Simhash, SimhashIndex

    logging.getLogger("simhash").setLevel(logging.ERROR)
    index, dsu = SimhashIndex([], k=3), _DSU()
    rows = list(rows)
    for r in rows:
        h = Simhash(r.get("text") or r.get("html", ""))
        for other in index.get_near_dups(h):
            dsu.union(r["id"], other)
        index.add(r["id"], h)
    return {r["id"]: dsu.find(r["id"]) for r in rows}


# ------------------------------------------------------------------ command


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="newsdedup eval", description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("set", help="labelled set: JSON lines (.jsonl or .jsonl.gz) with id, text|html, label")
    ap.add_argument("--compare", action="store_true", help="also run the off-the-shelf datasketch/simhash baselines")
    ap.add_argument("--out", help="write predictions ({id, cluster_id} per line) here")
    return ap


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    if not isinstance(args, argparse.Namespace):
        args = build_parser().parse_args(args)
    rows = read_jsonl(args.set)
    missing = [r.get("id") for r in rows if "label" not in r or "id" not in r]
    if missing:
        print(f"newsdedup eval: error: {len(missing)} rows lack id or label (e.g. {missing[0]!r})", file=sys.stderr)
        return 2
    config = Config.from_env()
    pred, elapsed = run_engine(rows, config)
    report: dict[str, Any] = {"set": str(args.set), "newsdedup": score(rows, pred)}
    report["newsdedup"]["seconds"] = round(elapsed, 2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            for i, c in pred.items():
                fh.write(json.dumps({"id": i, "cluster_id": c}, ensure_ascii=False) + "\n")
    if args.compare:
        for name, fn in (("minhash-naive@0.8", lambda: minhash_naive(rows, 0.8)),
                         ("minhash-naive@0.5", lambda: minhash_naive(rows, 0.5)),
                         ("simhash-naive@k3", lambda: simhash_naive(rows))):
            t0 = time.perf_counter()
            report[name] = score(rows, fn())
            report[name]["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
