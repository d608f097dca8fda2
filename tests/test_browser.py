"""The pages in a real browser: headless Debian Chromium driven by Selenium through /usr/bin/chromedriver.

Runs against the real service (gunicorn) and a real worker process on the
session's Redis. Posts the seed page, a clean repost of its body, unrelated
articles and one with a <script> in its title and body; opens the overview,
follows links to the cluster and to the comparison, checks what is highlighted,
that the script is shown as text and never runs, and that /docs lists the
endpoints. Screenshots go to pytest's tmp_path. Chromium missing is a failure
(.ci/run installs it), never a skip.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from newsdedup.ops.redis_server import RedisServer, free_port
from tests.procs import (
    Http,
    Procs,
    make_corpus,
    procs,  # noqa: F401 - fixture
    queue_settled,
    wait_http_ready,
    wait_until,
    wait_worker_ready,
)
from tests.test_e2e import SEED_TITLE, clean_body, site_page
from tests.textgen import zh_article

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HOSTILE = '<script>alert("pwned")</script>'
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,1100")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is missing: apt-get install -y chromium chromium-driver (.ci/run does this)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER,
                                                            log_output=str(tmp_path / "chromedriver.log")))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def no_dialog(driver: webdriver.Chrome) -> None:
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return
    text = alert.text
    alert.dismiss()
    raise AssertionError(f"a dialog opened: {text!r}")


def severe_console(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def shot(driver: webdriver.Chrome, path: Path) -> None:
    """A full-page screenshot: the window grows to the document's height first."""
    for _ in range(2):  # the window's chrome takes some of its height: measure again once resized
        height = driver.execute_script("return document.documentElement.scrollHeight")
        inner = driver.execute_script("return window.innerHeight")
        outer = driver.get_window_size()["height"]
        driver.set_window_size(1500, min(max(int(height) + outer - int(inner), 800), 6000))
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    driver.set_window_size(1500, 1100)


def test_pages_in_chromium(tmp_path: Path, procs: Procs, redis_server: RedisServer,  # noqa: F811
                           redis_client: redis.Redis, browser: webdriver.Chrome, seed_page_text: str) -> None:
    port = free_port()
    api = procs.serve(redis_server.url, port)
    worker = procs.worker(redis_server.url)
    http = Http(f"http://127.0.0.1:{port}")
    wait_http_ready(http, api)
    wait_worker_ready(redis_client, worker)

    # other stories of the seed's site first: its navigation and footers are then known as chrome
    site = [{"id": f"site-{i}", "title": f"站内新闻 {i}", "text": site_page(seed_page_text, zh_article(300 + i)),
             "source": "华龙网"} for i in range(4)]
    assert http.post("/v1/articles", {"articles": site}).status == 202
    wait_until(lambda: worker.check_alive() or queue_settled(redis_client), 60, interval=0.1,
               message="the worker to process the site's pages")
    body = clean_body(seed_page_text)
    corpus = make_corpus(4, seed=4242, copies=(1, 1), singles=3)
    articles = [{"id": "seed", "title": SEED_TITLE, "text": seed_page_text, "source": "华龙网"},
                {"id": "seed-repost", "title": "渝中举行公共法律服务开放日", "text": body, "source": "另一个网站"},
                {"id": "hostile", "title": "Weather " + HOSTILE, "source": "<b>bad</b>",
                 "text": "Rain is expected over the hills tonight " + HOSTILE + " and the wind will turn north "
                         "by the morning, forecasters said on Monday."},
                *corpus.articles]
    resp = http.post("/v1/articles", {"articles": articles})
    assert resp.status == 202, resp.body
    wait_until(lambda: worker.check_alive() or queue_settled(redis_client), 60, interval=0.1,
               message="the worker to process every article")

    base = f"http://127.0.0.1:{port}"
    b = browser
    # overview -> the seed's cluster, by following links
    b.get(base + "/")
    assert b.find_element(By.ID, "n-articles").text == str(len(articles) + len(site))
    assert b.find_element(By.ID, "done-hour").text == str(len(articles) + len(site))
    shot(b, tmp_path / "01-overview.png")
    b.find_element(By.LINK_TEXT, SEED_TITLE).click()
    # a click that navigates may return before the next page is there: wait for what it shows
    wait_until(lambda: b.find_elements(By.CSS_SELECTOR, "table.members td.id"), 30, message="the cluster page")
    assert "/ui/clusters/" in b.current_url
    members = [e.text for e in b.find_elements(By.CSS_SELECTOR, "table.members td.id")]
    assert set(members) == {"seed", "seed-repost"}
    shot(b, tmp_path / "02-cluster.png")
    b.find_element(By.LINK_TEXT, "compare with canonical").click()
    wait_until(lambda: b.find_elements(By.ID, "fig-b-in-a"), 30, message="the comparison page")
    assert re.search(r"/ui/compare/seed/seed-repost$", b.current_url), b.current_url

    # the comparison: the whole clean repost is highlighted, and so is its text on the seed page
    marks_b = "".join(e.text for e in b.find_elements(By.CSS_SELECTOR, "#side-b mark"))
    letters = re.sub(r"\W", "", body)
    assert len(re.sub(r"\W", "", marks_b)) >= 0.95 * len(letters)
    marks_a = "".join(e.text for e in b.find_elements(By.CSS_SELECTOR, "#side-a .ln:not(.bp) mark"))
    assert len(re.sub(r"\W", "", marks_a)) >= 0.95 * len(letters)
    # its chrome is dimmed and the second copy of the story is outlined as a left-out repeat
    assert b.find_elements(By.CSS_SELECTOR, "#side-a .blk.copy"), "the repeated story is not outlined"
    assert len(b.find_elements(By.CSS_SELECTOR, "#side-a .ln.bp")) >= 10, "the site's chrome is not dimmed"
    assert not b.find_elements(By.CSS_SELECTOR, "#side-a .ln.bp mark"), "chrome counted as shared"
    assert b.find_element(By.CSS_SELECTOR, "#side-a .blk.copy").value_of_css_property("border-top-style") == "dashed"
    assert float(b.find_element(By.ID, "fig-b-in-a").text.split()[0]) >= 95
    shot(b, tmp_path / "03-compare-seed-vs-repost.png")

    # hostile text: shown as text, never run
    b.get(base + "/ui/clusters?min_size=1&q=weather")
    cell = b.find_element(By.CSS_SELECTOR, "td.headline").text
    assert HOSTILE in cell
    no_dialog(b)
    b.get(base + "/ui/compare/hostile/seed")
    assert HOSTILE in b.find_element(By.ID, "side-a").text
    no_dialog(b)
    assert not b.find_elements(By.CSS_SELECTOR, "main script"), "an article's script became an element"
    shot(b, tmp_path / "04-hostile-as-text.png")
    b.get(base + "/ui/check")
    b.find_element(By.NAME, "content").send_keys(body[:600])
    b.find_element(By.CSS_SELECTOR, "form.check button").click()
    wait_until(lambda: b.find_elements(By.CSS_SELECTOR, "#check-results, #check-none"), 30, message="the check result")
    found = [e.text for e in b.find_elements(By.CSS_SELECTOR, "#check-results td.id")]
    assert "seed-repost" in found
    shot(b, tmp_path / "05-check.png")
    assert severe_console(b) == [], severe_console(b)

    # /docs: Swagger UI from local assets lists every endpoint
    b.get(base + "/docs")
    wait_until(lambda: b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"), 30,
               message="Swagger UI to render the endpoints")
    paths = {e.get_attribute("data-path") for e in b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    spec = http.get("/openapi.json").json
    assert set(spec["paths"]) <= paths, set(spec["paths"]) - paths
    assert "/v1/articles/{article_id}/compare/{other_id}" in paths
    shot(b, tmp_path / "06-docs.png")
    assert severe_console(b) == [], severe_console(b)
    no_dialog(b)
