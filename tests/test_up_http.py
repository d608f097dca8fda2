"""`newsdedup up` as a subprocess (embedded Redis, gunicorn API, a worker), driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

SEED_TITLE = "渝中:92个公共法律服务平台 同期举行公众开放日活动"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(url: str, body: Any = None, method: str = "GET") -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait(pred: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = pred()
        except OSError:
            v = None
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.e2e
def test_up_serves_the_api_over_http(tmp_path: Path, seed_page_text: str) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.Popen([sys.executable, "-m", "newsdedup.cli", "up", "--port", str(port), "--workers", "1",
                             "--data-dir", str(tmp_path / "var")], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _call(base + "/healthz")[0] == 200, 60)
        lines = seed_page_text.split("\n")
        start = next(i for i, ln in enumerate(lines) if ln.startswith("华龙网-新重庆客户端"))
        end = next(i for i, ln in enumerate(lines) if ln.startswith("无障碍"))
        arts = [{"id": "seed", "title": SEED_TITLE, "text": seed_page_text, "source": "华龙网"},
                {"id": "repost", "text": "\n".join(lines[start:end]), "source": "other"},
                {"id": "other", "text": "今天天气很好，我们去公园散步。孩子们在草地上玩耍，老人们在树下下棋。" * 4}]
        status, resp = _call(base + "/v1/articles", {"articles": arts}, "POST")
        assert status == 202 and [a["status"] for a in resp["articles"]] == ["queued"] * 3
        _wait(lambda: (lambda q: q["pending"] + q["in_flight"] == 0)(_call(base + "/v1/stats")[1]["queue"]), 60)
        seed = _call(base + "/v1/articles/seed")[1]
        assert seed["status"] == "done" and seed["repeated_blocks"]
        assert _call(base + "/v1/articles/repost")[1]["cluster_id"] == seed["cluster_id"]
        assert _call(base + "/v1/articles/other")[1]["cluster_id"] != seed["cluster_id"]
        status, cluster = _call(base + f"/v1/clusters/{seed['cluster_id']}")
        assert status == 200 and cluster["size"] == 2
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0
