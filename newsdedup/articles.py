"""Article input: validation of what clients send, and the stable ids derived from it.

Used by the HTTP API, the ``ingest`` and ``eval`` commands alike, so that every
entry point accepts and rejects exactly the same things.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime
from typing import Any

from newsdedup.errors import PayloadTooLarge, ValidationError

KNOWN_FIELDS = ("id", "title", "text", "html", "url", "source", "published_at", "lang")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_LANG = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,3}$")
_WORD = re.compile(r"[^\W_]")  # what the tokenizer calls a letter or digit
_SURROGATE = re.compile("[\ud800-\udfff]")
_TAG = re.compile(r"<[^>]*>|&[#\w]+;")
_INVISIBLE = re.compile(r"<(script|style|noscript|template)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_LIMITS = {"title": 4000, "url": 4096, "source": 256}


@dataclass(frozen=True)
class ArticleIn:
    """A validated article as submitted; exactly one of ``text`` and ``html`` is set."""

    id: str
    title: str = ""
    text: str | None = None
    html: str | None = None
    url: str | None = None
    source: str | None = None
    published_at: str | None = None
    lang: str | None = None
    id_derived: bool = False

    @property
    def body(self) -> str:
        return self.text if self.text is not None else (self.html or "")

    @property
    def is_html(self) -> bool:
        return self.html is not None

    def content_hash(self) -> str:
        """Hash of everything but the id: equal hashes mean a re-post is a no-op."""
        # the same dict asdict() gives (every field is a str or None), without its deep copies
        fields = {f.name: getattr(self, f.name) for f in dataclass_fields(self) if f.name not in ("id", "id_derived")}
        raw = json.dumps(fields, ensure_ascii=False, sort_keys=True).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(raw, digest_size=16).hexdigest()

    def to_payload(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "id_derived"}


# Unicode categories Cc (exactly U+0000-U+001F and U+007F-U+009F) and Cs (surrogates), and the
# line/paragraph separators: one regex search instead of a category lookup per character
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _has_control(s: str) -> bool:
    return _CONTROL.search(s) is not None


def _string(obj: dict[str, Any], name: str, where: str, limit: int) -> str | None:
    v = obj.get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValidationError(f"{where}{name} must be a string, not {type(v).__name__}", field=where + name)
    if len(v) > limit:
        raise ValidationError(f"{where}{name} is {len(v)} characters long; the limit is {limit}",
                              field=where + name, code="field_too_long")
    if _SURROGATE.search(v):
        raise ValidationError(f"{where}{name} contains unpaired surrogates; send valid UTF-8",
                              field=where + name)
    return v


def derive_id(url: str | None, title: str, body: str) -> str:
    """A stable id: from the URL when there is one, else from the content."""
    if url:
        return "u-" + hashlib.blake2b(url.strip().encode("utf-8"), digest_size=12).hexdigest()
    raw = (title + "\x00" + body).encode("utf-8")
    return "h-" + hashlib.blake2b(raw, digest_size=12).hexdigest()


def parse_article(obj: Any, *, max_text_chars: int = 2_000_000, max_id_length: int = 256,
                  where: str = "") -> tuple[ArticleIn, list[str]]:
    """Validate one article object; returns it and the names of fields that were ignored."""
    if not isinstance(obj, dict):
        raise ValidationError(f"{where or 'the body'} must be a JSON object describing an article",
                              field=where.rstrip(".") or None)
    ignored = sorted(k for k in obj if k not in KNOWN_FIELDS)
    text = _string(obj, "text", where, max_text_chars)
    html = _string(obj, "html", where, max_text_chars)
    if text is None and html is None:
        raise ValidationError(f"{where}text or {where}html is required (exactly one)", field=where + "text",
                              code="missing_content")
    if text is not None and html is not None:
        raise ValidationError(f"give either {where}text or {where}html, not both", field=where + "text",
                              code="ambiguous_content")
    body = text if text is not None else html
    assert body is not None
    if not body.strip():
        raise ValidationError(f"{where}{'text' if text is not None else 'html'} is empty",
                              field=where + ("text" if text is not None else "html"), code="empty_content")
    visible = body if text is not None else _TAG.sub(" ", _INVISIBLE.sub(" ", body))
    if not _WORD.search(visible):
        raise ValidationError(f"{where}{'text' if text is not None else 'html'} has no letters or digits "
                              "to compare", field=where + ("text" if text is not None else "html"),
                              code="no_content", status=422)
    title = _string(obj, "title", where, _LIMITS["title"]) or ""
    url = _string(obj, "url", where, _LIMITS["url"])
    source = _string(obj, "source", where, _LIMITS["source"])
    for name, value in (("title", title), ("url", url), ("source", source)):
        if value and _has_control(value.replace("\t", " ")):
            raise ValidationError(f"{where}{name} contains control characters", field=where + name)
    if url is not None and not url.strip():
        raise ValidationError(f"{where}url is empty; leave it out instead", field=where + "url")
    published = _string(obj, "published_at", where, 64)
    if published is not None:
        if not _RFC3339.match(published):
            raise ValidationError(f"{where}published_at={published!r} is not RFC 3339; "
                                  "use e.g. 2024-05-01T12:00:00Z", field=where + "published_at",
                                  code="invalid_date")
        try:
            datetime.fromisoformat(published.replace("z", "Z").replace("t", "T"))
        except ValueError:
            raise ValidationError(f"{where}published_at={published!r} is not a real date", code="invalid_date",
                                  field=where + "published_at") from None
    lang = _string(obj, "lang", where, 35)
    if lang is not None and not _LANG.match(lang):
        raise ValidationError(f"{where}lang={lang!r} is not a language tag; use e.g. zh, en, zh-Hant",
                              field=where + "lang")
    raw_id = obj.get("id")
    derived = raw_id is None
    if raw_id is None:
        article_id = derive_id(url, title, body)
    else:
        if not isinstance(raw_id, str):
            raise ValidationError(f"{where}id must be a string, not {type(raw_id).__name__}", field=where + "id")
        if not raw_id or len(raw_id) > max_id_length:
            raise ValidationError(f"{where}id must be 1 to {max_id_length} characters long", field=where + "id",
                                  code="invalid_id")
        if _has_control(raw_id) or raw_id != raw_id.strip():
            raise ValidationError(f"{where}id must not contain control characters or surrounding spaces",
                                  field=where + "id", code="invalid_id")
        article_id = raw_id
    art = ArticleIn(id=article_id, title=title, text=text, html=html, url=url, source=source,
                    published_at=published, lang=lang, id_derived=derived)
    return art, ignored


def parse_submission(body: Any, *, max_batch: int = 500, max_text_chars: int = 2_000_000,
                     max_id_length: int = 256) -> list[tuple[ArticleIn, list[str]]]:
    """One article object or ``{"articles": [...]}``; all or nothing: one bad article rejects the batch."""
    if isinstance(body, dict) and "articles" in body:
        items = body["articles"]
        if not isinstance(items, list):
            raise ValidationError("articles must be a list of article objects", field="articles")
        if not items:
            raise ValidationError(f"articles is empty; send 1 to {max_batch} articles", field="articles")
        if len(items) > max_batch:
            raise PayloadTooLarge(f"{len(items)} articles in one request; the limit is {max_batch}",
                                  code="batch_too_large")
        out = [parse_article(a, max_text_chars=max_text_chars, max_id_length=max_id_length,
                             where=f"articles[{i}].") for i, a in enumerate(items)]
        seen: dict[str, int] = {}
        for i, (a, _) in enumerate(out):
            if a.id in seen and not a.id_derived:
                prev = out[seen[a.id]][0]
                if prev.content_hash() != a.content_hash():
                    raise ValidationError(f"articles[{i}].id {a.id!r} repeats articles[{seen[a.id]}] with other "
                                          "content", field=f"articles[{i}].id", code="duplicate_id")
            seen.setdefault(a.id, i)
        return out
    return [parse_article(body, max_text_chars=max_text_chars, max_id_length=max_id_length)]
