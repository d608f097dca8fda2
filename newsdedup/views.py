"""Reads behind the web pages: overview figures, cluster lists, headline search, one cluster's members.

Read-only functions over a bytes Redis client, each a few pipelined round trips
whatever the index size: a page of the cluster list reads its page of ids from
a sorted set, then the clusters and their members' fields in one pipeline.
Headline search finds a substring inside Redis, in the ``nd:heads:{chunk}``
strings (no article is read in Python until it matches).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from newsdedup import keys
from newsdedup.storage.records import decoded, rfc3339
from newsdedup.storage.redis_client import Client
from newsdedup.text.normalize import normalize

SOURCES_SHOWN = 5
MEMBERS_SAMPLED = 50  # members read to list a cluster's sources
MAX_SEARCH_HITS = 5000
MAX_SIZE_CANDIDATES = 100_000  # clusters read at most to answer a minimum size of 3 or more


@dataclass
class ClusterRow:
    cluster_id: str
    size: int
    headline: str
    canonical_id: str | None
    sources: list[str]
    first_seen: str | None
    last_seen: str | None


@dataclass
class ClusterPage:
    rows: list[ClusterRow]
    total: int | None  # clusters matching, when known cheaply
    more: bool
    notes: list[str] = field(default_factory=list)


def _r(client: Client) -> Any:
    return client  # redis-py types replies as unions over decode modes; ours is a bytes client


def done_recently(client: Client, now_ms: int) -> dict[str, int]:
    """Articles finished within the last minute and hour (10-second buckets, so to within 10 s)."""
    cur = now_ms // keys.DONE_BUCKET_MS
    per_hour = 3600_000 // keys.DONE_BUCKET_MS
    per_minute = 60_000 // keys.DONE_BUCKET_MS
    vals = [int(v or 0) for v in _r(client).mget([keys.done_bucket(b) for b in range(cur - per_hour + 1, cur + 1)])]
    return {"last_minute": sum(vals[-per_minute:]), "last_hour": sum(vals)}


def summaries(client: Client, cids: list[str]) -> list[ClusterRow]:
    """Size, canonical headline, a few sources, first and last seen of each cluster (two round trips)."""
    r = _r(client)
    pipe = r.pipeline(transaction=False)
    for c in cids:
        pipe.hmget(keys.cluster(c), "size", "canonical", "created_at", "updated_at")
        pipe.srandmember(keys.cluster_members(c), MEMBERS_SAMPLED)
    got = pipe.execute()
    infos: list[tuple[str, int, int | None, list[int], Any, Any]] = []
    for i, c in enumerate(cids):
        (size, canonical, created, updated), mem = got[2 * i], got[2 * i + 1]
        if size is None:  # an implicit singleton: the founding article alone
            num = keys.cluster_number(c)
            infos.append((c, 1, num, [num] if num is not None else [], None, None))
        else:
            ms = sorted(int(m) for m in mem)
            infos.append((c, int(size), int(canonical) if canonical else None, ms, created, updated))
    want = sorted({n for info in infos for n in info[3]} | {info[2] for info in infos if info[2] is not None})
    pipe = r.pipeline(transaction=False)
    for n in want:
        pipe.hmget(keys.article(n), "id", "title", "source", "url", "processed_at")
    arts = dict(zip(want, pipe.execute()))
    out = []
    for c, size, canonical, members, created, updated in infos:
        can = arts.get(canonical) if canonical is not None else None
        if can is None or can[0] is None:
            continue  # deleted meanwhile
        sources: list[str] = []
        for n in members:
            a = arts.get(n)
            if a is None or a[0] is None:
                continue
            src = decoded(a[2]) or _host(decoded(a[3]))
            if src and src not in sources:
                sources.append(src)
        first = created if created is not None else can[4]
        out.append(ClusterRow(cluster_id=c, size=size, headline=decoded(can[1]) or "", canonical_id=decoded(can[0]),
                              sources=sources, first_seen=rfc3339(first),
                              last_seen=rfc3339(updated if updated is not None else first)))
    return out


def _host(url: str | None) -> str:
    if not url:
        return ""
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def largest(client: Client, count: int = 10) -> list[ClusterRow]:
    cids = [c.decode() for c in _r(client).zrevrange(keys.CLUSTER_SIZES, 0, count - 1)]
    return summaries(client, cids)


def recently_grown(client: Client, count: int = 10) -> list[ClusterRow]:
    cids = [c.decode() for c in _r(client).zrevrange(keys.CLUSTERS, 0, count - 1)]
    return summaries(client, cids)


def cluster_page(client: Client, min_size: int = 2, query: str = "", page: int = 1, per_page: int = 50
                 ) -> ClusterPage:
    """One page of clusters, most recently changed first: all, those of a minimum size, or a search."""
    r = _r(client)
    start = (page - 1) * per_page
    query = query.strip()
    if query:
        cids, notes = search(client, query)
        sized = _sizes(client, cids)
        cids = [c for c in cids if sized.get(c, 0) >= min_size]
        rows = summaries(client, cids[start:start + per_page])
        return ClusterPage(rows=rows, total=len(cids), more=start + per_page < len(cids), notes=notes)
    if min_size <= 1:
        # both sorted sets by recency; the page's slice of their merge needs the first start+per_page of each
        picked: list[tuple[float, str]] = []
        for src in (keys.CLUSTERS, keys.SINGLES):
            picked += [(sc, c.decode()) for c, sc in r.zrevrange(src, 0, start + per_page, withscores=True)]
        picked.sort(key=lambda t: (-t[0], t[1]))
        total = int(r.zcard(keys.CLUSTERS)) + int(r.zcard(keys.SINGLES))
        return ClusterPage(rows=summaries(client, [c for _, c in picked[start:start + per_page]]), total=total,
                           more=start + per_page < total)
    if min_size == 2:
        total = int(r.zcard(keys.CLUSTERS))
        cids = [c.decode() for c in r.zrevrange(keys.CLUSTERS, start, start + per_page - 1)]
        return ClusterPage(rows=summaries(client, cids), total=total, more=start + per_page < total)
    big = [c.decode() for c in r.zrevrangebyscore(keys.CLUSTER_SIZES, "+inf", min_size, start=0,
                                                   num=MAX_SIZE_CANDIDATES)]
    pipe = r.pipeline(transaction=False)
    for c in big:
        pipe.zscore(keys.CLUSTERS, c)
    scored = sorted(((float(s), c) for c, s in zip(big, pipe.execute()) if s is not None), key=lambda t: (-t[0], t[1]))
    return ClusterPage(rows=summaries(client, [c for _, c in scored[start:start + per_page]]), total=len(scored),
                       more=start + per_page < len(scored))


def _sizes(client: Client, cids: list[str]) -> dict[str, int]:
    pipe = _r(client).pipeline(transaction=False)
    for c in cids:
        pipe.hget(keys.cluster(c), "size")
    return {c: int(s) if s is not None else 1 for c, s in zip(cids, pipe.execute())}


def search(client: Client, query: str) -> tuple[list[str], list[str]]:
    """Clusters of the article with id ``query``, else of articles whose headline holds every word of it.

    Most recently changed first. Words match inside headlines after the same
    normalisation as the text (case, full-width forms, traditional Chinese).
    """
    r = _r(client)
    notes: list[str] = []
    ns: list[int] = []
    exact = r.hget(keys.IDS, query)
    if exact is not None:
        ns = [int(exact)]
    else:
        words = normalize(query).split()
        if not words:
            return [], notes
        anchor = max(words, key=len)
        hits = find_headlines(client, anchor, MAX_SEARCH_HITS)
        if len(hits) >= MAX_SEARCH_HITS:
            notes.append(f"more than {MAX_SEARCH_HITS} headlines hold {anchor!r}; showing clusters of the first ones")
        for rec in hits:
            head, _, num = rec.decode("utf-8", "replace").rpartition("\x1f")
            if all(w in head for w in words) and num.isdigit():
                ns.append(int(num))
    if not ns:
        return [], notes
    pipe = r.pipeline(transaction=False)
    for n in ns:
        pipe.hmget(keys.article(n), "cluster", "status")
    cids = list(dict.fromkeys(c.decode() for c, st in pipe.execute() if c is not None and st == b"done"))
    pipe = r.pipeline(transaction=False)
    for c in cids:
        pipe.zscore(keys.CLUSTERS, c)
        pipe.zscore(keys.SINGLES, c)
    got = pipe.execute()
    scored = []
    for i, c in enumerate(cids):
        s = got[2 * i] if got[2 * i] is not None else got[2 * i + 1]
        if s is not None:
            scored.append((float(s), c))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [c for _, c in scored], notes


# Finds a plain substring in the headline strings (nd:heads:{chunk}) and returns the records
# holding it: C-speed memchr/memcmp inside Redis, a few ms per 100k headlines.
_FIND_HEADLINES = """
local needle, limit, sep = ARGV[1], tonumber(ARGV[2]), 30
local out = {}
for _, k in ipairs(KEYS) do
  local s = redis.call("GET", k)
  local pos = 1
  while s do
    local i = string.find(s, needle, pos, true)
    if not i then break end
    local e = string.find(s, "\\30", i, true) or (#s + 1)
    local b = i
    while b > 1 and string.byte(s, b - 1) ~= sep do b = b - 1 end
    out[#out + 1] = string.sub(s, b, e - 1)
    if #out >= limit then return out end
    pos = e + 1
  end
end
return out
"""
CHUNKS_PER_CALL = 64  # Redis answers other clients between calls (16 calls at 1M articles)


def find_headlines(client: Client, needle: str, limit: int) -> list[bytes]:
    """Headline records ("<normalised title>\\x1f<n>") holding ``needle``, at most ``limit``."""
    r = _r(client)
    last = int(r.get(keys.SEQ) or 0) // keys.HEADLINE_CHUNK
    script = r.register_script(_FIND_HEADLINES)
    out: list[bytes] = []
    for lo in range(0, last + 1, CHUNKS_PER_CALL):
        chunk_keys = [keys.headlines(c * keys.HEADLINE_CHUNK) for c in range(lo, min(last + 1, lo + CHUNKS_PER_CALL))]
        out += script(keys=chunk_keys, args=[needle.encode(), limit - len(out)])
        if len(out) >= limit:
            break
    return out


def member_details(client: Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Source, url and times of articles by id (for a cluster's member table)."""
    r = _r(client)
    nums = r.hmget(keys.IDS, ids) if ids else []
    pipe = r.pipeline(transaction=False)
    have = [(i, int(n)) for i, n in zip(ids, nums) if n is not None]
    for _, n in have:
        pipe.hmget(keys.article(n), "source", "url", "published_at", "ingested_at", "processed_at")
    out = {}
    for (i, _), (src, url, pub, ing, proc) in zip(have, pipe.execute()):
        out[i] = {"source": decoded(src) or _host(decoded(url)) or None, "url": decoded(url) or None,
                  "published_at": decoded(pub) or None, "ingested_at": rfc3339(ing), "processed_at": rfc3339(proc)}
    return out
