#!/usr/bin/env python3
"""Build wire-style labelled sets from Reuters-21578: hard-wrapped stories inside site chrome.

    .venv/bin/python bench/quality/wire_sets.py --out /tmp/wire     # writes wire_tune / wire_test
    .venv/bin/newsdedup eval /tmp/wire/wire_test.jsonl.gz

In the style of ../shared/eval/evalset.py (read it), for the copy kinds that
failed on the team's held-out English set. Each cluster is a Reuters story as
the wire sent it (plain text, hard-wrapped at ~65 characters, no blank lines)
plus copies of it:

- ``ads``: inside a site's navigation and footer, with ad and promotion lines
  inserted between its wrapped lines (ADVERTISEMENT-style markers, "continues
  below" notes, "Recommended: <another story's headline>", promotions in
  another language), varied per site;
- ``trunc_edit``: truncated to 75-90 % of its lines and lightly edited, inside
  the same kind of chrome.

Hard negatives are other stories in the same site's chrome (with its ads).
Two sets come out: ``wire_tune`` and ``wire_test``, with different seeds AND
disjoint site, menu, footer, ad and language vocabularies, so that what is
tuned on one is judged on the other. Only the Reuters "dev" pool of evalset.py
is used (the reserved half stays unseen). Corpus text goes only to --out.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _h(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")


def pool_of(doc_id: str) -> str:
    """evalset.py's split: half of every corpus is for development, half is reserved."""
    return "dev" if _h("pool:" + doc_id) % 2 == 0 else "reserved"


# ---------------------------------------------------------------- vocabularies (two disjoint halves)

VOCAB: dict[str, dict[str, list[str]]] = {
    "tune": {
        "site_a": ["Harbor", "Summit", "Pioneer", "Lakeside", "Granite", "Beacon", "Prairie", "Capital"],
        "site_b": ["Gazette", "Herald", "Dispatch", "Tribune", "Sentinel", "Record"],
        "menu": ["Home", "World", "Business", "Markets", "Politics", "Tech", "Sport", "Opinion", "Video",
                 "Podcasts", "Weather", "Lifestyle"],
        "ad": ["ADVERTISEMENT", "Advertisement", "Story continues below advertisement", "SPONSORED CONTENT",
               "Article continues after this ad", "- Advertisement -", "AD", "Continue reading below"],
        "promo": ["Subscribe today and save 50% on your first year", "Get breaking news alerts on our app",
                  "Download the app: news on the go", "Try our newsletter free for 30 days",
                  "Support independent journalism: become a member"],
        "foreign": ["Suscríbase ahora y ahorre un 40 %", "Descubra nuestras ofertas exclusivas para lectores",
                    "Abonnez-vous dès maintenant à notre lettre", "Profitez de notre offre spéciale d'été",
                    "Jetzt abonnieren und sparen", "Laden Sie unsere App kostenlos herunter"],
        "rec": ["Recommended:", "Read more:", "Related:"],
        "foot": ["Privacy Policy", "Terms of Service", "Contact", "Careers", "Advertise with us", "Sitemap"],
    },
    "test": {
        "site_a": ["Northern", "Riverside", "Coastal", "Midland", "Evergreen", "Central", "Valley", "Atlantic"],
        "site_b": ["Chronicle", "Courier", "Observer", "Journal", "Post", "Examiner"],
        "menu": ["Front Page", "Nation", "Economy", "Finance", "Science", "Health", "Culture", "Travel",
                 "Newsletters", "Live", "Obituaries", "Puzzles"],
        "ad": ["PAID PROMOTION", "Sponsored", "The story continues after the advertisement", "-- ADVERTISING --",
               "Advert", "Scroll to continue reading", "Ad Feature", "ADVERTISEMENT - SCROLL TO CONTINUE"],
        "promo": ["Unlock unlimited access for just $1 a week", "Sign up for our morning briefing",
                  "Follow us on social media for the latest updates", "Listen to our daily podcast now",
                  "Donate to keep local reporting alive"],
        "foreign": ["Assine já e ganhe três meses grátis", "Baixe o nosso aplicativo de notícias",
                    "Abbonati ora e risparmia il 30 per cento", "Scarica la nostra applicazione gratuita",
                    "Meld je nu aan voor onze nieuwsbrief", "订阅我们的新闻简报，获取最新资讯"],
        "rec": ["Also read:", "Most popular:", "You may have missed:"],
        "foot": ["Cookie Policy", "Accessibility", "About Us", "Corrections", "Subscriptions", "RSS Feeds"],
    },
}


def make_sites(v: dict[str, list[str]], rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Sites with their own name, menu, footer and ad habits (each picks a few ad kinds)."""
    sites = []
    for k in range(n):
        name = f"The {rng.choice(v['site_a'])} {rng.choice(v['site_b'])}"
        menu = rng.sample(v["menu"], rng.randint(5, 8))
        sep = rng.choice([" | ", "  ", " / ", " · "])
        sites.append({
            "name": f"{name} {k}" if any(s["name"] == name for s in sites) else name,
            "nav": sep.join(menu),
            "ads": rng.sample(v["ad"], 3), "promos": rng.sample(v["promo"], 2),
            "foreign": rng.sample(v["foreign"], 2), "rec": rng.choice(v["rec"]),
            "foot": sep.join(rng.sample(v["foot"], 4)),
            "gap": (rng.randint(2, 4), rng.randint(5, 8)),  # ad every gap[0]..gap[1] wrapped lines
        })
    return sites


def chrome(site: dict[str, Any], title: str, body_lines: list[str], rng: random.Random) -> str:
    year = rng.randint(2005, 2024)
    head = [site["name"], site["nav"], title, f"By {rng.choice(['Reuters', 'Staff', 'Wire reports'])} | "
            f"{rng.randint(1, 28)} {rng.choice(['March', 'April', 'May'])} {year}"]
    foot = [f"{site['rec']} {rng.choice(['Markets wrap', 'Week ahead', 'Editors picks'])}",
            site["foot"], f"© {year} {site['name']}. All rights reserved."]
    return "\n".join(head + body_lines + foot)


def with_ads(lines: list[str], site: dict[str, Any], rng: random.Random, titles: list[str]) -> list[str]:
    out: list[str] = []
    nxt = rng.randint(*site["gap"])
    for k, ln in enumerate(lines):
        out.append(ln)
        if k + 1 == nxt and k + 1 < len(lines):
            kind = rng.random()
            if kind < 0.45:
                out.append(rng.choice(site["ads"]))
            elif kind < 0.7:
                out.append(f"{site['rec']} {rng.choice(titles).title()}")
            elif kind < 0.85:
                out.append(rng.choice(site["promos"]))
            else:
                out.append(rng.choice(site["foreign"]))
            nxt += rng.randint(*site["gap"])
    return out


def light_edit(text: str, rate: float, rng: random.Random) -> str:
    words = text.split(" ")
    vocab = [w for w in sorted(set(words)) if w.isalpha()] or ["the"]
    for _ in range(max(1, int(len(words) * rate))):
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.5:
            words[i] = rng.choice(vocab)
        elif op < 0.75:
            words.insert(i, rng.choice(vocab))
        elif len(words) > 10:
            del words[i]
    return " ".join(words)


def load(data: Path) -> list[dict[str, str]]:
    docs, seen = [], set()
    with gzip.open(data / "reuters21578.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            text = (d.get("text") or "").strip()
            title = (d.get("title") or "").strip()
            if not (300 <= len(text) <= 6000) or not title or pool_of(f"reuters21578.jsonl.gz:{d['id']}") != "dev":
                continue
            key = re.sub(r"\s+", "", text)[:400]
            if key in seen:
                continue
            seen.add(key)
            docs.append({"title": title, "text": text})
    return docs


def drop_near(docs: list[dict[str, str]]) -> list[dict[str, str]]:
    """Drop every story that already has a near-copy in the corpus (its label would be unknown)."""
    from datasketch import MinHash, MinHashLSH

    lsh, sigs = MinHashLSH(threshold=0.3, num_perm=64), []
    for i, d in enumerate(docs):
        w = re.findall(r"\w+", d["text"].lower())
        m = MinHash(num_perm=64)
        m.update_batch([" ".join(w[k:k + 3]).encode() for k in range(max(1, len(w) - 2))])
        lsh.insert(i, m)
        sigs.append(m)
    bad = {k for i, m in enumerate(sigs) for j in lsh.query(m) if j != i for k in (i, j)}
    return [d for i, d in enumerate(docs) if i not in bad]


def build(name: str, docs: list[dict[str, str]], seed: int, n_clusters: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    docs = list(docs)
    rng.shuffle(docs)
    bases, others = docs[:n_clusters], docs[n_clusters:]
    sites = make_sites(VOCAB[name], rng, 8)
    titles = [d["title"] for d in others[:500]]
    rows: list[dict[str, Any]] = []
    for k, doc in enumerate(bases):
        label = f"{name}-{k:05d}"
        lines = doc["text"].split("\n")
        rows.append({"title": doc["title"], "text": doc["text"], "source": "wire", "family": "original",
                     "label": label})
        for _ in range(rng.choice([1, 1, 2, 3])):
            site = rng.choice(sites)
            if rng.random() < 0.5:
                fam, body = "ads", with_ads(lines, site, rng, titles)
            else:
                keep = max(1, round(len(lines) * rng.uniform(0.75, 0.9)))
                fam = "trunc_edit"
                body = light_edit("\n".join(lines[:keep]), rng.uniform(0.01, 0.03), rng).split("\n")
            rows.append({"title": doc["title"], "text": chrome(site, doc["title"], body, rng),
                         "source": site["name"], "family": fam, "label": label})
        if rng.random() < 0.4 and others:
            neg = others.pop()
            site = rng.choice(sites)
            body = with_ads(neg["text"].split("\n"), site, rng, titles)
            rows.append({"title": neg["title"], "text": chrome(site, neg["title"], body, rng),
                         "source": site["name"], "family": "hard_negative_template", "label": f"{label}-neg"})
    rng.shuffle(rows)
    for i, r in enumerate(rows):
        r["id"] = f"{name}-{seed}-{i:06d}"
        r["lang"] = "en"
        r["url"] = f"https://{re.sub(r'[^a-z]', '', r['source'].lower())}.example/{r['id']}"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, required=True, help="directory for the sets (outside the repo)")
    ap.add_argument("--clusters", type=int, default=700)
    ap.add_argument("--data", type=Path, default=DATA)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    docs = drop_near(load(a.data))
    half = len(docs) // 2  # the two sets use different stories too
    for name, seed, part in (("tune", 101, docs[:half]), ("test", 202, docs[half:])):
        rows = build(name, part, seed, a.clusters)
        with gzip.open(a.out / f"wire_{name}.jsonl.gz", "wt", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wire_{name}", len(rows), "articles", len({r['label'] for r in rows}), "labels")


if __name__ == "__main__":
    main()
