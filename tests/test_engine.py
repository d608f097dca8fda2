"""The engine against a real Redis: each detection mechanism pinned by small written cases.

Texts are generated here (tests/textgen.py) or are the seed page fixture; every
case is processed through the real queue and worker code.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis
import zhconv

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.engine.linking import Linker
from newsdedup.errors import NotFound
from tests.procs import band_count, band_entries, check_index_invariants, cluster_of, cluster_record
from tests.textgen import en_article, light_edit, zh_article
from workers.consumer import process_available

SEED_TITLE = "渝中:92个公共法律服务平台 同期举行公众开放日活动"


def submit(d: Dedup, *arts: dict[str, Any]) -> None:
    d.submit([parse_article(a) for a in arts])


def zh_chrome(site: str, rng: random.Random) -> tuple[str, str]:
    top = f"{site} 首页 | 新闻 | 原创 | 视听 | 评论 | 专题 | 娱乐 | 财经\n分享到：微博 微信 QQ空间"
    foot = "\n".join([
        "相关新闻：", *("".join(rng.choice("天地人和中国新闻发布会议经济") for _ in range(12)) for _ in range(3)),
        f"[责任编辑：{rng.choice(['王敏', '李强'])} ]",
        f"版权声明：凡本网注明“来源：{site}”的作品，系由本网自行采编，版权属{site}。未经本网授权，不得转载、摘编或利用"
        "其它方式使用。已经本网授权使用作品的，应在授权范围内使用。违反上述声明者，本网将追究其相关法律责任。",
        f"联系方式：{site}传媒有限公司 咨询电话：{rng.randint(60000000, 69999999)}",
    ])
    return top, foot


def en_chrome(site: str, rng: random.Random) -> tuple[str, str]:
    top = f"{site}\nHome | World | Business | Sport | Tech | Opinion | Video\nShare: Facebook | Twitter | Email"
    foot = "\n".join([
        "Related stories:", *(" ".join(rng.choice(["Storm", "Vote", "Rates", "Match", "Deal"]) for _ in range(4))
                              for _ in range(3)),
        f"© {rng.randint(2004, 2024)} {site} Media Group. All rights reserved. This material may not be published, "
        "broadcast, rewritten or redistributed without permission of the publisher in any form.",
        f"Sign up for the {site} morning briefing and get the stories that matter delivered to your inbox daily.",
        "Terms of Use | Privacy Policy | Cookie Settings | Contact Us | Advertise",
    ])
    return top, foot


@pytest.fixture
def dedup(redis_client: redis.Redis, config: Config) -> Dedup:
    return Dedup(redis_client, config)


def run(d: Dedup, config: Config) -> None:
    process_available(d.r, config)


def test_seed_page_repost_without_chrome_joins_unrelated_does_not(dedup: Dedup, config: Config,
                                                                  seed_page_text: str) -> None:
    lines = seed_page_text.split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("华龙网-新重庆客户端"))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("无障碍"))
    clean = "\n".join(lines[start:end]).strip()
    submit(dedup, {"id": "seed", "title": SEED_TITLE, "text": seed_page_text, "source": "华龙网"},
           {"id": "repost", "title": "渝中举行公共法律服务开放日", "text": clean, "source": "另一个网站"},
           {"id": "other", "title": "别的新闻", "text": zh_article(99, 900), "source": "另一个网站"})
    run(dedup, config)
    assert cluster_of(dedup, "seed") == cluster_of(dedup, "repost")
    assert cluster_of(dedup, "other") != cluster_of(dedup, "seed")
    seed = dedup.article("seed")
    assert seed["repeated_blocks"] and seed["repeated_blocks"][0]["occurrences"] == 2
    assert seed["repeated_share"] > 0.5
    assert dedup.article("repost")["repeated_blocks"] == []
    assert seed["duplicates"][0]["id"] == "repost" and seed["duplicates"][0]["containment"] >= 0.8


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_chrome_is_learned_per_source_and_does_not_merge_different_stories(dedup: Dedup, config: Config,
                                                                            lang: str) -> None:
    rng = random.Random(7)
    chrome = zh_chrome if lang == "zh" else en_chrome
    story = (lambda s: zh_article(s, 500)) if lang == "zh" else (lambda s: en_article(s, 130))
    short = (lambda s: zh_article(s, 40)) if lang == "zh" else (lambda s: en_article(s, 12))
    arts = []
    for i in range(10):  # different stories in one site template: the site's chrome is learned from them
        top, foot = chrome("SiteA", rng)
        arts.append({"id": f"a{i}", "text": f"{top}\n{story(i)}\n{foot}", "source": "SiteA"})
    submit(dedup, *arts)
    run(dedup, config)
    assert redis_has_learned(dedup, "sitea")
    later = []
    for i in range(10, 16):  # short stories: in this template the chrome outweighs the story
        top, foot = chrome("SiteA", rng)
        later.append({"id": f"a{i}", "text": f"{top}\n{short(i)}\n{foot}", "source": "SiteA"})
    top, foot = chrome("SiteB", rng)
    later.append({"id": "b0", "text": f"{top}\n{story(0)}\n{foot}", "source": "SiteB"})  # repost of a0
    submit(dedup, *later)
    run(dedup, config)
    clusters = {a["id"]: cluster_of(dedup, a["id"]) for a in arts + later}
    assert clusters["b0"] == clusters["a0"]
    assert len({clusters[f"a{i}"] for i in range(16)}) == 16, "a shared template merged different stories"
    assert dedup.article("a12")["boilerplate_lines"] > 0


def redis_has_learned(d: Dedup, source: str) -> bool:
    return int(d.r.hget(keys.boilerplate(source), keys.BP_DOCS_FIELD) or 0) >= 10


def test_the_chrome_alone_would_have_merged_them(redis_client: redis.Redis, config: Config) -> None:
    """Control for the test above: with learning effectively off, the template does merge."""
    cfg = config.replace(boilerplate_min_docs=10**6)
    d = Dedup(redis_client, cfg)
    rng = random.Random(7)
    arts = []
    for i in range(10, 16):
        top, foot = zh_chrome("SiteA", rng)
        arts.append({"id": f"a{i}", "text": f"{top}\n{zh_article(i, 40)}\n{foot}", "source": "SiteA"})
    submit(d, *arts)
    process_available(redis_client, cfg)
    assert len({cluster_of(d, a["id"]) for a in arts}) < 6


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_repeated_body_joins_its_original(dedup: Dedup, config: Config, lang: str) -> None:
    text = zh_article(11) if lang == "zh" else en_article(11)
    page = f"Title line\n{text}\n导航 首页 分享\nTitle line\n{text}\nFooter"
    submit(dedup, {"id": "orig", "text": text}, {"id": "twice", "title": "Title line", "text": page, "source": "s"})
    run(dedup, config)
    assert cluster_of(dedup, "orig") == cluster_of(dedup, "twice")
    rep = dedup.article("twice")
    assert rep["repeated_blocks"][0]["occurrences"] == 2 and rep["repeated_share"] > 0.6


def test_traditional_script_repost_is_a_duplicate(dedup: Dedup, config: Config) -> None:
    text = "\n".join(zh_article(s, 300) for s in (21, 22))
    submit(dedup, {"id": "simp", "text": text}, {"id": "trad", "text": zhconv.convert(text, "zh-hant")})
    run(dedup, config)
    assert cluster_of(dedup, "simp") == cluster_of(dedup, "trad")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_contained_wire_version_is_a_duplicate_with_containment(dedup: Dedup, config: Config, lang: str) -> None:
    long = zh_article(31, 2000) if lang == "zh" else en_article(31, 600)
    short = long[: len(long) * 35 // 100]
    submit(dedup, {"id": "long", "text": long}, {"id": "wire", "text": short})
    run(dedup, config)
    assert cluster_of(dedup, "long") == cluster_of(dedup, "wire")
    dup = dedup.article("wire")["duplicates"][0]
    assert dup["id"] == "long" and dup["containment"] >= 0.8 and dup["similarity"] < 0.5


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_light_edits_truncation_width_and_notes(dedup: Dedup, config: Config, lang: str) -> None:
    text = zh_article(41, 1200) if lang == "zh" else en_article(41, 300)
    full_width = "".join(chr(ord(c) + 0xFEE0) if 0x21 <= ord(c) < 0x7F else c for c in text)
    variants = {"edit": light_edit(text, 1, 0.03), "trunc": "\n".join(text.split("\n")[:-1]),
                "width": full_width.replace("\n", " "), "note": "编者按：本文为转载稿件。\n" + text}
    submit(dedup, {"id": "orig", "text": text}, *({"id": k, "text": v} for k, v in variants.items()))
    run(dedup, config)
    assert {cluster_of(dedup, k) for k in ["orig", *variants]} == {cluster_of(dedup, "orig")}


def test_hard_negative_same_template_other_story(dedup: Dedup, config: Config) -> None:
    rng = random.Random(3)
    arts = []
    for i in range(6):
        top, foot = zh_chrome("SiteC", rng)
        arts.append({"id": f"s{i}", "text": f"{top}\n{zh_article(100 + i, 600)}\n{foot}", "source": "SiteC"})
    top, foot = zh_chrome("SiteD", rng)
    arts.append({"id": "copy", "text": f"{top}\n{zh_article(100, 600)}\n{foot}", "source": "SiteD"})
    top, foot = zh_chrome("SiteD", rng)
    arts.append({"id": "neg", "text": f"{top}\n{zh_article(555, 600)}\n{foot}", "source": "SiteD"})
    submit(dedup, *arts)
    run(dedup, config)
    assert cluster_of(dedup, "copy") == cluster_of(dedup, "s0")
    assert cluster_of(dedup, "neg") not in {cluster_of(dedup, a["id"]) for a in arts if a["id"] != "neg"}


def test_cluster_ids_are_stable_and_merged_ids_resolve(dedup: Dedup, config: Config) -> None:
    a = en_article(51, 300)
    half1, half2 = a[: len(a) // 2], a[len(a) // 2:]
    submit(dedup, {"id": "p1", "text": half1}, {"id": "p2", "text": half2})
    run(dedup, config)
    c1, c2 = cluster_of(dedup, "p1"), cluster_of(dedup, "p2")
    assert c1 != c2
    submit(dedup, {"id": "p1b", "text": half1 + " extra words here"}, {"id": "p2b", "text": half2 + " more"})
    run(dedup, config)
    assert cluster_of(dedup, "p1b") == c1 and cluster_of(dedup, "p2b") == c2
    submit(dedup, {"id": "full", "text": a})  # contains both halves: bridges the two 2-member clusters
    run(dedup, config)
    final = cluster_of(dedup, "full")
    assert final == c1 == cluster_of(dedup, "p2")  # earliest article's id wins
    view = dedup.cluster(c2)
    assert view["merged_into"] == c1 and view["size"] == 5
    assert cluster_record(dedup.r, c2) == {"size": None, "canonical": None, "members": set(), "zsets": set()}
    check_index_invariants(dedup.r)


def test_update_moves_article_and_delete_removes_it(dedup: Dedup, config: Config) -> None:
    r = dedup.r
    x, y = en_article(61), en_article(62)
    submit(dedup, {"id": "x", "text": x}, {"id": "x2", "text": x}, {"id": "y", "text": y})
    run(dedup, config)
    n = {i: int(v) for i, v in ((k.decode(), v) for k, v in r.hgetall(keys.IDS).items())}
    old = cluster_of(dedup, "x")
    assert cluster_of(dedup, "x2") == old
    assert cluster_record(r, old) == {"size": 2, "canonical": min(n["x"], n["x2"]), "members": {n["x"], n["x2"]},
                                      "zsets": {"clusters"}}
    check_index_invariants(r)
    assert dedup.submit([parse_article({"id": "x2", "text": x})])[0]["status"] == "done"  # same content: no-op
    assert dedup.submit([parse_article({"id": "x2", "text": y})])[0]["status"] == "queued"  # new content
    run(dedup, config)
    new = cluster_of(dedup, "x2")
    assert new == cluster_of(dedup, "y") != cluster_of(dedup, "x") == old
    # the old cluster keeps its id for the member left behind: x alone, listed among the singles
    assert cluster_record(r, old) == {"size": 1, "canonical": n["x"], "members": {n["x"]}, "zsets": {"singles"}}
    assert cluster_record(r, new) == {"size": 2, "canonical": min(n["x2"], n["y"]), "members": {n["x2"], n["y"]},
                                      "zsets": {"clusters"}}
    assert dedup.cluster(old)["size"] == 1 and [m["id"] for m in dedup.cluster(old)["members"]] == ["x"]
    check_index_invariants(r)

    dedup.delete("y")
    with pytest.raises(NotFound):
        dedup.article("y")
    assert dedup.article("x2")["duplicates"] == []
    assert r.hget(keys.IDS, "y") is None
    assert cluster_record(r, new) == {"size": 1, "canonical": n["x2"], "members": {n["x2"]}, "zsets": {"singles"}}
    assert cluster_of(dedup, "x2") == new
    check_index_invariants(r)
    entries = band_entries(r)
    assert {m for _, m in entries} == {int(v) for v in r.hvals(keys.IDS)}  # y's entries are gone
    assert len(entries) == len(set(entries)) == 2 * band_count(config)
    assert dedup.stats()["articles"] == 2

    dedup.delete("x")  # the last member of an explicit cluster: the cluster goes with it
    assert cluster_record(r, old) == {"size": None, "canonical": None, "members": set(), "zsets": set()}
    with pytest.raises(NotFound):
        dedup.cluster(old)
    check_index_invariants(r)


def test_deleting_a_clusters_founder_keeps_the_cluster_id_for_the_rest(dedup: Dedup, config: Config) -> None:
    """The pair's earliest article is deleted: the copy stays in the cluster named after it (ids are stable),
    a 1-member explicit cluster listed among the singles; a new copy of the story joins it again."""
    r = dedup.r
    text = zh_article(63, 600)
    submit(dedup, {"id": "first", "text": text}, {"id": "copy", "text": text}, {"id": "other", "text": zh_article(64)})
    run(dedup, config)
    n = {i: int(v) for i, v in ((k.decode(), v) for k, v in r.hgetall(keys.IDS).items())}
    cid = cluster_of(dedup, "first")
    assert cid == keys.cluster_id(n["first"]) == cluster_of(dedup, "copy")
    dedup.delete("first")
    assert cluster_of(dedup, "copy") == cid
    assert cluster_record(r, cid) == {"size": 1, "canonical": n["copy"], "members": {n["copy"]},
                                      "zsets": {"singles"}}
    view = dedup.cluster(cid)
    assert (view["size"], view["canonical_id"], [m["id"] for m in view["members"]]) == (1, "copy", ["copy"])
    assert dedup.article("copy")["duplicate_of"] is None
    assert [c["cluster_id"] for c in dedup.clusters(min_size=2)["clusters"]] == []
    check_index_invariants(r)

    submit(dedup, {"id": "again", "text": text})
    run(dedup, config)
    assert cluster_of(dedup, "again") == cid
    n["again"] = int(r.hget(keys.IDS, "again") or 0)
    assert cluster_record(r, cid) == {"size": 2, "canonical": n["copy"], "members": {n["copy"], n["again"]},
                                      "zsets": {"clusters"}}
    assert [c["cluster_id"] for c in dedup.clusters(min_size=2)["clusters"]] == [cid]
    check_index_invariants(r)


def test_redelivery_after_a_crash_between_index_and_link_doubles_nothing(
        dedup: Dedup, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [zh_article(70 + i, 500) for i in range(5)]
    submit(dedup, *({"id": f"t{i}", "text": t} for i, t in enumerate(texts)),
           *({"id": f"t{i}-copy", "text": t} for i, t in enumerate(texts)))
    calls = {"n": 0}
    real_link = Linker.link

    def crash_once(self: Linker, jobs: list[Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("worker died after indexing")
        real_link(self, jobs)

    monkeypatch.setattr(Linker, "link", crash_once)
    run(dedup, config)  # the first batch fails after indexing, is retried (one by one), then completes
    for i in range(5):
        assert cluster_of(dedup, f"t{i}") == cluster_of(dedup, f"t{i}-copy")
    entries = band_entries(dedup.r)
    assert len(entries) == len(set(entries)) == 10 * band_count(config)  # no entry twice after the retry
    for key in dedup.r.scan_iter(match=keys.PREFIX + "cm:*"):
        assert dedup.r.scard(key) == 2
    assert dedup.stats()["queue"] == {"pending": 0, "in_flight": 0, "failed": 0}
    check_index_invariants(dedup.r)


def test_check_finds_duplicates_without_storing(dedup: Dedup, config: Config) -> None:
    text = zh_article(81, 800)
    submit(dedup, {"id": "stored", "text": text})
    run(dedup, config)
    before = dedup.stats()
    res = dedup.check(parse_article({"text": light_edit(text, 2)})[0])
    assert res["duplicates"][0]["id"] == "stored" and res["cluster_id"] == cluster_of(dedup, "stored")
    assert dedup.check(parse_article({"text": zh_article(82, 800)})[0])["duplicates"] == []
    assert dedup.stats() == before


def test_boilerplate_state_stays_bounded_and_keeps_the_chrome(dedup: Dedup, config: Config,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import newsdedup.engine.analysis as analysis_mod

    monkeypatch.setattr(analysis_mod, "MAX_BOILERPLATE_FIELDS", 60)
    rng = random.Random(9)
    arts = []
    for i in range(30):
        top, foot = zh_chrome("SiteP", rng)
        arts.append({"id": f"p{i}", "text": f"{top}\n{zh_article(300 + i, 400)}\n{foot}", "source": "SiteP"})
    submit(dedup, *arts)
    run(dedup, config)
    key = keys.boilerplate("sitep")
    assert dedup.r.hlen(key) <= 60  # one-story shapes were forgotten when the batch crossed the limit
    counts = [int(v) for f, v in dedup.r.hgetall(key).items() if f != keys.BP_DOCS_FIELD]
    assert max(counts) >= 25  # the chrome survives pruning
    top, foot = zh_chrome("SiteP", rng)
    submit(dedup, {"id": "later", "text": f"{top}\n{zh_article(999, 400)}\n{foot}", "source": "SiteP"})
    run(dedup, config)
    assert dedup.article("later")["boilerplate_lines"] >= 4


def test_worker_raises_small_hash_limits(redis_client: redis.Redis, config: Config) -> None:
    from newsdedup.keys import HASH_ENCODING

    redis_client.config_set("hash-max-ziplist-entries", 128)
    process_available(redis_client, config)
    assert int(redis_client.config_get("hash-max-ziplist-entries")["hash-max-ziplist-entries"]) == \
        HASH_ENCODING["hash-max-ziplist-entries"]
