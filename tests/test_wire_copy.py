"""Wire copy (issue 16): hard-wrapped stories, ads between their lines, truncated copies inside chrome.

Pure cases pin text/reflow.py; engine cases post a site's pages (so that its
chrome is learned), then copies of a wire story with ads inserted between its
wrapped lines, or truncated and lightly edited, and a different story in the
same chrome; in English and in Chinese. Texts are generated here.
"""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.text.page import analyse
from newsdedup.text.reflow import reflow
from tests.procs import cluster_of
from tests.textgen import EN_WORDS, light_edit, zh_article
from workers.consumer import process_available


@dataclass
class L:
    raw: str
    ntok: int = 1
    cjk: int = 0


def wire(seed: int, sentences: int = 4) -> str:
    """A story as the wire sends it: long sentences, one per paragraph, hard-wrapped at 65 characters."""
    rng = random.Random(seed)
    paras = []
    for _ in range(sentences):
        s = " ".join(rng.choice(EN_WORDS) for _ in range(rng.randint(28, 40)))
        paras.append(textwrap.fill(s[0].upper() + s[1:] + ".", 65))
    return "\n".join(paras)


def test_wrapped_lines_are_one_paragraph_and_inserted_lines_interrupt_it() -> None:
    lines = [L("The council said on Monday it would raise the budget for schools"),
             L("ADVERTISEMENT"),
             L("and hospitals next year, after months of talks with the unions."),
             L("Officials from the finance ministry declined to comment on the"),
             L("Recommended: Storm Floods Coastal Towns As Rivers Burst Banks"),
             L("plan, which still needs the approval of the regional assembly."),
             L("Suscríbase ahora y ahorre un 40 %"),
             L("Talks resume in May.")]
    wrapped, interrupts = reflow(lines)
    assert interrupts == {1, 4}
    assert {0, 2, 3, 5} <= wrapped
    assert 6 not in wrapped  # after a sentence end: not part of the paragraph (learning decides)


def test_a_continuation_that_starts_with_a_name_is_not_an_interruption() -> None:
    lines = [L("Japanese trade representative Tsomu Hata told an informal meeting"),
             L("General Agreement on Tariffs and Trade (GATT) officials that, in"),
             L("addition to demand boosting measures, a programme will follow.")]
    wrapped, interrupts = reflow(lines)
    assert interrupts == set() and wrapped == {0, 1, 2}


def test_unwrapped_text_and_cjk_lines_are_left_alone() -> None:
    assert reflow([L("Home"), L("World"), L("Sport")]) == (set(), set())
    lines = [L(p, cjk=len(p)) for p in zh_article(3, 300).split("\n")]
    assert reflow(lines) == (set(), set())


def test_wrapped_story_lines_are_never_short_link_lines() -> None:
    page = analyse("", text=wire(5))
    assert not any(ln.short for ln in page.lines)
    table = analyse("", text="Shr 1.27 dlrs vs 43 cts\nNet 17.0 mln vs 5,667,000\nYear")
    assert [ln.short for ln in table.lines] == [False, False, True]  # figures are content


# ------------------------------------------------------------------ through the engine


ADS = {"en": ["ADVERTISEMENT", "Story continues below advertisement", "Abonnez-vous dès maintenant à notre lettre"],
       "zh": ["广告", "点击进入专题：新闻推荐", "Subscribe now for unlimited access"]}


def zh_story(seed: int) -> str:
    return zh_article(seed, 600)


def chrome(site: str, title: str, body: str, lang: str) -> str:
    if lang == "zh":
        top = f"{site}\n首页 | 新闻 | 财经 | 体育 | 娱乐 | 科技"
        foot = f"推荐阅读：今日要闻\n版权所有 {site} 未经授权不得转载"
    else:
        top = f"{site}\nHome | World | Business | Markets | Sport | Opinion"
        foot = (f"Recommended: Editors picks\nPrivacy Policy | Terms of Service | Contact\n"
                f"(c) {site}. All rights reserved.")
    return f"{top}\n{title}\n{body}\n{foot}"


def with_ads(body: str, lang: str, rng: random.Random) -> str:
    out = []
    for k, ln in enumerate(body.split("\n")):
        out.append(ln)
        if k % 3 == 1:
            out.append(rng.choice(ADS[lang]))
    return "\n".join(out)


@pytest.fixture
def dedup(redis_client: redis.Redis, config: Config) -> Dedup:
    return Dedup(redis_client, config)


def submit(d: Dedup, *arts: dict[str, Any]) -> None:
    d.submit([parse_article(a) for a in arts])


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_wire_copies_with_ads_or_truncated_in_chrome_join_their_story(dedup: Dedup, config: Config,
                                                                      lang: str) -> None:
    rng = random.Random(11)
    site = "Metro Ledger" if lang == "en" else "南岭晚报网"
    story = (lambda s: wire(s)) if lang == "en" else zh_story
    # the site publishes other stories first: its chrome and its ads become known
    submit(dedup, *({"id": f"site-{k}", "title": f"Other story {k}", "source": site,
                     "text": chrome(site, f"Other story {k}", with_ads(story(100 + k), lang, rng), lang)}
                    for k in range(8)))
    process_available(dedup.r, config)
    for s in range(3):
        text = story(s)
        lines = text.split("\n")
        cut = "\n".join(lines[:max(1, round(len(lines) * 0.8))])
        submit(dedup, {"id": f"orig-{s}", "title": f"Story {s}", "text": text, "source": "wire"},
               {"id": f"ads-{s}", "title": f"Story {s}", "source": site,
                "text": chrome(site, f"Story {s}", with_ads(text, lang, rng), lang)},
               {"id": f"cut-{s}", "title": f"Story {s}", "source": site,
                "text": chrome(site, f"Story {s}", light_edit(cut, s, 0.01), lang)},
               {"id": f"neg-{s}", "title": f"Another story {s}", "source": site,
                "text": chrome(site, f"Another story {s}", with_ads(story(200 + s), lang, rng), lang)})
    process_available(dedup.r, config)
    for s in range(3):
        assert cluster_of(dedup, f"ads-{s}") == cluster_of(dedup, f"orig-{s}")
        assert cluster_of(dedup, f"cut-{s}") == cluster_of(dedup, f"orig-{s}")
        assert cluster_of(dedup, f"neg-{s}") != cluster_of(dedup, f"orig-{s}")
    if lang == "en":  # the ad lines were not compared: the kept text is the story alone
        kept = dedup.article("ads-0")["text"] or ""
        assert "ADVERTISEMENT" not in kept and "continues below" not in kept
