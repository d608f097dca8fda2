"""The queue consumer: reads the stream in batches, reclaims abandoned work, dead-letters poison.

Delivery is at-least-once (Redis Streams consumer group); the engine's writes
are idempotent and checked, so the effect is exactly once. An entry that was
delivered ``max_attempts`` times without being acknowledged (its worker
crashed, or processing raised every time) is moved to the dead-letter stream.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.engine.engine import Engine
from newsdedup.engine.jobs import Job
from newsdedup.errors import IndexMismatch, NewsDedupError
from newsdedup.retention.sweeper import Sweeper
from newsdedup.storage.queue import ensure_group
from newsdedup.storage.records import decoded
from newsdedup.storage.redis_client import Client
from newsdedup.storage.txn import REDIS_DOWN, Txn, transient

log = logging.getLogger(__name__)

Entry = tuple[bytes, int, int, str]  # stream entry id, article number, version, request id


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def tune_redis(client: Any) -> None:
    """Raise the small-hash encoding limits when they are lower (best effort; never lowers them).

    CONFIG is per server: on a cluster every node is tuned, replicas too (one may become a master).
    """
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():
            try:
                tune_redis(client.get_redis_connection(node))
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("cannot tune Redis node %s now (%s); it keeps its settings", node.name, exc)
        return
    for name, want in keys.HASH_ENCODING.items():
        try:
            current = client.config_get(name)
            value = next(iter(current.values()), None) if current else None
            if value is not None and int(value) < want:
                client.config_set(name, want)
                log.info("raised Redis %s from %s to %s", name, value, want)
        except redis.exceptions.ResponseError as exc:  # managed Redis: CONFIG is often disabled
            log.warning("cannot raise Redis %s to %s (%s); article hashes will use more memory", name, want, exc)
            return


def _parse(raw: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> tuple[list[Entry], list[bytes]]:
    good, bad = [], []
    for eid, fields in raw:
        try:
            rid = fields.get(b"rid", b"").decode("utf-8", "replace")
            good.append((eid, int(fields[b"n"]), int(fields[b"ver"]), rid))
        except (KeyError, ValueError, TypeError):
            bad.append(eid)
    return good, bad


class Worker:
    def __init__(self, client: Client, config: Config, name: str | None = None) -> None:
        self.r: Any = client  # a bytes client; redis-py types replies as unions over decode modes
        self.cfg = config
        self.name = name or consumer_name()
        self.engine = Engine(client, config)
        self._last_claim = 0.0
        self._group_ready = False
        self.sweeper = Sweeper(client, config, name=self.name)

    # ------------------------------------------------------------------ one step

    def step(self, block_ms: int | None = 1000) -> int:
        """Handle one batch: abandoned entries first, then new ones. Returns entries handled."""
        if not self._group_ready:
            ensure_group(self.r)
            tune_redis(self.r)
            self.engine.index.ensure_index(recheck=True)
            self._group_ready = True
        claimed = self._claim_abandoned()
        if claimed:
            return self._handle(claimed)
        try:
            resp = self.r.xreadgroup(keys.GROUP, self.name, {keys.QUEUE: ">"}, count=self.cfg.worker_batch,
                                     block=block_ms)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was lost (Redis restarted without persistence)
                self._group_ready = False
                return 0
            raise
        if not resp:
            return 0
        return self._handle(resp[0][1])

    def _claim_abandoned(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Take over entries whose worker went silent; dead-letter those tried too often.

        Entries abandoned once are retried together. An entry that was already
        retried may be the one that kills its worker, so it is retried alone:
        a crashing article must not use up the attempts of its batch-mates.
        """
        now = time.monotonic()
        if now - self._last_claim < max(0.05, self.cfg.visibility_timeout / 4):
            return []
        self._last_claim = now
        idle_ms = int(self.cfg.visibility_timeout * 1000)
        pending = self.r.xpending_range(keys.QUEUE, keys.GROUP, min="-", max="+",
                                        count=self.cfg.worker_batch * 4, idle=idle_ms)
        if not pending:
            return []
        attempts = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        for eid, n in attempts.items():
            if n >= self.cfg.max_attempts:
                self._dead_letter(eid, n)
        live = [eid for eid, n in attempts.items() if n < self.cfg.max_attempts]
        once = [eid for eid in live if attempts[eid] <= 1]
        ids = once[: self.cfg.worker_batch] if once else live[:1]
        if not ids:
            return []
        claimed = self.r.xclaim(keys.QUEUE, keys.GROUP, self.name, idle_ms, ids)
        entries = [e for e in claimed if e is not None and e[1] is not None]
        got = {e[0] for e in entries}
        for eid in ids:  # entries deleted from the stream while pending: nothing left to do
            if eid not in got and self.r.xrange(keys.QUEUE, eid, eid, count=1) == []:
                self._ack(eid)
        return entries

    def _ack(self, eid: bytes) -> None:
        """Acknowledge and delete an entry: the stream only holds work not yet done (one script, one slot)."""
        self.engine.scripts.run(Txn().xack(keys.QUEUE, keys.GROUP, eid))

    def _dead_letter(self, eid: bytes, attempts: int) -> None:
        rows = self.r.xrange(keys.QUEUE, eid, eid, count=1)
        try:
            fields = rows[0][1]
            n, ver = int(fields[b"n"]), int(fields[b"ver"])
        except (IndexError, KeyError, ValueError, TypeError):
            self._ack(eid)
            return
        last, article_id = self.r.hmget(keys.article(n), "error", "id")
        reason = f"gave up after {attempts} attempts" + (f": {last.decode()}" if last else
                                                        " (the worker handling it stopped responding)")
        rid = fields.get(b"rid", b"").decode("utf-8", "replace")
        aid = article_id.decode() if article_id else ""
        log.warning("dead-lettering article %s: %s", n, reason,
                    extra={"article_id": aid, "article_n": n, "request_id": rid})
        if not self.engine.scripts.run(self.engine.fail(Txn(), eid, n, ver, reason, attempts, article_id=aid,
                                                        rid=rid)):
            self._ack(eid)  # the article moved on; this entry is stale

    def _handle(self, raw: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> int:
        entries, bad = _parse(raw)
        for eid in bad:
            log.error("dropping malformed queue entry %r", eid)
            self._ack(eid)
        if not entries:
            return len(bad)
        try:
            self._log_jobs(self.engine.process(entries))
        except Exception as exc:
            if transient(exc):  # storage away or too few replicas: the entries stay pending, not failed
                raise
            if len(entries) == 1:
                self._record_failure(entries[0], exc)
            else:
                log.warning("batch of %d failed (%s); retrying one by one", len(entries), exc)
                for e in entries:
                    try:
                        self._log_jobs(self.engine.process([e]))
                    except Exception as one:
                        if transient(one):
                            raise
                        self._record_failure(e, one)
        return len(raw)

    @staticmethod
    def _log_jobs(jobs: Sequence[Job]) -> None:
        """One line per article, carrying the request id that queued it (never its text)."""
        for j in jobs:
            aid = decoded(j.record.get(b"id")) or ""
            extra = {"article_id": aid, "article_n": j.n, "request_id": j.rid}
            if j.error is not None:
                log.warning("article %r failed: %s", aid, j.error, extra=extra)
            elif j.skip is None:
                log.info("article %r processed", aid, extra=extra)

    def _record_failure(self, entry: Entry, exc: Exception) -> None:
        """Leave the entry pending (it is retried after the visibility timeout) and keep the reason."""
        eid, n, ver, rid = entry
        msg = exc.message if isinstance(exc, NewsDedupError) else f"{type(exc).__name__}: {exc}"
        extra = {"article_n": n, "request_id": rid}
        log.exception("article %s failed: %s", n, msg, extra=extra) if not isinstance(exc, NewsDedupError) else \
            log.warning("article %s failed: %s", n, msg, extra=extra)
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(keys.article(n), "attempts", 1)
        pipe.hset(keys.article(n), "error", msg[:2000])
        pipe.execute()

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; reconnect with backoff while Redis is away."""
        failures = 0
        log.info("worker %s consuming %s", self.name, keys.QUEUE)
        while not stop.is_set():
            try:
                self.step(block_ms=1000)
                self.sweeper.tick()  # returns at once unless a sweep of expired articles is due
                failures = 0
            except IndexMismatch as exc:  # not fixable by retrying soon: say so, then wait for a fix
                failures += 1
                log.error("%s", exc.message)
                self._group_ready = False
                stop.wait(min(60.0, 5.0 * failures))
            except Exception as exc:
                if transient(exc):  # Redis or a slot's master away, too few replicas: back off, entries stay pending
                    failures += 1
                    delay = min(10.0, 0.2 * 2 ** min(failures, 6)) * (0.5 + random.random() / 2)
                    log.warning("redis unavailable (%s); retrying in %.1fs", exc, delay)
                    self._group_ready = False
                    stop.wait(delay)
                elif isinstance(exc, redis.exceptions.ResponseError):
                    failures += 1
                    log.warning("redis error (%s); retrying", exc)
                    stop.wait(min(5.0, 0.2 * failures))
                else:
                    raise
        with contextlib.suppress(*REDIS_DOWN):
            self.sweeper.release()
        log.info("worker %s stopped", self.name)


def process_available(client: Client, config: Config, name: str = "inline") -> int:
    """Process everything currently queued, in this thread (tests, eval); returns entries handled."""
    w = Worker(client, config.replace(visibility_timeout=min(config.visibility_timeout, 0.1)), name=name)
    total = 0
    idle = 0
    while idle < 2:
        w._last_claim = 0.0
        got = w.step(block_ms=None)
        total += got
        idle = idle + 1 if got == 0 else 0
    return total


def run_forever(client: Client, config: Config, stop: threading.Event | None = None,
                **kw: Any) -> None:
    Worker(client, config, **kw).run(stop or threading.Event())
