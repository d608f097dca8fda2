#!/usr/bin/env python3
"""Whole-corpus check: the real engine on a whole corpus, scored against exact shingle truth.

    .venv/bin/python bench/quality/corpus_check.py en      # Reuters-21578 + BBC News
    .venv/bin/python bench/quality/corpus_check.py zh      # Sina 2018

Every article is posted as a client would (one source per corpus), processed by
the service's worker code on a throwaway Redis (``evaluate.run_engine``), and
every co-clustered pair is compared exactly. Truth shingles are the engine's own
tokens (normalised; CJK characters and words) of the whole submitted text, k=4
for the Chinese corpus and 3 for the English one, with no sketch: exact Jaccard and
containment from sorted shingle arrays. Pairs with high exact overlap are found
with an inverted index and prefix filtering (rarest shingles first), so no pair
is missed and nothing quadratic runs.

Printed: co-clustered pairs unrelated (exact Jaccard < 0.1), co-clustered pairs
with different titles whose bodies both hold almost no prose (a crude, independent
measure: CJK characters and words on code-free lines), exact-copy pairs clustered, pairs with exact
Jaccard >= 0.9 clustered, pairs with containment >= 0.9 clustered, and the
clusters whose members have different titles and near-empty bodies (failed
scrapes). Reads ../shared/data (never copies corpus text anywhere).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from newsdedup.config import Config

try:
    from newsdedup.ops.evaluate import run_engine
    from newsdedup.text.normalize import normalize
    from newsdedup.text.tokens import shingle_hashes, tokenize
except ImportError:  # a checkout from before the package layout of issue 11 (for before/after figures)
    from newsdedup.evaluate import run_engine  # type: ignore[no-redef]

    from newsdedup.text import normalize, shingle_hashes, tokenize  # type: ignore[no-redef]

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CORPORA = {"en": [("reuters21578.jsonl.gz", "reuters"), ("bbc_news_en.jsonl.gz", "bbc")],
           "zh": [("sina_zh_2018.jsonl.gz", "sina")]}
_CJK = re.compile(r"[\u4e00-\u9fff]")
_CODE_LINE = re.compile(r"[{}]|;\s*$|^\s*(?://|/\*|\.[a-z])")  # an independent, crude code test


def load(lang: str, data: Path) -> list[dict[str, Any]]:
    rows = []
    for name, src in CORPORA[lang]:
        with gzip.open(data / name, "rt", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                text = d.get("text") or ""
                if not text.strip():
                    continue
                rows.append({"id": f"{src}:{d['id']}".replace("/", ":"), "title": (d.get("title") or "").strip(),
                             "text": text, "source": src})
    return rows


def truth_shingles(text: str, k: int) -> np.ndarray:
    return shingle_hashes(tokenize(normalize(text)).hashes, k)


def prose_size(text: str) -> int:
    """CJK characters plus words on code-free lines of 5+ words: how much story a text holds (crude)."""
    n = 0
    for ln in text.split("\n"):
        if "\ufffd" in ln or _CODE_LINE.search(ln):
            continue
        cjk = len(_CJK.findall(ln))
        words = len(re.findall(r"[A-Za-z]{2,}", ln))
        n += cjk + (words if words >= 5 else 0)
    return n


def high_overlap_pairs(sh: list[np.ndarray], t: float) -> set[tuple[int, int]]:
    """Every pair (a, b) with containment of a in b >= t (hence also every Jaccard >= t pair)."""
    doc = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, s in enumerate(sh)])
    allsh = np.concatenate(sh)
    uniq, inv, df = np.unique(allsh, return_inverse=True, return_counts=True)
    order = np.argsort(inv, kind="stable")
    sorted_inv, sorted_doc = inv[order], doc[order]
    starts = np.searchsorted(sorted_inv, np.arange(len(uniq)))
    ends = np.append(starts[1:], len(sorted_inv))
    pairs: set[tuple[int, int]] = set()
    pos = 0
    for i, s in enumerate(sh):
        ids = inv[pos:pos + len(s)]
        pos += len(s)
        if not len(s):
            continue
        # a's |a| - ceil(t|a|) + 1 rarest shingles: any b holding >= t of a holds one of them
        p = len(s) - int(np.ceil(t * len(s) - 1e-9)) + 1
        rare = ids[np.lexsort((ids, df[ids]))[:p]]
        cands: set[int] = set()
        for u in rare.tolist():
            cands.update(sorted_doc[starts[u]:ends[u]].tolist())
        for j in cands:
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - inter
    return (inter / union if union else 1.0), (inter / min(len(a), len(b)) if min(len(a), len(b)) else 0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("lang", choices=sorted(CORPORA))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--min-chars", type=int, default=0,
                    help="leave out texts shorter than this (stripped); the issue's counts used about 20")
    ap.add_argument("--show", type=int, default=5, help="print this many failing pairs of each kind")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = [r for r in load(a.lang, a.data) if len(r["text"].strip()) >= a.min_chars]
    pred, secs = run_engine(rows, Config.from_env())
    print(f"{len(rows)} articles processed in {secs:.1f} s", file=sys.stderr)
    sh = [truth_shingles(r["text"], 4 if a.lang == "zh" else 3) for r in rows]
    prose = [prose_size(r["text"]) for r in rows]
    idx = {r["id"]: i for i, r in enumerate(rows)}
    members: dict[str, list[int]] = defaultdict(list)
    for rid, c in pred.items():
        if c:
            members[c].append(idx[rid])
    cluster_of = {i: c for c, ms in members.items() for i in ms}
    titles = [normalize(r["title"]) for r in rows]
    empty = 30  # "near-empty": fewer CJK characters / prose words than this

    co = [(i, j) for ms in members.values() if len(ms) > 1 for i, j in combinations(sorted(ms), 2)]
    unrelated = []
    edges = (0.1, 0.3, 0.5, 0.7, 0.9)
    by_j = dict.fromkeys(["<0.1", "0.1-0.3", "0.3-0.5", "0.5-0.7", "0.7-0.9", ">=0.9"], 0)
    for i, j in co:
        jac, _ = overlap(sh[i], sh[j])
        by_j[list(by_j)[sum(jac >= e for e in edges)]] += 1
        failed = titles[i] != titles[j] and prose[i] < empty and prose[j] < empty
        if jac < 0.1 or failed:
            unrelated.append((i, j, jac, failed))
    failed_pairs = sum(1 for u in unrelated if u[3])
    unrelated = [u for u in unrelated if u[2] < 0.1]
    failed_clusters = [c for c, ms in members.items() if len(ms) > 1
                       and len({titles[i] for i in ms}) > 1 and all(prose[i] < empty for i in ms)]

    hi = high_overlap_pairs(sh, 0.9)
    exact, jac9, cont9, stubs = [], [], [], []
    for i, j in hi:
        jac, cont = overlap(sh[i], sh[j])
        same = cluster_of.get(i) is not None and cluster_of.get(i) == cluster_of.get(j)
        if titles[i] != titles[j] and prose[i] < empty and prose[j] < empty:
            stubs.append((i, j, same))  # the same stub text on different stories: must NOT cluster
            continue
        if np.array_equal(sh[i], sh[j]) and len(sh[i]):
            exact.append((i, j, same))
        if jac >= 0.9:
            jac9.append((i, j, same))
        if cont >= 0.9 and min(len(sh[i]), len(sh[j])) >= 20:  # containment of a tiny text says nothing
            cont9.append((i, j, same))

    def frac(xs: list[tuple[int, int, bool]]) -> str:
        ok = sum(1 for x in xs if x[2])
        return f"{ok}/{len(xs)} = {ok / len(xs):.4f}" if xs else "0/0"

    figures = {
        "articles": len(rows), "co_clustered_pairs": len(co), "unrelated_pairs": len(unrelated),
        "co_clustered_by_exact_jaccard": by_j,
        "unrelated_share": round(len(unrelated) / len(co), 4) if co else 0.0,
        "failed_scrape_pairs (different titles, both bodies near-empty)": failed_pairs,
        "exact_copy_pairs_clustered": frac(exact), "jaccard_0.9_pairs_clustered": frac(jac9),
        "containment_0.9_pairs_clustered": frac(cont9),
        "stub_pairs_clustered (same near-empty text, different titles; want 0)": frac(stubs),
        "failed_scrape_clusters": len(failed_clusters),
        "failed_scrape_cluster_sizes": sorted((len(members[c]) for c in failed_clusters), reverse=True)[:10],
        "seconds_total": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(figures, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=1))
    for c in failed_clusters[:a.show]:
        print(f"-- failed-scrape cluster {c}: " + " | ".join(f"{rows[i]['id']} ({len(rows[i]['text'])} chars)"
                                                          for i in members[c][:4]), file=sys.stderr)
    for name, xs in (("co-clustered, unrelated", [(i, j) for i, j, *_ in unrelated]),
                     ("Jaccard >= 0.9, not clustered", [(i, j) for i, j, s in jac9 if not s]),
                     ("containment >= 0.9, not clustered", [(i, j) for i, j, s in cont9 if not s])):
        if xs and a.show:
            print(f"-- {name} (first {a.show}): ids, exact J / C, prose sizes", file=sys.stderr)
            for i, j in xs[:a.show]:
                jac, cont = overlap(sh[i], sh[j])
                print(f"   {rows[i]['id']} | {rows[j]['id']}  J={jac:.3f} C={cont:.3f} prose={prose[i]},{prose[j]}",
                      file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
