"""``newsdedup ingest``: stream a JSON-lines file of articles to a running service."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from newsdedup.client import HttpClient, error_text
from newsdedup.config import Config
from newsdedup.errors import ConfigError, NewsDedupError


@contextlib.contextmanager
def open_lines(path: str) -> Iterator[IO[str]]:
    """A text stream over a JSON-lines file; ``.gz`` is decompressed and ``-`` is stdin."""
    if path == "-":
        yield sys.stdin
        return
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such file")
    opener: Callable[..., IO[str]] = gzip.open if p.suffix == ".gz" else open  # type: ignore[assignment]
    with opener(p, "rt", encoding="utf-8") as f:
        yield f


def _post_batch(client: HttpClient, items: list[tuple[int, dict[str, Any]]], max_body: int) -> None:
    """POST one batch; split it when the service (or max_body) says it is too large."""
    body = json.dumps({"articles": [obj for _, obj in items]}, ensure_ascii=False).encode("utf-8")
    where = f"lines {items[0][0]}-{items[-1][0]}" if len(items) > 1 else f"line {items[0][0]}"
    stats = client.stats
    if len(body) > max_body and len(items) > 1:
        half = len(items) // 2
        _post_batch(client, items[:half], max_body)
        _post_batch(client, items[half:], max_body)
        return
    status, data = client.request("POST", "/v1/articles", body)
    stats.batches += 1
    if 200 <= status < 300:
        try:
            results = json.loads(data).get("articles")
        except (ValueError, AttributeError):
            results = None
        if not isinstance(results, list):
            stats.accepted += len(items)
            return
        for (lineno, _), res in zip(items, results, strict=False):
            if isinstance(res, dict) and res.get("error"):
                stats.rejected += 1
                print(f"newsdedup ingest: line {lineno}: {json.dumps(res['error'], ensure_ascii=False)}",
                      file=sys.stderr)
            else:
                stats.accepted += 1
        return
    if status == 413 and len(items) > 1:
        half = len(items) // 2
        _post_batch(client, items[:half], max_body)
        _post_batch(client, items[half:], max_body)
        return
    stats.rejected += len(items)
    print(f"newsdedup ingest: {where}: HTTP {status} {error_text(data)}", file=sys.stderr)


def wait_for_queue(client: HttpClient, timeout: float | None = None, interval: float = 0.5) -> float:
    """Poll GET /v1/stats until nothing is pending or in flight; returns the seconds waited."""
    t0 = time.monotonic()
    last_report = 0.0
    while True:
        status, data = client.request("GET", "/v1/stats")
        if status != 200:
            raise NewsDedupError(f"GET /v1/stats answered HTTP {status} {error_text(data)}")
        stats = json.loads(data)
        queue = stats.get("queue", stats) if isinstance(stats, dict) else {}
        if not isinstance(queue, dict):
            queue = {}
        left = int(queue.get("pending") or 0) + int(queue.get("in_flight") or 0)
        waited = time.monotonic() - t0
        if left == 0:
            return waited
        if timeout is not None and waited > timeout:
            raise NewsDedupError(f"the queue still holds {left} articles after {timeout:.0f}s")
        if waited - last_report >= 5:
            last_report = waited
            print(f"newsdedup ingest: waiting for the workers: {left} articles queued", file=sys.stderr)
        client.pause(interval)


def ingest(args: argparse.Namespace) -> int:
    """Stream a JSON-lines file to POST /v1/articles in batches; prints a JSON summary."""
    from tqdm import tqdm

    from newsdedup.articles import parse_article

    config = Config.from_env()
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    client = HttpClient(args.url, api_key=args.api_key)
    stats = client.stats
    t0 = time.monotonic()
    summary: dict[str, Any] = {}
    rc = 0
    try:
        with open_lines(args.file) as f, tqdm(desc="ingest", unit=" articles", file=sys.stderr,
                                              disable=None) as bar:
            batch: list[tuple[int, dict[str, Any]]] = []

            def flush() -> None:
                if batch:
                    _post_batch(client, batch, config.max_body)
                    bar.update(len(batch))
                    batch.clear()

            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    parse_article(obj, max_text_chars=config.max_text_chars, max_id_length=config.max_id_length)
                except ValueError as e:  # json.JSONDecodeError
                    stats.rejected += 1
                    bar.update(1)
                    print(f"newsdedup ingest: line {lineno}: not JSON: {e}", file=sys.stderr)
                    continue
                except NewsDedupError as e:
                    stats.rejected += 1
                    bar.update(1)
                    print(f"newsdedup ingest: line {lineno}: {e.message}", file=sys.stderr)
                    continue
                batch.append((lineno, obj))
                if len(batch) >= args.batch_size:
                    flush()
            flush()
        if args.wait:
            summary["waited_seconds"] = round(wait_for_queue(client, timeout=args.wait_timeout), 3)
    except ConfigError:
        raise
    except NewsDedupError as e:  # the service stayed unavailable, or --wait failed: still print the summary
        print(f"newsdedup ingest: error: {e.message}", file=sys.stderr)
        rc = 1
    seconds = time.monotonic() - t0
    summary = {"accepted": stats.accepted, "rejected": stats.rejected, "batches": stats.batches,
               "retries": stats.retries, "seconds": round(seconds, 3),
               "articles_per_second": round(stats.accepted / seconds, 1) if seconds > 0 else None, **summary}
    if rc:
        summary["aborted"] = True
    print(json.dumps(summary), flush=True)
    return rc or (1 if stats.rejected else 0)
