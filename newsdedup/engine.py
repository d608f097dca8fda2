"""The deduplication engine: from queued articles to verified duplicates and clusters.

A batch goes through four steps, each a constant number of Redis round trips
whatever the batch size:

1. read the article records;
2. analyse the pages and read what is known of each source's boilerplate (one script);
3. compute signatures for the whole batch, insert them into the LSH buckets
   and get the candidates back (one script: insert-and-read is atomic, so two
   copies handled at the same moment by two workers always meet);
4. verify candidates with the estimated Jaccard and containment, then place
   every article in a cluster with one compare-and-set transaction (retried on
   a concurrent change), which also marks it done and acknowledges the queue.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import redis

from . import events, keys, metrics
from .clustering import Placement, plan
from .config import Config
from .errors import IndexMismatch, ProcessingError
from .minhash import Banding, containments, jaccard, signatures
from .prepare import Page, analyse_many, boilerplate_lines, clean_text
from .records import decoded, distinct_members, n4, now_ms, pack_sig, pack_text, unpack_payload, unpack_sig
from .store import Scripts, Txn
from .text import shingle_hashes

log = logging.getLogger(__name__)

MIN_CONTAINMENT_SHINGLES = 20  # containment of a tiny text in a big one says nothing
MAX_BOILERPLATE_FIELDS = 20_000  # per source; above it, shapes seen in one story only are forgotten
MAX_BUCKET_MEMBERS = 4096  # articles sharing one band value (boilerplate-only pages): no more are added
MAX_CANDIDATES = 2000
# what the worker reads of a queued article (with its payload)
RECORD_FIELDS = ("id", "ver", "status", "title", "source", "url", "iver", "sig", "cluster")
TXN_RETRIES = 50


@dataclass
class Features:
    """What the engine derives from one page."""

    page: Page
    boilerplate: set[int]
    tokens: int
    shingles: npt.NDArray[np.uint64]
    sig: npt.NDArray[np.uint32] | None = None

    @property
    def size(self) -> int:
        return len(self.shingles)


@dataclass
class Edge:
    n: int
    similarity: float
    containment: float  # the larger of the two containments

    @property
    def score(self) -> float:
        return max(self.similarity, self.containment)


@dataclass
class Job:
    """One stream entry being processed."""

    entry_id: bytes
    n: int
    ver: int
    record: dict[bytes, bytes] = field(default_factory=dict)
    features: Features | None = None
    candidates: list[int] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    source: str = "_"
    packed_text: bytes | None = None  # the submitted text, compressed as kept text is
    skip: str | None = None  # why the entry needs no work (acknowledged only)
    error: str | None = None  # permanent failure (dead-lettered at once)
    rid: str = ""  # the request id that queued it (X-Request-ID), for logs and events


def source_key(source: str | None, url: str | None) -> str:
    """Boilerplate is learned per source: the given source, else the URL's host."""
    if source:
        return source.strip().casefold()[:200]
    if url:
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if host:
            return host.casefold()
    return "_"


def batch_boilerplate(pages: Sequence[Page], sources: Sequence[str]
                      ) -> tuple[list[dict[bytes, int]], list[int]]:
    """Line-shape counts among the *stories* of a batch, per source.

    The first batch from a new site must not wait for Redis to learn its chrome.
    Pages of one source in the batch whose lines mostly agree (weighted by
    tokens) are copies of one story and count once, so a story posted several
    times never makes its own body look like chrome.
    """
    groups_by_src: dict[str, list[tuple[dict[bytes, int], set[int], int]]] = {}
    by_shape: dict[str, dict[bytes, list[int]]] = {}  # per source: shape -> groups having it
    member_group: list[tuple[str, int]] = []
    for i, (page, src) in enumerate(zip(pages, sources)):
        weights: dict[bytes, int] = {}
        for ln in page.lines:
            if ln.shape:
                weights[ln.shape] = max(weights.get(ln.shape, 0), ln.ntok)
        total = sum(weights.values()) or 1
        groups = groups_by_src.setdefault(src, [])
        index = by_shape.setdefault(src, {})
        # only groups sharing a shape can agree: visit those, in the order the groups were made
        for gi in sorted({g for sh in weights for g in index.get(sh, ())}):
            gw, members, gtotal = groups[gi]
            shared = sum(min(w, gw[s]) for s, w in weights.items() if s in gw)
            if shared * 2 >= total or shared * 2 >= gtotal:
                members.add(i)
                member_group.append((src, gi))
                break
        else:
            for sh in weights:
                index.setdefault(sh, []).append(len(groups))
            groups.append((weights, {i}, sum(weights.values()) or 1))
            member_group.append((src, len(groups) - 1))
    counts_by_src: dict[str, dict[bytes, int]] = {}
    for src, groups in groups_by_src.items():
        c: dict[bytes, int] = {}
        for _weights, members, _total in groups:
            shapes: set[bytes] = set()
            for i in members:
                shapes.update(pages[i].shapes)
            for sh in shapes:
                c[sh] = c.get(sh, 0) + 1
        counts_by_src[src] = c
    counts = [counts_by_src[src] for src, _ in member_group]
    docs = [len(groups_by_src[src]) for src, _ in member_group]
    return counts, docs


class Engine:
    def __init__(self, client: redis.Redis, config: Config) -> None:
        self.r: Any = client  # a bytes client; redis-py types replies as unions over decode modes
        self.cfg = config
        self.banding = Banding.for_threshold(config.lsh_threshold, config.num_perm)
        self.scripts = Scripts(client)
        self._index_ok = False
        # what the band-table scripts are told: where buckets live, how the table starts and grows
        self.table_args: tuple[str, int, int, int] = (keys.BAND_PREFIX, config.lsh_bucket_bits,
                                                      config.lsh_bucket_load, self.banding.bands)

    # ------------------------------------------------------------------ index parameters

    def index_params(self) -> str:
        """What stored signatures and band values depend on; changing any of it needs a new index."""
        b = self.banding
        return (f"num_perm={self.cfg.num_perm} bands={b.bands} rows={b.rows} "
                f"shingle_cjk={self.cfg.shingle_cjk} shingle_latin={self.cfg.shingle_latin} tokens=v1 lsh=table")

    def _legacy_params(self, stored: str | None) -> bool:
        """Whether ``stored`` describes this configuration's index in the fixed-bucket layout."""
        if stored is None:
            return False
        legacy = re.sub(r" bucket_bits=\d+", "", stored)
        return legacy != stored and legacy + " lsh=table" == self.index_params()

    def ensure_index(self, recheck: bool = False) -> None:
        """Record the index parameters on first use; refuse to work on an index built otherwise.

        ``recheck`` after a reconnect: Redis may have come back empty (then this records them again).
        An index in the old fixed-bucket layout with the same parameters is moved into the band
        table first.
        """
        if self._index_ok and not recheck:
            return
        mine = self.index_params()
        self.r.hsetnx(keys.META, "index", mine)
        stored = decoded(self.r.hget(keys.META, "index"))
        if stored != mine and self._legacy_params(stored):
            self.migrate_buckets(stored or "")
            stored = decoded(self.r.hget(keys.META, "index"))
        if stored != mine:
            raise IndexMismatch(
                f"the index in Redis was built with [{stored}] but this process is configured for [{mine}]; "
                "set NEWSDEDUP_NUM_PERM, NEWSDEDUP_LSH_THRESHOLD and NEWSDEDUP_SHINGLE_CJK/LATIN back to the "
                "values it was built with, or point REDIS_URL at an empty database to build a new index")
        self._index_ok = True

    def migrate_buckets(self, legacy: str) -> int:
        """Move an index's fixed bucket hashes (``nd:lsh:*``) into the band table; entries moved.

        Each chunk of keys moves atomically and a moved key is gone, so processes that start at
        the same moment can both run this; the parameters are switched once nothing is left.
        Workers of the earlier version must be stopped first: they would keep writing old buckets.
        """
        log.info("moving the LSH index from fixed buckets into the band table (once; measured 7 s per 100k articles)")
        moved = 0
        while True:
            legacy_keys = list(self.r.scan_iter(match=keys.LEGACY_LSH_PREFIX + "*", count=1000))
            if not legacy_keys:
                break
            # a few keys per call: at 1M articles a legacy bucket holds ~1,000 entries
            for i in range(0, len(legacy_keys), 16):
                chunk = legacy_keys[i:i + 16]
                bands = [key.decode().split(":")[2] for key in chunk]
                moved += int(self.scripts.migrate_buckets(keys=[keys.BANDS, *chunk], args=[*self.table_args, *bands]))
        txn = Txn().expect_field(keys.META, "index", legacy).hset(keys.META, {"index": self.index_params()})
        self.scripts.run(txn)
        if moved:
            log.info("moved %d LSH entries from fixed buckets into the band table", moved)
        return moved

    # ------------------------------------------------------------------ analysis

    def analyse_pages(self, pages: Sequence[Page], sources: Sequence[str], in_batch: bool = False
                      ) -> list[Features]:
        """Boilerplate (learned per source in Redis, plus the batch itself), body, tokens and shingles."""
        txn_keys: list[str] = []
        argv: list[bytes | str | int] = []
        for page, src in zip(pages, sources):
            txn_keys.append(keys.boilerplate(src))
            shapes = page.shapes
            argv.extend((len(txn_keys), len(shapes), *shapes))
        flat = self.scripts.boilerplate(keys=txn_keys, args=argv) if pages else []
        rows, at = [], 0
        for page in pages:
            rows.append(flat[at:at + 1 + len(page.shapes)])
            at += 1 + len(page.shapes)
        batch_counts, batch_docs = batch_boilerplate(pages, sources) if in_batch else ([{}] * len(pages),
                                                                                         [0] * len(pages))
        out = []
        for page, row, extra, extra_docs in zip(pages, rows, batch_counts, batch_docs):
            docs = int(row[0]) + extra_docs
            counts = [int(c) + extra.get(sh, 0) for sh, c in zip(page.shapes, row[1:])]
            bp = boilerplate_lines(page, counts, docs, self.cfg.boilerplate_min_docs,
                                   self.cfg.boilerplate_min_share)
            out.append(self.features(page, bp))
        return out

    def features(self, page: Page, bp: set[int]) -> Features:
        toks, cjk = page.body_tokens(bp)
        k = self.cfg.shingle_cjk if cjk else self.cfg.shingle_latin
        return Features(page=page, boilerplate=bp, tokens=len(toks), shingles=shingle_hashes(toks, k))

    def sign(self, feats: Sequence[Features]) -> None:
        sigs = signatures([f.shingles for f in feats], self.cfg.num_perm)
        for f, s in zip(feats, sigs):
            f.sig = s

    def indexable(self, f: Features) -> bool:
        return f.tokens >= self.cfg.min_tokens and f.size > 0

    # ------------------------------------------------------------------ verification

    def verify(self, f: Features, cands: list[int], data: dict[int, tuple[npt.NDArray[np.uint32], int]]
               ) -> list[Edge]:
        """Candidates whose estimated Jaccard or containment makes them duplicates."""
        ok = [m for m in cands if m in data]
        if not ok or f.sig is None:
            return []
        sigs = np.stack([data[m][0] for m in ok])
        sizes = np.array([data[m][1] for m in ok], dtype=np.int64)
        j = jaccard(f.sig, sigs)
        a_in_b, b_in_a = containments(j, f.size, sizes)
        small = np.minimum(sizes, f.size) >= MIN_CONTAINMENT_SHINGLES
        cont = np.where(small, np.maximum(a_in_b, b_in_a), 0.0)
        hit = (j >= self.cfg.sim_threshold) | (cont >= self.cfg.containment_threshold)
        at = np.flatnonzero(hit)
        return [Edge(n=ok[i], similarity=s, containment=c)
                for i, s, c in zip(at.tolist(), np.round(j[at], 4).tolist(), np.round(cont[at], 4).tolist())]

    def candidate_data(self, ns: Sequence[int]) -> dict[int, tuple[npt.NDArray[np.uint32], int]]:
        out = {}
        for m, (sig_b, size_b) in zip(ns, self.scripts.hmget_many([keys.article(m) for m in ns], ("sig", "size"))):
            sig = unpack_sig(sig_b, self.cfg.num_perm) if sig_b else None
            if sig is not None and size_b is not None:
                out[m] = (sig, int(size_b))
        return out

    # ------------------------------------------------------------------ processing

    def process(self, entries: Sequence[tuple[bytes, int, int] | tuple[bytes, int, int, str]]) -> list[Job]:
        """Process stream entries (id, article number, version); acknowledges what it finishes.

        Raises on storage errors (the entries stay pending and are retried);
        per-article failures are returned in ``Job.error`` / raised as ProcessingError
        only when the whole batch cannot proceed.
        """
        jobs = [Job(entry_id=e[0], n=e[1], ver=e[2], rid=e[3] if len(e) > 3 else "") for e in entries]
        self._load(jobs)
        readable: list[tuple[Job, tuple[str, str | None, str | None]]] = []
        for j in jobs:
            if j.skip is None:
                try:
                    readable.append((j, self._content(j)))
                except ProcessingError as exc:
                    j.error = exc.message
        pages: list[Page] = []
        srcs: list[str] = []
        analysed: list[Job] = []
        for (j, (_, _, html)), page in zip(readable, analyse_many([c for _, c in readable])):
            if not any(ln.ntok for ln in page.lines):
                j.error = "no text found in the page" if html is not None else "text has no words"
                continue
            pages.append(page)
            srcs.append(source_key(decoded(j.record.get(b"source")), decoded(j.record.get(b"url"))))
            analysed.append(j)
        feats = self.analyse_pages(pages, srcs, in_batch=True)
        for j, f, src in zip(analysed, feats, srcs):
            j.features = f
            j.source = src
        self.sign(feats)
        self._index(analysed)
        need = sorted({m for j in analysed for m in j.candidates})
        data = self.candidate_data(need)
        for j in analysed:
            assert j.features is not None
            data[j.n] = (j.features.sig, j.features.size)  # type: ignore[assignment]
        for j in analysed:
            assert j.features is not None
            j.edges = self.verify(j.features, j.candidates, data)
        self._link(analysed)
        self._prune({j.source for j in analysed})
        self._finish_skipped([j for j in jobs if j.skip is not None or j.error is not None])
        return jobs

    def unindex(self, txn: Txn, n: int, sig: npt.NDArray[np.uint32]) -> Txn:
        """Writes that take article ``n`` (indexed with ``sig``) out of the band table."""
        values = self.banding.band_values(sig[None, :])[0].tobytes()
        for band in range(self.banding.bands):
            txn.unband(keys.BANDS, keys.BAND_PREFIX, self.cfg.lsh_bucket_bits, band, values[4 * band:4 * band + 4],
                       n4(n))
        return txn

    def lookup(self, sig: npt.NDArray[np.uint32]) -> list[int]:
        """Indexed articles sharing a band value with ``sig`` (read only; POST /v1/check)."""
        values = self.banding.band_values(sig[None, :])[0].tobytes()
        found = self.scripts.lookup(keys=[keys.BANDS], args=[keys.BAND_PREFIX, self.cfg.lsh_bucket_bits, values])
        return distinct_members(found)[:MAX_CANDIDATES]

    def _load(self, jobs: list[Job]) -> None:
        res = self.scripts.load([(keys.article(j.n), keys.payload(j.n)) for j in jobs], RECORD_FIELDS)
        for j, (rec, payload) in zip(jobs, res):
            if rec and payload is not None:
                rec[b"payload"] = payload
            j.record = rec
            if not rec:
                j.skip = "deleted"
            elif int(rec.get(b"ver", b"0")) != j.ver:
                j.skip = "superseded"
            elif rec.get(b"status") in (b"done", b"failed"):
                j.skip = "already processed"

    def _content(self, j: Job) -> tuple[str, str | None, str | None]:
        """(title, text, html) of a queued article."""
        try:
            text, html, j.packed_text = unpack_payload(j.record.get(b"payload"))
        except Exception as exc:  # a corrupt record is a permanent failure, not a crash
            raise ProcessingError(f"stored payload cannot be read: {exc}") from exc
        return decoded(j.record.get(b"title")) or "", text, html

    def _index(self, jobs: list[Job]) -> None:
        """Insert signatures into the LSH band table; collect each article's candidates."""
        if not jobs:
            return
        feats = [j.features for j in jobs]
        sigs = np.stack([f.sig for f in feats])  # type: ignore[union-attr,misc]
        # updates: remove the previous version's band entries first (idempotent)
        stale = Txn()
        for j in jobs:
            old = j.record.get(b"sig")
            if old and self._detach(j):
                old_sig = unpack_sig(old, self.cfg.num_perm)
                if old_sig is not None:
                    self.unindex(stale, j.n, old_sig)
        if stale.writes:
            self.scripts.run(stale)
        values_le = self.banding.band_values(sigs)
        txn = Txn()
        txn.k(keys.BANDS)
        argv: list[Any] = [MAX_BUCKET_MEMBERS, *self.table_args]
        for i, j in enumerate(jobs):
            f = j.features
            assert f is not None and f.sig is not None
            blocks, share = f.page.repeated_report()
            values: dict[str, Any] = {
                "sig": pack_sig(f.sig), "size": f.size, "tokens": f.tokens, "iver": j.ver,
                "repeated": json.dumps(blocks, ensure_ascii=False), "rshare": share,
                "bp_lines": len(f.boilerplate), "ntitle": len(f.page.title_lines),
            }
            if self.cfg.keep_text:
                whole = j.packed_text is not None and len(f.page.kept(f.boilerplate)) == f.page.word_lines
                # the whole text is the body: keep it as the client wrote it, already compressed
                values["text"] = j.packed_text if whole else pack_text(clean_text(f.page, f.boilerplate))
            if not j.record.get(b"cluster"):
                values["cluster"] = keys.cluster_id(j.n)
            idx = self.indexable(f)
            argv.extend((txn.k(keys.article(j.n)), n4(j.n), j.ver, values_le[i].tobytes() if idx else b"",
                         len(values)))
            for k, v in values.items():
                argv.extend((k, v))
        res = self.scripts.index(keys=txn.keys, args=argv)
        for j, packed in zip(jobs, res):
            if packed is None or packed is False:
                j.skip = "superseded"
                continue
            j.candidates = distinct_members(packed, exclude=j.n)[:MAX_CANDIDATES]

    # ------------------------------------------------------------------ clustering

    def _link(self, jobs: list[Job]) -> None:
        """Place every processed article in a cluster, mark it done and ack it, atomically."""
        for attempt in range(TXN_RETRIES):
            jobs = [j for j in jobs if j.skip is None and j.error is None]
            if not jobs:
                return
            if self.scripts.run(self._link_txn(jobs, assume_alone=attempt == 0)):
                return
            # something changed under us: drop entries whose article moved on, back off, re-read
            pipe = self.r.pipeline(transaction=False)
            for j in jobs:
                pipe.hmget(keys.article(j.n), "ver", "status")
            for j, (ver, status) in zip(jobs, pipe.execute()):
                if ver is None or int(ver) != j.ver or status != b"queued":
                    j.skip = "changed while processing"
            time.sleep(min(0.05, 0.001 * (2 ** min(attempt, 6))))
        raise ProcessingError("could not place articles in clusters: too much concurrent change")

    def _prune(self, sources: set[str]) -> None:
        """Keep each source's boilerplate state bounded (checked with one HLEN per source)."""
        ordered = sorted(sources)
        pipe = self.r.pipeline(transaction=False)
        for src in ordered:
            pipe.hlen(keys.boilerplate(src))
        for src, size in zip(ordered, pipe.execute()):
            if int(size) > MAX_BOILERPLATE_FIELDS:
                removed = self.scripts.prune_boilerplate(keys=[keys.boilerplate(src)], args=[MAX_BOILERPLATE_FIELDS])
                log.info("boilerplate state of %r pruned: %s one-story line shapes forgotten", src, removed)

    @staticmethod
    def _detach(j: Job) -> bool:
        """An updated article starts over in a new cluster of its own."""
        return bool(j.record.get(b"iver")) and int(j.record[b"iver"]) != j.ver

    def _snapshot(self, ns: set[int]) -> tuple[dict[int, str], dict[str, set[int]], dict[str, bytes | None]]:
        order = sorted(ns)
        read = self.scripts.hmget_many([keys.article(m) for m in order], ("cluster",))
        cof = {m: c.decode() for m, (c,) in zip(order, read) if c}
        cids = sorted(set(cof.values()))
        state = self.scripts.cluster_state([(keys.cluster(c), keys.cluster_members(c)) for c in cids])
        members: dict[str, set[int]] = {}
        versions: dict[str, bytes | None] = {}
        for c, (v, mem) in zip(cids, state):
            versions[c] = v
            if v is None:  # an implicit singleton: the founding article alone
                members[c] = {m for m, cc in cof.items() if cc == c}
            else:
                members[c] = {int(x) for x in mem}
        return cof, members, versions

    def _link_txn(self, jobs: list[Job], assume_alone: bool = False) -> Txn:
        involved = {j.n for j in jobs} | {e.n for j in jobs for e in j.edges}
        # Most articles are new and alone in the cluster named after them. Their state need not be
        # read: the transaction checks it (article's cluster field, no cluster hash) and, if another
        # worker changed it meanwhile, fails; the retry then reads everything.
        alone = {j.n for j in jobs if assume_alone and not self._detach(j)
                 and (decoded(j.record.get(b"cluster")) or keys.cluster_id(j.n)) == keys.cluster_id(j.n)}
        cof, members, versions = self._snapshot(involved - alone)
        for n in alone:
            c = keys.cluster_id(n)
            if cof.setdefault(n, c) == c:
                if c not in versions:
                    members[c], versions[c] = {n}, None
                elif versions[c] is None:  # read as implicit through another article: n is in it too
                    members[c].add(n)
        # members of involved clusters may move too: their current cluster must be checked
        placements = []
        fresh: list[int] = []
        for j in jobs:
            detach = self._detach(j)
            if detach:
                fresh.append(j.n)
            placements.append(Placement(n=j.n, edges={e.n: e.score for e in j.edges if e.n in cof},
                                        detach=detach))
        if fresh:
            top = self.r.incrby(keys.SEQ, len(fresh))
            ids = {n: keys.cluster_id(top - i) for i, n in enumerate(fresh)}
            for p in placements:
                if p.detach:
                    p.fresh_id = ids[p.n]
        pl = plan(cof, members, placements, self.cfg.merge_ratio)
        now = now_ms()
        txn = Txn()
        for c, v in versions.items():
            if v is None:
                txn.expect_exists(keys.cluster(c), False)
            else:
                txn.expect_field(keys.cluster(c), "v", v)
        job_ns = {j.n: j for j in jobs}
        for m in sorted(involved):
            expected: dict[str, Any] = {"cluster": cof.get(m)}
            if m in job_ns:
                expected.update(ver=job_ns[m].ver, status="queued")
            txn.expect_fields(keys.article(m), expected)
        for c, mem in pl.members.items():
            old = members.get(c, set())
            explicit = versions.get(c) is not None
            if not mem:
                if explicit:
                    txn.delete(keys.cluster(c), keys.cluster_members(c))
                txn.zrem(keys.CLUSTERS, c).zrem(keys.SINGLES, c)
                continue
            if len(mem) == 1 and keys.cluster_id(next(iter(mem))) == c and not explicit:
                continue  # an implicit singleton needs no keys of its own
            if explicit:
                txn.sadd(keys.cluster_members(c), sorted(mem - old))
                txn.srem(keys.cluster_members(c), sorted(old - mem))
            else:  # an implicit singleton (or a new id) becomes explicit: write every member
                txn.hset(keys.cluster(c), {"created_at": now})
                txn.sadd(keys.cluster_members(c), sorted(mem))
            txn.hset(keys.cluster(c), {"size": len(mem), "canonical": min(mem), "updated_at": now})
            txn.hincrby(keys.cluster(c), "v", 1)
        multi: list[str] = []
        single: list[str] = []
        for c in sorted({pl.cluster_of[j.n] for j in jobs} | {c for c, m in pl.members.items() if m}):
            (multi if len(pl.members.get(c, members.get(c, set()))) >= 2 else single).append(c)
        txn.zadd(keys.CLUSTERS, now, *multi).zadd(keys.SINGLES, now, *single)
        txn.zrem(keys.SINGLES, *[c for c in multi if c in members])  # new ids were in neither set
        txn.zrem(keys.CLUSTERS, *[c for c in single if versions.get(c) is not None])  # implicit: never 2+
        for old_c, new_c in pl.merged_into.items():
            if versions.get(old_c) is not None:
                txn.hset(keys.CALIAS, {old_c: new_c})
        for m in pl.changed:
            txn.hset(keys.article(m), {"cluster": pl.cluster_of[m]})
        # Boilerplate is learned from stories, not copies: only an article that starts a cluster of
        # its own counts its line shapes, so a story reposted many times on one site never turns
        # its own body into "chrome". Counting here makes it exactly once, like the rest.
        learned: dict[str, dict[bytes, int]] = {}
        for j in jobs:
            final = pl.cluster_of[j.n]
            if j.features is not None and len(pl.members.get(final, members.get(final, set()))) == 1:
                counts = learned.setdefault(j.source, {keys.BP_DOCS_FIELD: 0})
                counts[keys.BP_DOCS_FIELD] += 1
                for sh in j.features.page.shapes:
                    counts[sh] = counts.get(sh, 0) + 1
        for src, counts in sorted(learned.items()):
            txn.hincrn(keys.boilerplate(src), counts)
        for j in jobs:
            txn.hset(keys.article(j.n), {"status": "done", "processed_at": now, "error": ""})
        txn.delete(*(keys.payload(j.n) for j in jobs))
        txn.xack(keys.QUEUE, keys.GROUP, *(j.entry_id for j in jobs))
        txn.hincrby(keys.META, "queued", -len(jobs))
        with_dups, merges = events.link_events(txn, self.cfg.events_maxlen, jobs, pl.cluster_of, pl.members, members,
                                               pl.merged_into, self._ids_of)
        metrics.count(txn, {b"processed:done": len(jobs), b"duplicates": with_dups, b"merges": merges,
                            **metrics.latency_fields((now - int(j.entry_id.split(b"-")[0])) / 1000 for j in jobs)})
        return txn

    def _ids_of(self, ns: Sequence[int]) -> dict[int, str]:
        """External ids of article numbers (those that still exist)."""
        rows = self.scripts.hmget_many([keys.article(m) for m in ns], ("id",))
        return {m: i.decode() for m, (i,) in zip(ns, rows) if i is not None}

    def _finish_skipped(self, jobs: list[Job]) -> None:
        """Acknowledge entries that need no work; fail permanently broken articles."""
        acks = Txn()
        for j in jobs:
            if j.error is not None:
                if not self.scripts.run(self.fail(Txn(), j.entry_id, j.n, j.ver, j.error, attempts=1,
                                                  article_id=decoded(j.record.get(b"id")) or "", rid=j.rid)):
                    acks.xack(keys.QUEUE, keys.GROUP, j.entry_id)  # the article moved on meanwhile
            else:
                acks.xack(keys.QUEUE, keys.GROUP, j.entry_id)
        self.scripts.run(acks)

    def fail(self, txn: Txn, entry_id: bytes, n: int, ver: int, reason: str, attempts: int, article_id: str = "",
             rid: str = "") -> Txn:
        """Dead-letter one entry: failed status with the reason, visible in stats, retryable."""
        txn.expect_field(keys.article(n), "ver", ver)
        txn.expect_field(keys.article(n), "status", "queued")
        txn.xadd(keys.DEAD, {"n": n, "ver": ver, "reason": reason[:2000], "attempts": attempts,
                             "entry": entry_id})
        txn.hset(keys.article(n), {"status": "failed", "error": reason[:2000], "attempts": attempts,
                                   "processed_at": now_ms()})
        txn.hincrby(keys.META, "failed", 1).hincrby(keys.META, "queued", -1)
        txn.xack(keys.QUEUE, keys.GROUP, entry_id)
        metrics.count(txn, {b"processed:failed": 1, b"dead_lettered": 1})
        return events.emit(txn, self.cfg.events_maxlen, events.FAILED, id=article_id, error=reason[:2000],
                           attempts=attempts, **({"request_id": rid} if rid else {}))

