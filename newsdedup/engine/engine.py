"""The deduplication engine: from queued articles to verified duplicates and clusters.

A batch goes through four steps, each a constant number of Redis round trips
whatever the batch size (each step is a module of this package or of ``index``):

1. read the article records (here);
2. analyse the pages and read what is known of each source's boilerplate
   (``analysis.py``, one script);
3. compute signatures for the whole batch, write them (one script), insert them
   into the LSH band groups and get the candidates back (``index/band_table.py``,
   one script per group, pipelined: insert-and-read is atomic per group, so two
   copies handled at the same moment by two workers always meet);
4. verify candidates with the estimated Jaccard and containment
   (``verify.py``), then place every article in a cluster with one
   compare-and-set transaction retried on a concurrent change (``linking.py``),
   which also marks it done and acknowledges the queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.engine.analysis import Analysis
from newsdedup.engine.jobs import Job
from newsdedup.engine.linking import Linker, detach
from newsdedup.engine.verify import Verifier
from newsdedup.errors import ProcessingError
from newsdedup.explain import page_record
from newsdedup.index.band_table import BandTable, IndexRow
from newsdedup.observe import events, metrics
from newsdedup.storage import blobs
from newsdedup.storage.records import decoded, now_ms, pack_sig, pack_text, unpack_payload, unpack_sig
from newsdedup.storage.redis_client import Client
from newsdedup.storage.scripts import Scripts
from newsdedup.storage.txn import Txn
from newsdedup.text.boilerplate import clean_text, source_key
from newsdedup.text.page import Page, analyse_many

log = logging.getLogger(__name__)

# what the worker reads of a queued article (with its payload); "sig": only articles stored before blobs
RECORD_FIELDS = ("id", "ver", "status", "title", "source", "url", "iver", "sig", "cluster", "head")


class Engine:
    """Runs a batch of queued articles through every stage; each stage lives in its own module."""

    def __init__(self, client: Client, config: Config) -> None:
        self.r: Any = client  # a bytes client; redis-py types replies as unions over decode modes
        self.cfg = config
        self.scripts = Scripts(client, wait_replicas=config.wait_replicas, wait_timeout_ms=config.wait_timeout_ms)
        self.index = BandTable(client, config, self.scripts)
        self.analysis = Analysis(client, config, self.scripts)
        self.verifier = Verifier(config, self.scripts)
        self.linker = Linker(client, config, self.scripts)

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
            if not any(ln.ntok for ln in page.lines) and not (page.removed.script or page.removed.undecodable):
                j.error = "no text found in the page" if html is not None else "text has no words"
                continue
            pages.append(page)
            srcs.append(source_key(decoded(j.record.get(b"source")), decoded(j.record.get(b"url"))))
            analysed.append(j)
        feats = self.analysis.analyse_pages(pages, srcs, in_batch=True)
        for j, f, src in zip(analysed, feats, srcs):
            j.features = f
            j.source = src
        self.analysis.sign(feats)
        self._index(analysed)
        need = sorted({m for j in analysed for m in j.candidates})
        data = self.verifier.candidate_data(need)
        for j in analysed:
            assert j.features is not None
            data[j.n] = (j.features.sig, j.features.size)  # type: ignore[assignment]
        for j in analysed:
            assert j.features is not None
            j.edges = self.verifier.verify(j.features, j.candidates, data)
        heads = self.verifier.edge_heads(e for j in analysed for e in j.edges)
        for j in analysed:
            assert j.features is not None
            j.edges, j.teaches = self.verifier.title_gate(j.features, decoded(j.record.get(b"title")) or "",
                                                          j.edges, heads)
        self.linker.link(analysed)
        self.analysis.prune({j.source for j in analysed})
        self._finish_skipped([j for j in jobs if j.skip is not None or j.error is not None])
        return jobs

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
        """Write each article's features and insert it into the band table; collect its candidates."""
        if not jobs:
            return
        # updates: remove the previous version's band entries first (idempotent)
        stale = []
        updated = [j for j in jobs if detach(j)]
        for j, got in zip(updated, blobs.read(self.r, [j.n for j in updated], ("sig",), [j.record for j in updated])):
            old = got.get(b"sig")
            if old:
                old_sig = unpack_sig(old, self.cfg.num_perm)
                if old_sig is not None:
                    stale.append((j.n, old_sig))
        self.index.unindex_many(stale)
        rows: list[IndexRow] = []
        blob_rows: list[tuple[int, int, dict[str, Any]]] = []
        for j in jobs:
            f = j.features
            assert f is not None and f.sig is not None
            blocks, share = f.page.repeated_report()
            values: dict[str, Any] = {
                "sig": pack_sig(f.sig), "size": f.size, "tokens": f.tokens, "iver": j.ver,
                "repeated": json.dumps(blocks, ensure_ascii=False), "rshare": share,
                "bp_lines": len(f.boilerplate), "ntitle": len(f.page.title_lines),
                "content": "story" if f.content_reason is None else "none", "content_reason": f.content_reason or "",
                "thin": int(f.thin),
            }
            if self.cfg.keep_text:
                whole = j.packed_text is not None and len(f.page.kept(f.boilerplate)) == f.page.word_lines
                # the whole text is the body: keep it as the client wrote it, already compressed
                values["text"] = j.packed_text if whole else pack_text(clean_text(f.page, f.boilerplate))
                values.update(page_record(j.packed_text, f.page, f.boilerplate, whole))  # for explanations
            if not j.record.get(b"cluster"):
                values["cluster"] = keys.cluster_id(j.n)
            bulky = {k: values.pop(k) for k in keys.BLOB_FIELDS if k in values}
            blob_rows.append((j.n, j.ver, bulky))
            rows.append((keys.article(j.n), j.n, j.ver, f.sig if self.analysis.indexable(f) else None, values))
        # the blob first: whoever finds the article through the band table finds its signature
        blobs.write(self.r, blob_rows)
        blobs.drop_legacy(self.r, [j.n for j in jobs if b"sig" in j.record])  # stored before blobs
        moved_on = []
        for j, found in zip(jobs, self.index.insert(rows)):
            if found is None:
                j.skip = "superseded"
                moved_on.append((j.n, j.ver))
            else:
                j.candidates = found
        blobs.drop_if(self.r, moved_on)  # a blob of a version that will never be visible

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

