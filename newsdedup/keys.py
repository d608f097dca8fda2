"""The Redis key schema: every key newsdedup reads or writes is named here.

Every key starts with a hash tag, so that the schema is slot-legal on a Redis Cluster and
identical on a single Redis: every key a script or transaction touches is declared and sits in
one hash slot. Three families (docs/cluster.md has the reasons and the figures):

* ``{nd}:`` the data slot (slot 1031): articles, ids, queue, clusters, counters, events. Every
  transaction of the engine (submit, placement + done + ack, delete, removal, retry) is one
  atomic script in this one slot, so compare-and-set placement and exactly-once processing hold
  as on one node.
* ``{nd.g<j>...}:`` the LSH band table, in 6 band groups spread over the other masters (most of
  the Redis CPU per article goes here).
* ``{nd.p<i>...}:`` article blobs, the bulky fields, in 48 partition slots spread over every
  master (most of the memory per article goes here).

Nothing is pickled. Values are UTF-8 strings, decimal integers, JSON, raw little-endian
``uint32`` arrays (signatures, LSH member lists) or compressed text (zstd of GB18030; zlib
before). Data written before this schema used the prefix ``nd:`` (storage/migrate.py renames it).
``<x>`` below stands for a value (``n``: an article number).

Articles are known outside by their external id and inside by a sequence
number ``n`` (an integer from ``{nd}:seq``) so that index entries stay small.

=============================  ======  ==============================================================
key                            type    contents
=============================  ======  ==============================================================
{nd}:seq                       string  last article number handed out (INCR)
{nd}:ids                       hash    external id -> article number
{nd}:a:<n>                     hash    one article: id, ver, status, chash, title, url, source,
                                       published_at, lang, ingested_at, processed_at, size
                                       (shingles), tokens, cluster, rshare, attempts, error,
                                       bpsh (the line shapes it added to {nd}:bp:<source>, 8 bytes
                                       each: taken back when the article is removed),
                                       head (its record in {nd}:heads:<chunk>),
                                       content ("story" or "none"), content_reason (script,
                                       undecodable, too_short), thin (1: body too small, the
                                       title decides). Articles stored before the blobs may
                                       still hold the blob's fields here (read as a fallback
                                       when there is no blob; ``blobs.migrate_blobs`` moves them)
{<p>}:x:<n>                    hash    the article's bulky fields (its blob), in partition slot
                                       <p> = PARTITION_TAGS[n % 48], so that memory spreads over
                                       every master: ver (the article version they belong to),
                                       sig (uint32 x num_perm), repeated (JSON), text (cleaned
                                       text: zstd of GB18030, a lossless Unicode encoding that
                                       is compact for Chinese; zlib in data written before),
                                       page (the page as submitted, packed like text, when it
                                       is more than the kept text), lines (JSON {"bp":
                                       boilerplate line indices, "title": title line indices} of
                                       page). Written before the step that makes the article
                                       visible, deleted after the one that removes it (see
                                       newsdedup/storage/blobs.py)
{nd}:p:<n>                     string  the submitted body until the article is done: "t" (text) or
                                       "h" (HTML), then packed like text (older: zlib JSON); kept
                                       apart so article hashes stay small
{<g>}:band:<band>:<addr>       string  LSH band-table bucket of band ``band`` (in group g = band % 6):
                                       8-byte entries, each a band value (uint32) then an article
                                       number (uint32) with that value
{<g>}:bands                    hash    state of band group g's table: level, next (the next bucket
                                       to split), entries (in the group's bands); see "The LSH band
                                       table" below. Tags: g0 nd.g0.10, g1 nd.g1.13, g2 nd.g2.11,
                                       g3 nd.g3.13, g4 nd.g4.23, g5 nd.g5.1 (:data:`BAND_GROUP_TAGS`)
{nd}:c:<cid>                   hash    cluster that has had 2+ members: size, canonical (n),
                                       created_at, updated_at; kept while 1 member is left (after
                                       an update or delete) so the member keeps its cluster id.
                                       A cluster never founded on 2+ is implicit in {nd}:a:<n>
{nd}:cm:<cid>                  set     member article numbers of a cluster with a {nd}:c record
{nd}:calias                    hash    merged-away cluster id -> the cluster id it became
{nd}:clusters                  zset    clusters with 2+ members scored by updated_at (ms)
{nd}:singles                   zset    clusters with 1 member scored by updated_at (ms); the two
                                       zsets together hold every cluster of a processed article
{nd}:bp:<source>               hash    boilerplate learning per source: field = 8-byte line-shape
                                       hash -> number of docs containing it; field "#docs" = docs
                                       (stories stored: a removed article's shapes are taken back)
{nd}:none:<reason>             set     numbers of done articles without story text, per reason
                                       (script, undecodable, too_short): counted in GET /v1/stats
{nd}:q                         stream  work queue; entries {n, ver, rid (request id)}; group "workers"
{nd}:q:dead                    stream  dead-lettered entries {n, ver, reason, attempts}
{nd}:meta                      hash    counters: queued (accepted, not yet done or failed), failed,
                                       expired (removed by the retention sweeper);
                                       index: the parameters the index was built with
{nd}:expiry                    zset    every stored article number scored by its retention time (ms:
                                       ingested_at, or published_at under NEWSDEDUP_RETENTION_BY=
                                       published); written and removed with the article
{nd}:gone:<id>                 string  tombstone of an expired article: when it expired (ms); expires
                                       itself after one retention window (GET answers "expired")
{nd}:unband                    hash    band entries still to remove: article number -> the signature
                                       it was indexed with. Written by the removal transaction (the
                                       article goes in the data slot, its band entries in the group
                                       slots after it), deleted once they are out; a removal that
                                       finds some left (a crash in between) removes them first
{nd}:sweep                     string  the sweeper lease: a random token of the worker sweeping;
                                       expires (PX) if that worker dies
{nd}:rl:<client>:<minute>      string  per-client request counter for rate limiting (expires)
{nd}:events                    stream  the events feed (GET /v1/events): entries {type, at, data
                                       (JSON)}, capped at NEWSDEDUP_EVENTS_MAXLEN (approximately)
{nd}:metrics                   hash    counters behind /metrics (see newsdedup.observe.metrics)
{nd}:done:<bucket>             string  articles finished in one 10-second bucket (time // 10 s);
                                       expires after 2 hours (the overview's "last minute / hour")
{nd}:heads:<chunk>             string  headline search, one string per 1024 article numbers
                                       (n // 1024): a record "<normalised title>\x1f<n>\x1e" per
                                       processed article, searched inside Redis with a plain
                                       substring find; the article's "head" field holds its record
                                       so that an update or a delete cuts it out
{nd}:csizes                    zset    clusters with 2+ members scored by size (largest clusters)
=============================  ======  ==============================================================

The LSH band table is split into ``BAND_GROUPS`` = 6 groups (band ``b`` in group
``b % 6``), each its own linear hash table (one per band of the group, split in step)
whose keys share one hash tag, so a group's insert-and-read is one atomic script in
one slot and every bucket it touches is declared in KEYS. A band value ``v`` (the low
32 bits of a band's 64-bit hash) lives in bucket ``v mod 2**level``, or
``v mod 2**(level+1)`` when that is below ``next``. When the group's average bucket
holds more than ``NEWSDEDUP_LSH_BUCKET_LOAD`` entries, bucket ``next`` of each of its
bands is split in two and ``next`` moves on (``level`` grows when it wraps), so
buckets stay small and an insert or lookup costs the same at any index size.
``NEWSDEDUP_LSH_BUCKET_BITS`` is only the starting level.

Group tags are chosen, not named: tag ``j`` is the first of ``nd.g<j>``, ``nd.g<j>.0``,
``nd.g<j>.1``, ... whose slot (CRC16 mod 16384) lies in the j-th sixth of the upper two
thirds of the slot space, so on 3 masters with equal slot ranges the groups spread 3 / 3
over the two masters that do not hold the data (tag ``{nd}``, slot 1031).

Older layouts, moved once by ``BandTable.ensure_index`` (newsdedup/index/band_table.py):
one table for all bands (``nd:bands`` state, ``nd:band:{band}:{bucket}`` buckets, renamed
to the ``{nd}:`` prefix with the rest by storage/migrate.py first) and, before it, fixed
bucket hashes ``nd:lsh:{band}:{bucket}``.

Blob partitions: ``PARTITIONS`` = 48 hash tags, one per partition, spread evenly over the
16,384 slots (48 divides over 2, 3, 4, 6, 8, 12, 16 masters). The tags are chosen, not named
(``{nd.p0}``..``{nd.p47}`` fall unevenly on equal slot ranges): tag ``i`` is the first string
``nd.p<i>``, then ``nd.p<i>.<k>`` (k = 0, 1, ...), whose slot lies in
``[i*16384//48, (i+1)*16384//48)``, so any split of the slots into equal ranges holds the same
number of partitions. A blob is one key: every write and read of it is in one slot.

Cluster ids are ``c`` + the article number of the cluster's earliest member,
so they are stable, short and need no lookup table: when two clusters merge
the smaller number wins and the other is recorded in ``{nd}:calias``.
"""

from __future__ import annotations

from redis.crc import key_slot

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
HEADLINE_CHUNK = 1024  # article numbers per {nd}:heads:<chunk> string
HEADLINE_SEP = "\x1e"  # ends each headline record
CLUSTER_SIZES = PREFIX + "csizes"
DONE_BUCKET_MS = 10_000
DONE_TTL_MS = 2 * 3600 * 1000
EXPIRY = PREFIX + "expiry"
SWEEP_LEASE = PREFIX + "sweep"
UNBAND = PREFIX + "unband"
LEGACY_LSH_PREFIX = OLD_PREFIX + "lsh:"  # fixed bucket hashes of indexes built before the band table
# the single-table layout (renamed from nd: with the rest by storage/migrate.py, then moved into the
# band groups by BandTable): buckets + "{band}:{bucket}", and its state
LEGACY_BAND_PREFIX = PREFIX + "band:"
LEGACY_BANDS = PREFIX + "bands"
# old names that storage/migrate.py does not rename: the band table moves its own legacy layouts
LEGACY_BAND_PREFIXES = (LEGACY_LSH_PREFIX,)

# Redis settings the layout relies on: article hashes (a few dozen small fields), their blobs (values up
# to a few KB: signature, compressed text) and small boilerplate hashes stay compact only in the small hash
# encoding. Passed to the embedded redis-server and raised by workers on a Redis that has lower limits.
HASH_ENCODING = {"hash-max-ziplist-entries": 1024, "hash-max-ziplist-value": 4096}
BP_DOCS_FIELD = b"#docs"


PARTITIONS = 48
SLOTS = 16384
BLOB_FIELDS = ("sig", "text", "page", "lines", "repeated")  # moved from {nd}:a:<n> to the article's blob
BLOB_MATCH = "{nd.p*}:x:*"  # SCAN pattern of every blob


def _chosen_tag(base: str, lo: int, hi: int) -> str:
    """The first of ``base``, ``base.0``, ``base.1``... whose slot lies in ``[lo, hi)``: tags are chosen,
    not named, so that any equal split of the slots spreads them evenly (docs/cluster.md)."""
    for k in range(-1, 1 << 20):
        tag = base if k < 0 else f"{base}.{k}"
        if lo <= key_slot(tag.encode()) < hi:
            return tag
    raise AssertionError(f"no tag found for {base}")  # pragma: no cover - CRC16 covers every range


PARTITION_TAGS = tuple(_chosen_tag(f"nd.p{i}", i * SLOTS // PARTITIONS, (i + 1) * SLOTS // PARTITIONS)
                       for i in range(PARTITIONS))


def blob(n: int) -> str:
    """Article ``n``'s blob: its bulky fields, in partition slot ``n % PARTITIONS``."""
    return f"{{{PARTITION_TAGS[n % PARTITIONS]}}}:x:{n}"


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


BAND_GROUPS = 6
_TAGGED_SLOTS = (5461, 16384)  # the upper two thirds of the slot space: off the data slot's master


def band_group(band: int) -> int:
    """The group of band ``band`` (round robin, so every group holds 6 or 7 of 37 bands)."""
    return band % BAND_GROUPS


def _group_tag(j: int) -> str:
    lo, hi = _TAGGED_SLOTS
    span = hi - lo
    return _chosen_tag(f"nd.g{j}", lo + j * span // BAND_GROUPS, lo + (j + 1) * span // BAND_GROUPS)


BAND_GROUP_TAGS = tuple(_group_tag(j) for j in range(BAND_GROUPS))


def band_state(g: int) -> str:
    """State hash (level, next, entries) of band group ``g``'s table."""
    return "{" + BAND_GROUP_TAGS[g] + "}:bands"


def bucket(g: int, band: int, addr: int) -> str:
    """Bucket ``addr`` of band ``band`` (in group ``g``): a string of 8-byte entries."""
    return "{" + BAND_GROUP_TAGS[g] + "}:band:" + str(band) + ":" + str(addr)
