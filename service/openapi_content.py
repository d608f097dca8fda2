"""OpenAPI pieces for failed scrapes: ``content``/``content_reason`` and the stats' ``content_none``."""

from __future__ import annotations

from typing import Any

_DOC = ("none: no story text was left once page code, markup, URLs and undecodable text were removed "
        "(a failed scrape); such a page is never clustered by its leftovers")
_REASON = {"type": "string", "enum": ["script", "undecodable", "too_short", None], "nullable": True,
           "description": "Why content is none: the page was script/markup, undecodable bytes "
                          "(wrong charset), or too short; null when content is story"}
CHECK_REQUIRED = ["content", "content_reason"]


def article_content() -> dict[str, Any]:
    """Properties of a stored article (content is null until it is done)."""
    return {"content": {"type": "string", "enum": ["story", "none", None], "nullable": True,
                        "description": _DOC + "; null until done"},
            "content_reason": _REASON}


def check_content() -> dict[str, Any]:
    """Properties of a POST /v1/check result."""
    return {"content": {"type": "string", "enum": ["story", "none"], "description": _DOC},
            "content_reason": _REASON}


def content_none(count: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/stats: done articles without story text, in all and by reason."""
    names = ["total", "script", "undecodable", "too_short"]
    return {"type": "object", "properties": dict.fromkeys(names, count), "required": names,
            "additionalProperties": False, "description": "Done articles without story text (failed scrapes)"}
