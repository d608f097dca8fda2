"""``newsdedup ingest``: stream a JSON-lines file of articles into a running service.

Lines are validated here with the server's own rules (bad lines never leave the
machine), batched within the server's limits and posted through
:class:`newsdedup.client.Client`, which retries what the service says is temporary.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from newsdedup.articles import parse_article
from newsdedup.client import Client, ClientError
from newsdedup.config import Config
from newsdedup.errors import ConfigError, NewsDedupError


def _pause(seconds: float) -> None:
    """The client's sleep between retries (tests replace it)."""
    time.sleep(seconds)


@dataclass
class IngestStats:
    accepted: int = 0
    rejected: int = 0
    batches: int = 0


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


def _say(message: str) -> None:
    print(f"newsdedup ingest: {message}", file=sys.stderr)


def post_batch(client: Client, items: list[tuple[int, dict[str, Any]]], stats: IngestStats) -> None:
    """POST one batch (the client splits it on 413); a refused batch is reported by its line numbers."""
    where = f"lines {items[0][0]}-{items[-1][0]}" if len(items) > 1 else f"line {items[0][0]}"
    try:
        _, body = client.post_batch([obj for _, obj in items])
    except ClientError as e:
        if e.status in (0, 429, 500, 502, 503, 504):  # the service is away: stop, do not drop the rest
            raise
        stats.batches += 1
        stats.rejected += len(items)
        _say(f"{where}: {e.message}")
        return
    stats.batches += 1
    results = body.get("articles") if isinstance(body, dict) else None
    stats.accepted += len(results) if isinstance(results, list) else len(items)


def wait_for_queue(client: Client, timeout: float | None = None, interval: float = 0.5) -> float:
    """Poll GET /v1/stats until nothing is pending or in flight; returns the seconds waited."""
    t0 = time.monotonic()
    last_report = 0.0
    while True:
        queue = client.stats()["queue"]
        left = int(queue["pending"]) + int(queue["in_flight"])
        waited = time.monotonic() - t0
        if left == 0:
            return waited
        if timeout is not None and waited > timeout:
            raise NewsDedupError(f"the queue still holds {left} articles after {timeout:.0f}s")
        if waited - last_report >= 5:
            last_report = waited
            _say(f"waiting for the workers: {left} articles queued")
        _pause(interval)


def ingest(args: argparse.Namespace) -> int:
    """Stream a JSON-lines file to POST /v1/articles in batches; prints a JSON summary."""
    from tqdm import tqdm

    config = Config.from_env()
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    client = Client(args.url, api_key=args.api_key, timeout=120.0, sleep=lambda s: _pause(s))
    stats = IngestStats()
    t0 = time.monotonic()
    summary: dict[str, Any] = {}
    rc = 0
    try:
        with open_lines(args.file) as f, tqdm(desc="ingest", unit=" articles", file=sys.stderr,
                                              disable=None) as bar:
            batch: list[tuple[int, dict[str, Any]]] = []
            size = 0

            def flush() -> None:
                nonlocal size
                if batch:
                    post_batch(client, batch, stats)
                    bar.update(len(batch))
                    batch.clear()
                    size = 0

            max_batch, max_body = client.limits()
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    parse_article(obj, max_text_chars=config.max_text_chars, max_id_length=config.max_id_length)
                except ValueError as e:  # json.JSONDecodeError
                    stats.rejected += 1
                    bar.update(1)
                    _say(f"line {lineno}: not JSON: {e}")
                    continue
                except NewsDedupError as e:
                    stats.rejected += 1
                    bar.update(1)
                    _say(f"line {lineno}: {e.message}")
                    continue
                if batch and size + len(line) + 1 > max_body - 1024:
                    flush()
                batch.append((lineno, obj))
                size += len(line.encode("utf-8")) + 1
                if len(batch) >= min(args.batch_size, max_batch):
                    flush()
            flush()
        if args.wait:
            summary["waited_seconds"] = round(wait_for_queue(client, timeout=args.wait_timeout), 3)
    except ConfigError:
        raise
    except NewsDedupError as e:  # the service stayed unavailable, or --wait failed: still print the summary
        _say(f"error: {e.message}")
        rc = 1
    seconds = time.monotonic() - t0
    summary = {"accepted": stats.accepted, "rejected": stats.rejected, "batches": stats.batches,
               "retries": client.retries, "seconds": round(seconds, 3),
               "articles_per_second": round(stats.accepted / seconds, 1) if seconds > 0 else None, **summary}
    if rc:
        summary["aborted"] = True
    print(json.dumps(summary), flush=True)
    return rc or (1 if stats.rejected else 0)
