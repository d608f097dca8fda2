"""`newsdedup retry`: dead-lettered articles back on the queue from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.storage.records import pack_json
from tests.textgen import zh_article
from workers.consumer import process_available


def _retry(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": url}
    return subprocess.run([sys.executable, "-m", "newsdedup.cli", "retry", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_retry_command_requeues_a_fixed_article(redis_client: redis.Redis, config: Config) -> None:
    assert config.redis_url
    d = Dedup(redis_client, config)
    text = zh_article(3, 500)
    d.submit([parse_article({"id": "broken", "text": text})])
    n = int(redis_client.hget(keys.IDS, "broken") or 0)
    redis_client.set(keys.payload(n), b"corrupt")
    process_available(redis_client, config)
    assert d.article("broken")["status"] == "failed"

    usage = _retry(config.redis_url)
    assert usage.returncode == 2 and "ids or --all" in usage.stderr
    redis_client.set(keys.payload(n), pack_json({"text": text}))
    done = _retry(config.redis_url, "broken", "unknown-id")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"retried": ["broken"], "unknown": ["unknown-id"]}
    process_available(redis_client, config)
    assert d.article("broken")["status"] == "done"
    assert d.stats()["queue"] == {"pending": 0, "in_flight": 0, "failed": 0}
