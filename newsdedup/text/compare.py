"""Why two texts are duplicates: exact shingle figures and the passages they share.

Pure functions, no I/O. The engine decides with MinHash *estimates*; an
explanation recomputes the exact figures from the two kept texts, tokenised and
shingled the way the engine does it, and aligns runs of shared shingles back to
character spans so a reader can see the shared passages in each text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from newsdedup.text.normalize import normalize
from newsdedup.text.tokens import TOKEN_RE, hash_tokens, shingle_sequence

MAX_OCCURRENCES = 16  # a shingle seen more often in B (a stock phrase) continues passages but starts none
MAX_PASSAGES = 500


@dataclass(frozen=True)
class Tokenised:
    """A text's tokens as the engine sees them, with where each one is in the original text."""

    text: str
    hashes: npt.NDArray[np.uint64]
    starts: list[int]  # character offset of each token in ``text``
    ends: list[int]  # exclusive
    cjk: int  # CJK-character tokens
    chars: int  # characters in tokens

    def __len__(self) -> int:
        return len(self.starts)


@dataclass(frozen=True)
class Passage:
    """A stretch of text both sides share: token ranges [a0, a1], [b0, b1] and character spans."""

    a: tuple[int, int]
    b: tuple[int, int]
    tokens: int

    def report(self) -> dict[str, object]:
        return {"a": list(self.a), "b": list(self.b), "tokens": self.tokens}


@dataclass
class Comparison:
    shingle_length: int
    shingles_a: int
    shingles_b: int
    shared: int
    passages: list[Passage] = field(default_factory=list)

    @property
    def jaccard(self) -> float:
        union = self.shingles_a + self.shingles_b - self.shared
        return round(self.shared / union, 4) if union else 0.0

    @property
    def a_in_b(self) -> float:
        """Share of A's shingles found in B (A is contained in B when this is near 1)."""
        return round(self.shared / self.shingles_a, 4) if self.shingles_a else 0.0

    @property
    def b_in_a(self) -> float:
        return round(self.shared / self.shingles_b, 4) if self.shingles_b else 0.0


def _normalised(raw: str) -> tuple[str, list[int]]:
    """``normalize(raw)`` and, for each of its characters, the index of the raw character it came from.

    NFKC may turn one character into several ("…" -> "..."); then the line is
    normalised character by character so every token maps back to the original.
    """
    norm = normalize(raw)
    if len(norm) == len(raw):
        return norm, list(range(len(raw)))
    parts, origin = [], []
    for i, ch in enumerate(raw):
        n = normalize(ch)
        parts.append(n)
        origin.extend([i] * len(n))
    return "".join(parts), origin


def tokenise(text: str) -> Tokenised:
    """Tokens of ``text`` (the engine's tokens: normalised, punctuation dropped) with their spans."""
    toks: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    at = 0
    for line in text.split("\n"):
        norm, origin = _normalised(line)
        for m in TOKEN_RE.finditer(norm):
            toks.append(m.group())
            starts.append(at + origin[m.start()])
            ends.append(at + origin[m.end() - 1] + 1)
        at += len(line) + 1
    hashes, cjk, lengths = hash_tokens(toks)
    return Tokenised(text=text, hashes=hashes, starts=starts, ends=ends, cjk=int(np.count_nonzero(cjk)),
                     chars=int(lengths.sum()))


def shingle_length(a: Tokenised, b: Tokenised, k_cjk: int, k_latin: int) -> int:
    """The engine's rule (CJK-dominant text uses the CJK length), over both texts at once."""
    cjk = a.cjk + b.cjk
    return k_cjk if cjk > a.chars + b.chars - cjk else k_latin


def compare(a_text: str, b_text: str, k_cjk: int = 4, k_latin: int = 3) -> Comparison:
    """Exact Jaccard, containments and aligned shared passages of two texts."""
    a, b = tokenise(a_text), tokenise(b_text)
    k = shingle_length(a, b, k_cjk, k_latin)
    sa, sb = shingle_sequence(a.hashes, k), shingle_sequence(b.hashes, k)
    ua, ub = np.unique(sa), np.unique(sb)
    common = np.intersect1d(ua, ub, assume_unique=True)
    out = Comparison(shingle_length=k, shingles_a=len(ua), shingles_b=len(ub), shared=len(common))
    if len(common):
        out.passages = align(a, b, sa, sb, common, k)
    return out


def _runs(sa: npt.NDArray[np.uint64], sb: npt.NDArray[np.uint64], common: npt.NDArray[np.uint64]
          ) -> list[list[int]]:
    """Maximal diagonal runs of equal shingles: [start in A, start in B, length] (shingle positions)."""
    shared = set(common.tolist())
    where: dict[int, list[int]] = {}
    for j, h in enumerate(sb.tolist()):
        if h in shared:
            where.setdefault(h, []).append(j)
    runs: list[list[int]] = []
    active: dict[int, int] = {}  # B position matched at the previous A position -> its run
    b_list = sb.tolist()
    for i, h in enumerate(sa.tolist()):
        nxt: dict[int, int] = {}
        if h in shared:
            for j_prev, r in active.items():  # runs go on through frequent shingles too
                j = j_prev + 1
                if j < len(b_list) and b_list[j] == h:
                    runs[r][2] += 1
                    nxt[j] = r
            js = where[h]
            if len(js) <= MAX_OCCURRENCES:  # but only a rarer shingle starts one
                for j in js:
                    if j not in nxt:
                        runs.append([i, j, 1])
                        nxt[j] = len(runs) - 1
        active = nxt
    return runs


def align(a: Tokenised, b: Tokenised, sa: npt.NDArray[np.uint64], sb: npt.NDArray[np.uint64],
          common: npt.NDArray[np.uint64], k: int) -> list[Passage]:
    """Shared passages, longest first, each stretch of either text used at most once.

    Runs of shared shingles become token ranges (a run of r shingles covers
    r + k - 1 tokens); ranges that overlap or touch in both texts in the same
    order merge into one passage; the longest passages are kept first and a
    passage overlapping a longer one in either text is dropped.
    """
    ka, kb = min(k, len(a)), min(k, len(b))
    spans = sorted((i, i + n + ka - 2, j, j + n + kb - 2) for i, j, n in _runs(sa, sb, common))
    merged: list[list[int]] = []
    for a0, a1, b0, b1 in spans:
        last = merged[-1] if merged else None
        if last is not None and a0 <= last[1] + 1 and last[2] <= b0 <= last[3] + 1:
            last[1], last[3] = max(last[1], a1), max(last[3], b1)
        else:
            merged.append([a0, a1, b0, b1])
    merged.sort(key=lambda p: (-(p[1] - p[0]), p[0], p[2]))
    used_a = np.zeros(len(a), dtype=bool)
    used_b = np.zeros(len(b), dtype=bool)
    out: list[Passage] = []
    for a0, a1, b0, b1 in merged:
        if used_a[a0:a1 + 1].any() or used_b[b0:b1 + 1].any():
            continue
        used_a[a0:a1 + 1] = True
        used_b[b0:b1 + 1] = True
        out.append(Passage(a=(a.starts[a0], a.ends[a1]), b=(b.starts[b0], b.ends[b1]), tokens=a1 - a0 + 1))
        if len(out) >= MAX_PASSAGES:
            break
    return out


def marked(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_shared) segments, for a template to wrap shared pieces in <mark>."""
    out: list[tuple[str, bool]] = []
    at = 0
    for s, e in sorted(spans):
        s, e = max(s, at), min(e, len(text))
        if s >= e:
            continue
        if s > at:
            out.append((text[at:s], False))
        out.append((text[s:e], True))
        at = e
    if at < len(text) or not out:
        out.append((text[at:], False))
    return out
