"""The web pages and GET /v1/articles/<a>/compare/<b>, in process on the session's real Redis.

The browser test (tests/test_browser.py) drives the same pages in Chromium
against real processes; here each behaviour is pinned down quickly: escaping,
the read policy with a login cookie, NEWSDEDUP_UI=false, the compare figures on
the seed page, the fallback for articles kept before pages were, and the
KEEP_TEXT=false error.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.explain import explain
from service.app import create_app
from tests.procs import check_index_invariants
from tests.test_e2e import SEED_TITLE, clean_body, site_page
from tests.textgen import zh_article
from workers.consumer import process_available

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def client_for(config: Config, r: redis.Redis) -> FlaskClient:
    return create_app(config, r).test_client()


def post(c: FlaskClient, articles: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
    resp = c.post("/v1/articles", json={"articles": articles}, headers=headers or {})
    assert resp.status_code == 202, resp.get_json()


@pytest.fixture
def seeded(config: Config, redis_client: redis.Redis, seed_page_text: str) -> FlaskClient:
    c = client_for(config, redis_client)
    # other stories of the seed's site first, so that its chrome is known when the seed arrives
    post(c, [{"id": f"site-{i}", "title": f"站内新闻 {i}", "text": site_page(seed_page_text, zh_article(100 + i)),
              "source": "华龙网"} for i in range(4)])
    process_available(redis_client, config)
    post(c, [{"id": "seed", "title": SEED_TITLE, "text": seed_page_text, "source": "华龙网"},
             {"id": "repost", "title": "渝中举行公共法律服务开放日", "text": clean_body(seed_page_text),
              "source": "另一个网站"},
             {"id": "evil", "title": HOSTILE, "source": HOSTILE,
              "text": "A perfectly ordinary story about the weather " + HOSTILE + " that goes on for a while "
                      "with enough words to be indexed and compared by the engine."}])
    process_available(redis_client, config)
    return c


def test_compare_endpoint_explains_the_seed_page_against_its_clean_repost(seeded: FlaskClient,
                                                                         seed_page_text: str) -> None:
    resp = seeded.get("/v1/articles/seed/compare/repost")
    assert resp.status_code == 200, resp.get_json()
    rep = resp.get_json()
    assert rep["same_cluster"] is True
    assert rep["containment"]["b_in_a"] >= 0.95 and rep["containment"]["a_in_b"] > 0.5  # the seed keeps chrome
    assert 0 < rep["similarity"] <= 1
    a, b = rep["a"], rep["b"]
    assert a["page"] == b["page"] == "as_submitted"
    # the repeated story: one block seen twice on the seed page
    assert a["repeated_blocks"] and a["repeated_blocks"][0]["occurrences"] == 2
    assert a["repeated_blocks"][0]["repeat_lines"]
    # passages point into each side's kept text and say the same thing; the longest covers most of the body
    for p in rep["passages"]:
        ta, tb = a["text"][p["a"][0]:p["a"][1]], b["text"][p["b"][0]:p["b"][1]]
        assert re.sub(r"\W", "", ta) == re.sub(r"\W", "", tb)
    covered = sum(p["b"][1] - p["b"][0] for p in rep["passages"])
    assert covered >= 0.9 * len(b["text"])
    lengths = [p["tokens"] for p in rep["passages"]]
    assert lengths == sorted(lengths, reverse=True)


def test_compare_works_across_clusters_and_says_what_is_missing(seeded: FlaskClient, config: Config,
                                                               redis_client: redis.Redis) -> None:
    resp = seeded.get("/v1/articles/seed/compare/evil")
    assert resp.status_code == 200
    rep = resp.get_json()
    assert rep["same_cluster"] is False and rep["passages"] == [] and rep["similarity"] == 0.0
    assert seeded.get("/v1/articles/seed/compare/nope").get_json()["error"]["code"] == "not_found"
    post(seeded, [{"id": "queued", "text": "not processed yet, still in the queue of the service"}])
    resp = seeded.get("/v1/articles/queued/compare/seed")
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "text_unavailable"
    assert "not processed yet" in resp.get_json()["error"]["message"]


def test_compare_without_kept_text_is_a_clear_409(config: Config, redis_client: redis.Redis) -> None:
    cfg = config.replace(keep_text=False)
    c = client_for(cfg, redis_client)
    post(c, [{"id": "x", "text": "one story with enough words in it to be indexed by the engine here"},
             {"id": "y", "text": "another story with enough words in it to be indexed by the engine"}])
    process_available(redis_client, cfg)
    resp = c.get("/v1/articles/x/compare/y")
    assert resp.status_code == 409
    assert "NEWSDEDUP_KEEP_TEXT" in resp.get_json()["error"]["message"]
    assert c.get("/ui/compare/x/y").status_code == 409


def test_articles_kept_before_pages_were_compare_on_their_kept_text(seeded: FlaskClient,
                                                                    redis_client: redis.Redis) -> None:
    n = int(redis_client.hget(keys.IDS, "seed") or 0)
    redis_client.hdel(keys.blob(n), "page", "lines")  # as an article stored by an earlier version
    rep = seeded.get("/v1/articles/seed/compare/repost").get_json()
    assert rep["a"]["page"] == "kept_text" and rep["a"]["boilerplate_lines"] == []
    assert rep["a"]["repeated_blocks"][0]["occurrences"] == 2  # what the engine recorded
    assert rep["containment"]["b_in_a"] >= 0.95


def test_pages_render_and_escape_hostile_text(seeded: FlaskClient) -> None:
    home = seeded.get("/")
    assert home.status_code == 200 and b"clusters with duplicates" in home.data
    assert "default-src 'none'" in home.headers["Content-Security-Policy"]
    cid = seeded.get("/v1/articles/seed").get_json()["cluster_id"]
    assert f"/ui/clusters/{cid}".encode() in home.data
    listing = seeded.get("/ui/clusters?min_size=1")
    assert listing.status_code == 200
    for page in (listing, seeded.get("/ui/clusters?q=script+alert&min_size=1"), seeded.get("/ui/compare/seed/evil")):
        html = page.data.decode()
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(" in html
    cluster = seeded.get(f"/ui/clusters/{cid}").data.decode()
    assert "/ui/compare/seed/repost" in cluster
    compare = seeded.get("/ui/compare/seed/repost").data.decode()
    assert "<mark>" in compare and 'class="ln bp"' in compare  # shared passages and dimmed chrome
    assert 'class="blk blk0 copy"' in compare  # the second copy of the story, outlined and left out


def test_cluster_search_by_id_and_headline_words(seeded: FlaskClient) -> None:
    cid = seeded.get("/v1/articles/seed").get_json()["cluster_id"]
    by_id = seeded.get("/ui/clusters?q=repost").data.decode()
    assert f"/ui/clusters/{cid}" in by_id
    by_words = seeded.get("/ui/clusters?q=" + "公共法律 开放日").data.decode()
    assert f"/ui/clusters/{cid}" in by_words
    traditional = seeded.get("/ui/clusters?q=" + "開放日").data.decode()  # normalised like the text
    assert f"/ui/clusters/{cid}" in traditional
    none = seeded.get("/ui/clusters?q=nothing-like-this&min_size=1").data.decode()
    assert "No cluster matches" in none
    assert seeded.get("/ui/clusters?page=0").status_code == 400


def test_check_page_finds_the_duplicate_without_storing(seeded: FlaskClient, redis_client: redis.Redis,
                                                        seed_page_text: str) -> None:
    before = redis_client.hlen(keys.IDS)
    resp = seeded.post("/ui/check", data={"title": "t", "content": clean_body(seed_page_text), "kind": "text"})
    assert resp.status_code == 200
    assert b'id="check-results"' in resp.data and b"/ui/compare" not in resp.data
    assert b">seed<" in resp.data or b">repost<" in resp.data
    assert redis_client.hlen(keys.IDS) == before


def test_pages_follow_the_read_policy_with_a_login_cookie(config: Config, redis_client: redis.Redis) -> None:
    cfg = config.replace(api_keys=("s3cret-key-one",), auth_reads=True)
    c = client_for(cfg, redis_client)
    resp = c.get("/ui/clusters?min_size=3")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/ui/login?next=")
    assert c.get("/docs").status_code == 200  # the API docs are as public as /openapi.json
    bad = c.post("/ui/login", data={"key": "wrong", "next": "/ui/clusters"})
    assert bad.status_code == 401 and b"not valid" in bad.data
    ok = c.post("/ui/login", data={"key": "s3cret-key-one", "next": "//evil.example/x"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/"  # never off-site
    cookie = ok.headers["Set-Cookie"]
    assert "s3cret" not in cookie and "HttpOnly" in cookie
    assert c.get("/ui/clusters").status_code == 200
    assert c.get("/v1/stats").status_code == 401  # the cookie is for pages; the API still wants a bearer key
    c.post("/ui/logout")
    assert c.get("/").status_code == 302


def test_pages_can_be_turned_off(config: Config, redis_client: redis.Redis) -> None:
    c = client_for(config.replace(ui=False), redis_client)
    for path in ("/", "/ui/clusters", "/ui/check", "/ui/login"):
        resp = c.get(path)
        assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    assert c.get("/docs").status_code == 200
    assert c.get("/v1/stats").status_code == 200


def test_docs_serve_swagger_ui_from_the_package(config: Config, redis_client: redis.Redis) -> None:
    c = client_for(config, redis_client)
    page = c.get("/docs").data.decode()
    assert "http" not in page.replace("http-equiv", "")  # nothing from another host
    for src in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert c.get(src).status_code == 200, src
    assert c.get("/docs/assets/index.html").status_code == 404


def test_overview_counts_articles_done_in_the_last_minute_and_hour(seeded: FlaskClient) -> None:
    html = seeded.get("/").data.decode()
    assert re.search(r'id="done-minute">7<', html) and re.search(r'id="done-hour">7<', html)


def test_highlights_land_on_the_right_characters_of_each_line(seeded: FlaskClient, config: Config,
                                                             redis_client: redis.Redis) -> None:
    # the repost was posted with blank lines between paragraphs and is kept as posted: offsets must still match
    ex = explain(redis_client, config, "seed", "repost")
    for s, spans in ((ex.a, [p.a for p in ex.result.passages]), (ex.b, [p.b for p in ex.result.passages])):
        on_lines = "".join(piece for ln in s.lines for piece, shared in ln.segments() if shared)
        in_text = "".join(s.text[a:b] for a, b in sorted(spans)).replace("\n", "")
        assert on_lines == in_text and on_lines
    assert "\n\n" in ex.b.text and ex.b.as_submitted


def test_headline_search_follows_updates_and_deletes(config: Config, redis_client: redis.Redis) -> None:
    c = client_for(config, redis_client)
    text = "The harbour authority reopened the northern pier after repairs that lasted most of the winter season."
    post(c, [{"id": "h1", "title": "Pier [reopens]* after REPAIRS", "text": text},
             {"id": "h2", "title": "Unrelated market report",
              "text": "Grain prices rose again this week as dry weather cut the expected harvest in the south."}])
    process_available(redis_client, config)
    cid = c.get("/v1/articles/h1").get_json()["cluster_id"]

    def found(q: str) -> bool:
        return f"/ui/clusters/{cid}".encode() in c.get("/ui/clusters", query_string={"q": q, "min_size": 1}).data

    assert found("repairs") and found("[reopens]*") and found("pier repairs") and not found("pier market")
    post(c, [{"id": "h1", "title": "Northern pier open again", "text": text + " Ferries resume on Monday."}])
    process_available(redis_client, config)
    cid = c.get("/v1/articles/h1").get_json()["cluster_id"]
    assert not found("repairs") and found("open again")
    check_index_invariants(redis_client)
    assert c.delete("/v1/articles/h1").status_code == 200
    assert not found("open again")
    check_index_invariants(redis_client)
