"""`newsdedup eval`'s scoring and baselines, pinned on partitions small enough to score by hand.

Pairwise scores count pairs of articles: a true pair is two articles with the
same label, a predicted pair two with the same cluster id. ARI is the
Hubert-Arabie adjusted Rand index over the same pair counts:
(tp - E) / (mean(true pairs, predicted pairs) - E) with E = true * predicted / all pairs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from newsdedup.ops.evaluate import _lang, _naive_shingles, main, minhash_naive, score, simhash_naive
from tests.textgen import en_article, zh_article


def rows(labels: dict[str, str], families: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [{"id": i, "label": lab, **({"family": families[i]} if families and i in families else {})}
            for i, lab in labels.items()]


def pairwise(result: dict[str, Any]) -> tuple[float, float, float, float]:
    return result["precision"], result["recall"], result["f1"], result["ari"]


def test_a_split_and_a_wrong_merge() -> None:
    # truth {a,b,c} {d}; predicted {a,b} {c,d}
    # true pairs ab ac bc (3); predicted pairs ab cd (2); both: ab (1)
    # precision 1/2, recall 1/3, F1 2 * 1/2 * 1/3 / (1/2 + 1/3) = 0.4
    # 6 pairs in all: E = 3 * 2 / 6 = 1, ARI = (1 - 1) / ((3 + 2) / 2 - 1) = 0
    got = score(rows({"a": "x", "b": "x", "c": "x", "d": "y"}), {"a": "p", "b": "p", "c": "q", "d": "q"})
    assert got["articles"] == 4
    assert pairwise(got) == (0.5, 0.3333, 0.4, 0.0)


def test_a_split_only() -> None:
    # truth {a,b,c} {d,e}; predicted {a,b} {c} {d,e}
    # true pairs ab ac bc de (4); predicted ab de (2), both true: precision 1, recall 2/4, F1 2/3
    # 10 pairs: E = 4 * 2 / 10 = 0.8, ARI = (2 - 0.8) / (3 - 0.8) = 6/11
    got = score(rows({"a": "x", "b": "x", "c": "x", "d": "y", "e": "y"}),
                {"a": "p", "b": "p", "c": "q", "d": "r", "e": "r"})
    assert pairwise(got) == (1.0, 0.5, 0.6667, 0.5455)


def test_perfect_and_degenerate_partitions() -> None:
    truth = rows({"a": "x", "b": "x", "c": "y"})
    # cluster ids are names only: another naming of the same partition is perfect
    assert pairwise(score(truth, {"a": "c7", "b": "c7", "c": "c1"})) == (1.0, 1.0, 1.0, 1.0)
    # everything in one cluster: 3 predicted pairs, 1 of them true; E = 1 * 3 / 3 = 1, max index 2 -> ARI 0
    assert pairwise(score(truth, {"a": "p", "b": "p", "c": "p"})) == (0.3333, 1.0, 0.5, 0.0)
    # no pairs predicted: precision is vacuous (1), recall 0, F1 0; E = 0, ARI = 0 / (1/2) = 0
    assert pairwise(score(truth, {"a": "p", "b": "q", "c": "r"})) == (1.0, 0.0, 0.0, 0.0)
    # no pairs anywhere: every score is perfect
    assert pairwise(score(rows({"a": "x", "b": "y"}), {"a": "p", "b": "q"})) == (1.0, 1.0, 1.0, 1.0)


def test_unpredicted_articles_are_singletons() -> None:
    """An article the engine gave no cluster (None, or missing) is alone, never in a cluster named None."""
    truth = rows({"a": "x", "b": "x", "c": "y", "d": "y"})
    # true pairs ab cd, predicted cd: precision 1, recall 1/2, F1 2/3
    # E = 2 * 1 / 6, ARI = (1 - 1/3) / (3/2 - 1/3) = 4/7
    assert pairwise(score(truth, {"a": None, "b": None, "c": "p", "d": "p"})) == (1.0, 0.5, 0.6667, 0.5714)
    assert score(truth, {"c": "p", "d": "p"}) == score(truth, {"a": None, "b": None, "c": "p", "d": "p"})


def test_recall_by_family_and_hard_negative_false_merges() -> None:
    # story x: original a, an edit found (b with a), a truncation missed (c alone);
    # story y: original d alone; e, a hard negative of x's template, wrongly put with a and b
    truth = rows({"a": "x", "b": "x", "c": "x", "d": "y", "e": "z", "f": "w"},
                 {"a": "original", "b": "edit", "c": "trunc", "d": "original", "e": "hard_negative_template",
                  "f": "hard_negative_template"})
    got = score(truth, {"a": "p", "b": "p", "c": "q", "d": "r", "e": "p", "f": "s"})
    assert got["recall_by_family"] == {"edit": 1.0, "trunc": 0.0}
    assert got["hard_negative_false_merge_rate"] == 0.5  # e is merged with another story, f is not
    assert score(rows({"a": "x"}), {"a": "p"})["hard_negative_false_merge_rate"] is None


def test_naive_shingles_and_language() -> None:
    assert _naive_shingles("The cat sat on  mats", "en") == {b"the cat sat", b"cat sat on", b"sat on mats"}
    assert _naive_shingles("two words", "en") == {b"two words"}
    assert _naive_shingles("新闻 报道今天", "zh") == {"新闻报道今".encode(), "闻报道今天".encode()}
    assert _lang({"lang": "zh-Hans", "text": "english words"}) == "zh"
    assert _lang({"text": "今天天气很好 ok"}) == "zh"
    assert _lang({"html": "<p>plain English text</p>"}) == "en"


@pytest.mark.parametrize("baseline", ["minhash", "simhash"])
def test_naive_baselines_group_copies_and_only_copies(baseline: str) -> None:
    en, zh = en_article(301, 200), zh_article(302, 500)
    data = [{"id": "en", "text": en}, {"id": "en-copy", "text": en}, {"id": "zh", "text": zh},
            {"id": "zh-copy", "text": zh}, {"id": "other", "text": en_article(303, 200)}]
    pred = minhash_naive(data, 0.5) if baseline == "minhash" else simhash_naive(data)
    assert set(pred) == {r["id"] for r in data}
    assert pred["en"] == pred["en-copy"] and pred["zh"] == pred["zh-copy"]
    assert len({pred["en"], pred["zh"], pred["other"]}) == 3


def test_eval_command_scores_the_engine_and_the_baselines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = zh_article(304, 600)
    labelled = [{"id": "o", "text": text, "label": "s1", "family": "original"},
                {"id": "c", "text": text, "label": "s1", "family": "exact"},
                {"id": "x", "text": zh_article(305, 600), "label": "s2", "family": "original"}]
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in labelled), encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    assert main([str(path), "--compare", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"set", "newsdedup", "minhash-naive@0.8", "minhash-naive@0.5", "simhash-naive@k3"}
    for name in set(report) - {"set"}:
        assert pairwise(report[name]) == (1.0, 1.0, 1.0, 1.0), (name, report[name])
        assert report[name]["recall_by_family"] == {"exact": 1.0}
    pred = {p["id"]: p["cluster_id"] for p in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert pred["o"] == pred["c"] != pred["x"] and pred["x"]


def test_eval_command_refuses_rows_without_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "words"}) + "\n", encoding="utf-8")
    assert main([str(path)]) == 2
    assert "1 rows lack id or label" in capsys.readouterr().err
