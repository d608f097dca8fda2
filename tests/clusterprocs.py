"""Helpers for the end-to-end tests on a real local Redis Cluster (tests/test_cluster_e2e.py).

A deployment (API + workers as processes, tests/procs.py) pointed at a cluster or at one node,
a client thread that keeps posting and records every answer, slot and node look-ups, slot moves
with ``redis-cli --cluster reshard`` and the partition read back with ``newsdedup export``.
Synchronisation is polling with deadlines (procs.wait_until), never sleeping.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import threading
import time
import urllib.error
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.cluster import RedisCluster as ClusterClient

from newsdedup import keys
from newsdedup.ops.redis_cluster import RedisCluster
from newsdedup.ops.redis_server import LOOPBACK, RedisServer, free_port
from tests.procs import (
    PYTHON,
    Corpus,
    Http,
    Proc,
    Procs,
    as_partition,
    base_env,
    tail,
    wait_http_ready,
    wait_until,
    wait_worker_ready,
)

# words of the Redis errors that must never reach a client (they mean a script or a MULTI spans
# slots, or a redirection / slot move leaked through the client instead of being followed)
SLOT_ERRORS = ("CROSSSLOT", "MOVED", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "Traceback")


def slot_of(client: ClusterClient, key: str) -> int:
    return int(client.keyslot(key))


def slot_map(cluster: RedisCluster, node: RedisServer | None = None) -> dict[int, int]:
    """slot -> port of the master serving it, as ``node`` (default: the first node that answers) sees it
    (CLUSTER SLOTS)."""
    for asked in [node] if node is not None else cluster.nodes:
        if not asked.running:
            continue
        c = redis.Redis(host=LOOPBACK, port=asked.port, socket_timeout=2.0)
        try:
            rows = c.execute_command("CLUSTER", "SLOTS")
        except (redis.ConnectionError, redis.TimeoutError):
            continue
        finally:
            c.close()
        out = {}
        for lo, hi, master, *_ in rows:
            for s in range(int(lo), int(hi) + 1):
                out[s] = int(master[1])
        return out
    raise AssertionError("no cluster node answers CLUSTER SLOTS")


def master_of_slot(cluster: RedisCluster, slot: int) -> RedisServer:
    return cluster.node_at(slot_map(cluster)[slot])


def node_id(cluster: RedisCluster, node: RedisServer) -> str:
    seen = next(v for v in (cluster.view(n) for n in cluster.nodes) if v)
    return next(i.node_id for i in seen if i.port == node.port)


def node_client(node: RedisServer) -> redis.Redis:
    """A plain client on one node (XINFO / CLIENT LIST of the queue's master)."""
    return redis.Redis(host=LOOPBACK, port=node.port, socket_timeout=5.0)


def reshard(cluster: RedisCluster, slot: int, to: RedisServer, timeout: float = 150.0) -> int:
    """Move ``slot`` (and the slots below it on its master: redis-cli moves a master's lowest slots first)
    to ``to`` with ``redis-cli --cluster reshard``; returns how many slots moved."""
    owner = master_of_slot(cluster, slot)
    assert owner.port != to.port, "the slot is already there"
    mine = sorted(s for s, p in slot_map(cluster).items() if p == owner.port)
    count = mine.index(slot) + 1
    assert cluster.redis_cli is not None
    argv = [cluster.redis_cli, "--cluster", "reshard", f"{LOOPBACK}:{to.port}",
            "--cluster-from", node_id(cluster, owner), "--cluster-to", node_id(cluster, to),
            "--cluster-slots", str(count), "--cluster-yes"]
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"redis-cli exit {res.returncode}:\n{tail(res.stdout, 8)}\n{tail(res.stderr, 20)}"
    # the other nodes learn the new owner by gossip: wait until every running node says so
    wait_until(lambda: all(slot_map(cluster, n)[slot] == to.port for n in cluster.nodes if n.running), 30,
               message=f"every node to see slot {slot} on port {to.port}")
    return count


@dataclass
class Deployment:
    """One API (gunicorn) and its workers against one Redis (a node or a cluster)."""

    url: str
    http: Http
    api: Proc
    workers: list[Proc]

    def alive(self) -> bool:
        """Raises if a process died; True otherwise (for predicates)."""
        for p in (self.api, *self.workers):
            p.check_alive()
        return True

    def queue_left(self) -> int | None:
        """Articles queued or in flight (None while the API cannot tell: a 503 during a failover)."""
        try:
            resp = self.http.get("/v1/stats", timeout=self.http.timeout)
        except (urllib.error.URLError, OSError):
            return None
        if resp.status != 200:
            assert resp.status == 503, (resp.status, resp.body[:500])
            return None
        q = resp.json["queue"]
        return int(q["pending"]) + int(q["in_flight"])

    def drain(self, timeout: float) -> None:
        wait_until(lambda: self.alive() and self.queue_left() == 0, timeout, interval=0.2,
                   message="the workers to process every queued article")

    def logs(self) -> str:
        return "\n".join(p.log() for p in (self.api, *self.workers))


def deploy(procs: Procs, url: str, workers: int, threads: int = 8, ready: redis.Redis | None = None,
           **settings: Any) -> Deployment:
    """Start the API and ``workers`` workers on ``url``; with ``ready`` (a client on the queue's node) wait
    until every worker waits on the queue."""
    port = free_port()
    api = procs.serve(url, port, processes=1, threads=threads, **settings)
    ws = [procs.worker(url, f"worker-{i}", **settings) for i in range(workers)]
    http = Http(f"http://127.0.0.1:{port}", timeout=60)
    wait_http_ready(http, api, timeout=90)
    if ready is not None:
        for w in ws:
            wait_worker_ready(ready, w, timeout=60)
    return Deployment(url, http, api, ws)


def post_all(http: Http, articles: list[dict[str, Any]], batch: int = 100) -> None:
    for i in range(0, len(articles), batch):
        part = articles[i:i + batch]
        resp = http.post("/v1/articles", {"articles": part})
        assert resp.status == 202, (resp.status, resp.body[:500])
        assert [a["id"] for a in resp.json["articles"]] == [a["id"] for a in part]


def exported(procs: Procs, url: str, out: Path) -> dict[str, str]:
    """article id -> cluster id, from ``newsdedup export --min-size 1`` (fails if an article is listed twice)."""
    p = procs.start("export", [PYTHON, "-m", "newsdedup.cli", "export", "--min-size", "1", "--out", str(out)],
                    base_env(REDIS_URL=url))
    assert p.wait(180) == 0, tail(p.log())
    cluster_of: dict[str, str] = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        assert rec["size"] == len(rec["members"]), rec
        for m in rec["members"]:
            assert m["id"] not in cluster_of, f"{m['id']} is in {cluster_of[m['id']]} and {rec['cluster_id']}"
            cluster_of[m["id"]] = rec["cluster_id"]
    return cluster_of


def pairs(partition: Iterable[Iterable[str]]) -> set[tuple[str, str]]:
    """Every pair of articles put together by a partition."""
    out = set()
    for group in partition:
        g = sorted(group)
        out.update((a, b) for i, a in enumerate(g) for b in g[i + 1:])
    return out


def windowed(articles: list[dict[str, Any]], window: int, seed: int) -> list[dict[str, Any]]:
    """Articles of a ``together`` corpus shuffled within consecutive windows: a story's copies arrive
    apart (other stories between them) yet close, so a feed cut anywhere leaves few stories incomplete."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(0, len(articles), window):
        part = articles[i:i + window]
        rng.shuffle(part)
        out.extend(part)
    return out


def assert_partition_of_accepted(found: dict[str, str], corpus: Corpus, accepted: set[str]) -> None:
    """Every story whose articles were all accepted is one cluster, alone; no cluster mixes stories.

    (Copies of a story whose original was not accepted need not meet: a truncated and an edited copy
    are less alike than each is to the original, so one node keeps them apart too.)
    """
    stories: dict[str, set[str]] = {}
    for i, s in corpus.story.items():
        stories.setdefault(s, set()).add(i)
    complete = {frozenset(g) for g in stories.values() if g <= accepted}
    assert len(complete) * 2 > len({corpus.story[i] for i in accepted}), "most accepted stories are incomplete"
    whole = set().union(*complete)
    groups = as_partition(found)
    mixed = [sorted(g) for g in groups if len({corpus.story[i] for i in g}) > 1]
    assert not mixed, f"clusters mixing stories: {mixed[:10]}"
    mine = {g for g in groups if g & whole}
    assert mine == complete, (f"found: {sorted(map(sorted, mine - complete))[:10]} | "
                              f"planted: {sorted(map(sorted, complete - mine))[:10]}")


def not_done(http: Http, ids: Iterable[str]) -> dict[str, Any]:
    """The ids whose GET /v1/articles/{id} does not say done, with what it says."""
    out = {}
    for i in ids:
        resp = http.get("/v1/articles/" + quote(i, safe=""))
        if resp.status != 200 or resp.json["status"] != "done":
            out[i] = (resp.status, resp.json)
    return out


@dataclass
class Answer:
    at: float  # time.monotonic() when the request was sent
    method: str
    status: int
    seconds: float
    retry_after: str | None
    body: bytes


OK_STATUS = {"POST": 202, "GET": 200}


@dataclass
class Poster:
    """A client thread that posts batches one after the other, ``pace`` seconds apart (a steady feed, so
    that the articles last through a failover), as a client honouring 503 + Retry-After would: a batch
    answered 503 is posted again (re-posting the same content is idempotent). After each POST it reads
    back one accepted article (GET), so reads meet the outage too."""

    http: Http
    batches: list[list[dict[str, Any]]]
    pace: float = 0.1
    answers: list[Answer] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    sending_since: float | None = None  # when the request in flight was sent

    def start(self) -> Poster:
        self.thread = threading.Thread(target=self._run, name="poster", daemon=True)
        self.thread.start()
        return self

    def _send(self, method: str, path: str, body: Any = None) -> int:
        """One request, recorded; its status (0: no answer, the connection failed or timed out)."""
        t0 = self.sending_since = time.monotonic()
        try:
            resp = self.http.request(method, path, body)
        except (urllib.error.URLError, OSError) as e:  # a hang past the client's timeout or a broken API
            self.errors.append(f"{method} {path}: {type(e).__name__}: {e}")
            self.answers.append(Answer(t0, method, 0, time.monotonic() - t0, None, str(e).encode()))
            return 0
        finally:
            self.sending_since = None
        self.answers.append(Answer(t0, method, resp.status, resp.seconds, resp.headers.get("Retry-After"),
                                   resp.body))
        if resp.status not in (OK_STATUS[method], 503):
            self.errors.append(f"{method} {path}: {resp.status}: {resp.body[:300]!r}")
        return resp.status

    def _run(self) -> None:
        todo = list(self.batches)
        while todo and not self.stop.is_set():
            batch = todo[0]
            status = self._send("POST", "/v1/articles", {"articles": batch})
            if status == 202:
                self.accepted.extend(a["id"] for a in batch)
            if status != 503:
                todo.pop(0)
            if self.accepted:
                self._send("GET", "/v1/articles/" + quote(self.accepted[len(self.answers) % len(self.accepted)],
                                                          safe=""))
            # the feed's rate, or a polite client's pause before it retries a 503 (not synchronisation)
            self.stop.wait(self.pace)

    def summary(self, since: float = 0.0) -> str:
        """Answers sent after ``since``: (status, seconds, first bytes of a non-202 body), for a failure message."""
        return "; ".join(f"{a.method} {a.status} {a.seconds:.2f}s" + ("" if a.status == OK_STATUS[a.method]
                                                                        else f" {a.body[:160]!r}")
                         for a in self.answers if a.at >= since)

    def accepted_count(self, bound: float | None = None) -> int:
        """Articles accepted so far; with ``bound``, raises when the request in flight has waited longer
        (so a hanging API fails the test at once, not at the end of a long wait), and when every batch
        has been posted (the feed ran dry: the test would wait for nothing)."""
        assert self.thread is None or self.thread.is_alive(), "the poster has posted everything it had"
        since = self.sending_since
        if bound is not None and since is not None and time.monotonic() - since > bound:
            raise AssertionError(f"a POST has waited {time.monotonic() - since:.1f}s for its answer (bound {bound}s)")
        return len(self.accepted)

    def finish(self, timeout: float = 120.0) -> None:
        """Stop posting (after the batch in flight) and wait for the thread."""
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the posting thread hangs"

    def check(self, bound: float) -> None:
        """Every answer was a 202 (POST) or 200 (GET), or a 503 with Retry-After; none took longer than
        ``bound`` seconds; no Redis slot error leaked into a body."""
        assert not self.errors, self.errors[:5]
        bad = [a for a in self.answers
               if a.status not in (OK_STATUS[a.method], 503) or (a.status == 503 and not a.retry_after)]
        assert not bad, [(a.method, a.status, a.retry_after, a.body[:300]) for a in bad[:5]]
        slow = [round(a.seconds, 2) for a in self.answers if a.seconds > bound]
        assert not slow, f"answers slower than {bound:.1f}s: {slow}"
        leaked = [a.body[:300] for a in self.answers if any(w.encode() in a.body for w in SLOT_ERRORS)]
        assert not leaked, leaked[:5]


def no_slot_errors(text: str) -> list[str]:
    """Lines of a process log naming a CROSSSLOT error (always a bug in the schema) or a traceback."""
    return [ln for ln in text.splitlines() if "CROSSSLOT" in ln or "Traceback" in ln]


def queue_node(cluster: RedisCluster, client: ClusterClient) -> RedisServer:
    return master_of_slot(cluster, slot_of(client, keys.QUEUE))


def restore(cluster: RedisCluster, timeout: float = 90.0) -> None:
    """Bring back killed nodes (they rejoin as replicas) and wait for a healthy 3+3 cluster."""
    cluster.restart()
    cluster.wait_healthy(timeout)


def flush(client: ClusterClient) -> None:
    with contextlib.suppress(redis.exceptions.ResponseError):
        client.flushall(target_nodes=ClusterClient.PRIMARIES)
