"""From a submitted page to lines, line shapes and the blocks that repeat inside it.

Real pages carry more than their story: navigation, share buttons, copyright
footers, lists of related stories, sometimes the whole body twice. This module
is pure: it splits a page into lines, gives every line a *shape* (what
boilerplate learning counts) and finds repeated blocks inside the page, which
count once. Which lines are chrome is decided in :mod:`boilerplate`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import xxhash
from simhash import Simhash

from newsdedup.text.extract import extract
from newsdedup.text.normalize import normalize
from newsdedup.text.tokens import Tokens, token_hashes, tokenize

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
    start: int = 0  # first of this line's tokens in Page.tokens
    cjk: int = 0  # CJK-character tokens
    chars: int = 0  # characters in tokens


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
    tokens: npt.NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    repeated: list[RepeatedBlock] = field(default_factory=list)
    redundant: set[int] = field(default_factory=set)  # later copies of repeated lines
    title_lines: set[int] = field(default_factory=set)

    @property
    def word_lines(self) -> int:
        """Lines with at least one token."""
        return sum(1 for ln in self.lines if ln.ntok)

    def line_tokens(self, i: int) -> npt.NDArray[np.uint64]:
        ln = self.lines[i]
        return self.tokens[ln.start:ln.start + ln.ntok]

    def kept(self, boilerplate: set[int]) -> list[int]:
        """Lines of the body: no boilerplate, no title lines, each repeated block once.

        A page that is all chrome keeps its non-repeated lines: never compare nothing.
        """
        skip = boilerplate | self.redundant | self.title_lines
        kept = [i for i, ln in enumerate(self.lines) if i not in skip and ln.ntok]
        return kept or [i for i, ln in enumerate(self.lines) if i not in self.redundant and ln.ntok]

    def body_tokens(self, boilerplate: set[int]) -> tuple[npt.NDArray[np.uint64], bool]:
        """Token hashes of the body and whether CJK characters dominate it."""
        kept = self.kept(boilerplate)
        if not kept:
            return np.zeros(0, dtype=np.uint64), False
        toks = np.concatenate([self.line_tokens(i) for i in kept])
        cjk = sum(self.lines[i].cjk for i in kept)
        other = sum(self.lines[i].chars for i in kept) - cjk
        return toks, cjk > other

    @cached_property
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


_NUMBER = np.uint64(0x2545F4914F6CDD1D)  # stands for any token with a digit in an abstracted shape


def _shapes(tk: Tokens, starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64],
            numbers: npt.NDArray[np.int64]) -> list[bytes]:
    """Per line, an 8-byte hash of its token sequence with numbers abstracted.

    Dates and phone numbers vary in chrome, so tokens with digits are one
    symbol; unless numbers are the content (at least 40 % of the tokens, as in
    "Net 61.3 mln vs 21.1 mln"), where the figures are what tells one earnings
    report from another and the line is learned verbatim. Punctuation and
    spacing are not tokens, so they never tell two shapes apart.
    """
    abstracted = np.where(tk.numeric, _NUMBER, tk.hashes)
    out = []
    for start, n, num in zip(starts.tolist(), counts.tolist(), numbers.tolist()):
        if not n:
            out.append(b"")
            continue
        src = abstracted if num * 5 < n * 2 else tk.hashes
        out.append(xxhash.xxh64_digest(src[start:start + n].tobytes()))
    return out


def _lines(pages: Sequence[list[str]]) -> list[tuple[list[Line], npt.NDArray[np.uint64]]]:
    """Lines and token hashes of many pages, tokenised in one pass over all of them.

    Each page is normalised on its own (a rare character that needs the exact
    slow path slows its own page only); the array work of tokenising, counting
    and shaping is done once for the batch, not once per page.
    """
    norm_pages = []
    for raw_lines in pages:
        norms = normalize("\n".join(raw_lines)).split("\n")
        if len(norms) != len(raw_lines):  # normalisation never adds line breaks, but never trust it
            norms = [normalize(r) for r in raw_lines]
        norm_pages.append(norms)
    all_norms = [n for norms in norm_pages for n in norms]
    tk = tokenize("\n".join(all_norms))
    n = len(all_norms)
    counts = np.bincount(tk.line, minlength=n)[:n]
    ends = np.cumsum(counts)
    starts = (ends - counts).astype(np.int64)
    cjk_c = np.bincount(tk.line, weights=tk.cjk, minlength=n)[:n].astype(np.int64).tolist()
    char_c = np.bincount(tk.line, weights=tk.lengths, minlength=n)[:n].astype(np.int64).tolist()
    num_c = np.bincount(tk.line, weights=tk.numeric, minlength=n)[:n].astype(np.int64)
    shapes = _shapes(tk, starts, counts, num_c)
    counts_l, starts_l = counts.tolist(), starts.tolist()
    out = []
    first = 0  # first line of the page, over all pages
    for raw_lines, norms in zip(pages, norm_pages):
        last = first + len(raw_lines)
        t0 = starts_l[first] if first < n else len(tk.hashes)
        t1 = starts_l[last] if last < n else len(tk.hashes)
        lines = []
        for k, (raw, norm) in enumerate(zip(raw_lines, norms), start=first):
            ntok, cjk = counts_l[k], cjk_c[k]
            short = ntok > 0 and (ntok <= (40 if cjk * 2 > ntok else 14)) and not _SENTENCE_END.search(raw)
            lines.append(Line(raw=raw, norm=norm, ntok=ntok, shape=shapes[k], short=short, start=starts_l[k] - t0,
                              cjk=cjk, chars=char_c[k]))
        out.append((lines, tk.hashes[t0:t1]))
        first = last
    return out


def analyse(title: str, text: str | None = None, html: str | None = None) -> Page:
    """Split a page into lines and find what repeats inside it."""
    return analyse_many([(title, text, html)])[0]


def analyse_many(items: Sequence[tuple[str, str | None, str | None]]) -> list[Page]:
    """``analyse`` for many pages (title, text, html) at once: one tokenising pass for all."""
    titles, texts = [], []
    for title, text, html in items:
        if html is not None:
            html_title, text = extract(html)
            title = title or html_title
        raw_lines = [ln.strip() for ln in (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")]
        titles.append(title)
        texts.append([r for r in raw_lines if r])
    pages = []
    for title, (lines, hashes) in zip(titles, _lines(texts)):
        page = Page(title=title, lines=lines, total_chars=sum(len(ln.raw) for ln in lines), tokens=hashes)
        if title and any(ln.short for ln in lines):  # only a short line can be the title again
            tkey, _ = token_hashes(normalize(title))
            if len(tkey):
                page.title_lines = {i for i, ln in enumerate(lines) if ln.short and ln.ntok == len(tkey)
                                    and np.array_equal(page.line_tokens(i), tkey)}
        _find_repeats(page)
        pages.append(page)
    return pages


def _simhashes(page: Page, idx: list[int]) -> list[int]:
    """64-bit simhash of each given line over its token hashes, all lines in one numpy pass."""
    segs = [page.line_tokens(i) for i in idx]
    toks = np.concatenate(segs)
    bits = np.unpackbits(toks.astype(">u8").view(np.uint8)).reshape(-1, 64).astype(np.int32) * 2 - 1
    starts = np.concatenate(([0], np.cumsum([len(sg) for sg in segs])[:-1]))
    votes = np.add.reduceat(bits, starts, axis=0) > 0
    packed = np.packbits(votes, axis=1).view(">u8").reshape(-1)
    return [int(v) for v in packed]


def _with_similar_length(page: Page, idx: list[int]) -> list[int]:
    """Lines with another line within 25 % of their token count: only those can be near-repeats.

    Fingerprints within 3 of 64 bits need nearly the same tokens; a news page's
    long lines usually differ a lot in length, and then no fingerprint is needed.
    """
    if len(idx) < 2:
        return []
    order = sorted(idx, key=lambda i: page.lines[i].ntok)
    keep: set[int] = set()
    for a, b in zip(order, order[1:]):
        if page.lines[a].ntok * 4 >= page.lines[b].ntok * 3:
            keep.update((a, b))
    return [i for i in idx if i in keep]


def _find_repeats(page: Page) -> None:
    first: dict[bytes, int] = {}
    origin: dict[int, int] = {}  # redundant line -> line it repeats
    long_lines: list[int] = []
    for i, ln in enumerate(page.lines[:MAX_LINES_COMPARED]):
        if ln.ntok < MIN_REPEAT_TOKENS:
            continue
        key = page.line_tokens(i).tobytes()
        if key in first:
            origin[i] = first[key]
            continue
        first[key] = i
        if ln.ntok >= NEAR_REPEAT_TOKENS:
            long_lines.append(i)
    long_lines = _with_similar_length(page, long_lines)
    if len(long_lines) >= 2:  # near-identical repeats: simhash fingerprints within 3 bits
        seen: list[tuple[int, Simhash]] = []
        for i, v in zip(long_lines, _simhashes(page, long_lines)):
            sh = Simhash(v)
            # Hamming distance as Simhash.distance defines it, with the int's native popcount
            near = next((j for j, h in seen if (sh.value ^ h.value).bit_count() <= 3), None)
            if near is not None:
                origin[i] = near
            else:
                seen.append((i, sh))
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
