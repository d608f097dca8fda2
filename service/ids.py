"""Article ids in URLs: any printable id, reachable percent-encoded, never confused with route parts.

The rule (documented in the OpenAPI document and the README): an id is one path
segment, percent-encoded; a literal ``/`` in the URL always separates route
parts. So ``/v1/articles/a%2Fcompare%2Fb`` is the article ``a/compare/b`` while
``/v1/articles/a/compare/b`` is the compare route for ``a`` and ``b``.

WSGI servers hand the app a *decoded* PATH_INFO, where ``%2F`` and ``/`` look
the same. :class:`RawPathMiddleware` rebuilds PATH_INFO under ``/v1/articles/``
from the raw request URI (``RAW_URI``/``REQUEST_URI``, set by gunicorn and
werkzeug) decoding everything but ``%2F`` and ``%25`` (under ``/ui/compare/`` too); the ``aid`` converter
matches one segment and decodes those two. Without a raw URI every ``%`` is
escaped instead, so the converter's decoding is then the identity.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

from werkzeug.routing import BaseConverter

PREFIXES = ("/v1/articles/", "/ui/compare/")  # routes whose segments are article ids
_KEEP = re.compile(r"%(?:2[fF]|25)")
_ESC = re.compile(r"%[0-9A-Fa-f]{2}")


class ArticleIdConverter(BaseConverter):
    """One path segment; ``%2F`` and ``%25`` (left encoded by the middleware) decoded here."""

    regex = "[^/]+"
    part_isolating = True

    def to_python(self, value: str) -> str:
        return unquote(value, errors="strict") if "%" in value else value

    def to_url(self, value: str) -> str:
        return quote(value, safe="")


def _selective_decode(raw_path: str) -> bytes:
    """Percent-decode a raw path except %2F and %25."""
    out = _ESC.sub(lambda m: m.group(0) if _KEEP.fullmatch(m.group(0)) else
                   unquote_to_bytes(m.group(0)).decode("latin-1"), raw_path)
    return out.encode("latin-1")


class RawPathMiddleware:
    """Rebuild PATH_INFO of article routes so an encoded ``/`` in an id stays distinct from a route ``/``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(PREFIXES):
            environ["PATH_INFO"] = self._rebuild(environ, path)
        return self.app(environ, start_response)

    @staticmethod
    def _rebuild(environ: dict[str, Any], path: str) -> str:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if isinstance(raw, str):
            raw_path = raw.split("?", 1)[0].split("#", 1)[0]
            if "://" in raw_path:  # absolute-form request target
                raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
            script = environ.get("SCRIPT_NAME", "")
            if raw_path.startswith(script):
                raw_path = raw_path[len(script):]
            try:
                rebuilt = _selective_decode(raw_path).decode("latin-1")
            except (UnicodeError, ValueError):
                rebuilt = ""
            # trust it only when decoding it fully gives what the server decoded
            if rebuilt and unquote_to_bytes(rebuilt.encode("latin-1")).decode("latin-1") == path:
                return rebuilt
        return path.replace("%", "%25")
