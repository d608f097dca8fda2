"""Passage alignment and exact figures (newsdedup.text.compare) on small written cases, Chinese and English."""

from __future__ import annotations

import pytest

from newsdedup.text.compare import compare, marked, tokenise

EN = [
    "The city council approved the new budget on Tuesday after a long debate about school funding.",
    "Officials said the plan adds two hundred teachers and repairs forty old buildings by next spring.",
    "Opponents argued that property taxes would rise faster than wages in most of the districts.",
]
ZH = [
    "市议会周二在长时间辩论后通过了新的预算方案，重点讨论了学校经费问题。",
    "官员表示，该计划将在明年春天之前增加两百名教师并修缮四十栋旧楼。",
    "反对者认为，大多数地区的房产税上涨速度将快于工资增长速度。",
]
OTHER = {
    "en": "A storm closed the harbour for three days and fishing boats stayed at the quay until the wind fell.",
    "zh": "暴风雨使港口关闭了三天，渔船一直停靠在码头，直到风势减弱才重新出海。",
}
CASES = [pytest.param(EN, "en", id="english"), pytest.param(ZH, "zh", id="chinese")]


def shared_texts(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [text[s:e] for s, e in spans]


@pytest.mark.parametrize(("paras", "lang"), CASES)
def test_identical_texts_share_one_passage_covering_everything(paras: list[str], lang: str) -> None:
    text = "\n".join(paras)
    c = compare(text, text)
    assert c.jaccard == 1.0 and c.a_in_b == 1.0 and c.b_in_a == 1.0
    assert c.shingle_length == (4 if lang == "zh" else 3)
    assert len(c.passages) == 1
    p = c.passages[0]
    toks = tokenise(text)
    assert p.a == p.b == (toks.starts[0], toks.ends[-1])
    assert p.tokens == len(toks)


@pytest.mark.parametrize(("paras", "lang"), CASES)
def test_text_inside_a_longer_one_is_contained_and_aligned(paras: list[str], lang: str) -> None:
    inner = paras[1]
    outer = "\n".join(paras)
    c = compare(inner, outer)
    assert c.a_in_b == 1.0
    assert c.b_in_a < 0.5 and c.jaccard == c.b_in_a  # every shingle of the short text is in the long one
    assert len(c.passages) == 1
    p = c.passages[0]
    t_inner = tokenise(inner)
    assert p.a == (t_inner.starts[0], t_inner.ends[-1])
    assert outer[p.b[0]:p.b[1]] == inner[p.a[0]:p.a[1]]
    assert p.b[0] == outer.index(inner)


@pytest.mark.parametrize(("paras", "lang"), CASES)
def test_a_moved_paragraph_is_a_passage_of_its_own(paras: list[str], lang: str) -> None:
    a = "\n".join(paras)
    b = "\n".join([paras[2], paras[0], paras[1]])
    c = compare(a, b)
    assert 0.8 < c.jaccard < 1.0  # only the shingles across the moved boundary differ
    got = shared_texts(a, [p.a for p in c.passages])
    assert len(got) == 2
    # longest first: the two paragraphs that stayed together, then the moved one
    assert got[0].startswith(paras[0][:5]) and got[0].rstrip("。.").endswith(paras[1].rstrip("。.")[-5:])
    assert paras[2].startswith(got[1]) or got[1] in paras[2]
    for p in c.passages:
        assert a[p.a[0]:p.a[1]] == b[p.b[0]:p.b[1]]
    assert c.passages[0].tokens > c.passages[1].tokens


@pytest.mark.parametrize(("paras", "lang"), CASES)
def test_texts_sharing_nothing_have_no_passages(paras: list[str], lang: str) -> None:
    c = compare("\n".join(paras), OTHER[lang])
    assert c.shared == 0 and c.jaccard == 0.0 and c.a_in_b == 0.0 and c.b_in_a == 0.0
    assert c.passages == []


def test_spans_point_into_the_original_text_whatever_normalisation_does() -> None:
    # full-width letters, traditional characters and an ellipsis that NFKC expands: offsets stay in the original
    a = "ＡＢＣ公司宣佈…今年利潤增長三成，董事會將派發特別股息。"
    b = "abc公司宣布...今年利润增长三成，董事会将派发特别股息。"
    c = compare(a, b)
    assert c.jaccard == 1.0
    (p,) = c.passages
    assert a[p.a[0]:p.a[1]] == a[:-1]  # everything but the closing punctuation, which is no token
    assert b[p.b[0]:p.b[1]] == b[:-1]


def test_marked_cuts_text_into_shared_and_other_segments() -> None:
    assert marked("abcdef", [(1, 3), (4, 5)]) == [("a", False), ("bc", True), ("d", False), ("e", True),
                                                  ("f", False)]
    assert marked("abc", []) == [("abc", False)]
    assert marked("", []) == [("", False)]
    assert marked("abc", [(0, 3)]) == [("abc", True)]
