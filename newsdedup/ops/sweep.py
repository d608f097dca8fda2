"""``newsdedup sweep [--dry-run]``: remove expired articles now, or count them.

The workers sweep by themselves every NEWSDEDUP_SWEEP_INTERVAL; this is for operators (after
shortening NEWSDEDUP_RETENTION, or to see what the next sweep will remove). It takes the same lease
as the workers, so it never sweeps alongside one; it prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

from newsdedup.config import Config
from newsdedup.errors import ConfigError
from newsdedup.retention.sweeper import Sweeper, cutoff_ms
from newsdedup.storage.redis_client import connect
from newsdedup.storage.txn import storage_errors

LEASE_WAIT_SECONDS = 30.0


def sweep_command(args: argparse.Namespace, config: Config | None = None) -> int:
    config = config or Config.from_env()
    if not config.redis_url:
        raise ConfigError("REDIS_URL is not set; point it at the service's Redis")
    if config.retention <= 0:
        raise ConfigError("NEWSDEDUP_RETENTION is not set, so nothing expires; set it to the window the service "
                          "runs with, e.g. NEWSDEDUP_RETENTION=30d")
    client = connect(config)
    sweeper = Sweeper(client, config, name=f"cli-{socket.gethostname()}-{os.getpid()}")
    out: dict[str, object] = {"retention_seconds": config.retention, "retention_by": config.retention_by,
                              "cutoff_ms": cutoff_ms(config)}
    with storage_errors():
        if args.dry_run:
            out.update(dry_run=True, expired=sweeper.expired_count())
        else:
            deadline = time.monotonic() + LEASE_WAIT_SECONDS
            while not sweeper.acquire():  # a worker is sweeping: wait for it to finish
                if time.monotonic() >= deadline:
                    print("newsdedup sweep: error: another process holds the sweep lease; try again later",
                          file=sys.stderr)
                    return 1
                time.sleep(0.2)
            try:
                res = sweeper.sweep()
            finally:
                sweeper.release()
            out.update(dry_run=False, removed=res.removed, batches=res.batches)
    print(json.dumps(out))
    return 0
