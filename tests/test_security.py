"""Security and hostile input: password-protected Redis, no fetching from markup, huge single lines."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.ops.redis_server import RedisServer
from newsdedup.text.page import analyse
from service import create_app
from tests.textgen import zh_article
from workers.consumer import process_available


def test_service_works_on_a_password_protected_redis_and_wrong_password_is_503(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password="pa ss/word") as server:
        cfg = Config(redis_url=server.url)
        app = create_app(cfg)
        client = app.test_client()
        text = zh_article(1, 600)
        assert client.post("/v1/articles", json={"id": "a", "text": text}).status_code == 202
        assert client.post("/v1/articles", json={"id": "b", "text": text}).status_code == 202
        process_available(redis.Redis.from_url(server.url), cfg)
        a = client.get("/v1/articles/a").get_json()
        assert a["status"] == "done" and a["cluster_id"] == client.get("/v1/articles/b").get_json()["cluster_id"]
        bad = create_app(Config(redis_url=f"redis://:wrong@127.0.0.1:{server.port}/0"))
        r = bad.test_client().post("/v1/articles", json={"id": "c", "text": text})
        assert r.status_code == 503 and r.headers.get("Retry-After")
        assert r.get_json()["error"]["code"] == "storage_unavailable"


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<p>fetched content should never appear</p>")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_html_extraction_never_fetches_anything(recorder: str) -> None:
    html = (f'<?xml version="1.0"?><!DOCTYPE html [<!ENTITY ext SYSTEM "{recorder}/xxe">]>'
            f'<html><head><link rel="stylesheet" href="{recorder}/css"><script src="{recorder}/js"></script>'
            f'<base href="{recorder}/"></head><body><img src="{recorder}/img"><iframe src="{recorder}/frame">'
            f'</iframe><object data="{recorder}/obj"></object><p>&ext; The story itself is here and it is long '
            f'enough to be the main text of this page, with several words in it.</p></body></html>')
    page = analyse("", html=html)
    text = "\n".join(ln.raw for ln in page.lines)
    assert "story itself" in text
    assert "fetched content" not in text
    assert _Recorder.hits == []


def test_a_huge_single_line_text_is_processed(redis_client: redis.Redis, config: Config) -> None:
    line = zh_article(2, 400_000).replace("\n", "")  # ~1.2 MB of UTF-8 on one line
    d = Dedup(redis_client, config)
    d.submit([parse_article({"id": "huge", "text": line})])
    process_available(redis_client, config)
    a = d.article("huge")
    assert a["status"] == "done" and a["tokens"] > 300_000


def test_ten_megabyte_single_line_is_refused_before_being_read(config: Config) -> None:
    client = create_app(config).test_client()
    body = b'{"text": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    r = client.post("/v1/articles", data=body, content_type="application/json")
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "payload_too_large"
