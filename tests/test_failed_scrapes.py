"""Failed scrapes are not stories (issue 17): page code and undecodable text never make duplicates.

Pure cases pin prose.py's mechanisms; engine cases post, for several different
stories of one source, the kinds of failed scrape every pipeline sees (a JS-only
page, a wrong-charset page, a consent wall, a paywall teaser), in English and in
Chinese, through the real queue and worker code. Texts are generated here.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import pytest
import redis

from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.text.page import analyse
from newsdedup.text.prose import Removed, clean_line, clean_lines
from newsdedup.text.story import thin_body, titles_differ
from tests.procs import cluster_of
from tests.textgen import EN_WORDS, en_article, zh_article
from workers.consumer import process_available

# ------------------------------------------------------------------ pure: what is not prose


@pytest.mark.parametrize("line", [
    "var ua = navigator.userAgent.toLowerCase();",
    "if(isIOS){ location.replace('http://m.example.com/play.php?sid=84625&id=121206&ch=24'+location.hash); }",
    "body{color:#000;background:#fff;font:12px/20px Arial,serif;min-width: 1000px;}",
    ".nav-inner .logo{background-position: 0 -390px;}",
    '{"articleId": 12345, "section": "world", "tags": ["a", "b"], "paywall": true}',
    "window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);}",
    "document.getElementById('main').addEventListener('click', function (e) { e.preventDefault(); });",
])
def test_code_lines_are_removed(line: str) -> None:
    r = Removed()
    assert clean_line(line, r) == ""
    assert r.script == len(line) and r.lines["script"] == 1


@pytest.mark.parametrize("line", [
    "The council said it would meet again on Monday; officials declined to comment.",
    "Net shr 1.20 dlrs vs 98 cts; revs 12.4 mln vs 10.1 mln",
    "unit of <Hughes Capital Corp> said it made Bear Stearns and Co",
    "The pound rose to 1.5798/808 dlrs at the London close.",
    "- Charles Gant, Heat: Film - Sideways; director - Mike Leigh; actor - Jamie Foxx.",
    "市政府表示，将于下周一（10月22日）召开会议；有关部门暂未回应。",
])
def test_prose_lines_stay(line: str) -> None:
    r = Removed()
    assert clean_line(line, r) == line
    assert r.script == 0 and r.undecodable == 0


def test_urls_tags_and_base64_leave_the_prose_around_them() -> None:
    r = Removed()
    out = clean_line("Read the report at https://example.org/r?id=7&lang=en before <b>Friday</b> "
                     "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgZGF0YQ== please.", r)
    assert out == "Read the report at before Friday please."
    assert r.script > 0
    r = Removed()
    out = clean_line("报考人员可登录门户网站（www.scs.gov.cn）查询招考公告。", r)
    assert out == "报考人员可登录门户网站（ ）查询招考公告。"


def test_undecodable_text_is_removed_anywhere() -> None:
    r = Removed()
    gbk_as_utf8 = zh_article(3, 200).encode("gbk").decode("utf-8", errors="replace")
    assert clean_line(gbk_as_utf8.replace("\n", ""), r) == ""
    assert r.lines["undecodable"] == 1
    r = Removed()
    assert clean_line("新华社电\ufffd\ufffd\ufffd\ufffd今天上午举行会议。", r) == "新华社电 今天上午举行会议。"
    assert r.undecodable == 4
    r = Removed()
    assert clean_line("price\x85\x86\x9d rose", r) == "price rose"


def test_reason_is_what_was_removed_when_too_little_is_left() -> None:
    _, r = clean_lines(["var a = 1; var b = 2;", "function f(x) { return x; }", "Home"])
    assert r.reason(1, 8) == "script"
    _, r = clean_lines(["\ufffd\ufffd\ufffd\ufffd abc \ufffd\ufffd\ufffd\ufffd"] * 3)
    assert r.reason(0, 8) == "undecodable"
    _, r = clean_lines(["Page not found"])
    assert r.reason(3, 8) == "too_short"
    assert r.reason(40, 8) is None


def test_title_terms_tell_stories_apart() -> None:
    assert titles_differ("Storm floods coastal towns", "Central bank holds interest rates")
    assert not titles_differ("EC unemployment falls slightly in February", "EC unemployment falls in February")
    assert titles_differ("渝中举行公共法律服务开放日", "国考计划招录1.45万人")
    assert not titles_differ("渝中举行公共法律服务开放日", "渝中区举行公共法律服务开放日活动")
    assert not titles_differ("", "anything")  # unknown: the text decides


def test_a_page_that_is_all_chrome_has_a_thin_body() -> None:
    page = analyse("t", text="Accept all cookies\n" + en_article(1, 200))
    assert not thin_body(page, set(), False, 60)
    assert thin_body(page, set(range(len(page.lines))), False, 60)


# ------------------------------------------------------------------ failed-scrape page generators


def js_page(story: int) -> str:
    """A JS-rendered gallery scraped as its script: pages of different stories differ in one number."""
    return "\n".join([
        "\ufffd\ufffd\ufffd\ufffd",
        "var ua = navigator.userAgent.toLowerCase();",
        "var isIOS = /\\(iPad/i.test(ua);",
        "if(isIOS){",
        f"    location.replace('http://slide.example.com/play.php?sid=84625&id={story}&ch=24'+location.hash);",
        "}",
        f"var __sid__ ='{story}';",
        ".swpt-tip i{display: block;width:32px;height:10px;background-position: -180px -280px;}",
        "body{color:#000;background:#fff;font:12px/20px \"Microsoft Yahei\",\"\u03a2\ufffd\ufffd\ufffd\";}",
    ] * 3)


def wrong_charset(text: str, lang: str) -> str:
    if lang == "zh":  # GBK bytes read as UTF-8
        return text.encode("gbk").decode("utf-8", errors="replace")
    # a compressed body read as Latin-1: C1 controls and stray letters
    return zlib.compress(text.encode()).decode("latin-1")


CONSENT = {
    "en": "We value your privacy\nWe and our partners store and access information on your device, such as cookies, "
          "and process personal data to personalise content and ads, measure them and improve our services.\n"
          "You can accept or manage your choices in the privacy settings.\nAccept all\nManage options",
    "zh": "我们重视您的隐私\n我们和合作伙伴会在您的设备上存储和访问信息，例如使用网站数据，"
          "并处理个人数据以提供个性化内容和广告、衡量效果并改进服务。\n您可以随时在隐私设置中接受或管理您的选择。\n全部接受\n管理选项",
}
SUBSCRIBE = {"en": "Subscribe to continue reading. Already a subscriber? Log in",
             "zh": "订阅后继续阅读全文。已是订阅用户？请登录"}


def first_sentence(text: str, lang: str) -> str:
    return text.split("。")[0] + "。" if lang == "zh" else text.split(".")[0] + "."


def story(lang: str, k: int) -> tuple[str, str]:
    rng = random.Random(1000 + k)
    if lang == "zh":
        title = "".join(rng.sample("经济会议城市交通学校医院环境科技体育文化市场政府银行法院选举天气铁路机场", 12))
        return title, zh_article(500 + k, 700)
    return " ".join(w.title() for w in rng.sample(EN_WORDS, 6)), en_article(500 + k, 220)


def failed(kind: str, lang: str, k: int) -> str:
    title, text = story(lang, k)
    if kind == "js":
        return js_page(121200 + k)
    if kind == "charset":
        return wrong_charset(text, lang)
    if kind == "consent":
        return CONSENT[lang]
    return f"{title}\n{first_sentence(text, lang)}\n{SUBSCRIBE[lang]}"


@pytest.fixture
def dedup(redis_client: redis.Redis, config: Config) -> Dedup:
    return Dedup(redis_client, config)


def submit(d: Dedup, *arts: dict[str, Any]) -> None:
    d.submit([parse_article(a) for a in arts])


KINDS = ("js", "charset", "consent", "paywall")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_failed_scrapes_of_different_stories_never_cluster(dedup: Dedup, config: Config, lang: str) -> None:
    site = "gallery.example.com"
    for kind in KINDS:  # several stories of one source, one kind of failure at a time, batch by batch
        for batch in (range(0, 3), range(3, 6)):
            submit(dedup, *({"id": f"{kind}-{k}", "title": story(lang, k)[0], "text": failed(kind, lang, k),
                             "source": site} for k in batch))
            process_available(dedup.r, config)
    clusters = {(kind, k): cluster_of(dedup, f"{kind}-{k}") for kind in KINDS for k in range(6)}
    assert len(set(clusters.values())) == len(clusters), "failed scrapes of different stories clustered"
    js = dedup.article("js-0")
    assert js["status"] == "done" and js["content"] == "none" and js["content_reason"] == "script"
    assert js["duplicates"] == []
    if lang == "zh":
        cs = dedup.article("charset-0")
        assert cs["content"] == "none" and cs["content_reason"] == "undecodable"
    assert dedup.article("consent-0")["content"] == "story"  # prose, only thin: the titles decide
    stats = dedup.stats()["content_none"]
    assert stats["script"] == 6 and stats["total"] >= 6
    checked = dedup.check(parse_article({"title": story(lang, 9)[0], "text": failed("js", lang, 9),
                                         "source": site})[0])
    assert checked["content"] == "none" and checked["content_reason"] == "script" and checked["duplicates"] == []

    # the same stories' real texts, posted later, still cluster with their real copies
    real = []
    for k in range(6):
        title, text = story(lang, k)
        real.append({"id": f"real-{k}", "title": title, "text": text, "source": site})
        real.append({"id": f"copy-{k}", "title": title, "text": text + ("\n（完）" if lang == "zh" else "\n(Reuters)"),
                     "source": "other.example.org"})
    submit(dedup, *real)
    process_available(dedup.r, config)
    for k in range(6):
        assert cluster_of(dedup, f"real-{k}") == cluster_of(dedup, f"copy-{k}")
        assert cluster_of(dedup, f"real-{k}") not in {cluster_of(dedup, f"{kind}-{k}") for kind in ("js", "consent")}
    assert len({cluster_of(dedup, f"real-{k}") for k in range(6)}) == 6


def test_an_update_from_failed_scrape_to_story_leaves_the_stats(dedup: Dedup, config: Config) -> None:
    submit(dedup, {"id": "a", "title": "t", "text": js_page(1)})
    process_available(dedup.r, config)
    assert dedup.stats()["content_none"]["script"] == 1
    submit(dedup, {"id": "a", "title": "t", "text": en_article(7)})
    process_available(dedup.r, config)
    assert dedup.article("a")["content"] == "story" and dedup.stats()["content_none"]["total"] == 0
    submit(dedup, {"id": "b", "title": "t", "text": js_page(2)})
    process_available(dedup.r, config)
    dedup.delete("b")
    assert dedup.stats()["content_none"]["total"] == 0


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_same_title_tiny_bodies_may_still_be_one_story(dedup: Dedup, config: Config, lang: str) -> None:
    title, text = story(lang, 42)
    short = first_sentence(text, lang) + ("\n" + first_sentence(text[len(first_sentence(text, lang)):], lang))
    submit(dedup, {"id": "s1", "title": title, "text": short, "source": "a.example"},
           {"id": "s2", "title": title, "text": short, "source": "b.example"})
    process_available(dedup.r, config)
    assert cluster_of(dedup, "s1") == cluster_of(dedup, "s2")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_template_that_makes_every_page_a_copy_is_learned(dedup: Dedup, config: Config, lang: str) -> None:
    """Pages of one site whose chrome outweighs their short bodies: copies under other titles teach it."""
    rng = random.Random(5)
    if lang == "zh":
        menu = "网站首页新闻视频图片财经体育娱乐科技汽车房产教育健康"
        chrome = "\n".join("".join(rng.choice(menu) for _ in range(30)) + "。" for _ in range(30))
    else:
        chrome = "\n".join(" ".join(rng.choice(["menu", "weather", "sport", "shop", "deals", "travel", "jobs",
                                                "cars", "homes", "games"]) for _ in range(14)) + "."
                           for _ in range(30))
    n = 14
    for k in range(n):
        title, text = story(lang, 200 + k)
        body = text[:200] if lang == "zh" else " ".join(text.split()[:90])  # not thin, far smaller than chrome
        submit(dedup, {"id": f"t{k}", "title": title, "text": f"{chrome}\n{body}", "source": "template.example"})
        process_available(dedup.r, config)
    assert cluster_of(dedup, "t1") == cluster_of(dedup, "t0"), "the template makes the first pages copies"
    late = {cluster_of(dedup, f"t{k}") for k in range(n - 4, n)}
    assert len(late) == 4, "once the template is learned, later stories stand apart"
