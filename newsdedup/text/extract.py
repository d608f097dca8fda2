"""Main text and title of an HTML page.

trafilatura finds the article body (it drops navigation, scripts and most
chrome); a tag-stripping fallback keeps every visible line when it finds
nothing or the markup defeats the parser (deep nesting, garbage). Nothing is
ever fetched: parsing works on the string alone, entities stay unresolved.
"""

from __future__ import annotations

import html as htmllib
import logging
import re

_BLOCK_TAGS = re.compile(r"<\s*/?\s*(p|div|br|h[1-6]|li|tr|section|article|header|footer|nav|ul|ol|table|"
                         r"blockquote|pre|title)\b[^>]*>", re.IGNORECASE)
_DROP = re.compile(r"<(script|style|noscript|template|svg|iframe)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG = re.compile(r"<[^>]{0,10000}>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_H1 = re.compile(r"<h1[^>]*>(.*?)</h1\s*>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u3000]+")

MAX_HTML_FOR_PARSER = 5_000_000

logging.getLogger("trafilatura").setLevel(logging.CRITICAL)


def strip_tags(html: str) -> str:
    """Visible text of markup, one line per block element; robust to any input."""
    s = _COMMENT.sub(" ", html)
    s = _DROP.sub(" ", s)
    s = _BLOCK_TAGS.sub("\n", s)
    s = _TAG.sub(" ", s)
    s = htmllib.unescape(s)
    lines = (_SPACES.sub(" ", ln).strip() for ln in s.split("\n"))
    return "\n".join(ln for ln in lines if ln)


def html_title(html: str) -> str:
    m = _TITLE.search(html) or _H1.search(html)
    return strip_tags(m.group(1)).replace("\n", " ").strip() if m else ""


def extract(html: str) -> tuple[str, str]:
    """(title, main text) of a page; the text is empty only when the page has no visible text."""
    title = html_title(html[:200_000])
    text = ""
    if len(html) <= MAX_HTML_FOR_PARSER:
        try:
            import trafilatura

            text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_recall=True,
                                       deduplicate=False, with_metadata=False, fast=True) or ""
        except Exception:  # hostile markup: any parser failure falls back to tag stripping
            text = ""
    if not text.strip():
        text = strip_tags(html)
    return title, text
