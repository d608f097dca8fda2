"""The Flask application factory.

Everything that touches the environment or the network happens inside
:func:`create_app`, so tests build apps with their own Config and Redis, and
importing the package is free of side effects. redis-py connects lazily, so
the factory succeeds while Redis is down (``/readyz`` then answers 503).
"""

from __future__ import annotations

import logging
import time

from flask import Flask, current_app, g, request
from werkzeug.wrappers import Response

from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.errors import PayloadTooLarge
from newsdedup.observe.logs import new_request_id, request_id
from newsdedup.observe.metrics import counters
from newsdedup.storage.redis_client import Client, connect

from .api import bp
from .auth import authenticate
from .errors import register_error_handlers
from .ids import ArticleIdConverter, RawPathMiddleware
from .ratelimit import check_rate
from .ui import page_guard, register_pages


def make_redis(config: Config) -> Client:
    """The API's client: :func:`newsdedup.storage.redis_client.connect` (bounded timeouts; one node or a cluster)."""
    return connect(config)


log = logging.getLogger("newsdedup.service.requests")


def _begin() -> None:
    """Before anything else: the request id (the client's X-Request-ID or a new one) and the clock."""
    g.request_id = new_request_id(request.headers.get("X-Request-ID"))
    g.started = time.perf_counter()
    request_id.set(g.request_id)


def _finish(resp: Response) -> Response:
    """After every request, errors included: echo the id, log one line, count it for /metrics."""
    rid = g.get("request_id") or new_request_id(None)
    resp.headers["X-Request-ID"] = rid
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = (request.endpoint or "none").removeprefix("api.")
    log.info("%s %s %s %.1fms", request.method, request.path, resp.status_code, seconds * 1000,
             extra={"request_id": rid, "method": request.method, "path": request.path,
                    "status": resp.status_code, "duration_ms": round(seconds * 1000, 2), "endpoint": endpoint})
    counters.request(current_app.extensions["newsdedup.redis"], endpoint, request.method, resp.status_code, seconds)
    return resp


def _guard() -> Response | None:
    """Before every request: size, auth, rate limit (in that order, cheapest checks first).

    Unknown routes and wrong methods skip this so they answer 404/405 without touching Redis.
    """
    if request.routing_exception is not None or request.endpoint is None:
        return None
    ext = current_app.extensions
    config: Config = ext["newsdedup.config"]
    if request.content_length is not None and request.content_length > config.max_body:
        raise PayloadTooLarge(f"request body is {request.content_length} bytes; the limit is {config.max_body}")
    if request.blueprint in ("ui", "docs"):  # pages: a login cookie, not a bearer header
        key, login = page_guard(config)
        if login is not None:
            return login
    else:
        key = authenticate(request, config)
    if config.rate_limit > 0 and request.endpoint not in ("api.healthz", "api.readyz", "api.openapi", "ui.static",
                                                          "docs.docs_asset", "docs.static"):
        who = key or f"ip:{request.remote_addr or 'unknown'}"
        check_rate(ext["newsdedup.redis"], who, config.rate_limit)
    return None


def create_app(config: Config | None = None, redis_client: Client | None = None) -> Flask:
    """Build the API for ``config`` (default: from the environment) and ``redis_client`` (default: from it)."""
    config = Config.from_env() if config is None else config
    client = make_redis(config) if redis_client is None else redis_client
    app = Flask("service")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    # Ids are opaque: never answer "a//b" with a redirect to "a/b" (set before any rule is added).
    app.url_map.merge_slashes = False
    app.url_map.converters["aid"] = ArticleIdConverter
    app.wsgi_app = RawPathMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented field order
    app.extensions["newsdedup"] = Dedup(client, config)
    app.extensions["newsdedup.config"] = config
    app.extensions["newsdedup.redis"] = client
    logging.getLogger("newsdedup").setLevel(config.log_level)
    register_error_handlers(app)
    app.before_request(_begin)
    app.before_request(_guard)
    app.after_request(_finish)
    app.register_blueprint(bp)
    register_pages(app, config)
    return app
