"""Pages become features: boilerplate (learned per source in Redis, plus the batch itself), body, shingles.

Boilerplate counts are read with one script for the whole batch; the decision is pure
(:mod:`newsdedup.text.boilerplate`). Signatures are computed for the batch at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.engine.jobs import Features
from newsdedup.index.minhash import signatures
from newsdedup.storage.scripts import Scripts
from newsdedup.text.boilerplate import batch_boilerplate, boilerplate_lines
from newsdedup.text.page import Page
from newsdedup.text.tokens import shingle_hashes

log = logging.getLogger(__name__)

MAX_BOILERPLATE_FIELDS = 20_000  # per source; above it, shapes seen in one story only are forgotten


class Analysis:
    """Features of pages, given what Redis knows of their sources' chrome."""

    def __init__(self, client: Any, config: Config, scripts: Scripts) -> None:
        self.r = client
        self.cfg = config
        self.scripts = scripts

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

    def prune(self, sources: set[str]) -> None:
        """Keep each source's boilerplate state bounded (checked with one HLEN per source)."""
        ordered = sorted(sources)
        pipe = self.r.pipeline(transaction=False)
        for src in ordered:
            pipe.hlen(keys.boilerplate(src))
        for src, size in zip(ordered, pipe.execute()):
            if int(size) > MAX_BOILERPLATE_FIELDS:
                removed = self.scripts.prune_boilerplate(keys=[keys.boilerplate(src)], args=[MAX_BOILERPLATE_FIELDS])
                log.info("boilerplate state of %r pruned: %s one-story line shapes forgotten", src, removed)
