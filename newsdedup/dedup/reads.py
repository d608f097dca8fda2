"""The read side: articles, clusters, stats and the synchronous check; nothing here writes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import redis
from redis.cluster import RedisCluster

from newsdedup import keys
from newsdedup.articles import ArticleIn
from newsdedup.dedup.base import Service
from newsdedup.errors import NotFound, ValidationError
from newsdedup.index.minhash import containments, jaccard
from newsdedup.storage import blobs
from newsdedup.storage.records import decoded, rfc3339, unpack_sig, unpack_text
from newsdedup.storage.txn import guarded
from newsdedup.text.boilerplate import source_key
from newsdedup.text.page import analyse

MAX_LISTED_MEMBERS = 200


class Reads(Service):
    """Views of the stored state, shaped as the API returns them."""

    @guarded
    def article(self, article_id: str) -> dict[str, Any]:
        n = self._number(article_id)
        rec = self.r.hgetall(keys.article(n))
        if not rec:
            raise NotFound(f"no article with id {article_id!r}")
        blobs.merged(self.r, [n], [rec], ("sig", "text", "repeated"))
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
            **content_fields(rec),
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
        rows = self._with_sigs(others, pipe.execute(), 1)
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

    def _with_sigs(self, ns: list[int], rows: list[Any], at: int) -> list[Any]:
        """Article rows (HMGET replies) with column ``at`` ("sig") taken from each article's blob."""
        recs: list[dict[bytes, bytes]] = [{b"sig": row[at]} if row[at] is not None else {} for row in rows]
        for row, got in zip(rows, blobs.read(self.r, ns, ("sig",), recs)):
            row[at] = got.get(b"sig")
        return rows

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
        rows = self._with_sigs(others, pipe.execute(), 2)
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
        pipe.hlen(keys.IDS).zcard(keys.CLUSTERS).zcard(keys.SINGLES).hmget(keys.META, "queued", "failed", "expired")
        for r in keys.CONTENT_REASONS:
            pipe.scard(keys.content_none(r))
        articles, multi, single, (queued, failed, expired), *none = pipe.execute()
        try:
            in_flight = int(self.r.xpending(keys.QUEUE, keys.GROUP)["pending"])
        except redis.exceptions.ResponseError:
            in_flight = 0
        queued_n = max(0, int(queued or 0))
        in_flight = min(in_flight, queued_n)
        return {"articles": int(articles), "clusters": int(multi) + int(single),
                "clusters_with_duplicates": int(multi), "expired": int(expired or 0),
                "content_none": {"total": sum(int(x) for x in none),
                                 **{r: int(x) for r, x in zip(keys.CONTENT_REASONS, none)}},
                "queue": {"pending": queued_n - in_flight, "in_flight": in_flight, "failed": int(failed or 0)}}

    @guarded
    def ping(self) -> bool:
        """Readiness. On a cluster PING would reach any one node: ask the master of the data slot instead
        (a keyed read, routed and retried like a request's), so a dead or slot-less master answers 503."""
        if isinstance(self.r, RedisCluster):
            self.r.exists(keys.META)
            return True
        return bool(self.r.ping())

    @guarded
    def check(self, article: ArticleIn) -> dict[str, Any]:
        """Near-duplicates of a text among indexed articles, without storing anything."""
        self.engine.index.ensure_index()
        page = analyse(article.title, text=article.text, html=article.html)
        feats = self.engine.analysis.analyse_pages([page], [source_key(article.source, article.url)])
        f = feats[0]
        self.engine.analysis.sign(feats)
        blocks, share = page.repeated_report()
        result: dict[str, Any] = {"duplicates": [], "cluster_id": None, "repeated_blocks": blocks,
                                  "repeated_share": share, "tokens": f.tokens,
                                  "content": "story" if f.content_reason is None else "none",
                                  "content_reason": f.content_reason}
        if not self.engine.analysis.indexable(f) or f.sig is None:
            return result
        cands = self.engine.index.lookup(f.sig)
        data = self.engine.verifier.candidate_data(cands)
        verifier = self.engine.verifier
        found = verifier.verify(f, cands, data)
        edges, _ = verifier.title_gate(f, page.title, found, verifier.edge_heads(found))
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


def content_fields(rec: dict[bytes, bytes]) -> dict[str, Any]:
    """``content`` (story|none, null until processed) and ``content_reason`` of a stored article."""
    content = decoded(rec.get(b"content")) if rec.get(b"status") == b"done" else None
    return {"content": content or ("story" if rec.get(b"status") == b"done" else None),
            "content_reason": decoded(rec.get(b"content_reason")) or None}
