"""Page analysis: repeated blocks, title lines, boilerplate lines (pure functions)."""

from __future__ import annotations

from newsdedup.text.boilerplate import body, boilerplate_lines
from newsdedup.text.page import analyse
from tests.textgen import en_article, zh_article

SEED_TITLE = "渝中:92个公共法律服务平台 同期举行公众开放日活动"


def test_seed_page_body_repeats_and_is_counted_once(seed_page_text: str) -> None:
    page = analyse(SEED_TITLE, text=seed_page_text)
    blocks, share = page.repeated_report()
    assert blocks, "the seed page renders its body twice"
    top = blocks[0]
    assert top["occurrences"] == 2 and top["lines"] >= 5
    assert top["text"].startswith("华龙网-新重庆客户端12月4日16时40分讯")
    assert 0.5 < share <= 1.0
    text = body(page, set())
    assert text.count("值得一提的是") == 1  # the body once
    assert SEED_TITLE[:6] not in text  # title lines are not body


def test_page_without_repetition_reports_nothing() -> None:
    page = analyse("t", text=en_article(1))
    assert page.repeated_report() == ([], 0.0)


def test_near_identical_repeat_is_found() -> None:
    para = zh_article(2, chars=120).replace("\n", "")
    edited = para[:60] + "的" + para[61:]
    page = analyse("", text=f"{para}\n导航 首页\n{edited}")
    assert page.repeated and page.repeated[0].occurrences == 2


def test_learned_boilerplate_and_adjacent_link_lists() -> None:
    chrome_top = "首页 | 国内 | 国际 | 财经"
    related = ["相关新闻：", "某地举行活动", "另一条新闻标题", "第三条消息"]
    footer = "版权所有 未经授权不得转载 联系电话：62345678"
    story = zh_article(3)
    page = analyse("", text="\n".join([chrome_top, story, *related, footer]))
    counts = []
    frequent = {page.lines[0].shape, page.lines[-1].shape, page.lines[-5].shape}
    for s in page.shapes:
        counts.append(50 if s in frequent else 1)
    bp = boilerplate_lines(page, counts, docs=100, min_docs=4, min_share=0.01)
    kept = body(page, bp)
    assert "首页" not in kept and "版权所有" not in kept and "某地举行活动" not in kept
    assert story.split("\n")[0][:20] in kept.replace("\n", "")


def test_nothing_is_boilerplate_for_a_new_source() -> None:
    page = analyse("", text=zh_article(4))
    assert boilerplate_lines(page, [1] * len(page.shapes), docs=1, min_docs=4, min_share=0.01) == set()


def test_html_extraction_keeps_text_and_title() -> None:
    story = en_article(5)
    paras = "".join(f"<p>{p}</p>" for p in story.split("\n"))
    html = (f"<html><head><title>Big story - Site</title><script>var x = 'not text';</script></head>"
            f"<body><div class='nav'>Home | World</div><article><h1>Big story</h1>{paras}</article></body></html>")
    page = analyse("", html=html)
    text = body(page, set())
    assert "not text" not in text
    assert story.split(".")[0].lower()[:30] in text


def test_hostile_html_does_not_crash() -> None:
    deep = "<div>" * 20000 + "words here" + "</div>" * 20000
    page = analyse("", html=deep)
    assert "words here" in body(page, set())
    # broken markup: what is text stays text (entities decoded), what is code, comment or CDATA does not
    cases = {"<<<>>><script>": [], "<style>p{}</style><p>a &lt; b &amp; c</p><script>var x = 'code';</script>":
             ["a < b & c"], "<p>ok<![CDATA[ code ]]></p>": ["ok"], "<p>x</p><noscript>code</noscript>": ["x"],
             "<svg onload=x><p>fine</p>": ["fine"], "</p></p>": [], "": []}
    for html, text in cases.items():
        raws = [ln.raw for ln in analyse("", html=html).lines]
        assert [r for r in raws if any(c.isalpha() for c in r)] == text, (html, raws)
        assert not any(w in r for r in raws for w in ("code", "script", "onload")), (html, raws)


def test_wrapped_prose_next_to_chrome_is_not_a_link_list() -> None:
    wire = ("Prime Computer Inc said it\nreceived an order from the board of education for\n"
            "more than eight mln dlrs of computer equipment. The order\nwas placed last week, it said.")
    page = analyse("", text=f"By Staff reporter | 2024-06-20 13:35\n{wire}\nRelated stories:\nStorm hits coast\n"
                            "Terms of Use | Privacy Policy")
    chrome = {page.lines[0].shape, page.lines[-3].shape, page.lines[-1].shape}
    bp = boilerplate_lines(page, [50 if s in chrome else 1 for s in page.shapes], 100, 4, 0.01)
    kept = body(page, bp)
    assert "prime computer" in kept and "storm hits coast" not in kept


def test_lines_whose_numbers_are_the_content_keep_their_numbers() -> None:
    a = analyse("", text="Net 61.3 mln vs 21.1 mln\nShr 4.77 dlrs vs 1.65 dlrs")
    b = analyse("", text="Net 18.6 mln vs 16.5 mln\nShr 0.68 dlrs vs 0.61 dlrs")
    assert not set(a.shapes) & set(b.shapes)
    c = analyse("", text="联系方式：某某传媒有限公司 咨询电话：60367951")
    d = analyse("", text="联系方式：某某传媒有限公司 咨询电话：61234567")
    assert c.shapes == d.shapes


def test_shapes_ignore_dates_spacing_and_punctuation_but_not_words() -> None:
    a = analyse("", text="咨询电话：60367951  2024-01-02 | 关于我们")
    b = analyse("", text="咨询电话 61234567 2023-12-31 关于我们")
    c = analyse("", text="咨询电话 61234567 2023-12-31 联系我们")
    assert a.shapes == b.shapes
    assert a.shapes != c.shapes


def test_pages_analysed_together_equal_pages_analysed_alone() -> None:
    from newsdedup.text.page import analyse_many

    items = [("", zh_article(1, 300) + "\n\n" + zh_article(1, 300), None), ("", "", None),
             ("Title", "Title\n" + en_article(2, 80), None), ("", None, "<p>网页 正文</p><p>第二段 2024</p>"),
             ("", "a\r\nb c d e f g h\rx", None)]
    together = analyse_many(items)
    for item, page in zip(items, together):
        alone = analyse(*item)
        assert [(ln.raw, ln.ntok, ln.shape, ln.start, ln.short) for ln in page.lines] == \
               [(ln.raw, ln.ntok, ln.shape, ln.start, ln.short) for ln in alone.lines]
        assert page.tokens.tolist() == alone.tokens.tolist()
        assert (page.redundant, page.title_lines) == (alone.redundant, alone.title_lines)
