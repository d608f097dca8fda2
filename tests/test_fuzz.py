"""Property-based fuzzing of every operation with schemathesis, against a real Redis.

The schema is the document the app serves (``build_openapi`` for the fuzzed
config; a test checks they are equal), so this proves that whatever a client
may send according to the document, and plenty it may not, gets a documented
answer: never a 500, always a documented status, body and headers. Bounded and
derandomized so it is quick and reproducible in ``make test``.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
import redis
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from newsdedup.config import Config
from service import create_app
from service.openapi import build_openapi

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance,
          response_headers_conformance]
MAX_EXAMPLES = 25
# Rate limiting off (fuzzing is a flood); small limits so the limit paths are reachable.
FUZZ_SETTINGS = {"rate_limit": 0, "max_batch": 20, "max_body": 256 * 1024}

schema = schemathesis.openapi.from_dict(build_openapi(Config(**FUZZ_SETTINGS)))  # type: ignore[arg-type]
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                max_examples=MAX_EXAMPLES, deterministic=True)


@pytest.fixture
def app(config: Config, redis_client: redis.Redis) -> Flask:
    return create_app(config.replace(**FUZZ_SETTINGS))


def test_fuzzed_document_is_the_served_one(app: Flask) -> None:
    assert app.test_client().get("/openapi.json").get_json() == schema.raw_schema


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_survives_fuzzing(case: schemathesis.Case, app: Flask) -> None:
    case.call_and_validate(app=app, checks=CHECKS)


@given(article_id=st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40)
       .filter(lambda s: s == s.strip()))
@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_any_printable_id_round_trips_percent_encoded(app: Flask, article_id: str) -> None:
    """Ids as users have them (/ ? # % : and any script): stored, reachable and returned exactly as given."""
    client = app.test_client()
    r = client.post("/v1/articles", json={"id": article_id, "text": "words enough to be an article"})
    assert r.status_code == 202, r.data
    assert r.headers["Location"] == "/v1/articles/" + quote(article_id, safe="")
    got = client.get(r.headers["Location"])
    assert got.status_code == 200 and got.get_json()["id"] == article_id
    assert client.delete(r.headers["Location"]).get_json() == {"id": article_id, "deleted": True}
