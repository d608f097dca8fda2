"""The operations the service offers, over one Redis client: the facade entry points call.

Every method turns "Redis is away" into :class:`StorageUnavailable`; reads
never write, and every write is one atomic, checked transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import numpy as np
import redis

from . import events, keys, metrics
from .articles import ArticleIn
from .config import Config
from .engine import Engine, source_key
from .errors import NotFound, StorageUnavailable, ValidationError
from .minhash import containments, jaccard
from .prepare import analyse
from .records import decoded, now_ms, pack_payload, rfc3339, unpack_sig, unpack_text
from .store import Txn, guarded

MAX_LISTED_MEMBERS = 200
SUBMIT_RETRIES = 20


def href(article_id: str) -> str:
    return "/v1/articles/" + quote(article_id, safe="")



class Dedup:
    def __init__(self, client: redis.Redis, config: Config) -> None:
        # redis-py types replies as unions over every decode mode; ours is always a bytes client
        self.r: Any = client
        self.cfg = config
        self.engine = Engine(client, config)

    # ------------------------------------------------------------------ writes

    @guarded
    def submit(self, items: Sequence[tuple[ArticleIn, list[str]]], request_id: str = "") -> list[dict[str, Any]]:
        """Store and enqueue articles; a re-post of the same content changes nothing.

        ``request_id`` travels with each queue entry, so the worker's log lines carry it.
        """
        self.engine.ensure_index()
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
                    pipe.hmget(keys.article(nums[i]), "chash", "status", "ver")
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
                    old_chash, status, ver = recs[i]
                    if status is not None and old_chash is not None and old_chash.decode() == chash:
                        results[i] = {"id": i, "status": status.decode(), "href": href(i)}
                        txn.expect_field(keys.article(n), "chash", chash)
                        outcome[b"submitted:unchanged"] += 1
                        continue
                    new_ver = int(ver or 0) + 1
                    txn.expect_field(keys.IDS, i, n).expect_field(keys.article(n), "ver", ver)
                    txn.hset(keys.article(n), {**fields, "ver": new_ver, "updated_at": now})
                    txn.set(keys.payload(n), payload)
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
        """Remove an article from the index and its cluster (the cluster keeps its id)."""
        for _ in range(SUBMIT_RETRIES):
            n = self._number(article_id)
            rec = self.r.hgetall(keys.article(n))
            txn = Txn()
            txn.expect_field(keys.IDS, article_id, n).expect_field(keys.article(n), "ver", rec.get(b"ver"))
            sig = unpack_sig(rec.get(b"sig", b""), self.cfg.num_perm)
            if sig is not None and rec.get(b"iver"):
                self.engine.unindex(txn, n, sig)
            cid = decoded(rec.get(b"cluster"))
            if cid:
                txn.expect_field(keys.article(n), "cluster", cid)
                v = self.r.hget(keys.cluster(cid), "v")
                if v is not None:
                    members = {int(m) for m in self.r.smembers(keys.cluster_members(cid))} - {n}
                    txn.expect_field(keys.cluster(cid), "v", v)
                    txn.srem(keys.cluster_members(cid), [n]).hincrby(keys.cluster(cid), "v", 1)
                    if members:
                        txn.hset(keys.cluster(cid), {"size": len(members), "canonical": min(members),
                                                     "updated_at": now_ms()})
                        if len(members) < 2:
                            txn.zrem(keys.CLUSTERS, cid).zadd(keys.SINGLES, now_ms(), cid)
                    else:
                        txn.delete(keys.cluster(cid)).delete(keys.cluster_members(cid))
                        txn.zrem(keys.CLUSTERS, cid).zrem(keys.SINGLES, cid)
                else:
                    txn.zrem(keys.SINGLES, cid)
            if rec.get(b"status") == b"queued":
                txn.hincrby(keys.META, "queued", -1)
            elif rec.get(b"status") == b"failed":
                txn.hincrby(keys.META, "failed", -1)
            txn.delete(keys.article(n)).delete(keys.payload(n)).hdel(keys.IDS, article_id)
            events.emit(txn, self.cfg.events_maxlen, events.DELETED, id=article_id, cluster_id=cid or None)
            if self.engine.scripts.run(txn):
                return {"id": article_id, "deleted": True}
        raise StorageUnavailable("the article kept changing while being deleted; retry", retry_after=1)

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

    # ------------------------------------------------------------------ reads

    def _number(self, article_id: str) -> int:
        n = self.r.hget(keys.IDS, article_id)
        if n is None:
            raise NotFound(f"no article with id {article_id!r}")
        return int(n)

    @guarded
    def article(self, article_id: str) -> dict[str, Any]:
        n = self._number(article_id)
        rec = self.r.hgetall(keys.article(n))
        if not rec:
            raise NotFound(f"no article with id {article_id!r}")
        cid = decoded(rec.get(b"cluster")) if rec.get(b"status") == b"done" else None
        dups: list[dict[str, Any]] = []
        duplicate_of = None
        if cid:
            size, canonical, others = self._members(cid, exclude=n)
            dups = self._similarities(rec, others)
            if canonical is not None and canonical != n:
                duplicate_of = decoded(self.r.hget(keys.article(canonical), "id"))
        try:
            repeated = json.loads(rec.get(b"repeated") or b"[]")
        except ValueError:
            repeated = []
        return {
            "id": article_id, "status": decoded(rec.get(b"status")), "cluster_id": cid, "duplicate_of": duplicate_of,
            "duplicates": dups, "title": decoded(rec.get(b"title")) or "", "url": decoded(rec.get(b"url")) or None,
            "source": decoded(rec.get(b"source")) or None, "published_at": decoded(rec.get(b"published_at")) or None,
            "lang": decoded(rec.get(b"lang")) or None, "ingested_at": rfc3339(rec.get(b"ingested_at")),
            "processed_at": rfc3339(rec.get(b"processed_at")) if rec.get(b"status") != b"queued" else None,
            "repeated_blocks": repeated, "repeated_share": float(rec.get(b"rshare") or 0.0),
            "tokens": int(rec.get(b"tokens") or 0), "boilerplate_lines": int(rec.get(b"bp_lines") or 0),
            "error": decoded(rec.get(b"error")) or None, "attempts": int(rec.get(b"attempts") or 0),
            "text": unpack_text(rec.get(b"text")) if rec.get(b"text") else None,
        }

    def _members(self, cid: str, exclude: int | None = None) -> tuple[int, int | None, list[int]]:
        """(size, canonical number, member numbers capped) of a cluster id that exists."""
        info = self.r.hmget(keys.cluster(cid), "size", "canonical")
        if info[0] is None:
            num = keys.cluster_number(cid)
            return 1, num, [] if num is None or num == exclude else [num]
        mem = sorted(int(m) for m in self.r.smembers(keys.cluster_members(cid)))
        return int(info[0]), int(info[1]) if info[1] else None, [m for m in mem if m != exclude][
            :MAX_LISTED_MEMBERS]

    def _similarities(self, rec: dict[bytes, bytes], others: list[int]) -> list[dict[str, Any]]:
        if not others:
            return []
        pipe = self.r.pipeline(transaction=False)
        for m in others:
            pipe.hmget(keys.article(m), "id", "sig", "size")
        rows = pipe.execute()
        sig = unpack_sig(rec.get(b"sig", b""), self.cfg.num_perm)
        out = []
        for i, sb, zb in rows:
            if i is None:
                continue
            osig = unpack_sig(sb or b"", self.cfg.num_perm)
            if sig is None or osig is None:
                out.append({"id": i.decode(), "similarity": None, "containment": None})
                continue
            j = jaccard(sig, osig[None, :])
            a, b = containments(j, int(rec.get(b"size") or 0), np.array([int(zb or 0)]))
            out.append({"id": i.decode(), "similarity": round(float(j[0]), 4),
                        "containment": round(float(max(a[0], b[0])), 4)})
        out.sort(key=lambda d: -(d["similarity"] or 0))
        return out

    @guarded
    def cluster(self, cluster_id: str) -> dict[str, Any]:
        requested = cluster_id
        for _ in range(64):  # follow merges (each hop moves to a strictly older cluster)
            if self.r.exists(keys.cluster(cluster_id)):
                break
            alias = self.r.hget(keys.CALIAS, cluster_id)
            if alias is not None:
                cluster_id = alias.decode()
                continue
            num = keys.cluster_number(cluster_id)
            cur = self.r.hmget(keys.article(num), "cluster", "status") if num is not None else [None, None]
            if cur[0] is None or cur[1] != b"done":
                raise NotFound(f"no cluster with id {requested!r}")
            if cur[0].decode() == cluster_id:
                break
            cluster_id = cur[0].decode()
        out = self._cluster_view(cluster_id)
        if cluster_id != requested:
            out["requested_id"] = requested
            out["merged_into"] = cluster_id
        return out

    def _cluster_view(self, cid: str) -> dict[str, Any]:
        info = self.r.hmget(keys.cluster(cid), "size", "canonical", "created_at", "updated_at")
        size, canonical, others = self._members(cid)
        pipe = self.r.pipeline(transaction=False)
        for m in others:
            pipe.hmget(keys.article(m), "id", "title", "sig", "size", "processed_at")
        rows = pipe.execute()
        csig = None
        csize = 0
        for m, row in zip(others, rows):
            if m == canonical:
                csig = unpack_sig(row[2] or b"", self.cfg.num_perm)
                csize = int(row[3] or 0)
        members = []
        for m, row in zip(others, rows):
            if row[0] is None:
                continue
            sim = None
            osig = unpack_sig(row[2] or b"", self.cfg.num_perm)
            if csig is not None and osig is not None:
                sim = round(float(jaccard(csig, osig[None, :])[0]), 4)
            members.append({"id": row[0].decode(), "title": decoded(row[1]) or "", "similarity": sim,
                            "canonical": m == canonical})
        created = info[2] if info[0] is not None else (rows[0][4] if rows else None)
        updated = info[3] if info[0] is not None else created
        del csize
        canonical_id = next((mm["id"] for mm in members if mm["canonical"]), None)
        return {"cluster_id": cid, "size": size, "canonical_id": canonical_id, "members": members,
                "created_at": rfc3339(created), "updated_at": rfc3339(updated)}

    @guarded
    def clusters(self, min_size: int = 2, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """Clusters, most recently updated first; the cursor is ``<score>:<cluster id>`` of the last one."""
        if min_size < 1 or not 1 <= limit <= 500:
            raise ValidationError("min_size must be >= 1 and limit between 1 and 500")
        max_score: float | str = "+inf"
        after: str | None = None
        if cursor:
            try:
                score_s, after = cursor.split(":", 1)
                max_score = float(score_s)
            except ValueError:
                raise ValidationError(f"cursor {cursor!r} is not one this API returned", field="cursor") from None
        sources = [keys.CLUSTERS] + ([keys.SINGLES] if min_size <= 1 else [])
        picked: list[tuple[float, str]] = []
        for src in sources:
            rows = self.r.zrevrangebyscore(src, max_score, "-inf", start=0, num=limit + 200, withscores=True)
            picked.extend((float(sc), c.decode()) for c, sc in rows)
        picked.sort(key=lambda t: (-t[0], t[1]))
        if after is not None and isinstance(max_score, float):
            top = max_score
            picked = [p for p in picked if p[0] < top or (p[0] == top and p[1] > after)]
        out = []
        last = None
        for score, cid in picked:
            view = self._cluster_view(cid) if self.r.exists(keys.cluster(cid)) or min_size <= 1 else None
            last = (score, cid)
            if view is None or view["size"] < min_size:
                continue
            view["members"] = view["members"][:20]
            out.append(view)
            if len(out) >= limit:
                break
        more = last is not None and len(out) >= limit
        return {"clusters": out, "next_cursor": f"{last[0]!r}:{last[1]}" if more and last else None}

    @guarded
    def stats(self) -> dict[str, Any]:
        pipe = self.r.pipeline(transaction=False)
        pipe.hlen(keys.IDS).zcard(keys.CLUSTERS).zcard(keys.SINGLES).hmget(keys.META, "queued", "failed")
        articles, multi, single, (queued, failed) = pipe.execute()
        try:
            in_flight = int(self.r.xpending(keys.QUEUE, keys.GROUP)["pending"])
        except redis.exceptions.ResponseError:
            in_flight = 0
        queued_n = max(0, int(queued or 0))
        in_flight = min(in_flight, queued_n)
        return {"articles": int(articles), "clusters": int(multi) + int(single),
                "clusters_with_duplicates": int(multi),
                "queue": {"pending": queued_n - in_flight, "in_flight": in_flight, "failed": int(failed or 0)}}

    @guarded
    def ping(self) -> bool:
        return bool(self.r.ping())

    @guarded
    def check(self, article: ArticleIn) -> dict[str, Any]:
        """Near-duplicates of a text among indexed articles, without storing anything."""
        self.engine.ensure_index()
        page = analyse(article.title, text=article.text, html=article.html)
        feats = self.engine.analyse_pages([page], [source_key(article.source, article.url)])
        f = feats[0]
        self.engine.sign(feats)
        blocks, share = page.repeated_report()
        result: dict[str, Any] = {"duplicates": [], "cluster_id": None, "repeated_blocks": blocks,
                                  "repeated_share": share, "tokens": f.tokens}
        if not self.engine.indexable(f) or f.sig is None:
            return result
        cands = self.engine.lookup(f.sig)
        data = self.engine.candidate_data(cands)
        edges = self.engine.verify(f, cands, data)
        if not edges:
            return result
        pipe = self.r.pipeline(transaction=False)
        for e in edges:
            pipe.hmget(keys.article(e.n), "id", "cluster", "status")
        dups = []
        votes: dict[str, float] = {}
        for e, (i, c, st) in zip(edges, pipe.execute()):
            if i is None:
                continue
            cid = c.decode() if c is not None and st == b"done" else None
            dups.append({"id": i.decode(), "similarity": e.similarity, "containment": e.containment,
                         "cluster_id": cid})
            if cid:
                votes[cid] = votes.get(cid, 0.0) + 1.0 + e.score
        dups.sort(key=lambda d: -max(d["similarity"], d["containment"]))
        result["duplicates"] = dups
        result["cluster_id"] = max(votes, key=lambda c: votes[c]) if votes else None
        return result


def ensure_group(client: redis.Redis) -> None:
    """Create the queue stream and its consumer group once (idempotent)."""
    try:
        client.xgroup_create(keys.QUEUE, keys.GROUP, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
