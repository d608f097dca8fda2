"""Hard-wrapped text: which lines are pieces of one paragraph, and which lines interrupt one.

Newswire copy is wrapped at a fixed width (~65 characters) with no blank lines
between paragraphs, so a story arrives as many short lines. Line-level
boilerplate decisions that see each wrapped line as a unit take them for links
or menu items ("short link-like lines" next to chrome) and drop the story.
This module reflows before those decisions, on the page's lines as they are
(offsets, the repeated-block report and comparisons keep the original lines):

- a line that ends without sentence punctuation and is followed by a
  continuation (a lowercase start; or, when it fills the wrap width, a line
  that fills it too or ends a sentence) is a wrap: both belong to one
  paragraph and neither is short;
- a line that sits between two pieces of one wrapped sentence (the line
  before ends mid-sentence, the line after starts in lowercase) and does not
  fill the width or reads as a heading is inserted material (an ad, a
  "Recommended:" link, a promotion): it interrupts the sentence, so it is not
  the story.

Pure functions over ``prepare.Line``; nothing here knows about sources.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

_TERMINAL = re.compile(r"[.!?。！？…:;\"”’'）)\]]\s*$")
_LOWER_START = re.compile(r"^[\"“‘(]?[a-z0-9]")
_WORD = re.compile(r"[^\W\d_]+")
FILLS_WIDTH = 0.8  # a wrapped line is at least this share of the page's wrap width
MIN_WRAP_WIDTH = 40  # narrower "widths" are menus and tables, not wrapped prose


class _Line(Protocol):
    raw: str
    ntok: int
    cjk: int


def wrap_width(lines: Sequence[_Line]) -> int:
    """The width a page is wrapped at: the 75th percentile of its word lines' lengths (0 if none)."""
    lengths = sorted(len(ln.raw) for ln in lines if ln.ntok and not ln.cjk)
    return lengths[(3 * len(lengths)) // 4] if lengths else 0


def _heading(raw: str) -> bool:
    words = _WORD.findall(raw)
    return len(words) >= 2 and sum(w[0].isupper() for w in words) * 5 >= len(words) * 3


def reflow(lines: Sequence[_Line]) -> tuple[set[int], set[int]]:
    """(lines inside wrapped paragraphs, lines interrupting a wrapped sentence) of a page.

    Only Latin-script lines take part: CJK text is not wrapped by word and its
    lines are judged as they are.
    """
    width = wrap_width(lines)
    if width < MIN_WRAP_WIDTH:
        return set(), set()
    fill = FILLS_WIDTH * width
    idx = [i for i, ln in enumerate(lines) if ln.ntok and not ln.cjk]
    interrupts: set[int] = set()
    for a, x, b in zip(idx, idx[1:], idx[2:]):
        p, m, n = lines[a].raw, lines[x].raw, lines[b].raw
        if (len(p) >= fill and not _TERMINAL.search(p) and _LOWER_START.match(n) and not _LOWER_START.match(m)
                and (len(m) < fill or _heading(m))):
            interrupts.add(x)
    story = [i for i in idx if i not in interrupts]
    wrapped: set[int] = set()
    for a, b in zip(story, story[1:]):
        p, n = lines[a].raw, lines[b].raw
        if _TERMINAL.search(p):
            continue
        # a lowercase start continues any line; otherwise both must look wrapped (the first fills the width)
        if _LOWER_START.match(n) or len(p) >= fill and (len(n) >= fill or _TERMINAL.search(n)):
            wrapped.update((a, b))
    return wrapped, interrupts
