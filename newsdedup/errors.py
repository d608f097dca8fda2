"""One exception hierarchy for the whole project.

Every error the service can answer with carries an HTTP-ish ``status`` and a
stable machine-readable ``code`` so that the API layer needs one handler only.
"""

from __future__ import annotations


class NewsDedupError(Exception):
    """Base of every error raised on purpose by newsdedup."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class ConfigError(NewsDedupError):
    """The environment or a config value is wrong; the message says how to fix it."""

    code = "config_error"


class IndexMismatch(ConfigError):
    """The index in Redis was built with other parameters than this process is configured for.

    Signatures, bands and buckets made with other parameters never meet new ones:
    mixing them would silently miss duplicates, so nothing is written.
    """

    status = 503
    code = "index_mismatch"


class ClusterModeMismatch(ConfigError):
    """A single-node client talks to a Redis Cluster node (Redis was down when the process started, or
    NEWSDEDUP_REDIS_CLUSTER=false on a cluster): refused before the first write, never a MOVED halfway."""

    status = 503
    code = "cluster_mode_mismatch"

    def __init__(self, message: str = "REDIS_URL points at a Redis Cluster node but this process connected to it "
                 "as to a single Redis (it was down when the process started, or NEWSDEDUP_REDIS_CLUSTER=false): "
                 "restart the process, and leave NEWSDEDUP_REDIS_CLUSTER unset (auto) or set it to true") -> None:
        super().__init__(message)


class ValidationError(NewsDedupError):
    """Client input is malformed (4xx)."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, code=code, status=status)
        self.field = field


class PayloadTooLarge(ValidationError):
    status = 413
    code = "payload_too_large"


class NotFound(NewsDedupError):
    status = 404
    code = "not_found"


class Unauthorized(NewsDedupError):
    status = 401
    code = "unauthorized"


class RateLimited(NewsDedupError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageUnavailable(NewsDedupError):
    """Redis cannot be reached right now; clients should retry (503 + Retry-After)."""

    status = 503
    code = "storage_unavailable"

    def __init__(self, message: str = "storage is unavailable, retry shortly", *, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProcessingError(NewsDedupError):
    """An article could not be processed (counted as an attempt; dead-lettered after N)."""

    code = "processing_failed"


class TextUnavailable(NewsDedupError):
    """An explanation needs a kept text that is not there (not processed yet, or NEWSDEDUP_KEEP_TEXT=false)."""

    status = 409
    code = "text_unavailable"
