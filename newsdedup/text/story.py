"""When the text says too little, the title decides: pure helpers for the engine's edge checks.

A body that is mostly learned chrome, or too short to compare, shares most of
its shingles with every other thin page of its site (a consent wall, a paywall
teaser, a gallery stub). Such an edge stands only if the titles agree; two
thin pages under clearly different titles are different stories. The same
signal tells when a copy may teach boilerplate: a "copy" whose title is
clearly different from every article it matched is another story made to look
alike by its site's template, so its lines are chrome evidence like a
founder's (a story reposted under its own title never teaches its body).
"""

from __future__ import annotations

import re

from newsdedup.text.normalize import normalize
from newsdedup.text.page import Page

_WORD = re.compile(r"[^\W\d_]+|\d+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
TITLES_DIFFER_BELOW = 0.4  # token-set Jaccard of two titles under which they name different stories


def title_terms(title: str) -> set[str]:
    """Words of a title, and CJK character bigrams (CJK titles have no spaces)."""
    t = normalize(title or "")
    terms = {w for w in _WORD.findall(_CJK.sub(" ", t))}
    cjk = "".join(_CJK.findall(t))
    terms.update(cjk[i:i + 2] for i in range(len(cjk) - 1))
    if len(cjk) == 1:
        terms.add(cjk)
    return terms


def titles_differ(a: str, b: str) -> bool:
    """Two titles clearly name different stories (unknown when either is empty: then False)."""
    ta, tb = title_terms(a), title_terms(b)
    if not ta or not tb:
        return False
    return len(ta & tb) < TITLES_DIFFER_BELOW * len(ta | tb)


def thin_body(page: Page, boilerplate: set[int], cjk: bool, min_body_tokens: int) -> bool:
    """The body left after chrome is too small to tell stories apart by text alone.

    Counted without the fallback of ``Page.kept`` (a page that is all chrome keeps
    its lines for comparison, but they say nothing of its story). CJK characters
    are single tokens, so a CJK body needs twice as many.
    """
    skip = boilerplate | page.redundant | page.title_lines
    tokens = sum(ln.ntok for i, ln in enumerate(page.lines) if i not in skip)
    return tokens < min_body_tokens * (2 if cjk else 1)
