"""What in a page's text is prose, and what is page code or undecodable bytes: pure functions.

Failed scrapes look alike everywhere: a JS-rendered page scraped as its
script, a style sheet, a page decoded with the wrong charset (runs of U+FFFD
or C1 control characters, mojibake), JSON state blobs, tracking URLs. Two such
pages of different stories share all their "text" and would cluster at
similarity 1.0. This module removes that material before anything is
shingled, by general mechanisms rather than per-site patterns:

- characters: runs of U+FFFD / C1 controls are removed anywhere; a line where
  they are a sizeable share of the letters is undecodable as a whole;
- tokens: URLs and query strings, markup tags, base64-like runs and long
  identifier soup are removed inside a line;
- lines: a line whose signals read as code (braces, semicolons at the end,
  assignments, calls, CSS declarations, JSON pairs, comment markers, script
  keywords) is removed whole, unless CJK prose dominates it.

What is left decides whether the page tells a story (``content_reason``).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate

_BAD_RUN = re.compile(r"[\ufffd\x80-\x9f]{2,}")  # undecodable runs: removed wherever they are
_BAD = re.compile(r"[\ufffd\x80-\x9f]")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_LETTER = re.compile(r"[^\W\d_]")
_U = r"[A-Za-z0-9\-._~:/?#@!$&*+,;=%]"  # URL characters: ASCII only (CJK text runs on without spaces)
_URL = re.compile(rf"(?:https?:|ftp:)?//{_U}+|\bwww\.{_U}+|\b[\w-]+(?:\.[\w-]+)*\.[a-z]{{2,}}/{_U}*"
                  r"|[?&][\w.%-]+=[^\s&\"'<>]*(?:&[\w.%-]+=[^\s&\"'<>]*)+", re.IGNORECASE)
# markup: lowercase tag names (or attributes with "="); "<Sedio N.V.>" in wire copy is a company name
_TAG = re.compile(r"<[a-z][a-z0-9:-]*(?:\s+[^<>]{0,500}=[^<>]{0,500})?\s*/?>|</[a-zA-Z][\w:-]*\s*>"
                  r"|<[a-zA-Z][\w:-]*\s+[^<>]{0,500}=[^<>]{0,500}>|<!--.*?-->|<!\w[^<>]*>")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}")
_CODE_SIGNAL = re.compile(
    r"[{}]|;\s*$|[=!<>]=|&&|\|\||=>|\+\+|(?<=[\w\])])\s*=\s*(?=[\w\"'\[{(/-])"  # braces, operators
    r"|\b(?:var|let|const)\s+[\w$]+\s*[=;]|\bfunction\s*[\w$]*\s*\(|\breturn\b[^.!?]*;|\btypeof\s"  # JS syntax
    r"|\b(?:document|window|navigator|location|console|this|jQuery|localStorage)\.[\w$]"
    r"|[A-Za-z_$][\w$]*\.[A-Za-z_$][\w$]*\(|\b[A-Za-z_$][\w$]*\((?!\s*\d+\s*\))"  # calls
    r"|(?:^|[\s,])[.#][a-z_][\w-]*\b|^\s*(?://|/\*|\*/|#include|@media|@import|@font-face)|\*/\s*$"  # CSS, comments
    r"|[\w-]+\s*:\s*[#\w.%-]+\s*(?:!important)?;|\"[\w-]+\"\s*:\s*[\"\[{\d tfn]")  # declarations, JSON

# what any removable material needs (a page or line without it is prose as it is: the common case)
_SUSPECT = re.compile(r"[{}<>=;\\/&|\ufffd\x80-\x9f]|www\.|\w\(|[A-Za-z0-9+_-]{32}")

UNDECODABLE_SHARE = 0.3  # a line whose letters are this share U+FFFD / C1 or more is undecodable
CODE_SIGNALS_PER_CHAR = 1 / 50  # code signals per character of a line that make it code
MIN_CODE_SIGNALS = 2


@dataclass
class Removed:
    """Characters taken out of a page, by kind (what ``content_reason`` is decided from)."""

    script: int = 0  # code, markup, URLs, JSON, base64
    undecodable: int = 0
    kept: int = 0  # characters left in lines
    lines: dict[str, int] = field(default_factory=dict)  # whole lines removed, by kind

    def reason(self, tokens: int, min_tokens: int) -> str | None:
        """Why a page has no story (``script``, ``undecodable``, ``too_short``), or None if it has one."""
        if tokens >= min_tokens:
            return None
        if self.undecodable and self.undecodable >= self.script:
            return "undecodable"
        if self.script:
            return "script"
        return "too_short"


def _code_like(line: str) -> bool:
    n = len(line)
    if n == 0:
        return False
    # CJK prose with a few brackets or semicolons stays prose (and is not searched for code signals)
    if not line.isascii() and len(_CJK.findall(line)) * 3 >= n - line.count(" "):
        return False
    signals = len(_CODE_SIGNAL.findall(line))
    return signals >= MIN_CODE_SIGNALS and signals >= n * CODE_SIGNALS_PER_CHAR


def clean_line(line: str, removed: Removed) -> str:
    """The prose of one line ('' if nothing is left); what was removed is counted in ``removed``."""
    if not line:
        return line
    bad = len(_BAD.findall(line))
    if bad:
        letters = len(_LETTER.findall(line)) + bad
        if bad >= 3 and bad >= letters * UNDECODABLE_SHARE:
            removed.undecodable += len(line)
            removed.lines["undecodable"] = removed.lines.get("undecodable", 0) + 1
            return ""
        line = " ".join(_BAD.sub("", _BAD_RUN.sub(" ", line)).split())
        removed.undecodable += bad
    before = len(line)
    stripped = _TAG.sub(" ", line) if "<" in line else line
    if "/" in stripped or "www." in stripped or "=" in stripped:
        stripped = _URL.sub(" ", stripped)
    stripped = _BASE64.sub(lambda m: m.group(0) if _wordish(m.group(0)) else " ", stripped)
    if len(stripped) != before:
        stripped = " ".join(stripped.split())
    if _code_like(stripped):  # judged without its URLs and tags (their "=" and "?" are not code)
        removed.script += before
        removed.lines["script"] = removed.lines.get("script", 0) + 1
        return ""
    if len(stripped) != before:
        removed.script += before - len(stripped)
        if not stripped:
            removed.lines["script"] = removed.lines.get("script", 0) + 1
    removed.kept += len(stripped)
    return stripped


def _wordish(run: str) -> bool:
    """A long run of word characters that is still a word (German compounds, hyphenated names)."""
    return run.isalpha() and (run.islower() or run[1:].islower()) or "-" in run and not any(c.isdigit() for c in run)


def clean_lines(lines: list[str]) -> tuple[list[str], Removed]:
    """The prose lines of a page (empty ones dropped) and what was removed."""
    removed = Removed()
    joined = "\n".join(lines)
    # one scan of the page for what removable material needs; only the lines it hits are examined
    hits = [m.start() for m in _SUSPECT.finditer(joined)]
    if not hits:
        removed.kept = len(joined) - len(lines) + 1
        return [ln for ln in lines if ln.strip()], removed
    ends = list(accumulate(len(ln) + 1 for ln in lines))
    suspect = {bisect_right(ends, h) for h in hits}
    out = []
    for i, ln in enumerate(lines):
        if i in suspect:
            ln = clean_line(ln, removed).strip()
        else:
            removed.kept += len(ln)
        if ln:
            out.append(ln)
    return out, removed
