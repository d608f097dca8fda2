"""The one path that takes articles out of Redis: ``DELETE /v1/articles/<id>`` and the retention sweeper.

A batch of articles goes in one checked, atomic transaction (:class:`newsdedup.storage.txn.Txn`):
record, payload, id mapping, time-index entry, cluster membership, its headline search record,
the line shapes it taught its source's boilerplate state, and counters, all or nothing. A
concurrent change (a worker indexing or clustering one of them, a re-post) fails the checks and
the batch is read again, so nothing is ever half removed and running a removal twice (a sweeper
killed and restarted) is harmless. Right after that transaction, in other slots: the articles'
band entries, one call per band group (the transaction records them as owed in ``nd:unband``,
so a crash in between is paid by the next removal), then their blobs (signature, kept text:
:mod:`newsdedup.storage.blobs`).

Clusters: a cluster keeps its id while any member remains and gets the smallest remaining article
number as canonical member (the rule the clustering transaction uses), and stays explicit when
it is down to one member (listed in nd:singles then); a cluster whose members are all gone is
deleted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.engine.engine import Engine
from newsdedup.errors import StorageUnavailable
from newsdedup.observe import events
from newsdedup.storage import blobs
from newsdedup.storage.records import decoded, now_ms, unpack_sig
from newsdedup.storage.redis_client import Client
from newsdedup.storage.txn import Txn
from newsdedup.text.boilerplate import source_key

FIELDS = ("id", "ver", "iver", "sig", "status", "cluster", "bpsh", "source", "url", "head")
RETRIES = 20


@dataclass
class Removed:
    """What one removal call took away."""

    ids: list[str]
    stale: int = 0  # time-index entries whose article was already gone (dropped too)
    seconds: float = 0.0  # the transaction call that removed them, as this client timed it
    unindex: list[tuple[int, Any]] = field(default_factory=list)  # (number, signature) to take out of the bands


class Removal:
    """Remove articles by number (sweeper) or by id (DELETE); ``expired`` leaves tombstones and counts."""

    def __init__(self, client: Client, config: Config, engine: Engine | None = None) -> None:
        self.r: Any = client  # a bytes client
        self.cfg = config
        self.engine = engine or Engine(client, config)

    def delete_id(self, article_id: str) -> bool:
        """DELETE /v1/articles/<id>: False when no article has that id."""
        self.settle()
        for _ in range(RETRIES):
            raw = self.r.hget(keys.IDS, article_id)
            if raw is None:
                return False
            done = self._attempt([int(raw)], expired=False, expect_id=article_id)
            if done is not None:
                return bool(done.ids)
        raise StorageUnavailable("the article kept changing while being deleted; retry", retry_after=1)

    def remove(self, numbers: Sequence[int], expired: bool = True) -> Removed:
        """Remove these article numbers (those still there) in one atomic call, retried on a conflict."""
        self.settle()
        for attempt in range(RETRIES):
            done = self._attempt(list(numbers), expired=expired)
            if done is not None:
                return done
            time.sleep(min(0.05, 0.001 * 2 ** attempt))
        raise StorageUnavailable("the articles kept changing while being removed; retry", retry_after=1)

    def txn(self, numbers: list[int], expired: bool, expect_id: str | None = None) -> tuple[Txn, Removed]:
        """The transaction removing ``numbers`` as they are now (reads the records and their clusters)."""
        rows = self.engine.scripts.hmget_many([keys.article(n) for n in numbers], FIELDS)
        recs = {n: dict(zip(FIELDS, row)) for n, row in zip(numbers, rows)}
        legacy = [{b"sig": rec["sig"]} if rec["sig"] is not None else {} for rec in recs.values()]
        for rec, got in zip(recs.values(), blobs.read(self.r, numbers, ("sig",), legacy)):
            rec["sig"] = got.get(b"sig")  # the signature it was indexed with, from its blob
        txn = Txn()
        done = Removed(ids=[])
        if expect_id is not None:
            txn.expect_field(keys.IDS, expect_id, numbers[0])
        counts = {"queued": 0, "failed": 0}
        gone_of: dict[str, set[int]] = {}
        unindex: list[tuple[int, Any]] = []
        shapes_of: dict[str, Counter[bytes]] = {}
        heads_of: dict[str, list[bytes]] = {}
        now = now_ms()
        for n, rec in recs.items():
            if rec["ver"] is None:  # already removed: drop its time-index entry
                txn.expect_exists(keys.article(n), False).zrem(keys.EXPIRY, str(n))
                done.stale += 1
                continue
            txn.expect_fields(keys.article(n), {f: rec[f] for f in ("ver", "iver", "status", "cluster")})
            article_id = decoded(rec["id"]) or ""
            done.ids.append(article_id)
            sig = unpack_sig(rec["sig"] or b"", self.cfg.num_perm)
            if sig is not None and rec["iver"]:
                unindex.append((n, sig))
                txn.hset(keys.UNBAND, {str(n): rec["sig"] or b""})  # a debt, paid right after the transaction
            shapes = rec["bpsh"]
            if shapes is not None:  # the story's line shapes were learned: they are forgotten with it
                src = keys.boilerplate(source_key(decoded(rec["source"]), decoded(rec["url"])))
                taught = shapes_of.setdefault(src, Counter())
                taught[keys.BP_DOCS_FIELD] += 1
                taught.update(shapes[i:i + 8] for i in range(0, len(shapes), 8))
            if rec["head"]:  # its headline search record
                heads_of.setdefault(keys.headlines(n), []).append(rec["head"])
            cid = decoded(rec["cluster"])
            if cid:
                gone_of.setdefault(cid, set()).add(n)
            status = rec["status"]
            if status in (b"queued", b"failed"):
                counts[status.decode()] += 1
            for r in keys.CONTENT_REASONS:  # a failed scrape leaves the stats' content_none with it
                txn.srem(keys.content_none(r), [n])
            txn.delete(keys.article(n), keys.payload(n)).zrem(keys.EXPIRY, str(n))
            if article_id:
                txn.expect_field(keys.IDS, article_id, n).hdel(keys.IDS, article_id)
                if expired:
                    txn.set_px(keys.tombstone(article_id), now, int(max(1.0, self.cfg.retention) * 1000))
                else:  # a deleted id is plainly unknown, even if an earlier copy expired
                    txn.delete(keys.tombstone(article_id))
                events.emit(txn, self.cfg.events_maxlen, events.EXPIRED if expired else events.DELETED,
                            id=article_id, cluster_id=cid or None)
        # one instruction per family for the whole batch: each boilerplate hash and headline chunk
        # is read and rewritten once, not once per article (bench/removal_cost.py)
        done.unindex = unindex
        for bp_key, taught in shapes_of.items():
            txn.hdecr(bp_key, dict(taught))
        for heads_key, records in heads_of.items():
            txn.cut_many(heads_key, records, keys.HEADLINE_SEP)
        self._leave_clusters(txn, gone_of, now)
        for counter, k in counts.items():
            if k:
                txn.hincrby(keys.META, counter, -k)
        if expired and done.ids:
            txn.hincrby(keys.META, "expired", len(done.ids))
        return txn, done

    def _attempt(self, numbers: list[int], expired: bool, expect_id: str | None = None) -> Removed | None:
        if not numbers:
            return Removed(ids=[])
        txn, done = self.txn(numbers, expired, expect_id)
        t0 = time.perf_counter()
        if not self.engine.scripts.run(txn):
            return None
        done.seconds = time.perf_counter() - t0
        # band entries after the articles (their groups are other slots): an entry whose article is
        # gone is skipped by readers, and the debt recorded in the transaction outlives a crash
        self._unband(done.unindex)
        done.unindex = []
        # then the blobs: a crash before this leaves orphan blobs (harmless, never read)
        blobs.drop(self.r, numbers)
        return done

    def _unband(self, items: list[tuple[int, Any]]) -> None:
        """Take removed articles' entries out of the band groups, then strike them off the debt."""
        if items:
            self.engine.index.unindex_many(items)
            self.r.hdel(keys.UNBAND, *(str(n) for n, _ in items))

    def settle(self) -> int:
        """Remove band entries that an interrupted removal left behind (``nd:unband``); how many articles."""
        debt = self.r.hgetall(keys.UNBAND)
        items = [(int(n), unpack_sig(sig, self.cfg.num_perm)) for n, sig in debt.items()]
        self._unband([(n, sig) for n, sig in items if sig is not None])
        stray = [str(n) for n, sig in items if sig is None]
        if stray:
            self.r.hdel(keys.UNBAND, *stray)
        return len(items)

    def _leave_clusters(self, txn: Txn, gone_of: dict[str, set[int]], now: int) -> None:
        """Take removed articles out of their clusters (checked against each cluster's version)."""
        cids = sorted(gone_of)
        state = self.engine.scripts.cluster_state([(keys.cluster(c), keys.cluster_members(c)) for c in cids])
        for cid, (v, members) in zip(cids, state):
            gone = gone_of[cid]
            if v is None:  # an implicit singleton: the founding article alone
                txn.expect_exists(keys.cluster(cid), False)
                if keys.cluster_number(cid) in gone:
                    txn.zrem(keys.SINGLES, cid)
                continue
            txn.expect_field(keys.cluster(cid), "v", v)
            rest = {int(m) for m in members} - gone
            if not rest:
                txn.delete(keys.cluster(cid), keys.cluster_members(cid))
                txn.zrem(keys.CLUSTERS, cid).zrem(keys.CLUSTER_SIZES, cid).zrem(keys.SINGLES, cid)
                continue
            txn.srem(keys.cluster_members(cid), sorted(gone))
            txn.hset(keys.cluster(cid), {"size": len(rest), "canonical": min(rest), "updated_at": now})
            txn.hincrby(keys.cluster(cid), "v", 1)
            if len(rest) < 2:  # one member left: the cluster stays explicit, so its id stays the member's
                txn.zrem(keys.CLUSTERS, cid).zrem(keys.CLUSTER_SIZES, cid).zadd(keys.SINGLES, now, cid)
            else:
                txn.zadd(keys.CLUSTER_SIZES, len(rest), cid)

