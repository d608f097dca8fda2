"""Optional bearer-token auth: off unless ``NEWSDEDUP_API_KEYS`` is set.

Writes (POST/DELETE except ``/v1/check``, which stores nothing) need a key;
reads need one only with ``NEWSDEDUP_AUTH_READS``. Keys are compared in
constant time against *every* configured key, and never logged: only a short
hash of the key is used to identify the client (for rate limiting).
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Request

from newsdedup.config import Config
from newsdedup.errors import Unauthorized

# Endpoints that change stored data even though some are POSTs like /v1/check.
READ_ONLY_POSTS = frozenset({"api.check"})
PUBLIC_ENDPOINTS = frozenset({"api.healthz", "api.readyz", "api.openapi"})


def bearer_token(req: Request) -> str | None:
    """The token from ``Authorization: Bearer <token>``, or None."""
    header = req.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def valid_key(token: str | None, keys: tuple[str, ...]) -> bool:
    """Constant-time membership test: compares against every key, no early exit."""
    if token is None:
        return False
    given = token.encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, key.encode("utf-8"))
    return ok


def key_id(token: str) -> str:
    """A stable, non-reversible client id for a key (safe for Redis keys and logs)."""
    return "k" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def needs_auth(req: Request, config: Config) -> bool:
    if not config.api_keys or req.endpoint in PUBLIC_ENDPOINTS:
        return False
    is_write = req.method in ("POST", "PUT", "PATCH", "DELETE") and req.endpoint not in READ_ONLY_POSTS
    return is_write or config.auth_reads


def authenticate(req: Request, config: Config) -> str | None:
    """The key id of a valid key, None when no key was required; raises Unauthorized otherwise."""
    token = bearer_token(req)
    if config.api_keys and valid_key(token, config.api_keys):
        assert token is not None
        return key_id(token)
    if needs_auth(req, config):
        message = "missing API key" if token is None else "invalid API key"
        raise Unauthorized(f"{message}; send Authorization: Bearer <key>")
    return None
