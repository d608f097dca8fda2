"""A Python client for the newsdedup HTTP API, on the standard library only.

Why urllib and not httpx: the client is four verbs of JSON over HTTP/1.1; the
standard library does that without a dependency that every user of the
package (and the ``newsdedup ingest`` CLI) would have to install and pin.
Connection reuse would be the one gain, and batching already makes requests
few and large.

Example::

    from newsdedup.client import Client

    nd = Client("http://127.0.0.1:8000", api_key=None)
    nd.submit([{"id": "a1", "title": "...", "text": "..."}], wait=10)
    print(nd.get("a1")["cluster_id"])
    for event in nd.events(after=None, wait=5):
        ...

Every HTTP error becomes one exception class per error family (all
:class:`ClientError`, itself a :class:`newsdedup.errors.NewsDedupError`, and
each also the matching server-side class, so ``except NotFound`` works the
same against the engine and the API). 429 and 503 (and 502/504, refused
connections) are retried, honouring ``Retry-After``, with capped exponential
backoff; a re-post of the same article is a no-op on the server, so retrying
a submit is safe.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast
from urllib.parse import quote, urlencode

from newsdedup import __version__
from newsdedup.client_types import (
    Article,
    AuthError,
    CheckResult,
    ClientError,
    Cluster,
    Duplicate,
    Event,
    InvalidRequest,
    Member,
    NotFoundError,
    RateLimitedError,
    ServerError,
    Stats,
    SubmitResult,
    Submitted,
    TooLarge,
    Unavailable,
    error_for,
    retry_after_seconds,
)

__all__ = ["Article", "AuthError", "CheckResult", "Client", "ClientError", "Cluster", "Duplicate", "Event",
           "InvalidRequest", "Member", "NotFoundError", "RateLimitedError", "ServerError", "Stats", "Submitted",
           "SubmitResult", "TooLarge", "Unavailable"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_MAX_BATCH = 500
DEFAULT_MAX_BODY = 8 * 1024 * 1024
MAX_WAIT = 30  # the server's cap on ?wait=


# -- the client -----------------------------------------------------------------------------------------------------

class Client:
    """The newsdedup API as Python calls (thread-safe: no state but counters and learned limits)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0, *, max_retries: int = 8,
                 backoff: float = 0.5, max_backoff: float = 30.0, max_batch: int | None = None,
                 max_body: int | None = None, sleep: Callable[[float], None] | None = None,
                 request_id: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.request_id = request_id  # sent as X-Request-ID (the server makes one otherwise)
        self._sleep = sleep or time.sleep
        self._limits: tuple[int, int] | None = None
        if max_batch is not None or max_body is not None:
            self._limits = (max_batch or DEFAULT_MAX_BATCH, max_body or DEFAULT_MAX_BODY)
        self.retries = 0  # retried requests so far (for reports)
        self.requests = 0

    # ------------------------------------------------------------------ transport

    def _once(self, method: str, path: str, body: bytes | None, timeout: float) -> tuple[int, Any, bytes]:
        headers = {"Accept": "application/json", "User-Agent": f"newsdedup-client/{__version__}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.request_id:
            headers["X-Request-ID"] = self.request_id
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            with contextlib.closing(e):
                try:
                    data = e.read()
                except (OSError, http.client.HTTPException):
                    data = b""
            return e.code, e.headers, data

    def request(self, method: str, path: str, body: Any = None, *, timeout: float | None = None,
                ok: Iterable[int] = (200,)) -> tuple[int, Any]:
        """Send JSON, retrying temporary failures; returns (status, parsed body) or raises a ClientError."""
        raw = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        wanted = set(ok)
        last: ClientError | None = None
        for attempt in range(self.max_retries + 1):
            delay = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
            try:
                status, headers, data = self._once(method, path, raw, self.timeout if timeout is None else timeout)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                last = Unavailable(f"{method} {self.url}{path}: {type(e).__name__}: {getattr(e, 'reason', e)}",
                                   status=0, code="connection_failed")
            else:
                if status in wanted:
                    try:
                        return status, json.loads(data) if data else None
                    except ValueError:
                        raise ServerError(f"{method} {path}: HTTP {status} with a body that is not JSON",
                                          status=status, code="bad_response") from None
                ra = retry_after_seconds(headers.get("Retry-After"), cap=self.max_backoff * 4)
                last = error_for(status, data, ra)
                if status not in RETRY_STATUSES:
                    raise last
                if ra is not None:
                    delay = ra
            if attempt < self.max_retries:
                self.retries += 1
                self._sleep(delay)
        assert last is not None
        last.message = f"{last.message} (after {self.max_retries + 1} attempts)"
        last.args = (last.message,)
        raise last

    def limits(self) -> tuple[int, int]:
        """(max articles per request, max body bytes) the server announces (read once from /openapi.json)."""
        if self._limits is None:
            try:
                _, doc = self.request("GET", "/openapi.json")
                lim = doc["info"]["x-limits"]
                self._limits = (int(lim["max_batch"]), int(lim["max_body"]))
            except (ClientError, KeyError, TypeError, ValueError):
                self._limits = (DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY)
        return self._limits

    # ------------------------------------------------------------------ articles

    def submit(self, articles: Mapping[str, Any] | Sequence[Mapping[str, Any]], wait: float | None = None
               ) -> SubmitResult:
        """Queue one article or many (split into batches the server accepts); ``wait`` up to 30 s for results.

        With ``wait``, each batch is posted with ``?wait=`` (the remaining time); ``results`` is set only
        when every article was processed in time.
        """
        items = [articles] if isinstance(articles, Mapping) else list(articles)
        out: list[Submitted] = []
        results: list[Article] | None = [] if wait else None
        deadline = time.monotonic() + min(float(wait), MAX_WAIT) if wait else None
        for batch in self.batches(items):
            query = ""
            if deadline is not None:
                left = max(0, int(deadline - time.monotonic()))
                query = f"?wait={left}"
            status, body = self.post_batch(batch, query)
            out.extend(cast(list[Submitted], body["articles"]))
            if results is not None:
                if status == 200:
                    results.extend(cast(list[Article], body["articles"]))
                else:
                    results = None
        return SubmitResult(articles=out, results=results)

    def batches(self, items: Sequence[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
        """Consecutive runs of ``items`` within the server's batch and body limits."""
        max_batch, max_body = self.limits()
        budget = max_body - 1024  # the envelope and some slack
        batch: list[Mapping[str, Any]] = []
        size = 0
        for item in items:
            n = len(json.dumps(item, ensure_ascii=False).encode("utf-8")) + 1
            if batch and (len(batch) >= max_batch or size + n > budget):
                yield batch
                batch, size = [], 0
            batch.append(item)
            size += n
        if batch:
            yield batch

    def post_batch(self, batch: list[Mapping[str, Any]], query: str = "") -> tuple[int, Any]:
        """POST one batch as is (split in two on 413); (200 or 202, the answer's body)."""
        try:
            return self.request("POST", "/v1/articles" + query, {"articles": batch}, ok=(200, 202))
        except TooLarge:
            if len(batch) < 2:
                raise
            half = len(batch) // 2  # the server's limits are lower than announced: split, and remember
            self._limits = (max(1, half), self.limits()[1])
            s1, b1 = self.post_batch(batch[:half], query)
            s2, b2 = self.post_batch(batch[half:], query)
            return (200 if s1 == s2 == 200 else 202), {"articles": b1["articles"] + b2["articles"]}

    def get(self, article_id: str) -> Article:
        return cast(Article, self.request("GET", "/v1/articles/" + quote(article_id, safe=""))[1])

    def wait(self, ids: Iterable[str], timeout: float = 30.0) -> dict[str, Article]:
        """Block until every id is done or failed (on the events feed, not by polling); their articles.

        Raises TimeoutError with the ids still queued when ``timeout`` passes first.
        """
        todo = set(ids)
        deadline = time.monotonic() + timeout
        cursor = self._latest_cursor()
        out: dict[str, Article] = {}
        for i in sorted(todo):  # those already finished are not in the feed any more, or are older
            a = self.get(i)
            if a.get("status") != "queued":
                out[i] = a
        todo -= set(out)
        while todo:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(todo)} articles still queued after {timeout:.0f}s: {sorted(todo)[:10]}")
            page = self.events_page(after=cursor, limit=500, wait=min(MAX_WAIT, max(1, int(left))))
            for ev in page["events"]:
                if ev.get("id") in todo and ev.get("type") in ("article.done", "article.failed", "article.deleted"):
                    i = cast(str, ev["id"])
                    todo.discard(i)
                    if ev["type"] != "article.deleted":
                        out[i] = self.get(i)
            cursor = page["next_cursor"] or cursor
        return out

    def _latest_cursor(self) -> str | None:
        """The cursor of the feed's end: what happens from now on comes after it."""
        return cast("str | None", self.events_page(after="end")["next_cursor"])

    def check(self, article: Mapping[str, Any]) -> CheckResult:
        return cast(CheckResult, self.request("POST", "/v1/check", dict(article))[1])

    def compare(self, a: str, b: str) -> dict[str, Any]:
        """Why two stored articles are (not) duplicates; needs the server's compare endpoint."""
        path = f"/v1/articles/{quote(a, safe='')}/compare/{quote(b, safe='')}"
        return cast("dict[str, Any]", self.request("GET", path)[1])

    def delete(self, article_id: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self.request("DELETE", "/v1/articles/" + quote(article_id, safe=""))[1])

    # ------------------------------------------------------------------ clusters, stats, events

    def cluster(self, cluster_id: str) -> Cluster:
        return cast(Cluster, self.request("GET", "/v1/clusters/" + quote(cluster_id, safe=""))[1])

    def clusters(self, min_size: int = 2, page_size: int = 100) -> Iterator[Cluster]:
        """Every cluster of at least ``min_size`` members, most recently updated first, over all pages."""
        cursor: str | None = None
        while True:
            q = {"min_size": min_size, "limit": page_size, **({"cursor": cursor} if cursor else {})}
            _, page = self.request("GET", "/v1/clusters?" + urlencode(q))
            yield from cast(list[Cluster], page["clusters"])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def stats(self) -> Stats:
        return cast(Stats, self.request("GET", "/v1/stats")[1])

    def events_page(self, after: str | None = None, limit: int = 100, wait: float = 0) -> dict[str, Any]:
        """One page of the feed: ``{"events": [...], "next_cursor": ...}``."""
        q: dict[str, Any] = {"limit": limit}
        if after:
            q["after"] = after
        if wait:
            q["wait"] = int(min(MAX_WAIT, max(0, wait)))
        timeout = max(self.timeout, float(q.get("wait", 0)) + 10)
        return cast("dict[str, Any]", self.request("GET", "/v1/events?" + urlencode(q), timeout=timeout)[1])

    def events(self, after: str | None = None, wait: float = 10, limit: int = 100, follow: bool = False
               ) -> Iterator[Event]:
        """Events after the cursor ``after`` (None: the oldest kept, "end": from now on); each has its ``cursor``.

        Stops when the feed is drained (after waiting ``wait`` s for more), or never with ``follow``.
        """
        cursor = after
        while True:
            page = self.events_page(after=cursor, limit=limit, wait=wait)
            yield from cast(list[Event], page["events"])
            cursor = page.get("next_cursor") or cursor
            if not page["events"] and not follow:
                return
