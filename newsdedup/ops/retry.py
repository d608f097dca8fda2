"""``newsdedup retry``: put dead-lettered (failed) articles back on the queue once their cause is fixed."""

from __future__ import annotations

import argparse
import json
import sys

from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.errors import NewsDedupError
from newsdedup.storage.redis_client import connect


def retry_command(args: argparse.Namespace) -> int:
    ids = list(getattr(args, "ids", None) or getattr(args, "id", None) or [])
    if not ids and not getattr(args, "all", False):
        print("newsdedup retry: give article ids or --all", file=sys.stderr)
        return 2
    config = Config.from_env()
    if not config.redis_url:
        print("newsdedup retry: error: REDIS_URL is not set; point it at the service's Redis", file=sys.stderr)
        return 2
    try:
        client = connect(config)
        result = Dedup(client, config).retry_failed(None if getattr(args, "all", False) else ids)
    except NewsDedupError as exc:
        print(f"newsdedup retry: error: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0
