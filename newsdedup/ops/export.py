"""``newsdedup export``: every cluster with its members, read straight from Redis (REDIS_URL).

Streams: clusters come from ZSCAN pages of the cluster sets, each page's
members are read in a few batched calls and written out at once, so memory
stays flat whatever the number of articles (it grows with the largest page,
i.e. the largest cluster). A member's similarity is the estimated Jaccard of
its signature with the canonical member's.

ZSCAN returns every cluster that exists for the whole export; a cluster that
changes meanwhile may show up in its old or new state, or (rarely, when Redis
rehashes) twice. For a snapshot, export from a replica or a quiet service.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.errors import ConfigError
from newsdedup.index.minhash import jaccard
from newsdedup.storage import blobs
from newsdedup.storage.records import decoded, unpack_sig
from newsdedup.storage.redis_client import connect
from newsdedup.storage.scripts import Scripts
from newsdedup.storage.txn import storage_errors

PAGE = 500
FIELDS = ("id", "title", "url", "source", "published_at", "sig")
CSV_COLUMNS = ("cluster_id", "cluster_size", "canonical", "id", "title", "url", "source", "published_at",
               "similarity")


def _scan(r: Any, key: str) -> Iterator[list[str]]:
    """Pages of members of a sorted set (ZSCAN: constant memory, no long Redis command)."""
    cursor = 0
    while True:
        cursor, rows = r.zscan(key, cursor, count=PAGE)
        if rows:
            yield [m.decode() for m, _ in rows]
        if cursor == 0:
            return


def clusters(r: Any, cfg: Config, min_size: int = 2) -> Iterator[dict[str, Any]]:
    """Each cluster of at least ``min_size`` members as ``{cluster_id, size, canonical_id, members}``."""
    scripts = Scripts(r)
    sources = [keys.CLUSTERS] + ([keys.SINGLES] if min_size <= 1 else [])
    for source in sources:
        for page in _scan(r, source):
            groups: list[tuple[str, int | None, list[int]]] = []
            pipe = r.pipeline(transaction=False)
            for cid in page:
                pipe.hget(keys.cluster(cid), "canonical").smembers(keys.cluster_members(cid))
            replies = pipe.execute()
            for i, cid in enumerate(page):
                canonical, members = replies[2 * i], replies[2 * i + 1]
                if members:  # explicit (a single may be one: what is left of a cluster, or a re-posted article)
                    if len(members) >= min_size:
                        groups.append((cid, int(canonical) if canonical else None, sorted(int(m) for m in members)))
                elif source == keys.SINGLES and (n := keys.cluster_number(cid)) is not None:
                    groups.append((cid, n, [n]))  # implicit: c<n> of its only article
            numbers = [n for _, _, ms in groups for n in ms]
            found = scripts.hmget_many([keys.article(n) for n in numbers], FIELDS)
            legacy = [{b"sig": row[5]} if row[5] is not None else {} for row in found]
            for row, got in zip(found, blobs.read(r, numbers, ("sig",), legacy)):
                row[5] = got.get(b"sig")  # the signature lives in the article's blob
            rows = dict(zip(numbers, found))
            for cid, canonical, ms in groups:
                yield _record(cfg, cid, canonical, ms, rows)


def _record(cfg: Config, cid: str, canonical: int | None, ms: list[int], rows: dict[int, list[bytes | None]]
            ) -> dict[str, Any]:
    csig = unpack_sig(rows[canonical][5] or b"", cfg.num_perm) if canonical in rows else None
    members = []
    for n in ms:
        row = rows[n]
        if row[0] is None:  # deleted while exporting
            continue
        sig = unpack_sig(row[5] or b"", cfg.num_perm)
        sim = None
        if n == canonical:
            sim = 1.0
        elif csig is not None and sig is not None:
            sim = round(float(jaccard(csig, sig[None, :])[0]), 4)
        members.append({"id": decoded(row[0]), "title": decoded(row[1]) or "", "url": decoded(row[2]) or None,
                        "source": decoded(row[3]) or None, "published_at": decoded(row[4]) or None,
                        "similarity": sim, "canonical": n == canonical})
    canonical_id = next((m["id"] for m in members if m["canonical"]), None)
    return {"cluster_id": cid, "size": len(members), "canonical_id": canonical_id, "members": members}


def write(records: Iterator[dict[str, Any]], out: IO[str], fmt: str, progress: Any = None) -> tuple[int, int]:
    """Write clusters as JSON lines (one cluster a line) or CSV (one member a row); (clusters, members)."""
    n_clusters = n_members = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    for rec in records:
        n_clusters += 1
        n_members += len(rec["members"])
        if writer is not None:
            for m in rec["members"]:
                writer.writerow((rec["cluster_id"], rec["size"], "1" if m["canonical"] else "0", m["id"], m["title"],
                                 m["url"] or "", m["source"] or "", m["published_at"] or "",
                                 "" if m["similarity"] is None else m["similarity"]))
        else:
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if progress is not None:
            progress.update(1)
    return n_clusters, n_members


def export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    config = Config.from_env()
    if args.min_size < 1:
        raise ConfigError("--min-size must be at least 1")
    r = connect(config, read_margin=30.0)  # long ZSCAN/SMEMBERS replies on a big index
    with storage_errors():
        total = int(r.zcard(keys.CLUSTERS)) + (int(r.zcard(keys.SINGLES)) if args.min_size <= 1 else 0)
        out: IO[str] = sys.stdout if args.out in (None, "-") else open(  # noqa: SIM115 - closed below
            Path(args.out), "w", encoding="utf-8", newline="")
        try:
            with tqdm(total=total, desc="export", unit=" clusters", file=sys.stderr,
                      disable=not sys.stderr.isatty()) as bar:
                n_clusters, n_members = write(clusters(r, config, args.min_size), out, args.format, bar)
        finally:
            if out is not sys.stdout:
                out.close()
    print(json.dumps({"clusters": n_clusters, "articles": n_members}), file=sys.stderr)
    return 0
