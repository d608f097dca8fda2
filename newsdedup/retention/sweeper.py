"""The retention window: which articles are expired, and the sweeper that removes them.

Every stored article has an entry in the time index ``nd:expiry`` (a sorted set scored by its
retention time, written in the submission transaction), so expired articles are found by a range
read, never by scanning keys. The sweeper removes them in small atomic batches through the one
removal path (:mod:`newsdedup.retention.removal`), sized so that each call takes about
``CALL_SECONDS`` (:func:`next_batch`), so no Redis call blocks for long at any index size and a
sweeper killed between two batches leaves nothing half removed: the next sweep goes on from the
index.

Sweeping runs inside the queue workers: :meth:`Sweeper.tick` is called once per loop iteration and
returns at once unless a sweep is due. One worker at a time sweeps, under a lease in Redis (SET NX
PX with a random token, renewed while it sweeps, released by compare-and-delete) that expires by
itself if its holder dies. A long sweep is done in slices of at most ``SLICE_SECONDS`` between two
queue batches, so the worker that sweeps keeps consuming the queue too.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.commands.core import Script

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.errors import NewsDedupError
from newsdedup.retention.removal import Removal
from newsdedup.storage.records import now_ms
from newsdedup.storage.redis_client import Client
from newsdedup.storage.scripts import source

log = logging.getLogger(__name__)

BATCH = 20  # articles in the first atomic removal of a sweeper; later ones adapt (see Sweeper.batch)
MAX_BATCH = 200
CALL_SECONDS = 0.005  # what the sweeper aims one removal call at (the issue: "a few milliseconds")
SLICE_SECONDS = 2.0  # longest a worker sweeps before it goes back to the queue (other workers go on)


def published_ms(published_at: str | None) -> int | None:
    """An RFC 3339 time (validated on submission) in ms since 1970; None when absent or unreadable."""
    if not published_at:
        return None
    try:
        t = datetime.fromisoformat(published_at.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def retention_ms(config: Config, ingested_ms: int, published_at: str | None) -> int:
    """The time an article's window counts from (its score in the time index).

    Ingested time, unless NEWSDEDUP_RETENTION_BY=published and the article has a plausible
    published_at: none, or one before 1970, falls back to the ingested time, and one later than the
    ingested time (a clock or time-zone error) counts as the ingested time.
    """
    if config.retention_by != "published":
        return ingested_ms
    pub = published_ms(published_at)
    if pub is None or pub < 0:
        return ingested_ms
    return min(pub, ingested_ms)


def cutoff_ms(config: Config, now: int | None = None) -> int:
    """Articles scored at or before this are expired."""
    return (now_ms() if now is None else now) - int(config.retention * 1000)


def next_batch(batch: int, removed: int, seconds: float) -> int:
    """The next removal batch: sized so that a call takes about CALL_SECONDS at the rate just seen.

    A call's cost is about linear in its articles (their band entries, bench/removal_cost.py); the
    batch moves halfway towards the size that fits, so one call stretched by machine load does not
    swing it, and stays within [1, MAX_BATCH]. It grows by half at most per call: a quick call may
    have been one of articles already gone (cheap), not a sign that many more would fit.
    """
    if removed <= 0 or seconds <= 0:
        return batch
    fits = min(CALL_SECONDS * removed / seconds, 2 * batch)
    return max(1, min(MAX_BATCH, round((batch + fits) / 2)))


@dataclass
class SweepResult:
    removed: int = 0
    batches: int = 0
    more: bool = False  # expired articles are left (the time budget ran out)


class Sweeper:
    """Removes expired articles; one instance per worker process (or per ``newsdedup sweep``)."""

    def __init__(self, client: Client, config: Config, name: str = "sweeper") -> None:
        self.r: Any = client
        self.cfg = config
        self.removal = Removal(client, config)
        self.token = f"{name}:{secrets.token_hex(8)}"
        self._renew: Script = client.register_script(source("lease_renew"))
        self._release: Script = client.register_script(source("lease_release"))
        self._due = 0.0
        self._holding = False
        self.batch = BATCH  # articles per removal call, adapted so that a call takes about CALL_SECONDS

    @property
    def lease_ms(self) -> int:
        """How long the lease outlives a silent holder: twice the interval, within [10 s, 60 s].

        Long enough that a holder busy with a queue batch between two slices keeps it; short enough
        that another worker takes over soon after the holder died.
        """
        return int(min(60.0, max(10.0, 2 * self.cfg.sweep_seconds)) * 1000)

    # ------------------------------------------------------------------ the hook in the worker loop

    def tick(self) -> int:
        """Sweep a slice if a sweep is due (called once per worker loop iteration); articles removed."""
        if self.cfg.retention <= 0 or time.monotonic() < self._due:
            return 0
        try:
            # go on under the lease held, else take it if there is work (it may have run out meanwhile)
            if not (self._holding and self.renew()) and not (self.expired_count(limit=1) and self.acquire()):
                self._done()
                return 0
            res = self.sweep(deadline=time.monotonic() + SLICE_SECONDS)
        except NewsDedupError as exc:  # articles that kept changing: try again at the next sweep
            log.warning("sweep stopped: %s", exc.message)
            self.release()
            self._done()
            return 0
        except BaseException:
            self._holding = False  # the lease runs out by itself
            raise
        if res.more:
            self._due = 0.0  # go on at the next iteration, after the worker's next batch
        else:
            self.release()
            self._done()
        if res.removed:
            log.info("swept %d expired articles in %d batches%s", res.removed, res.batches,
                     "; more left" if res.more else "")
        return res.removed

    def _done(self) -> None:
        self._due = time.monotonic() + self.cfg.sweep_seconds

    # ------------------------------------------------------------------ the lease

    def acquire(self) -> bool:
        self._holding = bool(self.r.set(keys.SWEEP_LEASE, self.token, nx=True, px=self.lease_ms))
        return self._holding

    def renew(self) -> bool:
        self._holding = bool(self._renew(keys=[keys.SWEEP_LEASE], args=[self.token, self.lease_ms]))
        return self._holding

    def release(self) -> None:
        if self._holding:
            self._holding = False
            self._release(keys=[keys.SWEEP_LEASE], args=[self.token])

    # ------------------------------------------------------------------ sweeping

    def expired_count(self, limit: int | None = None) -> int:
        """Expired articles still stored (counting stops at ``limit``)."""
        if limit is not None:
            return len(self.expired(limit))
        return int(self.r.zcount(keys.EXPIRY, "-inf", cutoff_ms(self.cfg)))

    def expired(self, limit: int = BATCH) -> list[int]:
        """The oldest expired article numbers, at most ``limit``."""
        found = self.r.zrangebyscore(keys.EXPIRY, "-inf", cutoff_ms(self.cfg), start=0, num=limit)
        return [int(n) for n in found]

    def sweep_batch(self, limit: int | None = None) -> int:
        """Remove up to ``limit`` (default: :attr:`batch`) expired articles in one atomic call; how many
        were found (0: none left)."""
        found = self.expired(self.batch if limit is None else limit)
        if found:
            done = self.removal.remove(found, expired=True)
            if limit is None:
                self.batch = next_batch(self.batch, len(found), done.seconds)
        return len(found)

    def sweep(self, deadline: float | None = None) -> SweepResult:
        """Batches until nothing is expired or ``deadline`` (monotonic) passes; the caller holds the lease."""
        res = SweepResult()
        while True:
            got = self.sweep_batch()
            if not got:
                break
            res.removed += got
            res.batches += 1
            if deadline is not None and time.monotonic() >= deadline:
                res.more = True
                return res
            if res.batches % 20 == 0 and not self.renew():
                res.more = True  # the lease was lost (a stall longer than it): stop, take it again later
                return res
        # dead letters of articles that are gone: the stream ids are the times they were written
        self.r.xtrim(keys.DEAD, minid=cutoff_ms(self.cfg), approximate=False)
        return res
