"""`newsdedup export`: every cluster with its members, read from Redis, as JSON lines or CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import redis

from newsdedup import cli, keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.ops.export import CSV_COLUMNS
from tests.procs import article_numbers, make_corpus, partition
from tests.textgen import zh_article
from workers.consumer import process_available


@pytest.fixture
def filled(config: Config, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> set[frozenset[str]]:
    corpus = make_corpus(12, seed=31, copies=(1, 3), singles=5)
    d = Dedup(redis_client, config)
    d.submit([parse_article({**a, "url": f"https://x.example/{a['id']}", "published_at": "2024-05-01T12:00:00Z"})
              for a in corpus.articles])
    process_available(redis_client, config)
    d.delete(corpus.articles[0]["id"])
    # re-posted with other text, a clustered article leaves its cluster for a singleton of its own: an
    # explicit cluster of one under a new id (not c<n> of its number), which export must still find
    deleted_story = corpus.story[corpus.articles[0]["id"]]
    moved = next(a["id"] for a in corpus.articles if corpus.story[a["id"]] != deleted_story
                 and sum(s == corpus.story[a["id"]] for s in corpus.story.values()) > 2)
    d.submit([parse_article({"id": moved, "title": "another story", "text": zh_article(77, 800)})])
    process_available(redis_client, config)
    assert d.article(moved)["cluster_id"] != keys.cluster_id(article_numbers(redis_client)[moved])
    monkeypatch.setenv("REDIS_URL", str(config.redis_url))
    return partition(redis_client)


def test_jsonl_has_every_cluster_of_two_or_more(filled: set[frozenset[str]], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clusters.jsonl"
    assert cli.main(["export", "--out", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    multi = {g for g in filled if len(g) > 1}
    assert {frozenset(m["id"] for m in r["members"]) for r in recs} == multi
    for r in recs:
        assert r["size"] == len(r["members"]) >= 2
        canon = [m for m in r["members"] if m["canonical"]]
        assert len(canon) == 1 and canon[0]["id"] == r["canonical_id"] and canon[0]["similarity"] == 1.0
        for m in r["members"]:
            assert m["url"] == f"https://x.example/{m['id']}" and m["published_at"] == "2024-05-01T12:00:00Z"
            assert m["title"] and m["source"] and 0 <= m["similarity"] <= 1
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary == {"clusters": len(multi), "articles": sum(len(g) for g in multi)}


def test_csv_with_singletons(filled: set[frozenset[str]], tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    assert cli.main(["export", "--min-size", "1", "--format", "csv", "--out", str(out)]) == 0
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS)
    groups: dict[str, set[str]] = {}
    for row in rows:
        groups.setdefault(row["cluster_id"], set()).add(row["id"])
    assert {frozenset(g) for g in groups.values()} == filled
    assert sum(row["canonical"] == "1" for row in rows) == len(filled)


def test_export_needs_redis_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert cli.main(["export"]) == 2
    assert "REDIS_URL is not set" in capsys.readouterr().err
