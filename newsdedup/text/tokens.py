"""Tokens and shingle hashes of normalised text: pure functions, no I/O.

Tokens are what two copies of a story share however they were typeset: every
CJK character is a token, every run of other letters/digits is a token, and
punctuation and whitespace are not tokens at all (so a copy with other line
breaks or full-width punctuation has the same token stream).

Hashing is vectorised with numpy: the cost of a document is a few array
operations over its code points, not Python work per token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from newsdedup.text import charmap
from newsdedup.text.normalize import normalize

U64 = np.uint64
_M64 = (1 << 64) - 1

_CJK_CLASS = "".join(f"{chr(a)}-{chr(b)}" for a, b in charmap.CJK_RANGES)
TOKEN_RE = re.compile(rf"[{_CJK_CLASS}]|[^\W_{_CJK_CLASS}]+")  # the reference tokeniser (see tokenize)
_DIGITS = re.compile(r"\d+")


def warm_up() -> None:
    """Build the per-process tables (about 0.3 s) before serving, so no request pays for them."""
    normalize("預熱…")
    tokenize("预热")


def tokens(normalized: str) -> list[str]:
    return TOKEN_RE.findall(normalized)


def is_cjk_dominant(normalized: str) -> bool:
    """More CJK characters than characters in other words: CJK shingle length applies."""
    tk = tokenize(normalized)
    n_cjk = int(np.count_nonzero(tk.cjk))
    return n_cjk > int(tk.lengths.sum()) - n_cjk


# ------------------------------------------------------------------ vectorised hashing

_P = np.uint64(0x100000001B3)  # FNV prime: multiplier of the polynomial token hash
_Q = np.uint64(0x9E3779B97F4A7C15)  # golden ratio: multiplier combining tokens into shingles
_LEN_SALT = np.uint64(0x632BE59BD9B4E019)  # times token length: "ab" and "a"+"b" hash apart


def _mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser: spreads structured inputs (code points, sums) over all 64 bits."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> U64(30))
        x = x * U64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> U64(27))
        x = x * U64(0x94D049BB133111EB)
        return x ^ (x >> U64(31))


@lru_cache(maxsize=8)
def _powers(n: int) -> npt.NDArray[np.uint64]:
    out = np.empty(n, dtype=U64)
    acc = 1
    p = int(_P)
    for i in range(n):
        out[i] = acc
        acc = (acc * p) & _M64
    return out


def hash_tokens(toks: list[str]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """64-bit hashes of tokens, which of them are CJK characters, and their lengths.

    Each token's hash is the polynomial hash of its code points, computed for
    all tokens at once; a text's hashes are the concatenation of its lines'.
    """
    if not toks:
        return np.zeros(0, dtype=U64), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    joined = "".join(toks)
    cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(U64)
    if len(cps) == len(toks):  # every token one character: the general formula reduces to this
        with np.errstate(over="ignore"):
            return _mix64(cps + _LEN_SALT), _cjk_mask(cps), np.ones(len(toks), dtype=np.int64)
    lengths = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
    ends = np.cumsum(lengths)
    cjk = (lengths == 1) & _cjk_mask(cps[ends - 1])
    max_len = int(lengths.max())
    # position of each code point inside its token -> weight P**pos; token hash = sum of weighted cps
    starts = ends - lengths
    pos = np.arange(len(cps), dtype=np.int64) - np.repeat(starts, lengths)
    weights = _powers(max(max_len, 64))[pos]
    with np.errstate(over="ignore"):
        weighted = cps * weights
        sums = np.add.reduceat(weighted, starts)
        sums = sums + lengths.astype(U64) * _LEN_SALT
    return _mix64(sums), cjk, lengths


@dataclass(frozen=True)
class Tokens:
    """The tokens of a normalised text, as parallel arrays."""

    hashes: npt.NDArray[np.uint64]
    cjk: npt.NDArray[np.bool_]  # a CJK character
    lengths: npt.NDArray[np.int64]  # in characters
    numeric: npt.NDArray[np.bool_]  # contains a decimal digit
    line: npt.NDArray[np.int64]  # index of the "\n"-separated line it is on

    def __len__(self) -> int:
        return len(self.hashes)


def tokenize(normalized: str) -> Tokens:
    """Token hashes of a normalised text, equal to ``hash_tokens(TOKEN_RE.findall(text))``.

    Token boundaries come from a per-character class table, so the cost is a
    few array operations per page instead of a regex match per token.
    """
    cps32 = np.frombuffer(normalized.encode("utf-32-le"), dtype=np.uint32)
    if not len(cps32) or int(cps32.max()) >= charmap.LIMIT:
        return _tokenize_regex(normalized)
    t = charmap.tables()
    cls = t.token_class[cps32]
    word = cls == charmap.WORD
    start = cls == charmap.CJK
    start[0] |= word[0]
    start[1:] |= word[1:] & ~word[:-1]
    at = np.flatnonzero(cls)  # positions of token characters
    if not len(at):
        return _empty_tokens()
    starts = np.flatnonzero(start[at])  # token starts, as indices into `at`
    lengths = np.diff(np.append(starts, len(at)))
    tok_cps = cps32[at]
    cps = tok_cps.astype(U64)
    with np.errstate(over="ignore"):
        if len(starts) == len(at):  # every token one character
            sums = cps + _LEN_SALT
        else:
            pos = np.arange(len(at), dtype=np.int64) - np.repeat(starts, lengths)
            weights = _powers(max(int(lengths.max()), 64))[pos]
            sums = np.add.reduceat(cps * weights, starts) + lengths.astype(U64) * _LEN_SALT
    first = at[starts]
    # digits are rare: mark the tokens holding one, rather than reduce a flag over every character
    numeric = np.zeros(len(starts), dtype=bool)
    digits = np.flatnonzero(t.digit[tok_cps])
    if len(digits):
        numeric[np.searchsorted(starts, digits, side="right") - 1] = True
    line = np.cumsum(cps32 == 10)[first]  # line breaks before each token (a token is never one)
    return Tokens(hashes=_mix64(sums), cjk=cls[first] == charmap.CJK, lengths=lengths.astype(np.int64),
                  numeric=numeric, line=line.astype(np.int64))


def _empty_tokens() -> Tokens:
    z = np.zeros(0, dtype=np.int64)
    return Tokens(hashes=np.zeros(0, dtype=U64), cjk=np.zeros(0, dtype=bool), lengths=z,
                  numeric=np.zeros(0, dtype=bool), line=z)


def _tokenize_regex(normalized: str) -> Tokens:
    """The reference path, for text beyond the tables (characters past U+2FFFF)."""
    per_line = [TOKEN_RE.findall(ln) for ln in normalized.split("\n")]
    toks = [tk for line in per_line for tk in line]
    if not toks:
        return _empty_tokens()
    hashes, cjk, lengths = hash_tokens(toks)
    numeric = np.array([_DIGITS.search(tk) is not None for tk in toks], dtype=bool)
    line = np.repeat(np.arange(len(per_line), dtype=np.int64), [len(x) for x in per_line])
    return Tokens(hashes=hashes, cjk=cjk, lengths=lengths, numeric=numeric, line=line)


def token_hashes(normalized: str) -> tuple[npt.NDArray[np.uint64], int]:
    """Token hashes of a normalised text and how many of its tokens are CJK characters."""
    tk = tokenize(normalized)
    return tk.hashes, int(np.count_nonzero(tk.cjk))


def _cjk_mask(cps: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    mask = np.zeros(cps.shape, dtype=bool)
    for a, b in charmap.CJK_RANGES:
        mask |= (cps >= a) & (cps <= b)
    return mask


def shingle_sequence(tok: npt.NDArray[np.uint64], k: int) -> npt.NDArray[np.uint64]:
    """The hash of the k-token shingle starting at each position, in text order (for alignment)."""
    n = len(tok)
    if n == 0:
        return np.zeros(0, dtype=U64)
    k = min(k, n)
    m = n - k + 1
    with np.errstate(over="ignore"):
        acc = tok[:m].copy()
        for j in range(1, k):
            acc = acc * _Q + tok[j:j + m]
    return _mix64(acc)


def shingle_hashes(tok: npt.NDArray[np.uint64], k: int) -> npt.NDArray[np.uint64]:
    """Unique 64-bit hashes of the k-token shingles (a text shorter than k is one shingle)."""
    return _unique(shingle_sequence(tok, k))


def _unique(a: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Sorted distinct values (a sort and a mask: ten times faster than np.unique's hashing here)."""
    s = np.sort(a)
    keep = np.empty(len(s), dtype=bool)
    keep[:1] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
