"""The ``newsdedup`` command: run the service (``up``, ``serve``, ``worker``) and talk to it (``ingest``).

Every subcommand builds its settings with ``Config.from_env()``; a bad setting
prints ``newsdedup: error: <message>`` and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from newsdedup import __version__
from newsdedup.config import Config
from newsdedup.errors import ConfigError, NewsDedupError
from newsdedup.ops import supervisor
from newsdedup.ops.supervisor import DEFAULT_HOST, DEFAULT_PORT, default_workers, serve_command

log = logging.getLogger("newsdedup.cli")


def cmd_up(args: argparse.Namespace) -> int:
    config = Config.from_env()
    _setup_logging(config)
    return supervisor.up(config, args.host, args.port, args.workers,
                         Path(args.data_dir) if args.data_dir else config.data_dir, cluster=args.cluster)


def cmd_serve(args: argparse.Namespace) -> int:
    """Exec gunicorn (never Flask's development server)."""
    Config.from_env()  # fail here, readably, rather than inside every gunicorn worker
    argv = serve_command(args.host, args.port, processes=args.processes, threads=args.threads)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def cmd_worker(args: argparse.Namespace) -> int:
    config = Config.from_env()
    _setup_logging(config)
    from workers.worker import main as worker_main  # lazy: the HTTP-only commands need none of it

    worker_main(config)  # returns once a SIGTERM/SIGINT has let it finish its batch
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from newsdedup.ops.evaluate import main as eval_main

    rc = eval_main(args)
    return int(rc or 0)


def cmd_retry(args: argparse.Namespace) -> int:
    from newsdedup.ops.retry import retry_command

    return int(retry_command(args) or 0)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .ops.sweep import sweep_command

    return sweep_command(args)


def _setup_logging(config: Config) -> None:
    from newsdedup.observe.logs import setup

    setup(config)


def cmd_ingest(args: argparse.Namespace) -> int:
    from newsdedup.ops.ingest import ingest

    return ingest(args)


def cmd_export(args: argparse.Namespace) -> int:
    from newsdedup.ops.export import export

    return export(args)


# --- wiring ------------------------------------------------------------------------------------------------------

def _positive_int(raw: str) -> int:
    try:
        v = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def _port(raw: str) -> int:
    try:
        v = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port number") from None
    if not 0 < v < 65536:
        raise argparse.ArgumentTypeError(f"{v} is not a port number (1-65535)")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsdedup", description="Near-duplicate news detection service.")
    parser.add_argument("--version", action="version", version=f"newsdedup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("up", help="run API + workers (+ embedded Redis unless REDIS_URL is set) in the foreground")
    p.add_argument("--host", default=DEFAULT_HOST, help="address the API binds (default %(default)s)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="API port (default %(default)s)")
    p.add_argument("--workers", type=_positive_int, default=default_workers(),
                   help="queue worker processes (default: one per core, at most 8; here %(default)s)")
    p.add_argument("--data-dir", default=None,
                   help="embedded Redis data lives in DATA_DIR/redis (default NEWSDEDUP_DATA_DIR or ./var)")
    p.add_argument("--cluster", action="store_true",
                   help="start a local Redis Cluster (3 masters + 3 replicas, in DATA_DIR/cluster) instead of one "
                        "Redis; the API and workers use it through the cluster client (docs/cluster.md)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("serve", help="run the HTTP API under gunicorn (production server)")
    p.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port (default %(default)s)")
    p.add_argument("--processes", type=_positive_int, default=None,
                   help="gunicorn processes (default NEWSDEDUP_API_PROCESSES or min(2 x cores, 4))")
    p.add_argument("--threads", type=_positive_int, default=4, help="threads per process (default 4)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run one queue worker (needs REDIS_URL)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("ingest", help="POST a JSON-lines file of articles to a running service")
    p.add_argument("file", metavar="FILE.jsonl[.gz]", help="one article object per line; .gz is decompressed")
    p.add_argument("--url", default=f"http://{DEFAULT_HOST}:{DEFAULT_PORT}", help="service base URL")
    p.add_argument("--batch-size", type=_positive_int, default=200, help="articles per request (default 200)")
    p.add_argument("--api-key", default=os.environ.get("NEWSDEDUP_API_KEY") or None,
                   help="Bearer key (default env NEWSDEDUP_API_KEY)")
    p.add_argument("--wait", action="store_true", help="then wait until the workers have processed the queue")
    p.add_argument("--wait-timeout", type=float, default=None, help="give up waiting after this many seconds")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("export", help="write every cluster and its members, read from Redis (REDIS_URL)")
    p.add_argument("--min-size", type=_positive_int, default=2, help="smallest cluster exported (default 2)")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="default jsonl")
    p.add_argument("--out", metavar="FILE", default=None, help="default stdout")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("eval", help="cluster a labelled set and score it (see newsdedup.evaluate)")
    p.add_argument("set", metavar="SET.jsonl[.gz]", help="labelled set from shared/eval/evalset.py")
    p.add_argument("--compare", action="store_true", help="also score the off-the-shelf baselines")
    p.add_argument("--out", metavar="PREDICTIONS.jsonl", default=None, help="write {id, cluster_id} lines here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("retry", help="re-queue dead-lettered articles")
    p.add_argument("ids", nargs="*", metavar="ID", help="article ids to retry")
    p.add_argument("--all", action="store_true", help="retry every dead-lettered article")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("sweep", help="remove articles older than NEWSDEDUP_RETENTION now (workers do it anyway)")
    p.add_argument("--dry-run", action="store_true", help="only count the expired articles")
    p.set_defaults(func=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "retry" and not args.ids and not args.all:
        parser.error("retry: give article ids or --all")
    if args.command == "retry" and args.ids and args.all:
        parser.error("retry: give article ids or --all, not both")
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"newsdedup: error: {e.message}", file=sys.stderr)
        return 2
    except NewsDedupError as e:
        print(f"newsdedup: error: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
