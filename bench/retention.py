"""Retention benchmark (issue 12): a steady stream several windows long through the real service.

    python bench/retention.py [--articles 200000] [--windows 10] [--window 20] [--workers 2]
                              [--sweep-interval 1s] [--backlog 1000] [--skip-off] [--off-articles N]

Runs ``newsdedup up`` (API under gunicorn + workers) against a redis-server this script starts
(no AOF: rewrites would fork and compete for the 2 cores; memory is read without client buffers),
once with ``NEWSDEDUP_RETENTION=<window>s`` (sweeper on) and once without (sweeper off), on the
same article stream. Articles are POSTed in batches of 500 from 4 keep-alive connections as fast
as the workers take them (posting waits while more than ``--backlog`` articles are queued, so
the queue does not grow and memory measures the index, not a backlog), until at least
``--articles`` were posted and ``--windows`` windows have passed. Printed per window: Redis
``used_memory``, articles stored, band-table state, boilerplate fields, keys with a TTL
(tombstones); then throughput with the sweeper on and off, and the longest Redis calls the
sweeper made, from SLOWLOG (``slowlog-log-slower-than`` lowered to 200 µs and drained every
0.5 s; a sweeper call is a TRANSACT that writes a tombstone key ``{nd}:gone:*``).

Articles: a fast synthetic stream (``Stream`` below) built from the sentences of
``benchlib.Synthetic`` drafts: 1,000-1,500 characters, half Chinese, half English, 24 sources,
~20% near-duplicates of one of the 2,000 previous articles. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis
from benchlib import Article, Service, Synthetic, install_exit_signals, start_up, wait_until
from run import POST_BATCH, log, post_batches

from newsdedup import keys
from newsdedup.ops.redis_server import RedisServer
from newsdedup.text.boilerplate import source_key

SLOWLOG_US = 200
DUP_SHARE = 0.2
DUP_WINDOW = 2000


class Stream:
    """Article ``i`` of a deterministic stream: random sentences from a pool, or a near-copy of a recent one.

    ``benchlib.Synthetic`` makes ~600 articles/s here, too slow to feed 200k articles; this
    recombines the sentences of its first drafts (a pool of ~50k), ~30x faster.
    """

    def __init__(self, seed: int = 12, pool_drafts: int = 3000) -> None:
        self.seed = seed
        syn = Synthetic()
        self.pool: dict[str, list[str]] = {"zh": [], "en": []}
        self.sources = syn.sources()
        for k in range(pool_drafts):
            lang, sentences = syn.sentences(k)
            self.pool[lang].extend(sentences)

    def _plan(self, i: int) -> tuple[str, list[str], str]:
        rng = random.Random(self.seed * 1_000_003 + i)
        lang = "zh" if rng.random() < 0.5 else "en"
        pool = self.pool[lang]
        target, total, picked = rng.randint(1000, 1500), 0, []
        while total < target:
            s = pool[rng.randrange(len(pool))]
            picked.append(s)
            total += len(s)
        return lang, picked, self.sources[rng.randrange(len(self.sources))]

    def is_dup(self, i: int) -> int | None:
        rng = random.Random(self.seed * 7_000_003 + i)
        if i == 0 or rng.random() >= DUP_SHARE:
            return None
        return i - 1 - rng.randrange(min(i, DUP_WINDOW))

    def article(self, i: int) -> Article:
        j = self.is_dup(i)
        lang, sents, source = self._plan(i if j is None else j)
        if j is not None:  # a repost by another source: a sentence dropped, one replaced, one added
            rng = random.Random(self.seed * 9_000_011 + i)
            sents = list(sents)
            pool = self.pool[lang]
            sents.pop(rng.randrange(len(sents)))
            sents[rng.randrange(len(sents))] = pool[rng.randrange(len(pool))]
            sents.insert(rng.randrange(len(sents) + 1), pool[rng.randrange(len(pool))])
            source = self.sources[(self.sources.index(source) + 1 + rng.randrange(len(self.sources) - 1))
                                  % len(self.sources)]
        sep = "" if lang == "zh" else " "
        paras = [sep.join(sents[p:p + 4]) for p in range(0, len(sents), 4)]
        title = sents[0][:30]
        return Article(id=f"ret-{i}", title=title, text="\n".join(paras) + Synthetic.footer(source), source=source)

    def bodies(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        i = start
        while True:
            batch = [self.article(k).payload() for k in range(i, i + POST_BATCH)]
            yield i + POST_BATCH, json.dumps({"articles": batch}, ensure_ascii=False).encode("utf-8")
            i += POST_BATCH


def percentiles(us: list[int]) -> list[int] | None:
    """p50 and p99 of call durations (µs), None without any."""
    if not us:
        return None
    v = sorted(us)
    return [v[len(v) // 2], v[min(len(v) - 1, len(v) * 99 // 100)]]


def memory(r: redis.Redis) -> int:
    """used_memory without client buffers (they come and go with traffic)."""
    m = r.info("memory")
    return int(m["used_memory"]) - int(m.get("mem_clients_normal", 0))


class Sampler(threading.Thread):
    """Every 0.5 s: drains SLOWLOG; at each window boundary: records memory and index state."""

    def __init__(self, r: redis.Redis, window: float, bp_keys: list[str]) -> None:
        super().__init__(daemon=True, name="sampler")
        self.r = r
        self.window = window
        self.bp_keys = bp_keys
        self.t0 = time.monotonic()
        self.posted = 0
        self.samples: list[dict[str, Any]] = []
        self.sweep_calls: list[int] = []  # µs, sweeper calls over the threshold
        self.other_calls: list[int] = []  # µs, every other call over the threshold
        self.other_longest: tuple[int, str] = (0, "")
        self.stop = threading.Event()

    def snapshot(self, label: str) -> dict[str, Any]:
        r = self.r
        groups = [{k.decode(): int(v) for k, v in r.hgetall(keys.band_state(g)).items()}
                  for g in range(keys.BAND_GROUPS)]
        st = {"entries": sum(s.get("entries", 0) for s in groups),  # levels and next: of the largest group
              "level": max(s.get("level", 0) for s in groups), "next": max(s.get("next", 0) for s in groups)}
        pipe = r.pipeline(transaction=False)
        for k in self.bp_keys:
            pipe.hlen(k)
        bp_fields = sum(int(x) for x in pipe.execute())
        ks = r.info("keyspace").get("db0", {})
        meta = r.hmget(keys.META, "expired", "queued")
        s = {"at": label, "seconds": round(time.monotonic() - self.t0, 1), "posted": self.posted,
             "stored": int(r.hlen(keys.IDS)), "expired": int(meta[0] or 0), "queued": int(meta[1] or 0),
             "used_memory": memory(r), "band_entries": st.get("entries", 0), "band_level": st.get("level", 0),
             "band_next": st.get("next", 0), "boilerplate_fields": bp_fields, "keys": int(ks.get("keys", 0)),
             "keys_with_ttl": int(ks.get("expires", 0))}
        self.samples.append(s)
        return s

    def drain_slowlog(self) -> None:
        entries = self.r.slowlog_get(1024)
        self.r.slowlog_reset()
        for e in entries:
            cmd = e.get("command") or b""
            cmd = cmd if isinstance(cmd, bytes) else str(cmd).encode()
            us = int(e["duration"])
            if (keys.PREFIX + "gone:").encode() in cmd:
                self.sweep_calls.append(us)
                continue
            self.other_calls.append(us)
            if us > self.other_longest[0]:
                self.other_longest = (us, cmd[:60].decode("utf-8", "replace"))

    def run(self) -> None:
        k = 1
        while not self.stop.wait(0.5):
            self.drain_slowlog()
            if time.monotonic() - self.t0 >= k * self.window:
                s = self.snapshot(f"window {k}")
                log(f"  window {k}: {s['used_memory'] / 2**20:.1f} MiB, {s['stored']} stored, {s['posted']} posted, "
                    f"{s['expired']} expired, band entries {s['band_entries']} level {s['band_level']}"
                    f"+{s['band_next']}, {s['keys_with_ttl']} keys with TTL, queued {s['queued']}")
                k += 1


def run_service(stream: Stream, articles: int, windows: int, window: float, workers: int, backlog: int,
                retention: bool, sweep_interval: str, time_limit: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="newsdedup-retention-"))
    service: Service | None = None
    out: dict[str, Any] = {"retention": f"{window:g}s" if retention else "off", "workers": workers}
    try:
        with RedisServer(die_with_parent=True, appendonly=False) as server:
            r = server.client(socket_timeout=120)
            r.config_set("slowlog-log-slower-than", SLOWLOG_US)
            r.config_set("slowlog-max-len", 1024)
            settings = {"NEWSDEDUP_RETENTION": f"{window:g}s", "NEWSDEDUP_SWEEP_INTERVAL": sweep_interval}
            service, port = start_up(server.url, workers, tmp, settings if retention else None)
            out["used_memory_empty"] = memory(r)
            bp_keys = sorted({keys.boilerplate(source_key(s, None)) for s in stream.sources})
            sampler = Sampler(server.client(socket_timeout=120), window, bp_keys)
            deadline = time.monotonic() + time_limit
            queued = server.client(socket_timeout=30)

            def bodies() -> Iterator[bytes]:
                """The stream until enough articles and windows; waits while the queue is long."""
                for upto, body in stream.bodies():
                    while int(queued.hget(keys.META, "queued") or 0) > backlog and time.monotonic() < deadline:
                        time.sleep(0.02)
                    sampler.posted = upto - POST_BATCH
                    yield body
                    if upto >= articles and time.monotonic() - sampler.t0 >= windows * window:
                        sampler.posted = upto
                        return

            log(f"{out['retention']}: streaming >= {articles} articles over >= {windows} windows of {window:g} s")
            t0 = time.perf_counter()
            sampler.t0 = time.monotonic()
            sampler.start()
            statuses = post_batches(port, bodies(), 4, deadline)
            out["post_statuses"] = dict(statuses)

            def drained() -> bool:
                pending = int(queued.xpending(keys.QUEUE, keys.GROUP)["pending"])
                return int(queued.hget(keys.META, "queued") or 0) == 0 and pending == 0

            if not wait_until(drained, max(1.0, deadline - time.monotonic()), 0.1):
                raise TimeoutError("queue not drained within the time limit")
            secs = time.perf_counter() - t0
            sampler.stop.set()
            sampler.join(5)
            sampler.drain_slowlog()
            final = sampler.snapshot("drained")
            out.update(articles=sampler.posted, seconds=secs, aps=sampler.posted / secs,
                       windows_elapsed=secs / window, samples=sampler.samples,
                       sweep_calls_over_threshold=len(sampler.sweep_calls),
                       sweep_longest_us=max(sampler.sweep_calls, default=None),
                       sweep_calls_us_top=sorted(sampler.sweep_calls)[-10:],
                       sweep_calls_us_p50_p99=percentiles(sampler.sweep_calls),
                       other_calls_over_threshold=len(sampler.other_calls),
                       other_calls_us_p50_p99=percentiles(sampler.other_calls),
                       other_longest_us=sampler.other_longest[0], other_longest_cmd=sampler.other_longest[1],
                       failed=int(r.hget(keys.META, "failed") or 0))
            log(f"{out['retention']}: {sampler.posted} articles in {secs:.1f} s = {out['aps']:.0f} a/s; "
                f"finally {final['stored']} stored, {final['expired']} expired, "
                f"{final['used_memory'] / 2**20:.1f} MiB")
            service.stop()
    finally:
        if service is not None:
            service.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def report(on: dict[str, Any], off: dict[str, Any] | None, argv: Sequence[str]) -> str:
    lines = [f"command: python bench/retention.py {' '.join(argv)}", ""]
    win = [s for s in on["samples"] if s["at"].startswith("window")]
    base = win[0]["used_memory"] if win else None
    lines.append("| sample | s | posted | stored | expired | used_memory MiB | vs window 1 | band entries | "
                 "band level+next | boilerplate fields | keys with TTL |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in on["samples"]:
        rel = f"{(s['used_memory'] / base - 1) * 100:+.1f} %" if base else ""
        lines.append(f"| {s['at']} | {s['seconds']} | {s['posted']:,} | {s['stored']:,} | {s['expired']:,} | "
                     f"{s['used_memory'] / 2**20:.1f} | {rel} | {s['band_entries']:,} | "
                     f"{s['band_level']}+{s['band_next']} | {s['boilerplate_fields']:,} | {s['keys_with_ttl']:,} |")
    if base and len(win) > 1:
        later = [s["used_memory"] / base - 1 for s in win[1:]]
        lines.append(f"\nused_memory after window 1: {min(later) * 100:+.1f} % .. {max(later) * 100:+.1f} % of its "
                     "level at the end of window 1")
    lines.append(f"\nthroughput, sweeper on ({on['retention']} window): {on['articles']:,} articles in "
                 f"{on['seconds']:.0f} s = {on['aps']:.0f} a/s ({on['windows_elapsed']:.1f} windows)")
    if off:
        lines.append(f"throughput, sweeper off: {off['articles']:,} articles in {off['seconds']:.0f} s = "
                     f"{off['aps']:.0f} a/s; used_memory at the end {off['samples'][-1]['used_memory'] / 2**20:.1f} "
                     f"MiB against {on['samples'][-1]['used_memory'] / 2**20:.1f} MiB with the sweeper")
    longest = on["sweep_longest_us"]
    lines.append(f"longest sweeper Redis call (SLOWLOG, threshold {SLOWLOG_US} us): "
                 + (f"{longest / 1000:.2f} ms; {on['sweep_calls_over_threshold']} sweeper calls over the threshold, "
                    f"p50/p99 of those {on['sweep_calls_us_p50_p99']} us, top 10 (us): {on['sweep_calls_us_top']}"
                    if longest is not None else f"none over {SLOWLOG_US} us")
                 + f"; the service's other calls over the threshold: {on['other_calls_over_threshold']}, p50/p99 "
                 f"{on['other_calls_us_p50_p99']} us, longest {on['other_longest_us'] / 1000:.2f} ms "
                 f"({on['other_longest_cmd']})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--articles", type=int, default=200_000, help="at least this many articles (default 200000)")
    p.add_argument("--windows", type=int, default=10, help="and at least this many windows (default 10)")
    p.add_argument("--window", type=float, default=20.0, help="retention window, seconds (default 20)")
    p.add_argument("--workers", type=int, default=2, help="queue workers of `newsdedup up` (default 2)")
    p.add_argument("--sweep-interval", default="1s", help="NEWSDEDUP_SWEEP_INTERVAL (default 1s)")
    p.add_argument("--backlog", type=int, default=1000, help="posting waits while more are queued (default 1000)")
    p.add_argument("--skip-off", action="store_true", help="skip the run with the sweeper off")
    p.add_argument("--off-articles", type=int, default=None,
                   help="articles of the run with the sweeper off (default: as many as the run with it on)")
    p.add_argument("--time-limit", type=float, default=3600.0, help="seconds per run before giving up")
    args = p.parse_args(argv)
    install_exit_signals()
    log("building the sentence pool")
    stream = Stream()
    on = run_service(stream, args.articles, args.windows, args.window, args.workers, args.backlog, True,
                     args.sweep_interval, args.time_limit)
    off = None
    if not args.skip_off:  # the same articles, nothing removed
        off = run_service(stream, args.off_articles or on["articles"], 0, args.window, args.workers,
                          args.backlog, False, args.sweep_interval, args.time_limit)
    text = report(on, off, argv)
    print(text)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "retention.json").write_text(json.dumps({"on": on, "off": off, "argv": argv}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
