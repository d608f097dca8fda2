"""The write side: submit (store + enqueue), delete, and re-queue dead-lettered articles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from newsdedup import keys
from newsdedup.articles import ArticleIn
from newsdedup.dedup.base import Service
from newsdedup.errors import NotFound, StorageUnavailable
from newsdedup.observe import metrics
from newsdedup.retention.removal import Removal
from newsdedup.retention.sweeper import retention_ms
from newsdedup.storage.queue import ensure_group
from newsdedup.storage.records import now_ms, pack_payload
from newsdedup.storage.txn import Txn, guarded

SUBMIT_RETRIES = 20


def href(article_id: str) -> str:
    return "/v1/articles/" + quote(article_id, safe="")


class Writes(Service):
    """Every write is one compare-and-set transaction, retried when a concurrent request won."""

    @guarded
    def submit(self, items: Sequence[tuple[ArticleIn, list[str]]], request_id: str = "") -> list[dict[str, Any]]:
        """Store and enqueue articles; a re-post of the same content changes nothing.

        ``request_id`` travels with each queue entry, so the worker's log lines carry it.
        """
        self.engine.index.ensure_index()
        ensure_group(self.r)
        results: dict[str, dict[str, Any]] = {}
        todo = list(dict.fromkeys(a.id for a, _ in items))
        by_id = {a.id: a for a, _ in items}
        for _ in range(SUBMIT_RETRIES):
            if not todo:
                break
            existing = self.r.hmget(keys.IDS, todo)
            nums = {i: int(n) for i, n in zip(todo, existing) if n is not None}
            pipe = self.r.pipeline(transaction=False)
            for i in todo:
                if i in nums:
                    pipe.hmget(keys.article(nums[i]), "chash", "status", "ver", "ingested_at")
            recs = dict(zip([i for i in todo if i in nums], pipe.execute()))
            fresh = [i for i in todo if i not in nums]
            top = self.r.incrby(keys.SEQ, len(fresh)) if fresh else 0
            for k, i in enumerate(fresh):
                nums[i] = top - len(fresh) + 1 + k
            txn = Txn()
            now = now_ms()
            queued_delta = 0
            outcome = {b"submitted:queued": 0, b"submitted:updated": 0, b"submitted:unchanged": 0}
            for i in todo:
                art, n = by_id[i], nums[i]
                chash = art.content_hash()
                fields: dict[str, str | bytes | int] = {"id": i, "chash": chash, "status": "queued", "title": art.title,
                          "url": art.url or "", "source": art.source or "", "published_at": art.published_at or "",
                          "lang": art.lang or "", "attempts": 0, "error": ""}
                payload = pack_payload(art.text, art.html)
                if i in recs:
                    old_chash, status, ver, ingested = recs[i]
                    if status is not None and old_chash is not None and old_chash.decode() == chash:
                        results[i] = {"id": i, "status": status.decode(), "href": href(i)}
                        txn.expect_field(keys.article(n), "chash", chash)
                        outcome[b"submitted:unchanged"] += 1
                        continue
                    new_ver = int(ver or 0) + 1
                    txn.expect_field(keys.IDS, i, n).expect_field(keys.article(n), "ver", ver)
                    txn.hset(keys.article(n), {**fields, "ver": new_ver, "updated_at": now})
                    txn.set(keys.payload(n), payload)
                    txn.zadd(keys.EXPIRY, retention_ms(self.cfg, int(ingested or now), art.published_at), str(n))
                    if status != b"queued":
                        queued_delta += 1
                    if status == b"failed":
                        txn.hincrby(keys.META, "failed", -1)
                    results[i] = {"id": i, "status": "queued", "href": href(i), "updated": True}
                    outcome[b"submitted:updated"] += 1
                else:
                    new_ver = 1
                    txn.expect_field(keys.IDS, i, None)
                    txn.hset(keys.IDS, {i: n})
                    txn.hset(keys.article(n), {**fields, "ver": 1, "ingested_at": now})
                    txn.set(keys.payload(n), payload)
                    txn.zadd(keys.EXPIRY, retention_ms(self.cfg, now, art.published_at), str(n))
                    queued_delta += 1
                    results[i] = {"id": i, "status": "queued", "href": href(i)}
                    outcome[b"submitted:queued"] += 1
                txn.xadd(keys.QUEUE, {"n": n, "ver": new_ver, **({"rid": request_id} if request_id else {})})
            metrics.count(txn, outcome)
            if queued_delta:
                txn.hincrby(keys.META, "queued", queued_delta)
            if self.engine.scripts.run(txn):
                todo = []
            # else: another request changed one of these ids meanwhile; read again and redo
        if todo:
            raise StorageUnavailable("too many concurrent writes to the same ids; retry", retry_after=1)
        out = []
        for art, ignored in items:
            r = dict(results[art.id])
            if ignored:
                r["ignored_fields"] = ignored
            out.append(r)
        return out

    @guarded
    def delete(self, article_id: str) -> dict[str, Any]:
        """Remove an article from the index and its cluster (the cluster keeps its id): the sweeper's path."""
        if not Removal(self.r, self.cfg, self.engine).delete_id(article_id):
            raise NotFound(f"no article with id {article_id!r}")
        return {"id": article_id, "deleted": True}

    @guarded
    def retry_failed(self, ids: list[str] | None = None) -> dict[str, Any]:
        """Put failed (dead-lettered) articles back on the queue."""
        if ids is None:
            ids = []
            for _eid, fields in self.r.xrange(keys.DEAD, count=100_000):
                n = int(fields[b"n"])
                i = self.r.hget(keys.article(n), "id")
                if i is not None:
                    ids.append(i.decode())
        retried, unknown = [], []
        for i in dict.fromkeys(ids):
            raw = self.r.hget(keys.IDS, i)
            if raw is None:
                unknown.append(i)
                continue
            n = int(raw)
            st, ver = self.r.hmget(keys.article(n), "status", "ver")
            if st != b"failed" or ver is None:
                continue
            new_ver = int(ver) + 1
            txn = Txn().expect_field(keys.article(n), "ver", ver).expect_field(keys.article(n), "status", "failed")
            txn.hset(keys.article(n), {"status": "queued", "ver": new_ver, "attempts": 0, "error": ""})
            txn.hincrby(keys.META, "failed", -1).hincrby(keys.META, "queued", 1)
            txn.xadd(keys.QUEUE, {"n": n, "ver": new_ver})
            if self.engine.scripts.run(txn):
                retried.append(i)
        if unknown and not retried and len(unknown) == len(ids):
            raise NotFound(f"no article with id {unknown[0]!r}")
        return {"retried": retried, **({"unknown": unknown} if unknown else {})}
