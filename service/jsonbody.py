"""Strict request-body parsing, done by hand so that every failure is a clear 400.

Flask's ``request.get_json`` hides why a body was rejected and accepts things
we do not want (NaN, any charset, unbounded nesting); here the body must be
UTF-8 JSON with a JSON content type and at most :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request

from newsdedup.errors import PayloadTooLarge, ValidationError

MAX_DEPTH = 64
# A JSON string (so brackets inside strings are not counted) or a bracket.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _invalid(message: str) -> ValidationError:
    return ValidationError(message, code="invalid_json")


def _reject_constant(name: str) -> Any:
    raise _invalid(f"{name} is not valid JSON; send numbers as finite values")


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Reject nesting deeper than ``limit`` before ``json.loads`` recurses into it."""
    if text.count("[") + text.count("{") <= limit:  # cheap common case: cannot be too deep
        return
    depth = 0
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > limit:
                raise _invalid(f"JSON is nested deeper than {limit} levels")
        elif c in "]}":
            depth -= 1


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def parse_json(data: bytes, content_type: str | None, mimetype: str, charset: str | None,
               allow_empty: bool = False) -> Any:
    """Decode and parse a request body; ``allow_empty`` makes an empty body mean ``{}``."""
    if allow_empty and not data.strip():
        return {}
    if not content_type:
        raise _invalid("missing Content-Type; send the body as application/json")
    if not is_json_mimetype(mimetype):
        raise _invalid(f"Content-Type {mimetype!r} is not JSON; send the body as application/json")
    if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise _invalid(f"charset {charset!r} is not supported; send UTF-8")
    if not data:
        raise _invalid("the request body is empty; send a JSON object")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _invalid(f"the request body is not valid UTF-8 (byte {e.start})") from None
    check_depth(text)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise _invalid(f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise _invalid(f"JSON is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # e.g. integers with more digits than Python converts
        raise _invalid(f"malformed JSON: {e}") from None


def request_json(max_body: int, allow_empty: bool = False) -> Any:
    """The current request's JSON body; size is checked before anything is read."""
    if request.content_length is not None and request.content_length > max_body:
        raise PayloadTooLarge(f"request body is {request.content_length} bytes; the limit is {max_body}")
    data = request.get_data(cache=False)
    if request.content_length is None and len(data) >= max_body and request.stream.read(1):
        # A streamed (chunked) body is cut at MAX_CONTENT_LENGTH, not rejected: reading past the cut
        # normally raises werkzeug's 413 itself; this catches any stream that does not.
        raise PayloadTooLarge(f"request body is larger than {max_body} bytes")
    return parse_json(data, request.content_type, request.mimetype, request.mimetype_params.get("charset"),
                      allow_empty=allow_empty)
