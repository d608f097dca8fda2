"""Text normalisation, tokens and shingle hashes: pure functions, no I/O.

Tokens are what two copies of a story share however they were typeset: every
CJK character is a token, every run of other letters/digits is a token, and
punctuation and whitespace are not tokens at all (so a copy with other line
breaks or full-width punctuation has the same token stream). Text is NFKC
normalised (full-width forms fold to ASCII), case folded, and traditional
Chinese characters are mapped to simplified ones character by character, so a
traditional-script repost tokenises like its original.

Hashing is vectorised with numpy: the cost of a document is a few array
operations over its code points, not Python work per token.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import numpy as np
import numpy.typing as npt

U64 = np.uint64
_M64 = (1 << 64) - 1

# CJK ideographs, kana and hangul: one token per character.
_CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xAC00, 0xD7AF),
               (0x20000, 0x2FA1F))
_CJK_CLASS = "".join(f"{chr(a)}-{chr(b)}" for a, b in _CJK_RANGES)
TOKEN_RE = re.compile(rf"[{_CJK_CLASS}]|[^\W_{_CJK_CLASS}]+")
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _t2s_table() -> dict[int, int]:
    """Traditional -> simplified, one character to one character (zhconv's table)."""
    from zhconv import zhconv as z

    table: dict[int, int] = {}
    for k, v in z.getdict("zh-hans").items():
        if len(k) == 1 and len(v) == 1 and k != v and ord(k) > 0x2E7F:
            table[ord(k)] = ord(v)
    return table


@lru_cache(maxsize=1)
def _t2s_array() -> npt.NDArray[np.uint32]:
    """The same mapping as a code point -> code point array over the CJK planes (a gather, not a dict)."""
    arr = np.arange(_T2S_LIMIT, dtype=np.uint32)
    for k, v in _t2s_table().items():
        if k < _T2S_LIMIT:
            arr[k] = v
    return arr


_T2S_LIMIT = 0x30000


def normalize(text: str) -> str:
    """NFKC, case folding and traditional -> simplified Chinese."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if text.isascii():
        return text
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = _t2s_array()
    mapped = np.where(cps < _T2S_LIMIT, table[np.minimum(cps, _T2S_LIMIT - 1)], cps)
    return mapped.astype("<u4").tobytes().decode("utf-32-le")


def tokens(normalized: str) -> list[str]:
    return TOKEN_RE.findall(normalized)


def is_cjk_dominant(normalized: str) -> bool:
    """More CJK characters than characters in other words: CJK shingle length applies."""
    _, cjk, lengths = hash_tokens(TOKEN_RE.findall(normalized))
    n_cjk = int(np.count_nonzero(cjk))
    return n_cjk > int(lengths.sum()) - n_cjk


def line_shape(normalized_line: str) -> str:
    """A line with digits and spacing abstracted: template lines with dates or phone numbers agree."""
    return _SPACE.sub(" ", _DIGITS.sub("0", normalized_line)).strip()


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


def token_hashes(normalized: str) -> tuple[npt.NDArray[np.uint64], int]:
    """Token hashes of a normalised text and how many of its tokens are CJK characters."""
    h, cjk, _ = hash_tokens(TOKEN_RE.findall(normalized))
    return h, int(np.count_nonzero(cjk))


def _cjk_mask(cps: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    mask = np.zeros(cps.shape, dtype=bool)
    for a, b in _CJK_RANGES:
        mask |= (cps >= a) & (cps <= b)
    return mask


def shingle_hashes(tok: npt.NDArray[np.uint64], k: int) -> npt.NDArray[np.uint64]:
    """Unique 64-bit hashes of the k-token shingles (a text shorter than k is one shingle)."""
    n = len(tok)
    if n == 0:
        return np.zeros(0, dtype=U64)
    k = min(k, n)
    m = n - k + 1
    with np.errstate(over="ignore"):
        acc = tok[:m].copy()
        for j in range(1, k):
            acc = acc * _Q + tok[j:j + m]
    return _unique(_mix64(acc))


def _unique(a: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Sorted distinct values (a sort and a mask: ten times faster than np.unique's hashing here)."""
    s = np.sort(a)
    keep = np.empty(len(s), dtype=bool)
    keep[:1] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
