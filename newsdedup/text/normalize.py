"""Normalisation: the form in which two typesettings of one story read the same.

Text is NFKC normalised (full-width forms fold to ASCII), case folded, and
traditional Chinese characters are mapped to simplified ones character by
character, so a traditional-script repost tokenises like its original. A table
gather when every character normalises on its own (see :mod:`charmap`), else
the exact slow path; both give the same result.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from newsdedup.text import charmap


def normalize(text: str) -> str:
    """NFKC, case folding and traditional -> simplified Chinese.

    A table gather when every character normalises on its own (see charmap),
    else the exact slow path; both give the same result.
    """
    if text.isascii():
        return text.lower()
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if int(cps.max()) >= charmap.LIMIT:
        return _normalize_slow(text)
    t = charmap.tables()
    kind = t.kind[cps]
    if not kind.all():  # a SLOW character
        return _normalize_slow(text)
    out = t.fold[cps].astype("<u4").tobytes().decode("utf-32-le")
    at = np.flatnonzero(kind == charmap.EXPANDS).tolist()
    if not at:
        return out
    # a few characters become several ("…" -> "...", "ß" -> "ss"): splice them in; str.translate
    # with a dict would cost a lookup for every character of the page
    parts, prev = [], 0
    for i, cp in zip(at, cps[at].tolist()):
        parts.append(out[prev:i])
        parts.append(t.expand[cp])
        prev = i + 1
    parts.append(out[prev:])
    return "".join(parts)


def _normalize_slow(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    if text.isascii():
        return text
    t2s = charmap.t2s_table()
    return text.translate(t2s)
