"""Log formatting: passwords never reach a log line, request ids are kept or made, JSON lines carry fields."""

from __future__ import annotations

import json
import logging

import pytest

from newsdedup.observe.logs import JsonFormatter, new_request_id, redact


@pytest.mark.parametrize("raw, shown", [
    ("redis://:s3cret@10.0.0.1:6379/0", "redis://:***@10.0.0.1:6379/0"),
    ("rediss://user:s3cret@cache.example/2", "rediss://user:***@cache.example/2"),
    ("redis://cache.example/0?password=s3cret&db=1", "redis://cache.example/0?password=***&db=1"),
    ("unix:///run/redis.sock?password=s3cret", "unix:///run/redis.sock?password=***"),
    ("Redis redis://cache.example:6379/0 (REDIS_URL)", "Redis redis://cache.example:6379/0 (REDIS_URL)"),
])
def test_redact_hides_passwords_and_nothing_else(raw: str, shown: str) -> None:
    assert redact(raw) == shown
    assert "s3cret" not in redact(raw)


def test_request_ids_are_kept_when_sane_and_made_otherwise() -> None:
    assert new_request_id("abc-123") == "abc-123"
    for bad in (None, "", "has space", "x" * 129, "new\nline"):
        made = new_request_id(bad)
        assert made != bad and len(made) == 32 and int(made, 16) >= 0


def test_json_lines_carry_extra_fields_and_redact_the_message() -> None:
    record = logging.LogRecord("newsdedup.test", logging.INFO, __file__, 1, "connected to %s", ("redis://:pw@h/0",),
                               None)
    record.request_id = "r1"
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["message"], line["request_id"]) == (
        "INFO", "newsdedup.test", "connected to redis://:***@h/0", "r1")
