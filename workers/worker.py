"""``newsdedup worker``: one queue consumer process.

SIGTERM/SIGINT finish the batch in hand (or leave it pending for another
worker to claim) and exit; nothing is left half-written because every write is
one atomic transaction.
"""

from __future__ import annotations

import logging
import signal
import threading

from newsdedup.config import Config
from newsdedup.observe.logs import setup as setup_logging
from newsdedup.storage.redis_client import Client, connect
from workers.consumer import Worker


def make_client(config: Config) -> Client:
    """The worker's client: 2 s more socket timeout than the API's, for XREADGROUP's 1 s BLOCK."""
    return connect(config, read_margin=2.0)


def main(config: Config | None = None) -> None:
    config = config or Config.from_env()
    setup_logging(config)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("signal %s: finishing the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Worker(make_client(config), config).run(stop)


if __name__ == "__main__":
    main()
