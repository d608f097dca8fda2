"""newsdedup benchmark (issue 4): one command, one table.

    python bench/run.py [--articles 10000] [--scales 10000,100000] [--workers 2]
                        [--check-rps 50] [--check-seconds 20] [--synthetic]

For each scale it measures, on the same articles in the same run:

* baseline: what a user would write with datasketch (``MinHashLSH`` on Redis, query then insert
  per article), on a sample, (a) with signatures precomputed and (b) including them;
* engine: ``Worker.step`` / ``Engine.process`` in this process over a throwaway Redis, timing only
  the processing of articles already submitted with ``Dedup.submit``;
* end to end: ``newsdedup up`` as a subprocess (API under gunicorn + N workers) over a Redis this
  script starts, articles POSTed in batches of 500 until the queue is drained;
* ``POST /v1/check`` latency at a fixed request rate (open loop) with the index filled;
* Redis memory per article: ``used_memory`` delta (total) and the index alone.

The table goes to stdout (markdown), the same numbers and more detail to
``bench/results/latest.json``. Progress goes to stderr. Nothing here asserts on timings.
See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing
import os
import platform
import queue
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any

import numpy as np
import redis
from benchlib import (
    REPO,
    Article,
    Corpus,
    Service,
    drain,
    install_exit_signals,
    process_cpu,
    start_up,
    unseen,
    wait_until,
)
from datasketch import MinHash, MinHashLSH

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.ops.redis_server import RedisServer
from newsdedup.text.tokens import warm_up as warm_up_tables
from workers.consumer import Worker

HOST = "127.0.0.1"
POST_BATCH = 500
RESULTS = Path(__file__).resolve().parent / "results"
INDEX_PREFIXES = (keys.PREFIX + "band:", keys.PREFIX + "c:", keys.PREFIX + "cm:")
INDEX_KEYS = (keys.PREFIX + "bands", keys.PREFIX + "clusters", keys.PREFIX + "singles")
SIG_SAMPLE = 200


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def used_memory(r: redis.Redis, settle_s: float = 120.0) -> int:
    """Memory held by data: ``used_memory`` without transient buffers.

    An AOF rewrite in progress makes Redis buffer every write in memory until it
    ends, and client and AOF buffers come and go with traffic: waiting for the
    rewrite (bounded) and subtracting the buffers measures what the data costs.
    """
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        p = r.info("persistence")
        if not int(p.get("aof_rewrite_in_progress", 0)) and not int(p.get("aof_rewrite_scheduled", 0)):
            break
        time.sleep(0.2)
    m = r.info("memory")
    return int(m["used_memory"]) - int(m.get("mem_aof_buffer", 0)) - int(m.get("mem_clients_normal", 0))


def pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if len(values) else None


# ====================================================================== baseline: datasketch + Redis

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORDS = re.compile(r"\w+")
_SPACES = re.compile(r"\s+")


def user_shingles(text: str) -> set[str]:
    """What a user would write: char 5-grams for Chinese text, word 3-grams otherwise."""
    if len(_CJK.findall(text)) * 2 > len(text.strip()):
        t = _SPACES.sub("", text)
        return {t[i:i + 5] for i in range(max(1, len(t) - 4))}
    words = _WORDS.findall(text.lower())
    return {" ".join(words[i:i + 3]) for i in range(max(1, len(words) - 2))}


def user_minhash(text: str, num_perm: int = 128) -> MinHash:
    m = MinHash(num_perm=num_perm)
    m.update_batch([s.encode("utf-8") for s in user_shingles(text)])
    return m


def _lsh(port: int) -> MinHashLSH:
    return MinHashLSH(threshold=0.8, num_perm=128,
                      storage_config={"type": "redis", "redis": {"host": HOST, "port": port}})


def run_baseline(articles: list[Article], time_limit: float) -> dict[str, Any]:
    """datasketch MinHashLSH on its own Redis: query then insert each article, (a) and (b)."""
    log(f"baseline: datasketch MinHashLSH(threshold=0.8, num_perm=128) on Redis, {len(articles)} articles")
    out: dict[str, Any] = {"sample": len(articles)}
    with RedisServer(die_with_parent=True) as server:
        assert server.port is not None
        r = server.client()
        t0 = time.perf_counter()
        sigs = [user_minhash(a.text) for a in articles]
        out["sig_seconds"] = time.perf_counter() - t0
        # (a) signatures precomputed: only the index operations are timed
        before = used_memory(r)
        lsh = _lsh(server.port)
        deadline = time.monotonic() + time_limit
        hits = done = 0
        t0 = time.perf_counter()
        for a, m in zip(articles, sigs):
            hits += bool(lsh.query(m))
            lsh.insert(a.id, m)
            done += 1
            if time.monotonic() > deadline:
                break
        secs = time.perf_counter() - t0
        out["a"] = {"articles": done, "seconds": secs, "aps": done / secs, "with_candidates": hits}
        out["bytes_per_article"] = (used_memory(r) - before) / max(done, 1)
        r.flushall()
        # (b) including shingling and MinHash.update_batch
        lsh = _lsh(server.port)
        deadline = time.monotonic() + time_limit
        done = 0
        t0 = time.perf_counter()
        for a in articles:
            m = user_minhash(a.text)
            lsh.query(m)
            lsh.insert(a.id, m)
            done += 1
            if time.monotonic() > deadline:
                break
        secs = time.perf_counter() - t0
        out["b"] = {"articles": done, "seconds": secs, "aps": done / secs}
        r.close()
    log(f"baseline: (a) {out['a']['aps']:.0f} a/s, (b) {out['b']['aps']:.0f} a/s, "
        f"{out['bytes_per_article']:.0f} B/article")
    return out


# ====================================================================== engine alone


def submit_all(d: Dedup, corpus: Corpus, n: int, deadline: float) -> int:
    done = 0
    for batch in corpus.batches(n, POST_BATCH):
        d.submit([parse_article(a.payload()) for a in batch])
        done += len(batch)
        if time.monotonic() > deadline:
            raise TimeoutError(f"submitting took too long ({done} of {n} articles)")
    return done


def _engine_process(url: str, index: int, ready: Any, go: Any, results: Any, time_limit: float) -> None:
    """One of several engine processes: its own client and tables, then drain when told to."""
    warm_up_tables()
    r = redis.Redis.from_url(url, socket_timeout=60)
    w = Worker(r, Config(), name=f"bench-engine-{index}")
    ready.release()
    go.wait()
    results.put(drain(w, time.monotonic() + time_limit))
    r.close()


def run_engine(corpus: Corpus, n: int, time_limit: float, processes: int = 1) -> dict[str, Any]:
    """Submit everything (untimed), then time ``processes`` worker loops draining the queue.

    One process runs in this one; several are forked, each with its own Redis client, and the
    clock runs from releasing them together until the last exits.
    """
    cfg = Config()
    out: dict[str, Any] = {"articles": n, "worker_batch": cfg.worker_batch, "processes": processes}
    with RedisServer(die_with_parent=True) as server:
        r = server.client(socket_timeout=60)
        d = Dedup(r, cfg)
        mem0 = used_memory(r)
        deadline = time.monotonic() + time_limit
        t0 = time.perf_counter()
        submit_all(d, corpus, n, deadline)
        out["submit_seconds"] = time.perf_counter() - t0
        mem_queued = used_memory(r)
        if processes == 1:
            w = Worker(r, cfg, name="bench-engine")
            t0 = time.perf_counter()
            handled = drain(w, deadline)
            secs = time.perf_counter() - t0
        else:
            ctx = multiprocessing.get_context("fork")  # the children build their own clients
            ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
            procs = [ctx.Process(target=_engine_process, daemon=True,
                                 args=(server.url, i, ready, go, results, deadline - time.monotonic()))
                     for i in range(processes)]
            for p in procs:
                p.start()

            def dead() -> str | None:  # a child that died (its traceback went to stderr) fails the run
                codes = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                return f"an engine process exited with {codes[0]}" if codes else None

            started = 0
            while started < processes:
                if ready.acquire(timeout=0.5):
                    started += 1
                elif dead() or time.monotonic() > deadline:
                    raise RuntimeError(dead() or "engine processes did not start in time")
            t0 = time.perf_counter()
            go.set()
            counts: list[int] = []
            while len(counts) < processes:
                try:
                    counts.append(results.get(timeout=0.5))
                except queue.Empty:
                    if dead() or time.monotonic() > deadline:
                        raise RuntimeError(dead() or "engine processes did not finish in time") from None
            secs = time.perf_counter() - t0
            for p in procs:
                p.join(30)
            handled = sum(counts)
            out["handled_per_process"] = counts
        stats = d.stats()
        out.update({"process_seconds": secs, "handled": handled, "aps": handled / secs if secs else None,
                    "stats": stats, "timed_out": time.monotonic() >= deadline,
                    "bytes_per_article_total": (used_memory(r) - mem0) / n,
                    "bytes_per_article_queued": (mem_queued - mem0) / n})
        r.close()
    log(f"engine ({processes} process{'es' if processes > 1 else ''}): {n} articles in {secs:.1f}s = "
        f"{out['aps']:.0f} a/s; {stats['clusters_with_duplicates']} clusters with duplicates, "
        f"{stats['queue']['failed']} failed")
    return out


# ====================================================================== HTTP helpers


class Http:
    """One keep-alive connection to the API (one per thread); reconnects once on a dropped connection."""

    def __init__(self, port: int, timeout: float = 120.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = json.dumps(body).encode() if body is not None else None
        status, data, _ = self.request(method, path, raw)
        return status, json.loads(data) if data else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def post_batches(port: int, bodies: Iterable[bytes], threads: int, deadline: float) -> Counter[int]:
    """POST every body to /v1/articles from a few threads; retries 429/503 (bounded); returns status counts."""
    it = iter(bodies)
    lock = threading.Lock()
    statuses: Counter[int] = Counter()
    errors: list[BaseException] = []

    def next_body() -> bytes | None:
        with lock:
            return next(it, None)

    def run() -> None:
        h = Http(port)
        try:
            while not errors and time.monotonic() < deadline:
                body = next_body()
                if body is None:
                    return
                for _attempt in range(30):
                    status, data, headers = h.request("POST", "/v1/articles", body)
                    if status not in (429, 502, 503, 504) or time.monotonic() > deadline:
                        break
                    time.sleep(min(5.0, float(headers.get("retry-after") or 0.5)))
                with lock:
                    statuses[status] += 1
                if status != 202:
                    raise RuntimeError(f"POST /v1/articles answered {status}: {data[:300]!r}")
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            h.close()

    ts = [threading.Thread(target=run, name=f"post-{i}", daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()) + 5)
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in ts):
        raise TimeoutError("posting articles did not finish in time")
    return statuses


def batch_bodies(corpus: Corpus, n: int) -> Iterable[bytes]:
    for batch in corpus.batches(n, POST_BATCH):
        yield json.dumps({"articles": [a.payload() for a in batch]}, ensure_ascii=False).encode("utf-8")


# ====================================================================== /v1/check latency


WARMUP_REQUESTS = 48


def warm_up(port: int, bodies: list[bytes], threads: int = 8) -> dict[str, Any]:
    """A few closed-loop requests first, so every API process has loaded what it loads lazily."""
    lat: list[float] = []
    lock = threading.Lock()
    it = iter(bodies)

    def run() -> None:
        h = Http(port, timeout=30)
        try:
            while True:
                with lock:
                    body = next(it, None)
                if body is None:
                    return
                t = time.perf_counter()
                h.request("POST", "/v1/check", body)
                with lock:
                    lat.append((time.perf_counter() - t) * 1000)
        except (OSError, http.client.HTTPException):
            return
        finally:
            h.close()

    ts = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return {"requests": len(lat), "max_ms": max(lat, default=None), "p50_ms": pct(lat, 50)}


def run_check(port: int, corpus: Corpus, n: int, rps: float, seconds: float, seed: int = 1) -> dict[str, Any]:
    """Open loop: request i is due at t0 + i/rps whatever happened before; latency counts from that time."""
    rng = random.Random(seed)
    total = max(1, int(rps * seconds))
    bodies: list[tuple[bool, bytes]] = []
    for i in range(total):
        seen = rng.random() < 0.8
        a = corpus.get(rng.randrange(n)) if seen else unseen(i)
        bodies.append((seen, json.dumps({"title": a.title, "text": a.text, "source": a.source},
                                        ensure_ascii=False).encode("utf-8")))
    local = threading.local()
    warm = warm_up(port, [b for _, b in bodies[:WARMUP_REQUESTS]])

    def one(body: bytes, due: float) -> tuple[int, float, float, int]:
        h: Http | None = getattr(local, "http", None)
        if h is None:
            h = local.http = Http(port, timeout=30)
        start = time.perf_counter()
        try:
            status, data, _ = h.request("POST", "/v1/check", body)
            dups = len(json.loads(data).get("duplicates") or []) if status == 200 else 0
        except (OSError, http.client.HTTPException, ValueError):
            status, dups = -1, 0
        end = time.perf_counter()
        return status, end - due, end - start, dups

    workers = int(min(128, max(8, rps)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check")
    futures: list[tuple[bool, Future[tuple[int, float, float, int]]]] = []
    late = 0
    try:
        t0 = time.perf_counter() + 0.05
        for i, (seen, body) in enumerate(bodies):
            due = t0 + i / rps
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            elif pause < -0.01:
                late += 1  # the dispatcher itself fell behind (CPU starved)
            futures.append((seen, pool.submit(one, body, due)))
        wait_futures([f for _, f in futures], timeout=seconds + 60)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    done = [(seen, f.result()) for seen, f in futures if f.done() and not f.cancelled()]
    ok = [(seen, res) for seen, res in done if res[0] == 200]
    lat = [res[1] * 1000 for _, res in ok]
    svc = [res[2] * 1000 for _, res in ok]
    statuses = Counter(res[0] for _, res in done)
    found_seen = sum(1 for seen, res in ok if seen and res[3] > 0)
    n_seen = sum(1 for seen, _ in ok if seen)
    out = {"requests": total, "completed": len(done), "ok": len(ok), "statuses": dict(statuses),
           "rps_target": rps, "seconds": seconds, "dispatch_late": late,
           "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99), "max_ms": max(lat, default=None),
           "service_p50_ms": pct(svc, 50), "service_p99_ms": pct(svc, 99),
           "indexed_texts_found": f"{found_seen}/{n_seen}", "warmup": warm}
    log(f"check: {len(ok)}/{total} ok, p50 {out['p50_ms'] or 0:.1f} ms, p99 {out['p99_ms'] or 0:.1f} ms; "
        f"indexed texts with a duplicate found: {found_seen}/{n_seen}")
    return out


# ====================================================================== Redis memory breakdown


def _family(key: bytes) -> str:
    k = key.decode("utf-8", "replace")
    if ":band:" in k:  # the band groups' buckets ({<group tag>}:band:<band>:<addr>), one family
        return keys.PREFIX + "band:*"
    if k.endswith("}:bands"):  # the band groups' states
        return keys.PREFIX + "bands"
    if k.startswith("{nd.p") and ":x:" in k:
        return keys.BLOB_MATCH  # article blobs (signature, kept text)
    for prefix in (keys.PREFIX + s for s in ("band:", "a:", "cm:", "c:", "bp:", "rl:")):
        if k.startswith(prefix):
            return prefix + "*"
    return k if k.startswith(keys.PREFIX) else "other"


def memory_breakdown(r: redis.Redis, deadline: float) -> dict[str, Any]:
    """MEMORY USAGE (exact: SAMPLES 0) of every key, summed per key family; SCAN, never KEYS."""
    fam_bytes: Counter[str] = Counter()
    fam_keys: Counter[str] = Counter()
    articles: list[bytes] = []
    cursor = 0
    while True:
        cursor, batch = r.scan(cursor=cursor, count=2000)
        pipe = r.pipeline(transaction=False)
        for k in batch:
            pipe.execute_command("MEMORY", "USAGE", k, "SAMPLES", "0")
        for k, size in zip(batch, pipe.execute()):
            k = k if isinstance(k, bytes) else str(k).encode()
            fam = _family(k)
            fam_bytes[fam] += int(size or 0)
            fam_keys[fam] += 1
            if fam == keys.BLOB_MATCH:  # where the signature is
                articles.append(k)
        if cursor == 0:
            break
        if time.monotonic() > deadline:
            raise TimeoutError("scanning Redis keys took too long")
    return {"bytes": dict(fam_bytes), "keys": dict(fam_keys), "article_keys": articles}


def sig_field_bytes(r: redis.Redis, article_keys: list[bytes], sample: int = SIG_SAMPLE) -> float | None:
    """Average bytes the ``sig`` field adds to an article's blob: MEMORY USAGE of a copy with and without it."""
    picked = random.Random(3).sample(article_keys, min(sample, len(article_keys)))
    diffs: list[int] = []
    tmp = "bench:tmp:sig"
    for k in picked:
        dump = r.dump(k)
        if dump is None:
            continue
        r.restore(tmp, 0, dump, replace=True)
        if r.hexists(tmp, "sig"):
            with_sig = int(r.execute_command("MEMORY", "USAGE", tmp, "SAMPLES", "0"))
            r.hdel(tmp, "sig")
            diffs.append(with_sig - int(r.execute_command("MEMORY", "USAGE", tmp, "SAMPLES", "0")))
        r.delete(tmp)
    return sum(diffs) / len(diffs) if diffs else None


def cluster_sizes(r: redis.Redis, limit: int = 100_000) -> dict[str, Any]:
    """Sizes of clusters with 2+ members: a sanity check that duplicates were found (and not over-merged)."""
    cids = r.zrange(keys.PREFIX + "clusters", 0, limit - 1)
    pipe = r.pipeline(transaction=False)
    for c in cids:
        pipe.hget(keys.PREFIX + "c:" + (c.decode() if isinstance(c, bytes) else str(c)), "size")
    sizes = sorted((int(s or 0) for s in pipe.execute()), reverse=True)
    return {"clusters": len(sizes), "articles_in_them": sum(sizes), "largest": sizes[:10],
            "histogram": dict(sorted(Counter(min(s, 10) for s in sizes).items()))}


def index_memory(r: redis.Redis, n: int, deadline: float) -> dict[str, Any]:
    mb = memory_breakdown(r, deadline)
    fam = mb["bytes"]
    structures = sum(v for k, v in fam.items() if k.rstrip("*") in INDEX_PREFIXES or k in INDEX_KEYS)
    sig = sig_field_bytes(r, mb["article_keys"])
    indexed = int(r.hlen(keys.PREFIX + "ids"))
    sig_total = (sig or 0.0) * indexed
    return {"bytes_per_article_index": (structures + sig_total) / n, "index_structures_bytes": structures,
            "sig_field_bytes_avg": sig, "families_bytes": fam, "families_keys": mb["keys"],
            "families_bytes_per_article": {k: round(v / n, 1) for k, v in sorted(fam.items())}}


# ====================================================================== end to end


def run_e2e(corpus: Corpus, n: int, workers: int, post_threads: int, rps: float, check_seconds: float,
            time_limit: float, prebuild_limit: int = 200_000, appendonly: bool = True,
            settings: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"articles": n, "workers": workers, "appendonly": appendonly, "settings": settings or {}}
    tmp = Path(tempfile.mkdtemp(prefix="newsdedup-bench-"))
    service: Service | None = None
    try:
        with RedisServer(die_with_parent=True, appendonly=appendonly) as server:
            r = server.client(socket_timeout=120)
            # our own Redis (so INFO memory is readable); --set: deliberate, recorded in the JSON
            service, port = start_up(server.url, workers, tmp, settings)
            mem0 = used_memory(r)
            r.config_resetstat()
            deadline = time.monotonic() + time_limit
            prebuilt = n <= prebuild_limit  # otherwise generating bodies competes with the service
            bodies: Iterable[bytes] = list(batch_bodies(corpus, n)) if prebuilt else batch_bodies(corpus, n)
            out["bodies_prebuilt"] = prebuilt
            log(f"e2e: posting {n} articles in batches of {POST_BATCH} from {post_threads} threads")
            roots = {"redis": server.pid, "service": service.proc.pid if service.proc else None}
            cpu0, self0 = process_cpu(roots), os.times()
            t0 = time.perf_counter()
            statuses = post_batches(port, bodies, post_threads, deadline)
            out["post_seconds"] = time.perf_counter() - t0
            out["post_statuses"] = dict(statuses)
            stats_http = Http(port, timeout=30)
            last: dict[str, Any] = {}

            def drained() -> bool:
                nonlocal last
                status, body = stats_http.json("GET", "/v1/stats")
                if status != 200:
                    return False
                last = body
                q = body["queue"]
                return bool(body["articles"] >= n and q["pending"] + q["in_flight"] == 0)

            ok = wait_until(drained, max(1.0, deadline - time.monotonic()), 0.1)
            secs = time.perf_counter() - t0
            stats_http.close()
            if not ok:
                raise TimeoutError(f"queue not drained within the time limit: {last}")
            out.update({"seconds": secs, "aps": n / secs, "stats": last})
            # where the 2 cores went: CPU per article of each process (tree), and of this script
            cpu1, self1 = process_cpu(roots), os.times()
            zero = (0.0, 0.0)
            split = {role: ((u - cpu0.get(role, zero)[0]) * 1e6 / n, (s - cpu0.get(role, zero)[1]) * 1e6 / n)
                     for role, (u, s) in cpu1.items()}
            split["load generator"] = ((self1.user - self0.user) * 1e6 / n, (self1.system - self0.system) * 1e6 / n)
            out["cpu_us_per_article"] = {k: round(u + s, 1) for k, (u, s) in split.items()}
            out["cpu_us_per_article_user_system"] = {k: [round(u, 1), round(s, 1)] for k, (u, s) in split.items()}
            log("e2e: CPU per article (user + system): "
                + ", ".join(f"{k} {u:.0f} + {s:.0f} us" for k, (u, s) in sorted(split.items()))
                + f"; total {sum(u + s for u, s in split.values()):.0f} us over {secs:.0f} s of wall time")
            log(f"e2e: {n} articles in {secs:.1f}s = {n / secs:.0f} a/s (posting took {out['post_seconds']:.1f}s); "
                f"{last['clusters_with_duplicates']} clusters with duplicates, {last['queue']['failed']} failed")
            # what Redis spent its time on; a command run by a script counts under its own name too,
            # so evalsha includes them
            stats = r.info("commandstats")
            top = sorted(((k.removeprefix("cmdstat_"), v["calls"], v["usec"]) for k, v in stats.items()),
                         key=lambda t: -t[2])
            out["redis_commands_us_per_article"] = {name: round(usec / n, 1) for name, _, usec in top[:20]}
            log("e2e: Redis time per article by command (evalsha includes what the scripts run): "
                + ", ".join(f"{name} {usec / n:.0f} us" for name, _, usec in top[:8]))
            # forks during the run: AOF rewrites (and saves) compete with the service for the cores
            out["redis_forks"] = int(r.info("stats").get("total_forks", 0))
            log(f"e2e: Redis forked {out['redis_forks']} times (AOF rewrites) during the run")
            out["bytes_per_article_total"] = (used_memory(r) - mem0) / n
            out["used_memory_before"], out["used_memory_after"] = mem0, used_memory(r)
            out["check"] = run_check(port, corpus, n, rps, check_seconds)
            service.stop()
            out.update(index_memory(r, n, time.monotonic() + 600))
            out["cluster_sizes"] = cluster_sizes(r)
            log(f"memory: {out['bytes_per_article_index']:.0f} B/article index, "
                f"{out['bytes_per_article_total']:.0f} B/article total")
            r.close()
    finally:
        if service is not None:
            service.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ====================================================================== report


COLUMNS = ("articles", "baseline a/s (precomputed sigs)", "baseline a/s (with sigs)", "engine a/s",
           "engine a/s (N processes)", "end-to-end a/s", "e2e / baseline (a)", "e2e / baseline (b)",
           "check p50 ms", "check p99 ms",
           "Redis B/article (index)", "Redis B/article (total)", "baseline B/article")


def fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def row_of(n: int, base: dict[str, Any], eng: dict[str, Any], eng_n: dict[str, Any], e2e: dict[str, Any]
           ) -> dict[str, Any]:
    ba, bb = base["a"]["aps"], base["b"]["aps"]
    ea = e2e.get("aps")
    return {"articles": n, "baseline_aps_precomputed": ba, "baseline_aps_with_sigs": bb, "engine_aps": eng.get("aps"),
            "engine_aps_processes": eng_n.get("aps"), "engine_processes": eng_n.get("processes"),
            "e2e_aps": ea, "ratio_e2e_baseline_a": ea / ba if ea else None,
            "ratio_e2e_baseline_b": ea / bb if ea else None,
            "check_p50_ms": e2e.get("check", {}).get("p50_ms"), "check_p99_ms": e2e.get("check", {}).get("p99_ms"),
            "bytes_per_article_index": e2e.get("bytes_per_article_index"),
            "bytes_per_article_total": e2e.get("bytes_per_article_total"),
            "baseline_bytes_per_article": base.get("bytes_per_article")}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---:" for _ in COLUMNS) + "|"]
    for r in rows:
        cells = [fmt(r["articles"]), fmt(r["baseline_aps_precomputed"]), fmt(r["baseline_aps_with_sigs"]),
                 fmt(r["engine_aps"]), fmt(r["engine_aps_processes"]), fmt(r["e2e_aps"]),
                 fmt(r["ratio_e2e_baseline_a"], 2),
                 fmt(r["ratio_e2e_baseline_b"], 2), fmt(r["check_p50_ms"], 1), fmt(r["check_p99_ms"], 1),
                 fmt(r["bytes_per_article_index"]), fmt(r["bytes_per_article_total"]),
                 fmt(r["baseline_bytes_per_article"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False)
        return res.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--articles", type=int, default=None,
                   help="scale when --scales is not given (default: --scales 10000,100000)")
    p.add_argument("--scales", default=None, help="comma-separated article counts (default 10000,100000)")
    p.add_argument("--workers", type=int, default=2, help="queue workers for the end-to-end run (default 2)")
    p.add_argument("--check-rps", type=float, default=50.0, help="POST /v1/check requests per second (default 50)")
    p.add_argument("--check-seconds", type=float, default=20.0, help="duration of the check run (default 20)")
    p.add_argument("--synthetic", action="store_true", help="synthetic articles only (no ../shared/data)")
    p.add_argument("--baseline-sample", type=int, default=2000, help="articles for the baseline (default 2000)")
    p.add_argument("--post-threads", type=int, default=4, help="client threads POSTing batches (default 4)")
    p.add_argument("--prebuild-limit", type=int, default=200_000,
                   help="build request bodies before the clock up to this many articles (default 200000; "
                        "about 4 KB of memory each); beyond it they are generated while posting")
    p.add_argument("--skip-engine", action="store_true", help="skip the engine-alone measurements")
    p.add_argument("--engine-processes", type=int, default=os.cpu_count() or 1,
                   help="the engine is also timed with this many worker processes sharing the queue "
                        "(default: the CPU count; below 2: not measured)")
    p.add_argument("--no-aof", action="store_true",
                   help="end to end on a Redis without its append-only file (diagnosis only: not durable)")
    p.add_argument("--set", action="append", default=[], metavar="NEWSDEDUP_X=VALUE",
                   help="a setting for the end-to-end service (repeatable; the service otherwise runs on "
                        "defaults: NEWSDEDUP_* in this shell is not passed on)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds allowed per step (default: 600 + 20 ms per article)")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="JSON results file")
    args = p.parse_args(argv)
    raw = args.scales or (str(args.articles) if args.articles else "10000,100000")
    try:
        args.scale_list = [int(s.replace("_", "")) for s in raw.split(",") if s.strip()]
    except ValueError:
        p.error(f"--scales {raw!r}: give comma-separated whole numbers, e.g. 10000,100000")
    if not args.scale_list or min(args.scale_list) < 1:
        p.error("--scales: every scale must be at least 1")
    args.settings = {}
    for item in args.set:
        name, eq, value = item.partition("=")
        if not eq or not name.startswith("NEWSDEDUP_"):
            p.error(f"--set {item!r}: give NEWSDEDUP_NAME=VALUE, e.g. --set NEWSDEDUP_WORKER_BATCH=128")
        args.settings[name] = value
    if args.check_rps <= 0 or args.check_seconds <= 0 or args.workers < 1 or args.post_threads < 1:
        p.error("--check-rps, --check-seconds, --workers and --post-threads must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install_exit_signals()
    t_start = time.monotonic()
    corpus = Corpus.build(synthetic_only=args.synthetic)
    log(f"corpus: {len(corpus.real)} real articles" + ("" if corpus.real else " (synthetic only)"))
    scales: list[int] = args.scale_list
    if max(scales) > 200_000:
        log(f"note: {max(scales):,} articles take a long time here (roughly articles / engine a/s for each of the "
            "engine and end-to-end steps, plus ~0.35 ms per synthetic article generated per pass)")

    def limit(n: int) -> float:
        return float(args.time_limit) if args.time_limit else 600.0 + 0.02 * n

    sample = min(args.baseline_sample, max(scales))
    baseline = run_baseline(corpus.range(0, sample), limit(sample))
    rows: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    results: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(), "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "args": {k: (str(v) if isinstance(v, Path) else v)
                                                                         for k, v in vars(args).items()},
        "baseline": baseline, "rows": rows, "details": details,
    }
    prev_aps: float | None = None
    for n in scales:
        if prev_aps:
            log(f"scale {n:,} ({corpus.describe(n)}): expect roughly {2 * n / prev_aps / 60:.0f} min")
        else:
            log(f"scale {n:,} ({corpus.describe(n)})")
        eng: dict[str, Any] = {} if args.skip_engine else run_engine(corpus, n, limit(n))
        eng_n: dict[str, Any] = ({} if args.skip_engine or args.engine_processes < 2
                                 else run_engine(corpus, n, limit(n), processes=args.engine_processes))
        e2e = run_e2e(corpus, n, args.workers, args.post_threads, args.check_rps, args.check_seconds, limit(n),
                      args.prebuild_limit, appendonly=not args.no_aof, settings=args.settings)
        rows.append(row_of(n, baseline, eng, eng_n, e2e))
        details.append({"articles": n, "corpus": corpus.describe(n), "engine": eng, "engine_processes": eng_n,
                         "e2e": e2e})
        prev_aps = min(x for x in (eng.get("aps"), e2e.get("aps")) if x) if (eng.get("aps") or e2e.get("aps")) \
            else None
    results["loadavg_end"] = os.getloadavg()
    results["seconds"] = time.monotonic() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(table(rows))
    print()
    print(f"- baseline: datasketch MinHashLSH(threshold=0.8, num_perm=128) on Redis, query+insert per article, "
          f"single thread, measured once on the first {sample:,} articles (same value in every row)")
    print(f"- engine: one process draining the queue (worker batch {Config().worker_batch}), then "
          f"{args.engine_processes} processes sharing it (N processes); end to end: "
          f"`newsdedup up --workers {args.workers}` ({os.cpu_count()} CPUs shared by API, workers, Redis "
          f"and this client), batches of {POST_BATCH} from {args.post_threads} threads")
    print(f"- check: {args.check_rps:g} req/s open loop for {args.check_seconds:g} s, 80% indexed texts, "
          "latency from the scheduled send time")
    print("- corpus: " + "; ".join(f"{n:,}: {corpus.describe(n)}" for n in scales))
    la = results["loadavg_start"]
    print(f"- load average at start {la[0]:.2f}; total {results['seconds'] / 60:.1f} min; details in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
