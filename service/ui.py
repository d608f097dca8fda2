"""The web pages: overview, clusters, one cluster, side-by-side comparison, check, login, and /docs.

Server-rendered Jinja templates (autoescaped: article text is hostile input and
is only ever rendered as text; highlighted passages are (text, is_shared)
segments the template wraps in <mark>). Every page is read-only and sent with
a Content-Security-Policy that allows nothing from another host and no inline
script. With ``NEWSDEDUP_AUTH_READS=true`` a login form checks an API key and
keeps only the key's id in a signed cookie; a key never appears in a URL.
"""

from __future__ import annotations

import hashlib
import os
from itertools import groupby
from typing import Any
from urllib.parse import quote

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from swagger_ui_bundle import swagger_ui_path
from werkzeug.wrappers import Response as BaseResponse

from newsdedup import views
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.errors import NewsDedupError, ValidationError
from newsdedup.explain import Explanation, Line, explain
from newsdedup.storage.records import now_ms

from .auth import key_id, valid_key

ui = Blueprint("ui", __name__, template_folder="templates", static_folder="static", static_url_path="/ui/static")
docs = Blueprint("docs", __name__, template_folder="templates", static_folder="static",
                 static_url_path="/docs/static")

PER_PAGE = 50
MAX_PAGE = 10_000
PUBLIC_PAGES = frozenset({"ui.login", "ui.static", "docs.docs_page", "docs.docs_asset", "docs.static"})
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
# Swagger UI sets inline styles and loads the document with fetch
DOCS_CSP = ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; script-src 'self'; "
            "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")


def _config() -> Config:
    return current_app.extensions["newsdedup.config"]  # type: ignore[no-any-return]


def _dedup() -> Dedup:
    return current_app.extensions["newsdedup"]  # type: ignore[no-any-return]


def secret_key(config: Config) -> bytes:
    """NEWSDEDUP_SECRET_KEY, else derived from the API keys (all processes agree), else random (no login)."""
    if config.secret_key:
        return config.secret_key.encode()
    if config.api_keys:
        return hashlib.sha256(b"newsdedup-ui-session\0" + "\0".join(sorted(config.api_keys)).encode()).digest()
    return os.urandom(32)


def page_guard(config: Config) -> tuple[str | None, BaseResponse | None]:
    """(the signed-in key's id, or a redirect to the login form) for a page request."""
    kid = session.get("kid")
    ids = {key_id(k) for k in config.api_keys}
    if isinstance(kid, str) and kid in ids:
        return kid, None
    if config.api_keys and config.auth_reads and request.endpoint not in PUBLIC_PAGES:
        target = request.full_path if request.query_string else request.path
        return None, redirect(url_for("ui.login", next=target))
    return None, None


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never //host or a scheme) is followed after logging in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("ui.overview")
    return target


@ui.after_request
def _headers(resp: Response) -> Response:
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "ui.static":
        resp.headers["Cache-Control"] = "no-store"
    return resp


@ui.errorhandler(NewsDedupError)
def _page_error(e: NewsDedupError) -> tuple[str, int]:
    return render_template("error.html", status=e.status, code=e.code, message=e.message), e.status


@ui.app_template_filter("when")
def _when(value: str | None) -> str:
    """An RFC 3339 time as "2026-12-02 06:10:05" (UTC)."""
    return value[:19].replace("T", " ") if value else "–"


@ui.app_template_filter("pct")
def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


@ui.app_context_processor
def _globals() -> dict[str, Any]:
    cfg = _config()
    return {"login_needed": bool(cfg.api_keys and cfg.auth_reads), "signed_in": bool(session.get("kid")),
            "qid": lambda s: quote(s, safe="")}


def _int(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ValidationError(f"{name}={raw!r} is invalid; use a whole number from {lo} to {hi}", field=name)
    return int(raw)


# -- pages ----------------------------------------------------------------------------------------------


@ui.get("/")
def overview() -> str:
    r = current_app.extensions["newsdedup.redis"]
    stats = _dedup().stats()
    return render_template("overview.html", stats=stats, done=views.done_recently(r, now_ms()),
                           largest=views.largest(r), recent=views.recently_grown(r))


@ui.get("/ui/clusters")
def clusters() -> str:
    r = current_app.extensions["newsdedup.redis"]
    min_size = _int("min_size", 2, 1, 1_000_000_000)
    page = _int("page", 1, 1, MAX_PAGE)
    query = request.args.get("q", "")[:200]
    listing = views.cluster_page(r, min_size=min_size, query=query, page=page, per_page=PER_PAGE)
    return render_template("clusters.html", listing=listing, min_size=min_size, page=page, q=query)


@ui.get("/ui/clusters/<cluster_id>")
def cluster(cluster_id: str) -> str:
    r = current_app.extensions["newsdedup.redis"]
    c = _dedup().cluster(cluster_id)
    details = views.member_details(r, [m["id"] for m in c["members"]])
    members = [{**m, **details.get(m["id"], {})} for m in c["members"]]
    return render_template("cluster.html", c=c, members=members)


def _groups(lines: list[Line]) -> list[dict[str, Any]]:
    """Consecutive lines of one repeated block (or of none) as one group, so a block gets one outline."""
    out = []
    for (block, copy), grp in groupby(lines, key=lambda ln: (ln.block, ln.copy)):
        out.append({"block": block, "left_out": copy, "lines": list(grp)})
    return out


@ui.get("/ui/compare/<aid:a>/<aid:b>")
def compare(a: str, b: str) -> str:
    ex: Explanation = explain(current_app.extensions["newsdedup.redis"], _config(), a, b)
    rep = ex.report()
    snippets = [(p, ex.a.text[p.a[0]:p.a[1]]) for p in ex.result.passages[:30]]
    return render_template("compare.html", ex=ex, rep=rep, groups_a=_groups(ex.a.lines),
                           groups_b=_groups(ex.b.lines), snippets=snippets)


@ui.route("/ui/check", methods=["GET", "POST"])
def check() -> str:
    result = None
    form = {"title": "", "content": "", "kind": "text", "source": ""}
    if request.method == "POST":
        form = {k: request.form.get(k, "") for k in form}
        body: dict[str, Any] = {"title": form["title"] or None, "source": form["source"] or None}
        body["html" if form["kind"] == "html" else "text"] = form["content"]
        cfg = _config()
        article, _ = parse_article(body, max_text_chars=cfg.max_text_chars, max_id_length=cfg.max_id_length)
        result = _dedup().check(article)
    return render_template("check.html", form=form, result=result)


@ui.route("/ui/login", methods=["GET", "POST"])
def login() -> BaseResponse | str | tuple[str, int]:
    cfg = _config()
    nxt = _safe_next(request.values.get("next"))
    if request.method == "POST":
        key = request.form.get("key", "")
        if cfg.api_keys and valid_key(key, cfg.api_keys):
            session.clear()
            session["kid"] = key_id(key)
            return redirect(nxt)
        return render_template("login.html", next=nxt, failed=True), 401
    return render_template("login.html", next=nxt, failed=False)


@ui.post("/ui/logout")
def logout() -> BaseResponse:
    session.clear()
    return redirect(url_for("ui.login") if _config().auth_reads and _config().api_keys else url_for("ui.overview"))


# -- /docs: Swagger UI from the swagger-ui-bundle package (no CDN) ----------------------------------------


@docs.get("/docs")
def docs_page() -> Response:
    resp = Response(render_template("docs.html"), mimetype="text/html")
    resp.headers["Content-Security-Policy"] = DOCS_CSP
    return resp


@docs.get("/docs/assets/<path:name>")
def docs_asset(name: str) -> Response:
    if name not in ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"):
        raise NewsDedupError("no such file", code="not_found", status=404)
    return send_from_directory(swagger_ui_path, name, max_age=3600)


def register_pages(app: Flask, config: Config) -> None:
    """Mount /docs always and the pages unless NEWSDEDUP_UI=false."""
    app.secret_key = secret_key(config)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_NAME="newsdedup_session")
    app.register_blueprint(docs)
    if config.ui:
        app.register_blueprint(ui)
