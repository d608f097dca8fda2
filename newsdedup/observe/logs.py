"""Logging for every process: text or JSON lines (NEWSDEDUP_LOG_FORMAT), each carrying the request id.

The API sets the request id of the request being served in a context variable;
the worker passes the id that came with a queue entry as ``extra``. Either way
the id lands in the record as ``request_id``. Only what a call site passes is
logged: keys, passwords and article text are never given to a logger, and
``redact`` strips the password of any Redis URL that is.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

from newsdedup.config import Config

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("newsdedup_request_id", default="")

# attributes every LogRecord has: anything else was passed as extra= and becomes a JSON field
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]*:)[^@\s]+@")
_QUERY_PASSWORD = re.compile(r"(\bpassword=)[^&\s]+")
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def redact(text: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``; ``?password=secret`` -> ``?password=***``."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def new_request_id(given: str | None) -> str:
    """The client's X-Request-ID when it is 1-128 visible ASCII characters, else a fresh one."""
    if given and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Give every record a ``request_id`` (the current request's, unless passed as extra)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": redact(record.getMessage()),
        }
        for k, v in vars(record).items():
            if k not in _STANDARD and v not in ("", None):
                out[k] = v if isinstance(v, (str, int, float, bool)) else str(v)
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with `` [request <id>]`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        rid = getattr(record, "request_id", "")
        return f"{line} [request {rid}]" if rid else line


def setup(config: Config, stream: TextIO | None = None) -> None:
    """Configure the root logger once per process (like basicConfig: not when something else already did)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else TextFormatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(config.log_level)
