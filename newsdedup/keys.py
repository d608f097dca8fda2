"""The Redis key schema: every key newsdedup reads or writes is named here.

All keys share the fixed prefix ``nd:``; nothing is pickled. Values are UTF-8
strings, decimal integers, JSON, raw little-endian ``uint32`` arrays
(signatures, LSH member lists) or compressed text (zstd of GB18030; zlib before).

Articles are known outside by their external id and inside by a sequence
number ``n`` (an integer from ``nd:seq``) so that index entries stay small.

=============================  ======  ==============================================================
key                            type    contents
=============================  ======  ==============================================================
nd:seq                         string  last article number handed out (INCR)
nd:ids                         hash    external id -> article number
nd:a:{n}                       hash    one article: id, ver, status, chash, title, url, source,
                                       published_at, lang, ingested_at, processed_at, sig
                                       (uint32 x num_perm), size (shingles), tokens, cluster,
                                       repeated (JSON), rshare, text (cleaned text: zstd of
                                       GB18030, a lossless Unicode encoding that is compact for
                                       Chinese; zlib in data written before), attempts, error,
                                       bpsh (the line shapes it added to nd:bp:{source}, 8 bytes
                                       each: taken back when the article is removed),
                                       page (the page as submitted, packed like text, when it is
                                       more than the kept text), lines (JSON {"bp": boilerplate
                                       line indices, "title": title line indices} of page),
                                       head (its record in nd:heads:{chunk}),
                                       content ("story" or "none"), content_reason (script,
                                       undecodable, too_short), thin (1: body too small, the
                                       title decides)
nd:p:{n}                       string  the submitted body until the article is done: "t" (text) or
                                       "h" (HTML), then packed like text (older: zlib JSON); kept
                                       apart so article hashes stay small
nd:band:{band}:{bucket}        string  LSH band-table bucket: 8-byte entries, each a band value
                                       (uint32) then an article number (uint32) with that value
nd:bands                       hash    band-table state: level, next (the next bucket to split),
                                       entries (in all bands); see "The LSH band table" below
nd:c:{cid}                     hash    cluster that has had 2+ members: size, canonical (n),
                                       created_at, updated_at; kept while 1 member is left (after
                                       an update or delete) so the member keeps its cluster id.
                                       A cluster never founded on 2+ is implicit in nd:a:{n}
nd:cm:{cid}                    set     member article numbers of a cluster with an nd:c record
nd:calias                      hash    merged-away cluster id -> the cluster id it became
nd:clusters                    zset    clusters with 2+ members scored by updated_at (ms)
nd:singles                     zset    clusters with 1 member scored by updated_at (ms); the two
                                       zsets together hold every cluster of a processed article
nd:bp:{source}                 hash    boilerplate learning per source: field = 8-byte line-shape
                                       hash -> number of docs containing it; field "#docs" = docs
                                       (stories stored: a removed article's shapes are taken back)
nd:none:{reason}               set     numbers of done articles without story text, per reason
                                       (script, undecodable, too_short): counted in GET /v1/stats
nd:q                           stream  work queue; entries {n, ver, rid (request id)}; group "workers"
nd:q:dead                      stream  dead-lettered entries {n, ver, reason, attempts}
nd:meta                        hash    counters: queued (accepted, not yet done or failed), failed,
                                       expired (removed by the retention sweeper);
                                       index: the parameters the index was built with
nd:expiry                      zset    every stored article number scored by its retention time (ms:
                                       ingested_at, or published_at under NEWSDEDUP_RETENTION_BY=
                                       published); written and removed with the article
nd:gone:{id}                   string  tombstone of an expired article: when it expired (ms); expires
                                       itself after one retention window (GET answers "expired")
nd:sweep                       string  the sweeper lease: a random token of the worker sweeping;
                                       expires (PX) if that worker dies
nd:rl:{client}:{minute}        string  per-client request counter for rate limiting (expires)
nd:events                      stream  the events feed (GET /v1/events): entries {type, at, data
                                       (JSON)}, capped at NEWSDEDUP_EVENTS_MAXLEN (approximately)
nd:metrics                     hash    counters behind /metrics (see newsdedup.observe.metrics)
nd:done:{bucket}               string  articles finished in one 10-second bucket (time // 10 s);
                                       expires after 2 hours (the overview's "last minute / hour")
nd:heads:{chunk}               string  headline search, one string per 1024 article numbers
                                       (n // 1024): a record "<normalised title>\x1f<n>\x1e" per
                                       processed article, searched inside Redis with a plain
                                       substring find; the article's "head" field holds its record
                                       so that an update or a delete cuts it out
nd:csizes                      zset    clusters with 2+ members scored by size (largest clusters)
=============================  ======  ==============================================================

The LSH band table is a linear hash table (one per band, split in step): a band
value ``v`` (the low 32 bits of a band's 64-bit hash) lives in bucket
``v mod 2**level``, or ``v mod 2**(level+1)`` when that is below ``next``. When
the average bucket holds more than ``NEWSDEDUP_LSH_BUCKET_LOAD`` entries, bucket
``next`` of every band is split in two and ``next`` moves on (``level`` grows
when it wraps), so buckets stay small and an insert or lookup costs the same
at any index size. ``NEWSDEDUP_LSH_BUCKET_BITS`` is only the starting level.
Indexes built before this layout kept fixed buckets in ``nd:lsh:{band}:{bucket}``
hashes; ``BandTable.ensure_index`` (newsdedup/index/band_table.py) moves them into the band table once.

Cluster ids are ``c`` + the article number of the cluster's earliest member,
so they are stable, short and need no lookup table: when two clusters merge
the smaller number wins and the other is recorded in ``nd:calias``.
"""

from __future__ import annotations

# Every key but the LSH band table shares the hash tag {nd} (slot 1031): on a Redis Cluster each
# transaction of today (submit, placement + done + ack, delete, removal) stays one atomic script in
# one slot. Data written before the cluster schema used the prefix "nd:" (see storage/migrate.py).
PREFIX = "{nd}:"
OLD_PREFIX = "nd:"

SEQ = PREFIX + "seq"
IDS = PREFIX + "ids"
CALIAS = PREFIX + "calias"
CLUSTERS = PREFIX + "clusters"
SINGLES = PREFIX + "singles"
QUEUE = PREFIX + "q"
DEAD = PREFIX + "q:dead"
META = PREFIX + "meta"
GROUP = "workers"
EVENTS = PREFIX + "events"
METRICS = PREFIX + "metrics"
HEADLINE_CHUNK = 1024  # article numbers per nd:heads:{chunk} string
HEADLINE_SEP = "\x1e"  # ends each headline record
CLUSTER_SIZES = PREFIX + "csizes"
DONE_BUCKET_MS = 10_000
DONE_TTL_MS = 2 * 3600 * 1000
BAND_PREFIX = PREFIX + "band:"  # + "{band}:{bucket}", named inside the scripts (see above)
BANDS = PREFIX + "bands"
EXPIRY = PREFIX + "expiry"
SWEEP_LEASE = PREFIX + "sweep"
LEGACY_LSH_PREFIX = OLD_PREFIX + "lsh:"  # fixed bucket hashes of indexes built before the band table
# old names that storage/migrate.py does not rename: the band table moves its own legacy layouts
LEGACY_BAND_PREFIXES = (LEGACY_LSH_PREFIX,)

# Redis settings the layout relies on: article hashes (a few dozen fields, values up to a few KB:
# signature, compressed text) and small boilerplate hashes stay compact only in Redis's small hash
# encoding. Passed to the embedded redis-server and raised by workers on a Redis that has lower limits.
HASH_ENCODING = {"hash-max-ziplist-entries": 1024, "hash-max-ziplist-value": 4096}
BP_DOCS_FIELD = b"#docs"


def article(n: int) -> str:
    return f"{PREFIX}a:{n}"


def payload(n: int) -> str:
    return f"{PREFIX}p:{n}"


def cluster(cid: str) -> str:
    return f"{PREFIX}c:{cid}"


def cluster_members(cid: str) -> str:
    return f"{PREFIX}cm:{cid}"


def tombstone(article_id: str) -> str:
    return f"{PREFIX}gone:{article_id}"


def boilerplate(source: str) -> str:
    return f"{PREFIX}bp:{source}"


def headlines(n: int) -> str:
    """The headline-search string that holds article ``n``'s record."""
    return f"{PREFIX}heads:{n // HEADLINE_CHUNK}"


def done_bucket(bucket: int) -> str:
    """Counter of articles finished in 10-second bucket ``bucket`` (ms time // DONE_BUCKET_MS)."""
    return f"{PREFIX}done:{bucket}"


CONTENT_REASONS = ("script", "undecodable", "too_short")


def content_none(reason: str) -> str:
    """Set of done articles without story text, for one reason (counted in GET /v1/stats)."""
    return f"{PREFIX}none:{reason}"


def rate_limit(client: str, minute: int) -> str:
    return f"{PREFIX}rl:{client}:{minute}"


def cluster_id(n: int) -> str:
    return f"c{n}"


def cluster_number(cid: str) -> int | None:
    """The founding article number of a cluster id, or None when it is not one of ours."""
    if len(cid) < 2 or cid[0] != "c" or not cid[1:].isdigit() or len(cid) > 21:
        return None
    return int(cid[1:])
