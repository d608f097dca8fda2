"""Which lines of a page are chrome, and what is left as the story: pure decisions.

Every line has a *shape* (see :mod:`page`). Per source, Redis counts in how many
*stories* each shape appeared (the engine reads and writes those counts); a shape
seen in enough of them is boilerplate, and so are runs of short link-like lines
next to it. A batch also counts its own stories, so the first pages of a new site
are cleaned at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from newsdedup.text.page import Page

_SENTENCE_INSIDE = re.compile(r"[a-z\u00c0-\u024f0-9)\"”’'][.!?;](\s|$)|[。！？；]")


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
            # a run of short lines [i, j) bounded by boilerplate on a side, unless it is prose
            # wrapped at a fixed width (newswire style): prose has sentence ends inside it
            touches = (i > 0 and i - 1 in bp) or (j < n and j in bp)
            if touches and not any(_SENTENCE_INSIDE.search(page.lines[k].raw) for k in range(i, j)):
                bp.update(range(i, j))
                changed = True
            i = j
    return bp


def body(page: Page, boilerplate: set[int]) -> str:
    """Normalised body text (what is compared), for inspection and tests."""
    return "\n".join(page.lines[i].norm for i in page.kept(boilerplate))


def clean_text(page: Page, boilerplate: set[int]) -> str:
    """The body as the client wrote it (not normalised), for explanations."""
    return "\n".join(page.lines[i].raw for i in page.kept(boilerplate))
