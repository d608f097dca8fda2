"""Why two stored articles are (or are not) duplicates: the comparison behind GET /v1/articles/<a>/compare/<b>.

What is kept per article for this (written by the engine in the article's blob, see ``page_record``):
``text`` (the kept body), and when the submitted page holds more than that,
``page`` (the page's lines, packed like text; for a text submission the very
bytes the API queued) and ``lines`` (which of its lines were boilerplate and
title). Re-analysing the kept page is pure and cheap, so repeated blocks need
not be stored line by line. Articles stored before this (no ``page``) fall back
to their kept text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.errors import NotFound, TextUnavailable
from newsdedup.storage import blobs
from newsdedup.storage.records import decoded, pack_text, unpack_text
from newsdedup.storage.redis_client import Client
from newsdedup.storage.txn import guarded
from newsdedup.text.compare import Comparison, compare, marked
from newsdedup.text.normalize import normalize
from newsdedup.text.page import Page, analyse

MAX_PAGE_BYTES = 256 * 1024  # a packed page above this is not kept (the view falls back to the kept text)
MAX_HEADLINE_CHARS = 300
FIELDS = ("id", "title", "source", "url", "status", "cluster", "text", "page", "lines", "repeated")


def page_record(packed_text: bytes | None, page: Page, boilerplate: set[int], whole: bool
                ) -> dict[str, bytes | str]:
    """Fields that keep the submitted page next to its kept text (empty when it is too big to keep).

    ``whole``: the kept text is the submitted text itself, so only the (empty) line marks are kept.
    """
    lines = json.dumps({"bp": sorted(boilerplate), "title": sorted(page.title_lines)}, separators=(",", ":"))
    if whole:
        return {"lines": lines}
    packed = packed_text if packed_text is not None else pack_text("\n".join(ln.raw for ln in page.lines))
    if len(packed) > MAX_PAGE_BYTES:
        return {}
    return {"page": packed, "lines": lines}


def headline_member(title: str, n: int) -> str:
    """An article's headline-search record: its normalised title (separators folded to spaces), its number."""
    flat = " ".join(normalize(title).split())[:MAX_HEADLINE_CHARS]  # split() also drops \x1c-\x1f
    return f"{flat}\x1f{n}{keys.HEADLINE_SEP}"


@dataclass
class Line:
    """One line of a page as the comparison view shows it."""

    n: int
    text: str
    kept: bool = False
    boilerplate: bool = False
    title: bool = False
    block: int | None = None  # index of the repeated block this line belongs to (original or copy)
    copy: bool = False  # a later copy of a repeated block (left out of the body)
    spans: list[tuple[int, int]] = field(default_factory=list)  # shared passages, offsets in ``text``

    def segments(self) -> list[tuple[str, bool]]:
        return marked(self.text, self.spans)


@dataclass
class Side:
    article_id: str
    title: str
    source: str | None
    url: str | None
    cluster_id: str | None
    text: str  # the kept text the spans refer to
    lines: list[Line]
    repeated: list[dict[str, Any]]
    as_submitted: bool  # lines are the submitted page (else the kept text only)
    kept_starts: list[tuple[int, int]] = field(default_factory=list)  # (offset in text, line index)

    def report(self) -> dict[str, Any]:
        return {
            "id": self.article_id, "title": self.title, "source": self.source, "url": self.url,
            "cluster_id": self.cluster_id, "text": self.text,
            "page": "as_submitted" if self.as_submitted else "kept_text",
            "lines": len(self.lines),
            "boilerplate_lines": [{"line": ln.n, "text": ln.text} for ln in self.lines if ln.boilerplate],
            "repeated_blocks": self.repeated,
        }

    def place(self, span: tuple[int, int]) -> None:
        """Mark a passage (offsets in the kept text) on the page lines it covers."""
        s, e = span
        for off, i in self.kept_starts:
            ln = self.lines[i]
            lo, hi = max(s, off), min(e, off + len(ln.text))
            if lo < hi:
                ln.spans.append((lo - off, hi - off))


def _repeated(page: Page) -> tuple[list[dict[str, Any]], dict[int, tuple[int, bool]]]:
    """Repeated blocks (with their line numbers) and, per line, (block, is a later copy)."""
    blocks: list[dict[str, Any]] = []
    where: dict[int, tuple[int, bool]] = {}
    for b, blk in enumerate(page.repeated):
        originals: list[int] = []
        want = blk.text.split("\n")
        i = blk.first_line
        for raw in want:  # the original lines, in order from the first one
            while i < len(page.lines) and page.lines[i].raw != raw:
                i += 1
            if i < len(page.lines):
                originals.append(i)
                i += 1
        for i in originals:
            where.setdefault(i, (b, False))
        for i in blk.repeat_lines:
            where[i] = (b, True)
        blocks.append({**blk.report(page.total_chars), "first_line": blk.first_line,
                       "line_numbers": originals, "repeat_lines": list(blk.repeat_lines)})
    return blocks, where


def _locate(text: str, raws: list[str]) -> list[int] | None:
    """Where each kept line starts in the kept text (in order), or None when one is not there."""
    out = []
    at = 0
    for raw in raws:
        i = text.find(raw, at)
        if i < 0:
            return None
        out.append(i)
        at = i + len(raw)
    return out


def side(article_id: str, rec: dict[bytes, bytes]) -> Side:
    """One article's page, with its kept lines, boilerplate and repeated blocks marked."""
    status = decoded(rec.get(b"status"))
    if not rec.get(b"text"):
        if status != "done":
            raise TextUnavailable(f"article {article_id!r} is {status}, not processed yet; compare it once it is "
                                  "done")
        raise TextUnavailable(f"article {article_id!r} has no kept text (stored with NEWSDEDUP_KEEP_TEXT=false); "
                              "set NEWSDEDUP_KEEP_TEXT=true and post it again to compare it")
    text = unpack_text(rec[b"text"])
    title = decoded(rec.get(b"title")) or ""
    page, kept, bp, titles = None, [], set(), set()
    if rec.get(b"lines"):  # the page as submitted ("page"), or the kept text when it was the whole page
        try:
            info = json.loads(rec[b"lines"])
            page = analyse(title, text=unpack_text(rec[b"page"]) if rec.get(b"page") else text)
            bp, titles = {int(i) for i in info["bp"]}, {int(i) for i in info["title"]}
            page.title_lines = titles
            kept = page.kept(bp)
            if _locate(text, [page.lines[i].raw for i in kept]) is None:  # analysed otherwise since: do not guess
                page = None
        except (ValueError, KeyError, TypeError):
            page = None
    as_submitted = page is not None
    if page is None:
        page = analyse("", text=text)
        bp, titles = set(), set()
        kept = [i for i, ln in enumerate(page.lines) if ln.ntok]
    blocks, where = _repeated(page) if as_submitted else ([], {})
    if not as_submitted:
        try:
            blocks = json.loads(rec.get(b"repeated") or b"[]")
        except ValueError:
            blocks = []
    lines = []
    for i, ln in enumerate(page.lines):
        blk = where.get(i)
        lines.append(Line(n=i, text=ln.raw, boilerplate=i in bp, title=i in titles,
                          block=blk[0] if blk else None, copy=bool(blk and blk[1])))
    offsets = _locate(text, [page.lines[i].raw for i in kept]) or []
    for i in kept:
        lines[i].kept = True
    starts = list(zip(offsets, kept))
    return Side(article_id=article_id, title=title, source=decoded(rec.get(b"source")) or None,
                url=decoded(rec.get(b"url")) or None,
                cluster_id=decoded(rec.get(b"cluster")) if status == "done" else None, text=text, lines=lines,
                repeated=blocks, as_submitted=as_submitted, kept_starts=starts)


@dataclass
class Explanation:
    a: Side
    b: Side
    result: Comparison

    def report(self) -> dict[str, Any]:
        r = self.result
        return {
            "a": self.a.report(), "b": self.b.report(),
            "same_cluster": self.a.cluster_id is not None and self.a.cluster_id == self.b.cluster_id,
            "similarity": r.jaccard, "containment": {"a_in_b": r.a_in_b, "b_in_a": r.b_in_a},
            "shingle_length": r.shingle_length,
            "shingles": {"a": r.shingles_a, "b": r.shingles_b, "shared": r.shared},
            "passages": [p.report() for p in r.passages],
        }


@guarded
def explain(client: Client, config: Config, a_id: str, b_id: str) -> Explanation:
    """Compare two stored articles (in one cluster or not) from what was kept of them."""
    r: Any = client
    nums = r.hmget(keys.IDS, [a_id, b_id])
    pipe = r.pipeline(transaction=False)
    for i, n in zip((a_id, b_id), nums):
        if n is None:
            raise NotFound(f"no article with id {i!r}")
        pipe.hmget(keys.article(int(n)), *FIELDS)
    recs = []
    for i, row in zip((a_id, b_id), pipe.execute()):
        if row[0] is None:
            raise NotFound(f"no article with id {i!r}")
        recs.append({f.encode(): v for f, v in zip(FIELDS, row) if v is not None})
    blobs.merged(r, [int(n) for n in nums], recs, ("text", "page", "lines", "repeated"))
    sa, sb = side(a_id, recs[0]), side(b_id, recs[1])
    result = compare(sa.text, sb.text, config.shingle_cjk, config.shingle_latin)
    for p in result.passages:
        sa.place(p.a)
        sb.place(p.b)
    return Explanation(a=sa, b=sb, result=result)
