"""From a submitted page to the text whose shingles are compared.

Real pages carry more than their story: navigation, share buttons, copyright
footers, lists of related stories, sometimes the whole body twice. This module
is pure: it splits a page into lines, finds repeated blocks inside the page,
and, given how often each line's *shape* has been seen across other pages of
the same source (learned in Redis by the engine), marks boilerplate lines.
What remains, each repeated block counted once, is the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import xxhash
from simhash import Simhash

from .extract import extract
from .text import TOKEN_RE, line_shape, normalize

_SENTENCE_END = re.compile(r"[.!?。！？；;…\"”’'）)]\s*$")
MIN_REPEAT_TOKENS = 4  # shorter lines repeat by chance ("share", "home")
NEAR_REPEAT_TOKENS = 16  # lines this long may repeat with small differences (simhash)
MAX_LINES_COMPARED = 2000


@dataclass
class Line:
    raw: str
    norm: str
    ntok: int
    shape: bytes  # 8-byte hash of the digit/space-abstracted line; b"" for lines without tokens
    short: bool  # reads like a link or a heading, not a sentence


@dataclass
class RepeatedBlock:
    text: str
    lines: int
    chars: int
    occurrences: int
    first_line: int
    repeat_lines: list[int]

    def report(self, total_chars: int) -> dict[str, Any]:
        preview = self.text if len(self.text) <= 200 else self.text[:200] + "…"
        return {"text": preview, "lines": self.lines, "chars": self.chars, "occurrences": self.occurrences,
                "share": round(self.chars * self.occurrences / max(total_chars, 1), 4)}


@dataclass
class Page:
    title: str
    lines: list[Line]
    total_chars: int
    repeated: list[RepeatedBlock] = field(default_factory=list)
    redundant: set[int] = field(default_factory=set)  # later copies of repeated lines
    title_lines: set[int] = field(default_factory=set)

    @property
    def shapes(self) -> list[bytes]:
        """Distinct line shapes of this page (what boilerplate learning counts, once per page)."""
        seen: dict[bytes, None] = {}
        for ln in self.lines:
            if ln.shape:
                seen.setdefault(ln.shape, None)
        return list(seen)

    def repeated_report(self) -> tuple[list[dict[str, Any]], float]:
        blocks = [b.report(self.total_chars) for b in self.repeated]
        covered = sum(b.chars * b.occurrences for b in self.repeated)
        return blocks, round(min(1.0, covered / max(self.total_chars, 1)), 4)


def _line(raw: str) -> Line:
    norm = normalize(raw)
    toks = TOKEN_RE.findall(norm)
    ntok = len(toks)
    shape = xxhash.xxh64_digest(line_shape(norm).encode("utf-8")) if ntok else b""
    cjk_heavy = sum(len(t) == 1 for t in toks) * 2 > ntok
    short = ntok > 0 and (ntok <= (40 if cjk_heavy else 14)) and not _SENTENCE_END.search(raw)
    return Line(raw=raw, norm=norm, ntok=ntok, shape=shape, short=short)


def _content_key(ln: Line) -> str:
    return " ".join(TOKEN_RE.findall(ln.norm))


def analyse(title: str, text: str | None = None, html: str | None = None) -> Page:
    """Split a page into lines and find what repeats inside it."""
    if html is not None:
        html_title, text = extract(html)
        title = title or html_title
    raw_lines = [ln.strip() for ln in (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [_line(r) for r in raw_lines if r]
    page = Page(title=title, lines=lines, total_chars=sum(len(ln.raw) for ln in lines))
    if title:
        tkey = " ".join(TOKEN_RE.findall(normalize(title)))
        if tkey:
            page.title_lines = {i for i, ln in enumerate(lines) if ln.short and _content_key(ln) == tkey}
    _find_repeats(page)
    return page


def _find_repeats(page: Page) -> None:
    first: dict[str, int] = {}
    hashes: list[tuple[int, Simhash]] = []
    origin: dict[int, int] = {}  # redundant line -> line it repeats
    for i, ln in enumerate(page.lines[:MAX_LINES_COMPARED]):
        if ln.ntok < MIN_REPEAT_TOKENS:
            continue
        key = _content_key(ln)
        if key in first:
            origin[i] = first[key]
            continue
        first[key] = i
        if ln.ntok >= NEAR_REPEAT_TOKENS:
            sh = Simhash(TOKEN_RE.findall(ln.norm))
            near = next((j for j, h in hashes if sh.distance(h) <= 3), None)
            if near is not None:
                origin[i] = near
                continue
            hashes.append((i, sh))
    page.redundant = set(origin)
    # group redundant lines that follow each other (lines without content in between) into blocks
    blocks: list[list[int]] = []
    prev = -2
    for i in sorted(origin):
        gap = all(page.lines[j].ntok < MIN_REPEAT_TOKENS and j not in origin for j in range(prev + 1, i))
        if blocks and gap and i - prev <= 4:
            blocks[-1].append(i)
        else:
            blocks.append([i])
        prev = i
    # copies of the same original lines are one block seen several times
    merged: dict[tuple[int, ...], list[list[int]]] = {}
    for blk in blocks:
        merged.setdefault(tuple(origin[i] for i in blk), []).append(blk)
    for originals, copies in merged.items():
        text = "\n".join(page.lines[i].raw for i in originals)
        page.repeated.append(RepeatedBlock(
            text=text, lines=len(originals), chars=sum(len(page.lines[i].raw) for i in originals),
            occurrences=1 + len(copies), first_line=originals[0], repeat_lines=[i for c in copies for i in c]))
    page.repeated.sort(key=lambda b: -b.chars * b.occurrences)


def boilerplate_lines(page: Page, counts: list[int], docs: int, min_docs: int, min_share: float) -> set[int]:
    """Lines that are chrome of this page's source.

    ``counts[i]`` is how many pages of the source contain a line of the shape
    ``page.shapes[i]`` (this page included), ``docs`` how many pages it has.
    A shape seen in at least ``min_docs`` pages and ``min_share`` of them is
    boilerplate. Runs of short link-like lines (related stories, menus)
    touching boilerplate are boilerplate too: they change from page to page
    but are not the story.
    """
    need = max(min_docs, min_share * docs)
    frequent = {s for s, c in zip(page.shapes, counts) if c >= need}
    bp = {i for i, ln in enumerate(page.lines) if ln.shape in frequent}
    if not bp:
        return bp
    n = len(page.lines)
    changed = True
    while changed:
        changed = False
        i = 0
        while i < n:
            if i in bp or not page.lines[i].short:
                i += 1
                continue
            j = i
            while j < n and j not in bp and page.lines[j].short:
                j += 1
            # a run of short lines [i, j) bounded by boilerplate on a side
            if (i > 0 and i - 1 in bp) or (j < n and j in bp):
                bp.update(range(i, j))
                changed = True
            i = j
    return bp


def body(page: Page, boilerplate: set[int]) -> str:
    """Normalised body text: no boilerplate, no title lines, each repeated block once."""
    skip = boilerplate | page.redundant | page.title_lines
    kept = [ln.norm for i, ln in enumerate(page.lines) if i not in skip and ln.ntok]
    if not kept:  # never compare nothing: a page that is all chrome keeps its non-repeated lines
        kept = [ln.norm for i, ln in enumerate(page.lines) if i not in page.redundant and ln.ntok]
    return "\n".join(kept)


def clean_text(page: Page, boilerplate: set[int]) -> str:
    """The body as the client wrote it (not normalised), for explanations."""
    skip = boilerplate | page.redundant | page.title_lines
    return "\n".join(ln.raw for i, ln in enumerate(page.lines) if i not in skip and ln.ntok)
