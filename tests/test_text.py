"""Unit tests of the pure text functions: normalisation, tokens, shingle hashes."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import unicodedata
import zlib

import numpy as np
import pytest
import zstandard

from newsdedup.text import charmap
from newsdedup.text.charmap import t2s_table
from newsdedup.text.normalize import normalize
from newsdedup.text.tokens import (
    TOKEN_RE,
    hash_tokens,
    is_cjk_dominant,
    shingle_hashes,
    token_hashes,
    tokenize,
    tokens,
)


def test_nfkc_folds_full_width_and_case() -> None:
    assert normalize("ＡＢＣ１２３！") == "abc123!"
    assert normalize("Straße") == "strasse"


def test_traditional_maps_to_simplified() -> None:
    assert normalize("這是一個國家的經濟發展") == "这是一个国家的经济发展"


def test_tokens_cjk_characters_and_latin_words() -> None:
    assert tokens(normalize("北京 Olympic Games 2008年")) == ["北", "京", "olympic", "games", "2008", "年"]


def test_punctuation_and_layout_do_not_change_token_hashes() -> None:
    a = normalize("第一段，内容。\n\n第二段！Hello, world.")
    b = normalize("第一段 内容 第二段 hello world")
    assert np.array_equal(token_hashes(a)[0], token_hashes(b)[0])


def test_cjk_dominance() -> None:
    assert is_cjk_dominant(normalize("今天天气很好 ok"))
    assert not is_cjk_dominant(normalize("the weather is fine 好"))


def test_shingles_unique_and_short_text_is_one_shingle() -> None:
    toks, _ = token_hashes(normalize("a b a b a b"))
    assert len(shingle_hashes(toks, 2)) == 2
    short, _ = token_hashes(normalize("one two"))
    assert len(shingle_hashes(short, 5)) == 1
    assert len(shingle_hashes(np.zeros(0, dtype=np.uint64), 3)) == 0


def test_hashes_are_stable_across_processes() -> None:
    """Signatures are stored: the same text must hash the same in every process (no PYTHONHASHSEED)."""
    code = ("from newsdedup.text.normalize import normalize; from newsdedup.text.tokens import token_hashes; "
            "print(token_hashes(normalize('稳定 stable hash 测试'))[0].tolist())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(outs) == 1
    assert outs.pop().strip() == str(token_hashes(normalize("稳定 stable hash 测试"))[0].tolist())


def test_a_token_hashes_the_same_whatever_else_the_text_holds() -> None:
    """Pure-CJK texts take a fast path; it must agree with the general one."""
    pure, _ = token_hashes(normalize("新闻发布会"))
    mixed, _ = token_hashes(normalize("新闻发布会 footer"))
    assert np.array_equal(pure, mixed[:5])


def test_kept_text_round_trips_all_of_unicode_and_is_smaller_than_utf8() -> None:
    from newsdedup.storage.records import pack_text, unpack_text

    sample = "中文新闻 café 😀 𠀀 ①② ﬁ\n" + "渝中区公共法律服务中心举办开放日活动。" * 20
    assert unpack_text(pack_text(sample)) == sample
    import zlib

    assert len(pack_text(sample)) < len(zlib.compress(sample.encode("utf-8"), 6))


def test_text_packed_with_zlib_before_zstd_still_reads() -> None:
    import threading
    import zlib

    from newsdedup.storage.records import ZSTD_MAGIC, pack_text, unpack_payload, unpack_text

    sample = "渝中区公共法律服务中心举办开放日活动。 café 😀\n" * 5
    assert pack_text(sample)[:4] == ZSTD_MAGIC
    old = zlib.compress(sample.encode("gb18030"), 6)  # what kept text and payloads held before
    assert unpack_text(old) == sample
    assert unpack_payload(b"t" + old) == (sample, None, old)
    # contexts are per thread: packing from several threads at once gives what one thread gives
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.extend(pack_text(sample) for _ in range(200)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {pack_text(sample)}


def test_corrupt_packed_text_is_refused_not_allocated() -> None:
    import pytest
    import zstandard

    from newsdedup.storage.records import ZSTD_MAGIC, pack_text, unpack_payload, unpack_text

    good = pack_text("渝中区公共法律服务中心举办开放日活动。" * 3)
    assert good[4] & 0xC0 in (0x00, 0x40)  # a 1- or 2-byte content size field follows the descriptor
    # the same frame claiming 2**40 bytes (an 8-byte size field), and one cut short
    fcs_len = 2 if good[4] & 0xC0 == 0x40 else 1
    forged = ZSTD_MAGIC + bytes([(good[4] & 0x3F) | 0xC0]) + (1 << 40).to_bytes(8, "little") + good[5 + fcs_len:]
    with pytest.raises(ValueError, match="claims 1099511627776 bytes"):
        unpack_text(forged)
    for bad in (forged, good[:-3], ZSTD_MAGIC + b"\x00"):
        with pytest.raises((ValueError, zstandard.ZstdError)):
            unpack_payload(b"t" + bad)


# ------------------------------------------------------------------ table fast paths vs the references

# characters that exercise every branch: composition (accents, combining marks, Hangul jamo, a Tamil
# vowel sign that composes with class 0), expansions (ligatures, ellipsis, sharp s, squared units),
# full-width forms, traditional characters, other scripts' digits, kana, astral characters
_POOL = ("aZ09 _-.,\n\t" "éÅñ" "\u0301\u0323\u0308" "가각\u1100\u1161\u11a8ㄱㅏ" "\u0bc6\u0bbe"
         "ﬁﬀ…ßẞ㎏½™①" "ＡＢ１２！，。" "國經這發們" "中文新闻" "٣३" "カナひら・ー" "ΣσςİıǅᾼK"
         "😀𠀀\U0002a6d6\U00030000" "\u00a0\u3000\u2028\ufeff")


def _reference_normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().translate(t2s_table())


def _random_texts(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(_POOL) for _ in range(rnd.randint(0, 40))) for _ in range(n)]


def test_normalize_equals_nfkc_casefold_t2s_on_tricky_text() -> None:
    texts = _random_texts(3000) + ["e\u0301", "가\u11a8", "\u0bc6\u0bbe", "…Σ", "新聞…發布", "ǅungla", "ß"]
    for t in texts:
        assert normalize(t) == _reference_normalize(t), repr(t)


def test_normalize_fast_path_covers_everyday_text() -> None:
    """The gather (not the slow path) handles Chinese with full-width punctuation and ellipses."""
    t = charmap.tables()
    for ch in "新聞，。！？「」…——ＡＢ１２３éàü":
        assert t.kind[ord(ch)] != charmap.SLOW, ch


def test_tokenize_equals_regex_tokens_and_hash_tokens() -> None:
    for raw in _random_texts(3000, seed=11) + ["", "\n\n", "a\nb", "2024年1月\nNet 61.3 mln"]:
        text = normalize(raw)
        per_line = [TOKEN_RE.findall(ln) for ln in text.split("\n")]
        toks = [tk for line in per_line for tk in line]
        ref_h, ref_cjk, ref_len = hash_tokens(toks)
        got = tokenize(text)
        assert np.array_equal(got.hashes, ref_h), repr(raw)
        assert np.array_equal(got.cjk, ref_cjk)
        assert np.array_equal(got.lengths, ref_len)
        assert got.numeric.tolist() == [bool(re.search(r"\d", tk)) for tk in toks]
        assert got.line.tolist() == [i for i, line in enumerate(per_line) for _ in line]


def test_token_class_table_matches_the_regex_for_every_code_point() -> None:
    t = charmap.tables()
    word = re.compile(r"[^\W_]")
    for cp in range(charmap.LIMIT):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        expect = charmap.CJK if charmap.in_cjk_ranges(cp) else charmap.WORD if word.match(ch) else charmap.SEPARATOR
        assert t.token_class[cp] == expect, hex(cp)
        assert bool(t.digit[cp]) == bool(re.match(r"\d", ch)), hex(cp)


def test_payload_round_trips_and_older_payloads_still_read() -> None:
    from newsdedup.storage.records import ZSTD_MAGIC, pack_json, pack_payload, pack_text, unpack_payload

    text = "渝中区公共法律服务中心\n\n　　举办开放日活动 café 😀"
    assert unpack_payload(pack_payload(text, None)) == (text, None, pack_text(text))
    assert unpack_payload(pack_payload(None, "<p>x</p>")) == (None, "<p>x</p>", None)
    assert unpack_payload(pack_json({"text": text})) == (text, None, None)
    # corrupt records are refused with the reason: the exception types the engine reports as
    # "stored payload cannot be read" rather than a crash (TypeError, IndexError, ... fail this test)
    huge = ZSTD_MAGIC + b"\xe0" + (1 << 40).to_bytes(8, "little") + b"\x00" * 8  # a frame header claiming 1 TB
    for bad, refusal, reason in ((b"", ValueError, "no payload"), (b"t\x00garbage", zlib.error, "incorrect header"),
                                 (b"not zlib", zlib.error, "incorrect header"), (pack_json([1]), ValueError, "not a"),
                                 (pack_json({"text": 1}), ValueError, "neither"),
                                 (pack_json({"text": "a", "html": "b"}), ValueError, "neither"),
                                 (b"t" + huge, ValueError, "claims")):
        with pytest.raises(refusal, match=reason):
            unpack_payload(bad)
    # damaged copies of good payloads: each is read back or refused, never a crash
    rng = random.Random(11)
    good = [pack_payload(text, None), pack_payload(None, "<p>" + text + "</p>"), pack_json({"text": text})]
    refused = 0
    for _ in range(3000):
        blob = bytearray(rng.choice(good))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(blob))
            blob[i] = rng.randrange(256)
        if rng.random() < 0.3:
            del blob[rng.randrange(len(blob)):]
        try:
            got_text, got_html, packed = unpack_payload(bytes(blob))
        except (ValueError, zlib.error, zstandard.ZstdError):
            refused += 1
            continue
        assert (got_text is None) != (got_html is None), (bytes(blob), got_text, got_html)
        assert isinstance(got_text or got_html or "", str) and isinstance(packed, bytes | None)
    assert 0 < refused < 3000


def test_control_character_check_matches_unicode_categories() -> None:
    from newsdedup.articles import _has_control

    for cp in list(range(0x0, 0x3100)) + [0xD800, 0xDFFF, 0xFEFF, 0xFFFD, 0x1F600]:
        ch = chr(cp)
        assert _has_control(ch) == (unicodedata.category(ch) in ("Cc", "Cs") or ch in "\u2028\u2029"), hex(cp)
