"""The events feed: what happened to articles and clusters, in a capped Redis stream (``nd:events``).

Events are written by the same atomic transaction that makes them true (the
cluster transaction writes ``article.done`` and ``cluster.merged``, a failure
``article.failed``, a removal ``article.deleted`` or, by the retention sweeper,
``article.expired``), so each happens exactly once with its result. The stream
is capped at ``NEWSDEDUP_EVENTS_MAXLEN`` entries with approximate trimming
(``XADD MAXLEN ~``: Redis trims whole nodes, so the feed may hold somewhat more
than the cap, never fewer); a consumer that many events behind loses the oldest.

Cursors are the stream ids, urlsafe base64 so that clients treat them as opaque.
Readers block on Redis (``XREAD BLOCK``), never poll.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterable
from typing import Any

from newsdedup import keys
from newsdedup.errors import ValidationError
from newsdedup.storage.records import now_ms, rfc3339
from newsdedup.storage.txn import Txn

DONE, FAILED, DELETED, MERGED = "article.done", "article.failed", "article.deleted", "cluster.merged"
EXPIRED = "article.expired"  # removed by the retention sweeper
TYPES = (DONE, FAILED, DELETED, EXPIRED, MERGED)
FINISHED = frozenset({DONE, FAILED, DELETED, EXPIRED})  # an article's processing is over (for ?wait)
MAX_DUPLICATES = 50  # listed per article.done event (the strongest first)
MAX_WAIT = 30
_STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
START = "0-0"


def emit(txn: Txn, maxlen: int, kind: str, **data: Any) -> Txn:
    """Add an event to ``txn`` (so it is written if, and only if, the rest is)."""
    return txn.xadd(keys.EVENTS, {"type": kind, "at": now_ms(), "data": json.dumps(data, ensure_ascii=False)},
                    maxlen=maxlen)


def encode_cursor(stream_id: bytes | str) -> str:
    raw = stream_id if isinstance(stream_id, bytes) else stream_id.encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The stream id inside a cursor; a ValidationError (400 invalid_cursor) for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raw = ""
    if len(cursor) > 64 or not _STREAM_ID.match(raw):
        raise ValidationError("after is not a cursor this API returned; pass back next_cursor (or a cursor of "
                              "an event), or leave it out to start at the oldest event", field="after",
                              code="invalid_cursor")
    return raw


def _view(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    try:
        data = json.loads(fields.get(b"data") or b"{}")
    except ValueError:
        data = {}
    return {"cursor": encode_cursor(entry_id), "type": (fields.get(b"type") or b"").decode(),
            "at": rfc3339(fields.get(b"at")), **(data if isinstance(data, dict) else {})}


def last_id(r: Any) -> str:
    """The id of the newest event (``0-0`` when there is none): read before a write to wait for its events."""
    rows = r.xrevrange(keys.EVENTS, "+", "-", count=1)
    return rows[0][0].decode() if rows else START


def _block(r: Any, after: str, count: int, seconds: float, chunk: float) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XREAD BLOCK in chunks shorter than the client's socket timeout; [] when ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return []
        ms = max(1, int(min(left, chunk) * 1000))
        res = r.xread({keys.EVENTS: after}, count=count, block=ms)
        if res:
            return list(res[0][1])


def read(r: Any, after: str | None, limit: int, wait: float, chunk: float) -> dict[str, Any]:
    """A page of events after the cursor ``after`` (None: the oldest kept; "end": only new ones)."""
    if after is None:
        start = START
    elif after == "end":
        start = last_id(r)
    else:
        start = decode_cursor(after)
    rows = r.xrange(keys.EVENTS, "(" + start, "+", count=limit) if start != START else \
        r.xrange(keys.EVENTS, "-", "+", count=limit)
    if not rows and wait > 0:
        rows = _block(r, start, limit, wait, chunk)
    events = [_view(eid, fields) for eid, fields in rows]
    next_id = rows[-1][0] if rows else start
    return {"events": events, "next_cursor": encode_cursor(next_id)}


def wait_finished(r: Any, ids: Iterable[str], since: str, seconds: float, chunk: float) -> bool:
    """Block until every id has an article.done/failed/deleted event after ``since``; False on timeout."""
    todo = set(ids)
    after = since
    deadline = time.monotonic() + seconds
    while todo:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        rows = _block(r, after, 1000, left, chunk)
        for eid, fields in rows:
            after = eid.decode()
            if fields.get(b"type", b"").decode() in FINISHED:
                try:
                    todo.discard(json.loads(fields[b"data"])["id"])
                except (KeyError, ValueError, TypeError):
                    continue
    return True


def link_events(txn: Txn, maxlen: int, jobs: Iterable[Any], cluster_of: dict[int, str],
                members_after: dict[str, set[int]], members_before: dict[str, set[int]],
                merged_into: dict[str, str], ids_of: Any) -> tuple[int, int]:
    """article.done for every placed job and cluster.merged for clusters that fused, into the cluster txn.

    ``jobs`` are engine Jobs (n, record, edges, rid); ``ids_of(numbers)`` reads external ids.
    Returns (articles that are duplicates of an earlier one, merges) for the metrics.
    """
    jobs = list(jobs)
    placed = {j.n for j in jobs}
    finals = {j.n: members_after.get(cluster_of[j.n], members_before.get(cluster_of[j.n], {j.n})) for j in jobs}
    need = {e.n for j in jobs for e in j.edges} | {min(m) for m in finals.values()}
    known = {j.n: (j.record.get(b"id") or b"").decode() for j in jobs}
    known.update(ids_of(sorted(need - set(known))))
    with_dups = 0
    for j in jobs:
        mem = finals[j.n]
        canonical = min(mem)
        dups = sorted((e for e in j.edges if e.n in mem and e.n in known), key=lambda e: -e.score)[:MAX_DUPLICATES]
        with_dups += canonical != j.n  # a duplicate of an earlier article
        data: dict[str, Any] = {"id": known[j.n], "cluster_id": cluster_of[j.n], "cluster_size": len(mem),
                                "duplicate_of": known.get(canonical) if canonical != j.n else None,
                                "duplicates": [{"id": known[e.n], "similarity": e.similarity,
                                                "containment": e.containment} for e in dups]}
        if j.rid:
            data["request_id"] = j.rid
        emit(txn, maxlen, DONE, **data)
    merges: dict[str, list[str]] = {}
    for old, new in sorted(merged_into.items()):
        if members_before.get(old, set()) - placed:  # a cluster someone had seen, not a new article's own
            merges.setdefault(new, []).append(old)
    for new, olds in merges.items():
        emit(txn, maxlen, MERGED, cluster_id=new, merged=olds, cluster_size=len(members_after.get(new, ())))
    return with_dups, sum(len(v) for v in merges.values())
