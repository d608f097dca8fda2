"""What :mod:`newsdedup.client` returns and raises: typed results and one error class per family.

Kept apart from the client so that code handling results (type checkers, tests) needs no HTTP.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypedDict

from newsdedup import errors as E

# -- typed results --------------------------------------------------------------------------------------------------

class Duplicate(TypedDict):
    id: str
    similarity: float | None
    containment: float | None


class Article(TypedDict, total=False):
    """GET /v1/articles/<id> (and each result of a submit answered with ``wait``)."""

    id: str
    status: str  # queued | done | failed
    cluster_id: str | None
    duplicate_of: str | None
    duplicates: list[Duplicate]
    title: str
    url: str | None
    source: str | None
    published_at: str | None
    lang: str | None
    ingested_at: str | None
    processed_at: str | None
    repeated_blocks: list[dict[str, Any]]
    repeated_share: float
    tokens: int
    boilerplate_lines: int
    error: str | None
    attempts: int
    text: str | None


class Submitted(TypedDict, total=False):
    """One entry of a 202 submit answer."""

    id: str
    status: str
    href: str
    updated: bool
    ignored_fields: list[str]


class Member(TypedDict, total=False):
    id: str
    title: str | None
    similarity: float | None
    canonical: bool


class Cluster(TypedDict, total=False):
    cluster_id: str
    size: int
    canonical_id: str | None
    members: list[Member]
    created_at: str | None
    updated_at: str | None
    requested_id: str
    merged_into: str


class CheckResult(TypedDict, total=False):
    duplicates: list[dict[str, Any]]
    cluster_id: str | None
    repeated_blocks: list[dict[str, Any]]
    repeated_share: float
    tokens: int
    ignored_fields: list[str]


class QueueStats(TypedDict):
    pending: int
    in_flight: int
    failed: int


class Stats(TypedDict):
    articles: int
    clusters: int
    clusters_with_duplicates: int
    queue: QueueStats


class Event(TypedDict, total=False):
    """One entry of GET /v1/events: ``type`` plus the fields of that type; ``cursor`` resumes after it."""

    cursor: str
    type: str  # article.done | article.failed | article.deleted | cluster.merged
    at: str
    id: str
    cluster_id: str | None
    duplicate_of: str | None
    duplicates: list[Duplicate]
    error: str
    merged: list[str]


@dataclass
class SubmitResult:
    """What a submit did: every article's answer, in the order given (results when ``wait`` was met)."""

    articles: list[Submitted]
    results: list[Article] | None = None  # set when every article was processed within the wait

    @property
    def done(self) -> bool:
        return self.results is not None


# -- errors ---------------------------------------------------------------------------------------------------------

class ClientError(E.NewsDedupError):
    """An error answer (or no answer) from the service: ``status``, ``code``, ``message``, maybe ``field``."""

    def __init__(self, message: str, *, status: int = 0, code: str = "client_error", field: str | None = None,
                 retry_after: float | None = None) -> None:
        E.NewsDedupError.__init__(self, message, code=code, status=status)
        self.field = field
        self.retry_after: int = math.ceil(retry_after or 0)  # whole seconds, as the server's own errors


class InvalidRequest(ClientError, E.ValidationError):
    """400/422: the input was refused; ``field`` names the culprit when there is one."""


class TooLarge(InvalidRequest, E.PayloadTooLarge):
    """413: body or batch above the server's limits (submit splits batches by itself)."""


class NotFoundError(ClientError, E.NotFound):
    """404: no such article, cluster or route."""


class AuthError(ClientError, E.Unauthorized):
    """401/403: missing or invalid API key."""


class RateLimitedError(ClientError, E.RateLimited):
    """429 after every retry."""


class Unavailable(ClientError, E.StorageUnavailable):
    """503/502/504 or no connection, after every retry."""


class ServerError(ClientError):
    """500 or an answer that is not the documented JSON."""


def error_for(status: int, body: bytes, retry_after: float | None = None) -> ClientError:
    """The exception for an error answer, from its status and ``{"error": {...}}`` body."""
    code, message, field = f"http_{status}", "", None
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        err = json.loads(body)["error"]
        code, message, field = str(err["code"]), str(err["message"]), err.get("field")
    if not message:
        message = body.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
    cls: type[ClientError]
    if status == 413:
        cls = TooLarge
    elif status in (400, 422):
        cls = InvalidRequest
    elif status == 404:
        cls = NotFoundError
    elif status in (401, 403):
        cls = AuthError
    elif status == 429:
        cls = RateLimitedError
    elif status in (502, 503, 504):
        cls = Unavailable
    else:
        cls = ServerError
    return cls(f"HTTP {status} {code}: {message}", status=status, code=code, field=field, retry_after=retry_after)


def retry_after_seconds(value: str | None, cap: float = 120.0) -> float | None:
    """Retry-After as seconds (delta or HTTP date), capped; None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, cap))
