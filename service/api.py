"""The endpoints: thin handlers that validate input, call the engine and shape JSON.

All behaviour lives in :class:`newsdedup.dedup.Dedup`; everything here is
parsing, status codes and headers, documented in :mod:`service.openapi`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from newsdedup.articles import parse_article, parse_submission
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.errors import NotFound, ValidationError
from newsdedup.explain import explain
from newsdedup.observe import events
from newsdedup.observe.metrics import counters
from newsdedup.storage.txn import storage_errors

from .jsonbody import request_json
from .metrics import exposition
from .openapi import build_openapi

bp = Blueprint("api", __name__)

MAX_LIMIT = 500
MAX_MIN_SIZE = 1_000_000_000
MAX_CURSOR = 256
MAX_EVENTS = 1000
_DIGITS = re.compile(r"^[0-9]{1,10}$")


def _dedup() -> Dedup:
    return current_app.extensions["newsdedup"]  # type: ignore[no-any-return]


def _config() -> Config:
    return current_app.extensions["newsdedup.config"]  # type: ignore[no-any-return]


def _json(body: Any, status: int = 200) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    return resp


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    """A query integer in [lo, hi]; anything else (``1.5``, ``+2``, ``2_0``, empty) is a 400."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _DIGITS.match(raw) or not lo <= int(raw) <= hi:
        raise ValidationError(f"{name}={raw!r} is invalid; use a whole number from {lo} to {hi}", field=name,
                              code="invalid_parameter")
    return int(raw)


# -- articles ---------------------------------------------------------------------------


def _block_chunk() -> float:
    """How long one blocking Redis read may last: below the client's socket timeout."""
    return max(0.05, _config().redis_timeout * 0.8)


@bp.post("/v1/articles")
def submit_articles() -> Response:
    """Queue one article or a batch (``{"articles": [...]}``); ``?wait=S``: 200 with the results if done in time."""
    cfg = _config()
    wait = _int_arg("wait", 0, 0, events.MAX_WAIT)
    body = request_json(cfg.max_body)
    items = parse_submission(body, max_batch=cfg.max_batch, max_text_chars=cfg.max_text_chars,
                             max_id_length=cfg.max_id_length)
    dedup = _dedup()
    with storage_errors():
        since = events.last_id(dedup.r) if wait else ""
    results = dedup.submit(items, request_id=g.get("request_id", ""))
    if wait:
        queued = [r["id"] for r in results if r["status"] == "queued"]
        with storage_errors():
            finished = events.wait_finished(dedup.r, queued, since, wait, _block_chunk())
        if finished:
            try:
                views = [dedup.article(r["id"]) for r in results]
            except NotFound:  # deleted meanwhile: the 202 answer says what is known
                views = []
            if views:
                return _json({"articles": views}, 200)
    resp = _json({"articles": results}, 202)
    if len(results) == 1:
        resp.headers["Location"] = results[0].get("href") or "/v1/articles/" + quote(results[0]["id"], safe="")
    return resp


@bp.get("/v1/articles/<aid:article_id>")
def get_article(article_id: str) -> Response:
    return _json(_dedup().article(article_id))


@bp.get("/v1/articles/<aid:article_id>/compare/<aid:other_id>")
def compare_articles(article_id: str, other_id: str) -> Response:
    """Why two stored articles are (or are not) duplicates: exact figures and shared passages."""
    return _json(explain(current_app.extensions["newsdedup.redis"], _config(), article_id, other_id).report())


@bp.delete("/v1/articles/<aid:article_id>")
def delete_article(article_id: str) -> Response:
    return _json(_dedup().delete(article_id))


# -- clusters ---------------------------------------------------------------------------


@bp.get("/v1/clusters/<cluster_id>")
def get_cluster(cluster_id: str) -> Response:
    return _json(_dedup().cluster(cluster_id))


@bp.get("/v1/clusters")
def list_clusters() -> Response:
    min_size = _int_arg("min_size", 2, 1, MAX_MIN_SIZE)
    limit = _int_arg("limit", 50, 1, MAX_LIMIT)
    cursor = request.args.get("cursor")
    if cursor is not None and (not cursor or len(cursor) > MAX_CURSOR):
        raise ValidationError("cursor is invalid; pass back next_cursor from the previous page", field="cursor",
                              code="invalid_cursor")
    return _json(_dedup().clusters(min_size=min_size, limit=limit, cursor=cursor))


# -- check, stats, admin ------------------------------------------------------------------


@bp.post("/v1/check")
def check() -> Response:
    """Find duplicates of an article without storing it."""
    cfg = _config()
    body = request_json(cfg.max_body)
    article, ignored = parse_article(body, max_text_chars=cfg.max_text_chars, max_id_length=cfg.max_id_length)
    result = _dedup().check(article)
    if ignored:
        result = {**result, "ignored_fields": ignored}
    return _json(result)


@bp.get("/v1/events")
def list_events() -> Response:
    """The events feed after a cursor; ``wait`` blocks on Redis until there is one, at most that many seconds."""
    limit = _int_arg("limit", 100, 1, MAX_EVENTS)
    wait = _int_arg("wait", 0, 0, events.MAX_WAIT)
    after = request.args.get("after")
    if after is not None and after != "end":
        events.decode_cursor(after)  # 400 before touching Redis
    with storage_errors():
        return _json(events.read(_dedup().r, after, limit, wait, _block_chunk()))


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; a read like any other (NEWSDEDUP_AUTH_READS closes it)."""
    r = current_app.extensions["newsdedup.redis"]
    with storage_errors():
        counters.flush(r)  # this process's latest counts are in the answer
    return Response(exposition(r, _dedup()),
                    content_type=CONTENT_TYPE_LATEST)


@bp.get("/v1/stats")
def stats() -> Response:
    return _json(_dedup().stats())


@bp.post("/v1/admin/retry")
def retry_failed() -> Response:
    """Re-queue failed (dead-lettered) articles: the listed ids, or all of them for ``{}``."""
    cfg = _config()
    body = request_json(cfg.max_body, allow_empty=True)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object: {\"ids\": [...]} or {} for all failed articles")
    unknown = sorted(set(body) - {"ids"})
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}; only ids is accepted", field=unknown[0])
    ids = body.get("ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) and 0 < len(i) <= cfg.max_id_length
                                                for i in ids):
            raise ValidationError(f"ids must be a list of article ids (strings of 1 to {cfg.max_id_length} "
                                  "characters)", field="ids")
        if len(ids) > cfg.max_batch:
            raise ValidationError(f"{len(ids)} ids in one request; the limit is {cfg.max_batch}", field="ids")
    return _json(_dedup().retry_failed(ids))


# -- operations -----------------------------------------------------------------------------


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers; says nothing about Redis (that is /readyz)."""
    return _json({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: Redis answers (``ping`` raises StorageUnavailable -> 503 otherwise)."""
    _dedup().ping()
    return _json({"status": "ready"})


@bp.get("/openapi.json")
def openapi() -> Response:
    return _json(build_openapi(_config()))
