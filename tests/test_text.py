"""Unit tests of the pure text functions: normalisation, tokens, shingle hashes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from newsdedup.text import is_cjk_dominant, line_shape, normalize, shingle_hashes, token_hashes, tokens


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
    code = ("from newsdedup.text import normalize, token_hashes; "
            "print(token_hashes(normalize('稳定 stable hash 测试'))[0].tolist())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(outs) == 1
    assert outs.pop().strip() == str(token_hashes(normalize("稳定 stable hash 测试"))[0].tolist())


def test_line_shape_abstracts_numbers() -> None:
    a, b = normalize("咨询电话：60367951  2024-01-02"), normalize("咨询电话：61234567 2023-12-31")
    assert line_shape(a) == line_shape(b)


def test_a_token_hashes_the_same_whatever_else_the_text_holds() -> None:
    """Pure-CJK texts take a fast path; it must agree with the general one."""
    pure, _ = token_hashes(normalize("新闻发布会"))
    mixed, _ = token_hashes(normalize("新闻发布会 footer"))
    assert np.array_equal(pure, mixed[:5])


def test_kept_text_round_trips_all_of_unicode_and_is_smaller_than_utf8() -> None:
    from newsdedup.records import pack_text, unpack_text

    sample = "中文新闻 café 😀 𠀀 ①② ﬁ\n" + "渝中区公共法律服务中心举办开放日活动。" * 20
    assert unpack_text(pack_text(sample)) == sample
    import zlib

    assert len(pack_text(sample)) < len(zlib.compress(sample.encode("utf-8"), 6))
