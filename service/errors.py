"""One error handler for the whole API, so every failure has the same JSON shape.

``{"error": {"code": "...", "message": "..."}}`` (+ ``"field"`` for validation
errors that name one). Clients can branch on ``code``; ``message`` is for humans.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from newsdedup.errors import NewsDedupError, RateLimited, StorageUnavailable, Unauthorized, ValidationError
from newsdedup.observe.metrics import counters
from newsdedup.storage.txn import transient

log = logging.getLogger("newsdedup.service")

WWW_AUTHENTICATE = 'Bearer realm="newsdedup"'

# werkzeug exceptions -> our stable codes (anything else gets its name in snake_case).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "service_unavailable",
}
_HTTP_MESSAGES = {
    404: "no such endpoint; see /openapi.json",
    405: "method not allowed for this endpoint; see the Allow header",
}

def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """The single place that renders an error body."""
    err: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    resp = jsonify({"error": err})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "error"


def _storage_down(retry_after: int, message: str = "storage is unavailable, retry shortly") -> Response:
    counters.redis_error()
    return error_response(503, StorageUnavailable.code, message, headers={"Retry-After": str(retry_after)})


def handle_exception(e: Exception) -> Response | HTTPException:
    """Map any exception to the error shape; only true bugs become 500 (and are logged with a traceback)."""
    if isinstance(e, HTTPException):
        if e.code is not None and e.code < 400:  # routing redirects (e.g. merged slashes) pass through
            return e
        status = e.code or 500
        headers = {k: v for k, v in e.get_headers() if k.lower() in ("allow", "retry-after", "www-authenticate")}
        code = _HTTP_CODES.get(status, _snake(e.name))
        message = _HTTP_MESSAGES.get(status) or (e.description or e.name)
        if status == 413:
            message = f"request body is larger than {current_app.config.get('MAX_CONTENT_LENGTH')} bytes"
        return error_response(status, code, message, headers=headers)
    if isinstance(e, StorageUnavailable):
        log.warning("storage unavailable: %s", e.message)
        return _storage_down(e.retry_after, e.message)
    if isinstance(e, RateLimited):
        return error_response(e.status, e.code, e.message, headers={"Retry-After": str(e.retry_after)})
    if isinstance(e, ValidationError):
        return error_response(e.status, e.code, e.message, field=e.field)
    if isinstance(e, Unauthorized):
        return error_response(e.status, e.code, e.message, headers={"WWW-Authenticate": WWW_AUTHENTICATE})
    if isinstance(e, NewsDedupError):
        if e.status >= 500:
            log.error("%s: %s", e.code, e.message, exc_info=e)
        return error_response(e.status, e.code, e.message)
    if transient(e):  # redis-py errors meaning "storage (or a cluster slot's master) is away right now"
        log.warning("redis unavailable: %s: %s", type(e).__name__, e)
        return _storage_down(2)
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; it has been logged")


def register_error_handlers(app: Flask) -> None:
    """Flask routes HTTPExceptions to an ``Exception`` handler too, so this one covers everything."""
    app.register_error_handler(Exception, handle_exception)
