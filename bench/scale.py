"""Cost from 10k to 1M articles on one node: Redis CPU per article, per-command cost, memory and check latency
as the index grows (issue 13, "Cost from 10k to 1M").

    .venv/bin/python bench/scale.py [--articles 1000000] [--checkpoints 10000,100000,300000,1000000]
                                    [--window 10000] [--workers 2] [--redis-server PATH] [--redis-arg ARG ...]
                                    [--check-rate 5] [--save-rdb FILE] [--load-rdb FILE --extra 30000]
                                    [--json bench/results/scale.json]

The real engine end to end without HTTP: this process feeds ``Dedup.submit`` (what POST /v1/articles
does) with ``retention.Stream`` articles (recombined synthetic sentences, ~20 % near-copies) while
``--workers`` forked processes run ``Worker.step`` (what ``newsdedup up``'s workers run) on one private
redis-server with AOF on (``appendfsync everysec``, the settings of ``newsdedup up``). Posting pauses
while more than ``--backlog`` articles are queued, so memory is the index's, not a backlog's.

* Every ``--every`` articles processed: ``INFO`` (cpu, commandstats, memory, persistence, stats).
  A checkpoint's window is the ``--window`` articles before it (half the checkpoint when smaller).
  Redis CPU per article = ``used_cpu_user + used_cpu_sys`` delta / articles in the window (CPU, not
  wall: waiting for a core on this shared machine does not count), with the share of the window
  during which an AOF rewrite ran. Commands: calls per article and usec per call (commandstats).
* ``--check-rate`` ``Dedup.check`` calls per second (what POST /v1/check runs) from another process,
  open loop (latency from the due time), 80 % texts of indexed articles, 20 % unseen; each sample is
  tagged with the index size and whether an AOF rewrite was running. A PING every 0.1 s (its own
  process) shows stalls of Redis's main thread; ``LATENCY LATEST`` (threshold 5 ms) names them.
* At the end: an explicit BGREWRITEAOF with the probes running, ``DEBUG HTSTATS 0`` (main dict).
* ``--save-rdb``: SAVE the final dataset to FILE. ``--load-rdb FILE``: start from that dataset instead
  (loaded with AOF off, then AOF switched on and its first rewrite awaited) and process ``--extra``
  more articles, so two redis-server builds are compared on the same 1M dataset.

Prints ratios against the first checkpoint's window of the same run; writes everything to ``--json``.
Nothing asserts; 2 shared cores: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from benchlib import Article, Synthetic, install_exit_signals
from retention import Stream

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.ops.redis_binaries import find_redis_server, redis_server_version
from newsdedup.ops.redis_server import RedisServer
from newsdedup.text.tokens import warm_up
from workers.consumer import Worker

SUBMIT_BATCH = 500
UNSEEN_SEED = 991


class Server(RedisServer):
    """A RedisServer running a chosen binary (``find_redis_server()`` otherwise)."""

    def __init__(self, binary: str, **kw: Any) -> None:
        super().__init__(huge_pages=False, **kw)  # chosen per run here (--variant ...,ENV=VALUE)
        self.binary = binary

    def command(self) -> list[str]:
        return [self.binary, *super().command()[1:]]


def _worker(url: str, index: int, done: Any, stop: Any) -> None:
    warm_up()
    r = redis.Redis.from_url(url, socket_timeout=120)
    w = Worker(r, Config(), name=f"scale-{index}")
    while not stop.is_set():
        got = w.step(block_ms=200)
        if got:
            with done.get_lock():
                done.value += got


def _checker(url: str, rate: float, done: Any, start: int, stop: Any, out: Any) -> None:
    """Open-loop Dedup.check; sends (due time, latency ms, articles processed) rows in chunks."""
    warm_up()
    r = redis.Redis.from_url(url, socket_timeout=120)
    d, stream, unseen = Dedup(r, Config()), Stream(), Stream(seed=UNSEEN_SEED)
    rng = random.Random(5)
    rows: list[tuple[float, float, int]] = []
    t0, i = time.monotonic(), 0
    while not stop.is_set():
        due = t0 + i / rate
        i += 1
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        n = done.value + start
        a = stream.article(rng.randrange(n)) if n and rng.random() < 0.8 else unseen.article(rng.randrange(10**9))
        d.check(parse_article(a.payload())[0])
        rows.append((due, (time.monotonic() - due) * 1000, n))
        if len(rows) >= 20:
            out.put(rows)
            rows = []
    out.put(rows)


def _pinger(url: str, stop: Any, out: Any) -> None:
    r = redis.Redis.from_url(url, socket_timeout=120)
    rows: list[tuple[float, float]] = []
    while not stop.is_set():
        t = time.monotonic()
        r.ping()
        rows.append((t, (time.monotonic() - t) * 1000))
        if len(rows) >= 100:
            out.put(rows)
            rows = []
        time.sleep(0.1)
    out.put(rows)


def snapshot(r: redis.Redis, processed: int) -> dict[str, Any]:
    info = r.info("all")
    cs = {k.removeprefix("cmdstat_"): {"calls": int(v["calls"]), "usec": int(v["usec"])}
          for k, v in info.items() if k.startswith("cmdstat_")}
    keep = ("used_cpu_user", "used_cpu_sys", "used_cpu_user_children", "used_cpu_sys_children", "used_memory",
            "used_memory_rss", "mem_fragmentation_ratio", "allocator_frag_ratio", "used_memory_lua",
            "aof_rewrite_in_progress", "aof_rewrite_scheduled", "latest_fork_usec", "total_forks",
            "aof_delayed_fsync", "aof_current_size", "mem_aof_buffer", "aof_last_rewrite_time_sec", "db0")
    return {"t": time.monotonic(), "processed": processed, "load": os.getloadavg()[0], "cmd": cs,
            **{k: info.get(k) for k in keep}}


def window(a: dict[str, Any], b: dict[str, Any], rewrite_s: float) -> dict[str, Any]:
    n = b["processed"] - a["processed"]
    cmds = {}
    for c, v in b["cmd"].items():
        v0 = a["cmd"].get(c, {"calls": 0, "usec": 0})
        calls, usec = v["calls"] - v0["calls"], v["usec"] - v0["usec"]
        if calls:
            cmds[c] = {"calls_per_article": calls / n, "usec_per_article": usec / n, "usec_per_call": usec / calls}
    return {"from": a["processed"], "to": b["processed"], "seconds": b["t"] - a["t"],
            "cpu_us": (b["used_cpu_user"] + b["used_cpu_sys"] - a["used_cpu_user"] - a["used_cpu_sys"]) * 1e6 / n,
            "user_us": (b["used_cpu_user"] - a["used_cpu_user"]) * 1e6 / n,
            "sys_us": (b["used_cpu_sys"] - a["used_cpu_sys"]) * 1e6 / n,
            "children_us": (b["used_cpu_user_children"] + b["used_cpu_sys_children"] - a["used_cpu_user_children"]
                            - a["used_cpu_sys_children"]) * 1e6 / n,
            "load": b["load"], "rewrite_share": rewrite_s / max(1e-9, b["t"] - a["t"]), "commands": cmds,
            "memory": {k: b[k] for k in ("used_memory", "used_memory_rss", "mem_fragmentation_ratio",
                                         "allocator_frag_ratio", "used_memory_lua", "db0")},
            "forks": (b["total_forks"] or 0) - (a["total_forks"] or 0), "latest_fork_usec": b["latest_fork_usec"],
            "aof_delayed_fsync": (b["aof_delayed_fsync"] or 0) - (a["aof_delayed_fsync"] or 0)}


def family(key: bytes) -> str:
    """{nd}:a:12 -> {nd}:a:*, {nd.g3.13}:band:9:77 -> {g}:band:*, {nd.p5.2}:x:12 -> {p}:x:*; {nd}:seq stays."""
    k = key.decode("utf-8", "replace")
    m = re.match(r"\{([^}]*)\}:(.*)", k) or re.match(r"(nd):(.*)", k)  # nd: = data written before the tags
    if not m:
        return k
    tag, rest = m.groups()
    short = "{g}" if tag.startswith("nd.g") else "{p}" if tag.startswith("nd.p") else "{" + tag + "}"
    head, sep, _ = rest.partition(":")
    return f"{short}:{head}:*" if sep else f"{short}:{rest}"


BLOB_FIELDS = keys.BLOB_FIELDS


def families(r: Any, every: int = 20, fields_sample: int = 300) -> dict[str, Any]:
    """Bytes per key family: SCAN every key (counts), MEMORY USAGE (SAMPLES 0) of one key in ``every``
    (scaled up); and what the bulky article fields (``BLOB_FIELDS``) weigh inside article hashes, from
    DUMP/RESTORE copies with and without them."""
    count: dict[str, int] = {}
    size: dict[str, int] = {}
    sampled: dict[str, int] = {}
    articles: list[bytes] = []
    cursor, seen = 0, 0
    while True:
        cursor, batch = r.scan(cursor=cursor, count=5000)
        pipe = r.pipeline(transaction=False)
        picked = []
        for k in batch:
            f = family(k)
            count[f] = count.get(f, 0) + 1
            seen += 1
            if f == "{nd}:a:*" and len(articles) < 20 * fields_sample:
                articles.append(k)
            if seen % every == 0 or not f.endswith("*"):
                picked.append((k, f))
                pipe.execute_command("MEMORY", "USAGE", k, "SAMPLES", "0")
        for (_, f), b in zip(picked, pipe.execute()):
            size[f] = size.get(f, 0) + int(b or 0)
            sampled[f] = sampled.get(f, 0) + 1
        if cursor == 0:
            break
    est = {f: size.get(f, 0) / sampled[f] * count[f] if sampled.get(f) else None for f in count}
    diffs = []
    for k in random.Random(2).sample(articles, min(fields_sample, len(articles))):
        dump = r.dump(k)
        r.restore("bench:tmp", 0, dump, replace=True)
        whole = int(r.execute_command("MEMORY", "USAGE", "bench:tmp", "SAMPLES", "0"))
        r.hdel("bench:tmp", *BLOB_FIELDS)
        diffs.append((whole, whole - int(r.execute_command("MEMORY", "USAGE", "bench:tmp", "SAMPLES", "0"))))
        r.delete("bench:tmp")
    return {"keys": count, "bytes": est,
            "article_hash_avg": sum(w for w, _ in diffs) / max(1, len(diffs)),
            "blob_fields_avg": sum(b for _, b in diffs) / max(1, len(diffs))}


def pct(xs: list[float], q: float) -> float | None:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else None


class Fresh:
    """``benchlib.Synthetic`` articles 3000 + i: sentences of their own (none from ``Stream``'s pool, which is
    drafts 0..2999), ~20 % near-copies of each other. Fed into an index built from ``Stream``, they meet it only
    by chance, so the engine's work per article is that of a small index: what changes is the dataset's size."""

    def __init__(self) -> None:
        self.gen = Synthetic(prefix="fresh")

    def article(self, i: int) -> Article:
        return self.gen.article(3000 + i)


class Run:
    """One run: the server, the feeder (this process), workers, probes and the INFO samples."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.samples: list[dict[str, Any]] = []
        self.rewrites: list[list[float]] = []  # [start, end] monotonic
        self.checks: list[tuple[float, float, int]] = []
        self.pings: list[tuple[float, float]] = []

    def rewriting(self, t: float) -> bool:
        return any(s <= t <= (e or float("inf")) for s, e in self.rewrites)

    def _poll_rewrite(self, r: redis.Redis) -> None:
        on = int(r.info("persistence")["aof_rewrite_in_progress"])
        now = time.monotonic()
        if on and (not self.rewrites or self.rewrites[-1][1]):
            self.rewrites.append([now, 0.0])
        elif not on and self.rewrites and not self.rewrites[-1][1]:
            self.rewrites[-1][1] = now

    def _drain(self, q: Any, into: list[Any]) -> None:
        while not q.empty():
            into.extend(q.get())

    def go(self, server: RedisServer, start: int, final: bool = True) -> None:
        a, ctx = self.args, mp.get_context("fork")
        r = server.client(socket_timeout=120)
        r.config_set("latency-monitor-threshold", 5)
        done, stop, probes_stop = ctx.Value("q", 0), ctx.Event(), ctx.Event()
        cq, pq = ctx.Queue(), ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(server.url, i, done, stop), daemon=True) for i in range(a.workers)]
        probes = [ctx.Process(target=_pinger, args=(server.url, probes_stop, pq), daemon=True)]
        if a.check_rate > 0:
            probes.append(ctx.Process(target=_checker, args=(server.url, a.check_rate, done, start, probes_stop, cq),
                                      daemon=True))
        for p in workers + probes:
            p.start()
        d, stream = Dedup(r, Config()), (Fresh() if a.feed == "synthetic" else Stream())
        total = start + (a.extra if a.load_rdb or a.variant else a.articles)
        marks = sorted({m for m in range(start + a.every, total + 1, a.every)} | {total})
        self.samples.append(snapshot(r, start))
        fed, t_log = start, time.monotonic()
        try:
            while marks:
                processed = start + done.value
                if processed >= marks[0]:
                    self.samples.append(snapshot(r, processed))
                    while marks and marks[0] <= processed:
                        marks.pop(0)
                self._poll_rewrite(r)
                if fed < total and fed - processed < a.backlog:
                    k = min(SUBMIT_BATCH, total - fed)
                    d.submit([parse_article(stream.article(i).payload()) for i in range(fed, fed + k)])
                    fed += k
                else:
                    time.sleep(0.05)
                if time.monotonic() - t_log > 30:
                    t_log = time.monotonic()
                    s = self.samples[-1]
                    print(f"  {processed:,} processed, used_memory {s['used_memory'] / 2**20:,.0f} MiB, "
                          f"rewrites {len(self.rewrites)}", file=sys.stderr, flush=True)
                if any(p.exitcode not in (None, 0) for p in workers + probes):
                    raise RuntimeError("a worker or probe process died (its traceback is on stderr)")
                self._drain(cq, self.checks)
                self._drain(pq, self.pings)
            stop.set()
            if final:
                self.final_rewrite(r)
        finally:
            stop.set()
            probes_stop.set()
            time.sleep(0.5)
            self._drain(cq, self.checks)
            self._drain(pq, self.pings)
            for p in workers + probes:
                p.join(10)
                if p.is_alive():
                    p.kill()
        self.latency = {"latest": [[x.decode() if isinstance(x, bytes) else x for x in e]
                                   for e in r.execute_command("LATENCY", "LATEST")],
                        "fork_history": [list(e) for e in r.execute_command("LATENCY", "HISTORY", "fork")]}
        try:
            self.htstats = r.execute_command("DEBUG", "HTSTATS", "0").decode()
        except redis.ResponseError as e:
            self.htstats = str(e)
        self.bands = {g: {k.decode(): v.decode() for k, v in r.hgetall(keys.band_state(g)).items()}
                      for g in range(keys.BAND_GROUPS)}
        self.families = families(r) if a.families else None
        self.articles = int(r.get(keys.SEQ) or 0)
        if a.save_rdb:
            r.config_set("appendonly", "no")
            r.save()
            shutil.copy(Path(str(server.data_dir)) / "dump.rdb", a.save_rdb)
        r.close()

    def final_rewrite(self, r: redis.Redis) -> None:
        """BGREWRITEAOF at the largest size while the check and PING probes run: the stall it causes."""
        self._wait_rewrite(r)
        r.bgrewriteaof()
        t = time.monotonic()
        while time.monotonic() - t < 2 or self._rewrite_on(r):
            self._poll_rewrite(r)
            time.sleep(0.05)
        self._poll_rewrite(r)
        time.sleep(2)  # probes keep running a little after it

    @staticmethod
    def _rewrite_on(r: redis.Redis) -> bool:
        p = r.info("persistence")
        return bool(int(p["aof_rewrite_in_progress"]) or int(p["aof_rewrite_scheduled"]))

    def _wait_rewrite(self, r: redis.Redis, limit: float = 900) -> None:
        t = time.monotonic()
        while self._rewrite_on(r) and time.monotonic() - t < limit:
            self._poll_rewrite(r)
            time.sleep(0.1)

    def rewrite_seconds(self, t0: float, t1: float) -> float:
        return sum(max(0.0, min(t1, e or t1) - max(t0, s)) for s, e in self.rewrites)

    def report(self, start: int) -> dict[str, Any]:
        a = self.args
        by = {s["processed"]: s for s in self.samples}
        pts = sorted(by)
        grown = a.load_rdb is None and not a.variant
        cps = [int(x) for x in a.checkpoints.split(",")] if grown else [pts[-1]]
        wins = []
        for cp in cps:
            end = next((p for p in pts if p >= cp), None)
            if end is None:
                continue
            w = min(a.window, (end - start) // 2)
            lo = min((p for p in pts if p < end), key=lambda p: abs(p - (end - w)))
            wins.append(window(by[lo], by[end], self.rewrite_seconds(by[lo]["t"], by[end]["t"])))
        series = [window(by[x], by[y], self.rewrite_seconds(by[x]["t"], by[y]["t"])) for x, y in zip(pts, pts[1:])]
        lim = [start, *[w["to"] for w in wins]]
        checks = []
        for lo, hi in zip(lim, lim[1:]):
            lat = [ms for t, ms, n in self.checks if lo <= n < hi]
            rw = [ms for t, ms, n in self.checks if lo <= n < hi and self.rewriting(t)]
            checks.append({"from": lo, "to": hi, "n": len(lat), "p50": pct(lat, .5), "p99": pct(lat, .99),
                           "max": max(lat, default=None), "rewrite_n": len(rw), "rewrite_p99": pct(rw, .99),
                           "rewrite_max": max(rw, default=None)})
        last = self.rewrites[-1] if self.rewrites else [0, 0]
        final = [ms for t, ms, _ in self.checks if last[0] <= t <= (last[1] or 1e18)]
        pings = [ms for _, ms in self.pings]
        ping_rw = [ms for t, ms in self.pings if self.rewriting(t)]
        return {"args": vars(a), "windows": wins, "series": series, "checks": checks,
                "final_rewrite_checks": {"n": len(final), "p50": pct(final, .5), "p99": pct(final, .99),
                                         "max": max(final, default=None), "seconds": (last[1] or 0) - last[0]},
                "ping": {"n": len(pings), "p99": pct(pings, .99), "max": max(pings, default=None),
                         "rewrite_p99": pct(ping_rw, .99), "rewrite_max": max(ping_rw, default=None),
                         "over_50ms": sum(x > 50 for x in pings)},
                "rewrites": [[s - self.samples[0]["t"], (e or 0) - self.samples[0]["t"]] for s, e in self.rewrites],
                "latency": self.latency, "htstats": self.htstats, "bands": self.bands, "families": self.families,
                "articles": self.articles}


def show(out: dict[str, Any]) -> None:
    wins = out["windows"]
    if not wins:
        return
    b = wins[0]
    print(f"\nredis-server {out['version']} ({out['allocator']}, {out['anon_huge_pages_kb']} kB in huge pages); "
          f"ratios against the window ending at {b['to']:,}")
    print("| window (articles processed) | Redis CPU µs/article | vs first | user / sys | AOF rewrite share "
          "| used_memory MiB | RSS MiB | frag ratio | forks | latest_fork ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w in wins:
        m = w["memory"]
        print(f"| {w['from']:,}-{w['to']:,} | {w['cpu_us']:.0f} | {w['cpu_us'] / b['cpu_us']:.2f}x | "
              f"{w['user_us']:.0f} / {w['sys_us']:.0f} | {w['rewrite_share']:.0%} | {m['used_memory'] / 2**20:,.0f} | "
              f"{m['used_memory_rss'] / 2**20:,.0f} | {m['mem_fragmentation_ratio']} | {w['forks']} | "
              f"{(w['latest_fork_usec'] or 0) / 1000:.0f} |")
    top = sorted(b["commands"], key=lambda c: -b["commands"][c]["usec_per_article"])[:12]
    print("\n| command | " + " | ".join(f"calls/article, µs/call @{w['to']:,}" for w in wins) + " |")
    print("|---|" + "---:|" * len(wins))
    for c in top:
        cells = []
        for w in wins:
            v = w["commands"].get(c)
            cells.append(f"{v['calls_per_article']:.1f}, {v['usec_per_call']:.2f} "
                         f"({v['usec_per_call'] / b['commands'][c]['usec_per_call']:.2f}x)" if v else "-")
        print(f"| {c} | " + " | ".join(cells) + " |")
    print("\n| check: articles indexed | samples | p50 ms | p99 ms | max ms | during AOF rewrite: n, p99, max ms |")
    print("|---|---:|---:|---:|---:|---|")
    for c in out["checks"]:
        if c["n"]:
            print(f"| {c['from']:,}-{c['to']:,} | {c['n']} | {c['p50']:.1f} | {c['p99']:.1f} | {c['max']:.1f} | "
                  f"{c['rewrite_n']}, {c['rewrite_p99'] or 0:.1f}, {c['rewrite_max'] or 0:.1f} |")
    f, p = out["final_rewrite_checks"], out["ping"]
    if f["n"]:
        print(f"\nfinal BGREWRITEAOF ({f['seconds']:.1f} s): check n={f['n']} p50 {f['p50']:.1f} p99 {f['p99']:.1f} "
              f"max {f['max']:.1f} ms")
    print(f"PING every 0.1 s: n={p['n']} p99 {p['p99']:.2f} max {p['max']:.1f} ms, >50 ms: {p['over_50ms']}; "
          f"during rewrites p99 {p['rewrite_p99'] or 0:.1f} max {p['rewrite_max'] or 0:.1f} ms")
    print(f"LATENCY LATEST: {out['latency']['latest']}")
    print(f"forks (ms, LATENCY HISTORY fork): {[ms for _, ms in out['latency'].get('fork_history', [])]}")
    print(f"band table: {out['bands']}")
    fam = out["families"]
    if fam:
        n = out["articles"]
        big = sorted(((f, b) for f, b in fam["bytes"].items() if b and b / n >= 1), key=lambda t: -t[1])
        print(f"memory per article ({n:,} articles; MEMORY USAGE of 1 key in 20, scaled): "
              + ", ".join(f"{f} {b / n:,.0f} B ({fam['keys'][f]:,} keys)" for f, b in big))
        print(f"  article hash {fam['article_hash_avg']:,.0f} B on average, of which sig/text/page/lines/repeated "
              f"{fam['blob_fields_avg']:,.0f} B")
    print(f"DEBUG HTSTATS 0: {' | '.join(out['htstats'].splitlines()[:12])}")


def _huge_kb(pid: int | None) -> int | None:
    """AnonHugePages of a process (kB): how much of Redis's memory sits in transparent huge pages."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("AnonHugePages:")), None)


def start_loaded(binary: str, rdb: str, env: str | None, extra: list[str]) -> tuple[Server, Path]:
    """A redis-server loaded from ``rdb`` (AOF off), then AOF on and its first rewrite finished.

    ``env`` "NAME=VALUE" is set for that server only, with ``--disable-thp no`` (Redis otherwise turns
    transparent huge pages off for itself): MALLOC_CONF=thp:always,metadata_thp:always for jemalloc,
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 for glibc's malloc.
    """
    data = Path(tempfile.mkdtemp(prefix="nd-scale-"))
    shutil.copy(rdb, data / "dump.rdb")
    name = None
    if env:
        name, _, value = env.partition("=")
        os.environ[name] = value
        extra = [*extra, "--disable-thp", "no"]
    version = redis_server_version(binary) or (0,)
    extra = extra + (["--enable-debug-command", "local"] if version >= (7,) else [])
    server = Server(binary, data_dir=data, appendonly=False, extra_args=extra, die_with_parent=True,
                    startup_timeout=900).start()
    if name:
        os.environ.pop(name, None)
    r = server.client(socket_timeout=900)
    r.config_set("appendonly", "yes")
    t = time.monotonic()
    while time.monotonic() - t < 2 or Run._rewrite_on(r):
        time.sleep(0.2)
    r.close()
    return server, data


def variants(a: argparse.Namespace) -> int:
    """Alternate windows of ``--extra`` articles over several servers loaded from RDB files (same load on the
    machine for all), then one BGREWRITEAOF each with the probes running."""
    servers: list[tuple[str, Server, Path]] = []
    out: dict[str, Any] = {"args": vars(a), "variants": {}}
    try:
        for spec in a.variant:
            label, _, rest = spec.partition("=")
            binary, rdb, *mc = rest.split(",", 2)
            server, data = start_loaded(binary, rdb, mc[0] if mc else None, list(a.redis_arg))
            c = server.client()
            out["variants"][label] = {"spec": spec, "version": c.info("server")["redis_version"],
                                      "allocator": c.info("memory")["mem_allocator"], "windows": [], "rewrite": None}
            c.close()
            servers.append((label, server, data))
            print(f"{label}: loaded", file=sys.stderr, flush=True)
        for k in range(a.rounds + 1):
            for label, server, _ in servers:
                c = server.client()
                start = int(c.get(keys.SEQ) or 0)
                c.close()
                run = Run(a)
                run.go(server, start, final=k == a.rounds)
                rep = run.report(start)
                v = out["variants"][label]
                rep["huge_kb"] = _huge_kb(server.pid)
                v["rewrite" if k == a.rounds else "windows"] = rep if k == a.rounds else [*v["windows"], rep]
                print(f"{label} round {k + 1}: {rep['windows'][0]['cpu_us']:.0f} us/article", file=sys.stderr,
                      flush=True)
    finally:
        for _, server, data in servers:
            server.stop()
            shutil.rmtree(data, ignore_errors=True)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1))
    show_variants(out)
    return 0


def show_variants(out: dict[str, Any]) -> None:
    vs = out["variants"]
    first = None
    print("| variant | articles | Redis CPU µs/article per window | median | vs first | used_memory MiB | RSS MiB | "
          "frag | huge pages MiB | check p50 / p99 ms | rewrite: fork ms, check p99 / max ms, PING max ms |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|")
    for label, v in vs.items():
        ws = [w["windows"][0] for w in v["windows"]]
        cpu = sorted(w["cpu_us"] for w in ws)
        med = cpu[len(cpu) // 2]
        first = first or med
        m = ws[-1]["memory"]
        lat = [c for w in v["windows"] for c in w["checks"] if c["n"]]
        rw = v["rewrite"] or {}
        fr, fork = rw.get("final_rewrite_checks", {}), rw.get("latency", {}).get("fork_history", [])
        mib = f"{m['used_memory'] / 2**20:,.0f} | {m['used_memory_rss'] / 2**20:,.0f}"
        print(f"| {label} ({v['version']}, {v['allocator']}) | {ws[-1]['to']:,} | {', '.join(f'{x:.0f}' for x in cpu)} "
              f"| {med:.0f} | {med / first:.2f}x | {mib} "
              f"| {m['mem_fragmentation_ratio']} | {(v['windows'][-1]['huge_kb'] or 0) / 1024:,.0f} | "
              f"{max((c['p50'] for c in lat), default=0):.1f} / {max((c['p99'] for c in lat), default=0):.1f} | "
              f"{fork[-1][1] if fork else '-'}, {fr.get('p99') or 0:.1f} / {fr.get('max') or 0:.1f}, "
              f"{rw.get('ping', {}).get('rewrite_max') or 0:.1f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--articles", type=int, default=1_000_000)
    p.add_argument("--checkpoints", default="10000,100000,300000,1000000")
    p.add_argument("--window", type=int, default=10_000)
    p.add_argument("--every", type=int, default=5_000, help="INFO sample every N articles processed")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--backlog", type=int, default=3_000)
    p.add_argument("--check-rate", type=float, default=5.0)
    p.add_argument("--redis-server", default=None, help="binary (default: find_redis_server())")
    p.add_argument("--redis-arg", action="append", default=[], help="extra redis-server argument, e.g. "
                   "--redis-arg=--no-appendfsync-on-rewrite --redis-arg=yes")
    p.add_argument("--malloc-conf", default=None, help="MALLOC_CONF for a jemalloc redis-server, e.g. "
                   "thp:always,metadata_thp:always (with --redis-arg=--disable-thp --redis-arg=no)")
    p.add_argument("--save-rdb", default=None)
    p.add_argument("--load-rdb", default=None)
    p.add_argument("--extra", type=int, default=30_000)
    p.add_argument("--variant", action="append", default=[], help="LABEL=BINARY,RDB[,ENV=VALUE] (repeat): "
                   "alternate --rounds windows of --extra articles over these servers instead of one run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--feed", choices=("stream", "synthetic"), default="stream",
                   help="articles fed: retention.Stream (recombined sentences) or fresh benchlib.Synthetic ones")
    p.add_argument("--families", action="store_true", help="at the end: bytes per key family (sampled)")
    p.add_argument("--json", default="bench/results/scale.json")
    a = p.parse_args(argv)
    install_exit_signals()
    if a.variant:
        return variants(a)
    binary = a.redis_server or find_redis_server()
    if a.malloc_conf:
        os.environ["MALLOC_CONF"] = a.malloc_conf  # inherited by the redis-server started below
    version = redis_server_version(binary) or (0,)
    extra = list(a.redis_arg) + (["--enable-debug-command", "local"] if version >= (7,) else [])
    run = Run(a)
    start = 0
    data = Path(tempfile.mkdtemp(prefix="nd-scale-"))
    if a.load_rdb:
        shutil.copy(a.load_rdb, data / "dump.rdb")
    with Server(binary, data_dir=data, appendonly=a.load_rdb is None, extra_args=extra, die_with_parent=True,
                startup_timeout=600) as server:
        if a.load_rdb:
            r = server.client(socket_timeout=600)
            start = int(r.get(keys.SEQ) or 0)
            r.config_set("appendonly", "yes")
            run._wait_rewrite(r)
            time.sleep(1)
            run._wait_rewrite(r)
            run.rewrites.clear()
            r.close()
        print(f"redis-server {binary} {'.'.join(map(str, version))}; starting at {start:,} articles",
              file=sys.stderr, flush=True)
        t0 = time.monotonic()
        run.go(server, start)
        out = run.report(start)
        info = server.client().info("server")
        out.update({"anon_huge_pages_kb": _huge_kb(server.pid), "version": info["redis_version"], "binary": binary,
                    "seconds": time.monotonic() - t0,
                    "allocator": server.client().info("memory").get("mem_allocator")})
    shutil.rmtree(data, ignore_errors=True)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1))
    show(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
