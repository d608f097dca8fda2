"""The OpenAPI 3.0.3 document, built from the running Config so limits and auth are the real ones.

Served at ``/openapi.json``; tests validate it, check real responses against it and fuzz
the app with schemathesis, so it has to describe exactly what the handlers do.
"""

from __future__ import annotations

from typing import Any

from newsdedup import __version__
from newsdedup.config import Config
from newsdedup.observe import events
from service.openapi_content import CHECK_REQUIRED, article_content, check_content, content_none

JSON = "application/json"
RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
LANG = r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,3}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _resp(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _ok(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref(schema)}}}
    if headers:
        out["headers"] = headers
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _obj(properties: dict[str, Any], required: list[str] | None = None, extra: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = list(properties) if required is None else required
    if required:  # OpenAPI 3.0 forbids an empty list
        schema["required"] = required
    if not extra:
        schema["additionalProperties"] = False
    return schema


def _schemas(config: Config) -> dict[str, Any]:
    score = {"type": "number", "minimum": 0, "maximum": 1}
    count = {"type": "integer", "minimum": 0}
    timestamp = {"type": "string", "description": "RFC 3339 time"}
    article_id = {"type": "string", "minLength": 1, "maxLength": config.max_id_length}
    article_fields: dict[str, Any] = {
        "id": {**article_id, "nullable": True,
               "description": "Your id: printable characters, / ? # % : included, no control characters or "
                              "surrounding spaces; omitted = derived "
                              "from the url, else from the content"},
        "title": _nullable({"type": "string", "maxLength": 4000}),
        "text": {"type": "string", "maxLength": config.max_text_chars, "description": "Plain text body"},
        "html": {"type": "string", "maxLength": config.max_text_chars,
                 "description": "HTML page or fragment; the article body is extracted from it"},
        "url": _nullable({"type": "string", "maxLength": 4096}),
        "source": _nullable({"type": "string", "maxLength": 256,
                             "description": "Publisher; boilerplate (repeated blocks) is learned per source"}),
        "published_at": _nullable({"type": "string", "maxLength": 64, "pattern": RFC3339,
                                   "description": "RFC 3339, e.g. 2024-05-01T12:00:00Z"}),
        "lang": _nullable({"type": "string", "maxLength": 35, "pattern": LANG}),
    }
    repeated_block = _obj({"text": {"type": "string"}, "lines": count, "chars": count, "occurrences": count,
                           "share": score})
    member = _obj({"id": {"type": "string"}, "title": _nullable({"type": "string"}),
                   "similarity": {**score, "nullable": True, "description": "Estimated Jaccard with the "
                                  "canonical member"},
                   "canonical": {"type": "boolean", "description": "This member represents the cluster"}},
                  required=["id", "title", "similarity"])
    cluster_props: dict[str, Any] = {
        "cluster_id": {"type": "string"}, "size": count, "canonical_id": _nullable({"type": "string"}),
        "members": {"type": "array", "items": member}, "created_at": _nullable(timestamp),
        "updated_at": _nullable(timestamp),
        "merged_into": {"type": "string", "description": "Present when the requested cluster was merged into "
                                                         "this one"},
        "requested_id": {"type": "string", "description": "The cluster id that was asked for (with merged_into)"},
    }
    return {
        "Error": _obj({"error": _obj({
            "code": {"type": "string", "description": "Stable machine-readable code, e.g. invalid_json, "
                                                      "missing_content, not_found, expired, rate_limited"},
            "message": {"type": "string", "description": "What went wrong and how to fix it"},
            "field": {"type": "string", "description": "The offending field, e.g. articles[3].published_at"},
        }, required=["code", "message"])}),
        "ArticleIn": {
            **_obj(article_fields, required=[], extra=True),
            "description": "Exactly one of text and html. Unknown fields are ignored and listed in "
                           "ignored_fields.",
            "oneOf": [{"required": ["text"]}, {"required": ["html"]}],
        },
        "ArticleBatch": _obj({"articles": {"type": "array", "minItems": 1, "maxItems": config.max_batch,
                                           "items": _ref("ArticleIn")}}),
        "Submission": {"anyOf": [_ref("ArticleIn"), _ref("ArticleBatch")],
                       "description": "One article, or a batch as {\"articles\": [...]}; a batch is all or "
                                      "nothing: one invalid article rejects it"},
        "SubmitResult": _obj({
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "done", "failed"],
                       "description": "queued for new or changed content; re-posting identical content "
                                      "returns the current status"},
            "href": {"type": "string"},
            "ignored_fields": {"type": "array", "items": {"type": "string"},
                               "description": "Unknown fields of this article that were ignored"},
            "updated": {"type": "boolean", "description": "true when an existing article got new content"},
        }, required=["id", "status", "href"]),
        "SubmitResponse": _obj({"articles": {"type": "array", "items": _ref("SubmitResult")}}),
        "SubmitResults": _obj({"articles": {"type": "array", "items": _ref("Article")}}),  # as GET shows each
        "Event": _obj({
            "cursor": {"type": "string", "description": "Opaque; pass as after= to resume after this event"},
            "type": {"type": "string", "enum": list(events.TYPES)},
            "at": _nullable(timestamp), "id": {"type": "string", "description": "The article (article.*)"},
            "cluster_id": _nullable({"type": "string", "description": "article.done: its cluster; "
                                     "cluster.merged: the cluster the merged ones became"}),
            "cluster_size": count, "duplicate_of": _nullable({"type": "string", "description": "The cluster's "
                                                               "canonical article, when it is not this one"}),
            "duplicates": {"type": "array", "items": _ref("Duplicate"),
                           "description": "Duplicates verified when the article was processed (at most 50)"},
            "merged": {"type": "array", "items": {"type": "string"}, "description": "Cluster ids merged away"},
            "error": {"type": "string"}, "attempts": count, "request_id": {"type": "string"},
        }, required=["cursor", "type", "at"]),
        "EventPage": _obj({"events": {"type": "array", "items": _ref("Event")}, "next_cursor": {
            "type": "string", "description": "Resume here (the same cursor when there was nothing new)"}}),
        "Duplicate": _obj({"id": {"type": "string"}, "similarity": score, "containment": score}),
        "RepeatedBlock": repeated_block,
        "Article": _obj({
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "done", "failed"]},
            "cluster_id": _nullable({"type": "string"}),
            "duplicate_of": _nullable({"type": "string"}),
            "duplicates": {"type": "array", "items": _ref("Duplicate")},
            "title": _nullable({"type": "string"}), "url": _nullable({"type": "string"}),
            "source": _nullable({"type": "string"}),
            "published_at": _nullable({"type": "string"}),
            "ingested_at": _nullable(timestamp),
            "processed_at": _nullable(timestamp),
            "lang": _nullable({"type": "string"}),
            "repeated_blocks": {"type": "array", "items": _ref("RepeatedBlock")},
            "repeated_share": _nullable(score), "tokens": _nullable(count),
            "boilerplate_lines": {**count, "description": "Lines dropped as the source's boilerplate"},
            "error": _nullable({"type": "string", "description": "Why processing failed"}),
            "attempts": count, **article_content(),
            "text": _nullable({"type": "string", "description": "The cleaned text that was compared "
                                                                "(when NEWSDEDUP_KEEP_TEXT)"}),
        }, required=["id", "status", "cluster_id", "duplicate_of", "duplicates", "title", "url", "source",
                     "published_at", "ingested_at", "processed_at", "lang", "repeated_blocks", "repeated_share",
                     "tokens", "error", "attempts"]),
        "Deleted": _obj({"id": {"type": "string"}, "deleted": {"type": "boolean", "enum": [True]}}),
        "Span": {"type": "array", "items": count, "minItems": 2, "maxItems": 2,
                 "description": "[start, end) character offsets in that side's kept text"},
        "Passage": _obj({"a": _ref("Span"), "b": _ref("Span"), "tokens": {**count, "description": "Tokens of A "
                                                                                                  "in it"}}),
        "ComparedBlock": _obj({
            **repeated_block["properties"],
            "first_line": {**count, "description": "Line number (from 0) of the block's first line"},
            "line_numbers": {"type": "array", "items": count, "description": "Lines of the first occurrence"},
            "repeat_lines": {"type": "array", "items": count, "description": "Lines of the later copies (left "
                                                                             "out of the body)"},
        }, required=list(repeated_block["properties"])),
        "ComparedSide": _obj({
            "id": {"type": "string"}, "title": {"type": "string"}, "source": _nullable({"type": "string"}),
            "url": _nullable({"type": "string"}), "cluster_id": _nullable({"type": "string"}),
            "text": {"type": "string", "description": "The kept text that was compared; passages point into it"},
            "page": {"type": "string", "enum": ["as_submitted", "kept_text"],
                     "description": "as_submitted: line numbers refer to the page as posted (its text lines, or "
                                    "the lines extracted from its HTML); kept_text: only the kept text is stored "
                                    "(its whole page was the body, or it was stored before pages were kept)"},
            "lines": count,
            "boilerplate_lines": {"type": "array", "description": "Lines dropped as the source's boilerplate",
                                  "items": _obj({"line": count, "text": {"type": "string"}})},
            "repeated_blocks": {"type": "array", "items": _ref("ComparedBlock")},
        }),
        "Comparison": _obj({
            "a": _ref("ComparedSide"), "b": _ref("ComparedSide"),
            "same_cluster": {"type": "boolean"},
            "similarity": {**score, "description": "Exact Jaccard of the two kept texts' shingle sets"},
            "containment": _obj({"a_in_b": {**score, "description": "Share of A's shingles found in B"},
                                 "b_in_a": {**score, "description": "Share of B's shingles found in A"}}),
            "shingle_length": {"type": "integer", "minimum": 1},
            "shingles": _obj({"a": count, "b": count, "shared": count}),
            "passages": {"type": "array", "items": _ref("Passage"),
                         "description": "Shared passages, longest first; each stretch of either text at most once"},
        }),
        "Cluster": _obj(cluster_props, required=["cluster_id", "size", "canonical_id", "members", "created_at",
                                                 "updated_at"]),
        "ClusterPage": _obj({"clusters": {"type": "array", "items": _ref("Cluster")},
                             "next_cursor": _nullable({"type": "string"})}),
        "CheckResult": _obj({
            "duplicates": {"type": "array", "items": _obj({"id": {"type": "string"}, "similarity": score,
                                                           "containment": score,
                                                           "cluster_id": _nullable({"type": "string"})})},
            "cluster_id": _nullable({"type": "string"}),
            "repeated_blocks": {"type": "array", "items": _ref("RepeatedBlock")},
            "repeated_share": score,
            "tokens": count,
            **check_content(), "ignored_fields": {"type": "array", "items": {"type": "string"}},
        }, required=["duplicates", "cluster_id", "repeated_blocks", "repeated_share", "tokens", *CHECK_REQUIRED]),
        "Stats": _obj({"articles": count, "clusters": {**count, "description": "Clusters including singletons"},
                       "clusters_with_duplicates": {**count, "description": "Clusters of 2 or more"},
                       "expired": {**count, "description": "Articles removed because they were older than "
                                                           "NEWSDEDUP_RETENTION (since the database was created)"},
                       "content_none": content_none(count),
                       "queue": _obj({"pending": count, "in_flight": count, "failed": count})},
                      required=["articles", "clusters", "queue"]),
        "RetryRequest": _obj({"ids": {"type": "array", "maxItems": config.max_batch, "items": article_id}},
                             required=[]),
        "RetryResult": _obj({"retried": {"type": "array", "items": {"type": "string"}},
                             "unknown": {"type": "array", "items": {"type": "string"},
                                         "description": "ids that name no article (skipped)"}},
                            required=["retried"]),
        "Health": _obj({"status": {"type": "string", "enum": ["ok"]}}),
        "Ready": _obj({"status": {"type": "string", "enum": ["ready"]}}),
    }


def _responses(config: Config) -> dict[str, Any]:
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying", "required": True,
                                   "schema": {"type": "integer", "minimum": 1}}}
    error = {JSON: {"schema": _ref("Error")}}
    return {
        "BadRequest": {"description": "Invalid request: malformed or non-UTF-8 JSON, a non-JSON Content-Type, "
                                      "nesting deeper than 64 levels (code invalid_json), or a field that "
                                      "fails validation (error.field names it)", "content": error},
        "Unauthorized": {"description": "Missing or invalid API key (only when the server has API keys "
                                        "configured)", "content": error,
                         "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}},
        "NotFound": {"description": "No such article or cluster (code not_found); an article removed by the "
                                    "retention window answers code expired for one window more", "content": error},
        "PayloadTooLarge": {"description": f"Body larger than {config.max_body} bytes (payload_too_large) or "
                                           f"more than {config.max_batch} articles (batch_too_large)",
                            "content": error},
        "Conflict": {"description": "An article's kept text is not there: not processed yet, or stored with "
                                    "NEWSDEDUP_KEEP_TEXT=false (code text_unavailable)", "content": error},
        "Unprocessable": {"description": "The text has no letters or digits to compare (no_content)",
                          "content": error},
        "RateLimited": {"description": f"More than {config.rate_limit} requests this minute from this client",
                        "content": error, "headers": retry_after},
        "Unavailable": {"description": "Redis is unreachable; retry after Retry-After seconds",
                        "content": error, "headers": retry_after},
        "InternalError": {"description": "A bug (logged); never expected", "content": error},
    }


def _operation(summary: str, responses: dict[str, Any], *, tag: str, op_id: str, write: bool, config: Config,
               body: str | None = None, body_required: bool = True, parameters: list[Any] | None = None,
               description: str | None = None, public: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {JSON: {"schema": _ref(body)}}}
    common: dict[str, Any] = {}
    if body is not None:
        common["400"] = _resp("BadRequest")
        common["413"] = _resp("PayloadTooLarge")
    secured = bool(config.api_keys) and not public and (write or config.auth_reads)
    if secured:
        common["401"] = _resp("Unauthorized")
        op["security"] = [{"bearerAuth": []}]
    else:
        op["security"] = []
    if not public:
        if config.rate_limit > 0:
            common["429"] = _resp("RateLimited")
        common["503"] = _resp("Unavailable")
    common["500"] = _resp("InternalError")
    op["responses"] = {**responses, **{k: v for k, v in common.items() if k not in responses}}
    return op


def build_openapi(config: Config) -> dict[str, Any]:
    """The document for this configuration (limits, auth and rate limit as configured)."""
    path_id = {"name": "article_id", "in": "path", "required": True,
               "description": "The article id, percent-encoded as one path segment (a literal / separates route "
               "parts: encode / as %2F)", "schema": {"type": "string", "minLength": 1}}
    path_other = {**path_id, "name": "other_id", "description": "The article to compare with, percent-encoded "
                  "like article_id"}
    path_cid = {"name": "cluster_id", "in": "path", "required": True,
                "description": "A cluster id, e.g. c42; merged-away ids resolve to the cluster they became",
                "schema": {"type": "string", "minLength": 1}}
    q_min = {"name": "min_size", "in": "query", "required": False, "description": "Smallest cluster size",
             "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000_000, "default": 2}}
    q_limit = {"name": "limit", "in": "query", "required": False, "description": "Clusters per page",
               "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}
    q_cursor = {"name": "cursor", "in": "query", "required": False,
                "description": "next_cursor from the previous page",
                "schema": {"type": "string", "minLength": 1, "maxLength": 256}}
    location = {"Location": {"description": "URL of the article (single-article submissions only)",
                             "schema": {"type": "string"}}}
    q_wait = {"name": "wait", "in": "query", "required": False, "description": "Seconds to wait (blocking on "
              "Redis) for the results", "schema": {"type": "integer", "minimum": 0, "maximum": 30, "default": 0}}
    events_params = [
        {"name": "after", "in": "query", "required": False, "description": "A cursor (next_cursor, or an "
         "event's cursor); \"end\" = only what happens from now on; absent = the oldest event kept",
         "schema": {"type": "string", "minLength": 1, "maxLength": 64}},
        {"name": "limit", "in": "query", "required": False, "description": "Events per page", "schema": {
            "type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}, q_wait]
    paths: dict[str, Any] = {
        "/v1/articles": {"post": _operation(
            "Submit articles", {"202": _ok("Accepted: queued for the workers (or unchanged)", "SubmitResponse",
                                           location),
                                "200": _ok("With wait: every article was processed in time", "SubmitResults",
                                           location),
                                "422": _resp("Unprocessable")},
            tag="articles", op_id="submitArticles", body="Submission", parameters=[q_wait],
            description=f"One article object or {{\"articles\": [...]}} (1 to {config.max_batch}). Processing "
                        "is asynchronous: with ?wait=S (at most 30) the answer is 200 with the results once "
                        "every article is processed within S seconds, else 202 as without; or follow "
                        "/v1/events.", config=config, write=True)},
        "/v1/events": {"get": _operation(
            "The events feed", {"200": _ok("Events after the cursor, oldest first", "EventPage"),
                                "400": _resp("BadRequest")},
            tag="operations", op_id="listEvents", parameters=events_params, config=config, write=False,
            description=f"article.done/failed/deleted/expired and cluster.merged, from a stream capped at about "
                        f"{config.events_maxlen} events (NEWSDEDUP_EVENTS_MAXLEN). With wait, an empty page is "
                        "answered only after waiting that many seconds for an event.")},
        "/metrics": {"get": _operation("Prometheus metrics", {"200": {"description": "Prometheus text format",
                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}, tag="operations",
                                       op_id="metrics", config=config, write=False)},
        "/v1/articles/{article_id}": {
            "get": _operation("Get an article and its duplicates",
                              {"200": _ok("The article", "Article"), "404": _resp("NotFound")},
                              tag="articles", op_id="getArticle", parameters=[path_id], config=config, write=False),
            "delete": _operation("Delete an article", {"200": _ok("Deleted", "Deleted"), "404": _resp("NotFound")},
                                 tag="articles", op_id="deleteArticle", parameters=[path_id], config=config,
                                 write=True),
        },
        "/v1/articles/{article_id}/compare/{other_id}": {"get": _operation(
            "Compare two articles: why they are (or are not) duplicates",
            {"200": _ok("Exact figures and shared passages", "Comparison"), "404": _resp("NotFound"),
             "409": _resp("Conflict")},
            tag="articles", op_id="compareArticles", parameters=[path_id, path_other], config=config, write=False,
            description="Any two stored, processed articles, in one cluster or not. Jaccard and containment are "
                        "computed exactly from the kept texts (the engine decided with MinHash estimates); "
                        "passages are aligned runs of shared shingles as character spans.")},
        "/v1/clusters": {"get": _operation(
            "List clusters", {"200": _ok("A page of clusters, most recently updated first", "ClusterPage"),
                              "400": _resp("BadRequest")},
            tag="clusters", op_id="listClusters", parameters=[q_min, q_limit, q_cursor], config=config, write=False)},
        "/v1/clusters/{cluster_id}": {"get": _operation(
            "Get a cluster", {"200": _ok("The cluster", "Cluster"), "404": _resp("NotFound")},
            tag="clusters", op_id="getCluster", parameters=[path_cid], config=config, write=False)},
        "/v1/check": {"post": _operation(
            "Find duplicates of an article without storing it",
            {"200": _ok("Duplicates among stored articles", "CheckResult"), "422": _resp("Unprocessable")},
            tag="articles", op_id="checkArticle", body="ArticleIn", config=config, write=False)},
        "/v1/stats": {"get": _operation("Counts and queue depth", {"200": _ok("Statistics", "Stats")},
                                        tag="operations", op_id="getStats", config=config, write=False)},
        "/v1/admin/retry": {"post": _operation(
            "Re-queue failed articles", {"200": _ok("The ids that were re-queued (ids that are not failed are "
                                                    "skipped)", "RetryResult"),
                                         "404": _resp("NotFound")},
            tag="operations", op_id="retryFailed", body="RetryRequest", body_required=False,
            description="{\"ids\": [...]} re-queues those failed articles; {} or an empty body re-queues all.",
            config=config, write=True)},
        "/healthz": {"get": _operation("Liveness", {"200": _ok("The process is up", "Health")},
                                       tag="operations", op_id="healthz", public=True, config=config, write=False)},
        "/readyz": {"get": _operation(
            "Readiness", {"200": _ok("Redis is reachable", "Ready"), "503": _resp("Unavailable")},
            tag="operations", op_id="readyz", public=True, config=config, write=False)},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "tags": ["operations"], "security": [],
            "responses": {"200": {"description": "OpenAPI 3.0.3 document",
                                  "content": {JSON: {"schema": {"type": "object"}}}},
                          "500": _resp("InternalError")}}},
    }
    auth_note = ("Writes need Authorization: Bearer <key>" + (", and so do reads." if config.auth_reads else
                                                              "; reads and /v1/check do not.")
                 if config.api_keys else "No API keys are configured: no authentication.")
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "newsdedup",
            "version": __version__,
            "x-limits": {"max_batch": config.max_batch, "max_body": config.max_body,
                         "max_id_length": config.max_id_length, "max_wait": 30},
            "description": "Near-duplicate news detection. Every error is {\"error\": {\"code\", \"message\"}} "
                           "(+ field); unknown routes answer 404 not_found and wrong methods 405 "
                           f"method_not_allowed in the same shape. {auth_note} Every answer carries "
                           "X-Request-ID: the one the client sent (1-128 visible ASCII characters) or a new one; "
                           "it follows the articles into the workers' logs.",
        },
        "tags": [{"name": "articles"}, {"name": "clusters"}, {"name": "operations"}],
        "paths": paths,
        "components": {
            "schemas": _schemas(config),
            "responses": _responses(config),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "One of the keys in NEWSDEDUP_API_KEYS"}},
        },
    }
