"""A small JSON-over-HTTP client for the newsdedup API, on the standard library.

It retries what the service says is temporary (429, 502, 503, 504 and dropped
connections) with exponential backoff, honouring ``Retry-After``.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parsedate_to_datetime

from newsdedup import __version__
from newsdedup.errors import NewsDedupError

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


class IngestAborted(NewsDedupError):
    """The service stayed unavailable through every retry."""

    code = "ingest_aborted"


@dataclass
class IngestStats:
    accepted: int = 0
    rejected: int = 0
    batches: int = 0
    retries: int = 0


@dataclass
class HttpClient:
    """A tiny JSON-over-HTTP client on urllib, retrying what the service says is temporary."""

    base_url: str
    api_key: str | None = None
    timeout: float = 120.0
    max_retries: int = 8
    sleep: Callable[[float], None] | None = None  # None: _sleep (tests replace it)
    stats: IngestStats = field(default_factory=IngestStats)

    def _once(self, method: str, path: str, body: bytes | None) -> tuple[int, Message, bytes]:
        headers = {"Accept": "application/json", "User-Agent": f"newsdedup-cli/{__version__}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url.rstrip("/") + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            try:
                data = e.read()
            except (OSError, AttributeError, http.client.HTTPException):
                data = b""
            finally:
                e.close()
            return e.code, e.headers, data

    def pause(self, seconds: float) -> None:
        (self.sleep or _sleep)(seconds)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send, retrying 429/502/503/504 and connection failures with backoff (Retry-After wins)."""
        last = ""
        for attempt in range(self.max_retries + 1):
            delay = min(30.0, 0.5 * 2 ** attempt)
            try:
                status, headers, data = self._once(method, path, body)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            else:
                if status not in RETRY_STATUSES:
                    return status, data
                last = f"HTTP {status} {error_text(data)}"
                ra = _retry_after(headers.get("Retry-After"))
                if ra is not None:
                    delay = ra
            if attempt < self.max_retries:
                self.stats.retries += 1
                self.pause(delay)
        raise IngestAborted(f"{method} {self.base_url.rstrip('/')}{path} failed {self.max_retries + 1} times; "
                            f"last: {last}")


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, 120.0))


def error_text(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        return text[:500]
