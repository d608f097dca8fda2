"""Per-code-point tables that turn normalisation and tokenising into numpy gathers.

``unicodedata.normalize("NFKC")`` costs about 60 ns per Chinese character and
a regex ``findall`` of one-character tokens about as much again: together more
than the MinHash of the same text. For text whose characters normalise
independently of their neighbours (almost all news), the normal form is a
per-character lookup, and token boundaries follow from a per-character class.

A character normalises independently when its compatibility decomposition
starts with a character of combining class 0 that is never the second half of
a canonical composition (Hangul vowel and final jamo included). Then nothing
before it can compose with it and nothing after it can reorder into it, so
NFKC of the text is the concatenation of NFKC of its characters. Text with any
other character takes the exact slow path (``normalize._normalize_slow``); tests
check the two agree.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

LIMIT = 0x30000  # code points covered (BMP and the CJK extension planes); beyond: the slow path

SLOW, SINGLE, EXPANDS = 0, 1, 2  # kinds
SEPARATOR, WORD, CJK = 0, 1, 2  # token classes

# CJK ideographs, kana and hangul: one token per character.
CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xAC00, 0xD7AF),
              (0x20000, 0x2FA1F))


@dataclass(frozen=True)
class Tables:
    kind: npt.NDArray[np.uint8]  # SLOW / SINGLE / EXPANDS, per input code point
    fold: npt.NDArray[np.uint32]  # normalised code point of a SINGLE character (identity otherwise)
    expand: dict[int, str]  # normal form of an EXPANDS character ("…" -> "...", "ß" -> "ss")
    token_class: npt.NDArray[np.uint8]  # SEPARATOR / WORD / CJK, per *normalised* code point
    digit: npt.NDArray[np.bool_]  # a decimal digit (what regex \d matches)


def _composition_seconds() -> set[int]:
    """Characters that can compose with the character before them."""
    seconds: set[int] = set()
    for cp in range(LIMIT):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):
            parts = d.split()
            if len(parts) == 2:
                seconds.add(int(parts[1], 16))
    seconds.update(range(0x1161, 0x1176))  # Hangul vowel jamo (composed algorithmically)
    seconds.update(range(0x11A8, 0x11C3))  # Hangul final jamo
    return seconds


def in_cjk_ranges(cp: int) -> bool:
    return any(a <= cp <= b for a, b in CJK_RANGES)


@lru_cache(maxsize=1)
def t2s_table() -> dict[int, int]:
    """Traditional -> simplified, one character to one character (zhconv's table)."""
    from zhconv import zhconv as z

    table: dict[int, int] = {}
    for k, v in z.getdict("zh-hans").items():
        if len(k) == 1 and len(v) == 1 and k != v and ord(k) > 0x2E7F:
            table[ord(k)] = ord(v)
    return table


@lru_cache(maxsize=1)
def tables() -> Tables:
    """Built once per process (about 0.3 s), on first use rather than at import."""
    t2s = t2s_table()
    seconds = _composition_seconds()
    kind = np.zeros(LIMIT, dtype=np.uint8)
    fold = np.arange(LIMIT, dtype=np.uint32)
    expand: dict[int, str] = {}
    token_class = np.zeros(LIMIT, dtype=np.uint8)
    digit = np.zeros(LIMIT, dtype=bool)
    nf, combining = unicodedata.normalize, unicodedata.combining
    for cp in range(LIMIT):
        ch = chr(cp)
        if ch.isalnum():  # exactly what the regex class [^\W_] matches
            token_class[cp] = WORD
        if ch.isdecimal():
            digit[cp] = True
        if 0xD800 <= cp <= 0xDFFF:
            continue  # surrogates never reach here (validation rejects them)
        nfkd = nf("NFKD", ch)
        first = nfkd[:1] or ch
        if combining(first) or ord(first) in seconds:
            continue
        out = "".join(chr(t2s.get(ord(x), ord(x))) for x in nf("NFKC", ch).casefold())
        if len(out) == 1:
            kind[cp], fold[cp] = SINGLE, ord(out)
        else:
            kind[cp], expand[cp] = EXPANDS, out
    # expansions are applied after the gather, keyed by the original character: no other
    # character may fold onto one of them
    clash = (kind == SINGLE) & (kind[np.minimum(fold, LIMIT - 1)] == EXPANDS) & (fold != np.arange(LIMIT))
    kind[clash] = SLOW
    for a, b in CJK_RANGES:
        token_class[a:min(b, LIMIT - 1) + 1] = CJK
    return Tables(kind=kind, fold=fold, expand=expand, token_class=token_class, digit=digit)
