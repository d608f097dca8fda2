"""The ``newsdedup`` command: run the service (``up``, ``serve``, ``worker``) and talk to it (``ingest``).

Every subcommand builds its settings with ``Config.from_env()``; a bad setting
prints ``newsdedup: error: <message>`` and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from . import __version__
from .config import Config
from .errors import ConfigError, NewsDedupError

log = logging.getLogger("newsdedup.cli")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
WSGI_APP = "service.wsgi:app"


# --- commands that start processes ------------------------------------------------------------------------------

def api_processes(environ: dict[str, str] | None = None) -> int:
    """Gunicorn worker processes: NEWSDEDUP_API_PROCESSES, else min(2 x cores, 4).

    The API is I/O-bound on Redis and each process also runs 4 threads, so a few processes suffice.
    """
    env = os.environ if environ is None else environ
    raw = (env.get("NEWSDEDUP_API_PROCESSES") or "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise ConfigError(f"NEWSDEDUP_API_PROCESSES={raw!r} is not an integer; use a whole number from 1 "
                              "to 64") from None
        if not 1 <= n <= 64:
            raise ConfigError(f"NEWSDEDUP_API_PROCESSES={n} is out of range; use a whole number from 1 to 64")
        return n
    return max(1, min(2 * (os.cpu_count() or 1), 4))


def default_workers() -> int:
    """One queue worker per core: the work is CPU-bound Python, one core each, and Redis waits are short."""
    return max(1, min(os.cpu_count() or 1, 8))


def serve_command(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, processes: int | None = None,
                  threads: int = 4) -> list[str]:
    """The production server argv (gunicorn, gthread workers); what ``newsdedup serve`` execs."""
    n = api_processes() if processes is None else processes
    return [sys.executable, "-m", "gunicorn",
            "--bind", f"{_bind_host(host)}:{port}",
            "--workers", str(n),
            "--threads", str(threads),
            "--worker-class", "gthread",
            "--timeout", "60",
            "--graceful-timeout", "20",
            # JSON logs: the app logs each request itself (with its request id); gunicorn's lines are not JSON
            *(["--logger-class", "service.gunicorn_log.JsonLogger"] if _json_logs() else ["--access-logfile", "-"]),
            *_gunicorn_extra_args(),
            WSGI_APP]


def _json_logs() -> bool:
    return os.environ.get("NEWSDEDUP_LOG_FORMAT", "").strip().lower() == "json"


def _gunicorn_extra_args() -> list[str]:
    """gunicorn >= 25.1 opens a control socket at ~/.gunicorn/gunicorn.ctl by default; several servers
    on one machine (tests, `make run`) would fight over it, and we do not use it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(x) for x in version("gunicorn").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return []
    return ["--no-control-socket"] if (major, minor) >= (25, 1) else []


def worker_command() -> list[str]:
    """The argv of one queue worker process (the same interpreter, so the same installed code)."""
    return [sys.executable, "-m", "newsdedup.cli", "worker"]


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _client_host(host: str) -> str:
    """Where to reach a server bound to ``host`` from this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return _bind_host(host)


def redact_url(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url.replace("password=", "password=***") if "password=" in url else url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another port "
                              "(--port, or PORT=... with make run)") from None


@dataclass
class _Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    fast_failures: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Runs the API and N workers as child processes until ``stop`` is set.

    Workers that die are restarted (with a growing delay when they keep dying at
    once); if the API dies everything is shut down and :meth:`run` returns non-zero.
    An embedded Redis (``redis``) that dies is restarted on the same port and data.
    Children get SIGTERM on shutdown, then SIGKILL after ``stop_timeout`` seconds.
    """

    api_argv: list[str]
    worker_argv: list[str]
    workers: int
    env: dict[str, str]
    health_url: str
    stop: threading.Event = field(default_factory=threading.Event)
    force: threading.Event = field(default_factory=threading.Event)
    redis: Any = None  # RedisServer | None (kept loose: tests pass fakes)
    banner: str = ""
    health_timeout: float = 60.0
    stop_timeout: float = 20.0
    poll_interval: float = 0.2
    out: TextIO = field(default_factory=lambda: sys.stdout)
    ready: threading.Event = field(default_factory=threading.Event)
    children: list[_Child] = field(default_factory=list)

    def _spawn(self, child: _Child) -> None:
        from .redis_server import set_parent_death_signal

        child.proc = subprocess.Popen(
            child.argv, env=self.env, stdin=subprocess.DEVNULL,
            # Own session so a terminal Ctrl-C reaches only us and we stop children in order;
            # the parent-death signal keeps them from outliving a SIGKILLed supervisor.
            start_new_session=True,
            preexec_fn=set_parent_death_signal if sys.platform.startswith("linux") else None,
        )
        child.started = time.monotonic()
        child.restart_at = None
        log.debug("started %s (pid %d): %s", child.name, child.proc.pid, " ".join(child.argv))

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=1.0) as resp:
                return bool(200 <= resp.status < 300)
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            return False

    def _check(self) -> int | None:
        """Restart what may be restarted; a return value means: shut down with this exit code."""
        now = time.monotonic()
        if self.redis is not None and not self.redis.running:
            log.error("embedded Redis exited with code %s; restarting it", self.redis.returncode)
            try:
                self.redis.restart(graceful=False)
            except NewsDedupError as e:
                log.error("could not restart Redis: %s", e.message)
                return 1
        for child in self.children:
            proc = child.proc
            if proc is None:
                if child.restart_at is not None and now >= child.restart_at:
                    self._spawn(child)
                continue
            rc = proc.poll()
            if rc is None:
                continue
            if child.name == "api":
                log.error("the API server exited unexpectedly with code %s; shutting down", rc)
                return rc if rc else 1
            lived = now - child.started
            child.fast_failures = child.fast_failures + 1 if lived < 10 else 0
            delay = 0.0 if child.fast_failures == 0 else min(30.0, 0.5 * 2 ** (child.fast_failures - 1))
            log.error("%s (pid %d) exited with code %s after %.1fs; restarting it in %.1fs",
                      child.name, proc.pid, rc, lived, delay)
            child.proc = None
            child.restart_at = now + delay
        return None

    def run(self) -> int:
        self.children = [_Child("api", self.api_argv)]
        self.children += [_Child(f"worker-{i + 1}", self.worker_argv) for i in range(self.workers)]
        try:
            for child in self.children:
                self._spawn(child)
            deadline = time.monotonic() + self.health_timeout
            warned = False
            while not self.stop.is_set():
                rc = self._check()
                if rc is not None:
                    return rc
                if not self.ready.is_set():
                    if self._healthy():
                        self.ready.set()
                        if self.banner:
                            print(self.banner, file=self.out, flush=True)
                    elif not warned and time.monotonic() > deadline:
                        warned = True
                        log.warning("the API has not answered %s for %.0fs; still waiting", self.health_url,
                                    self.health_timeout)
                self.stop.wait(self.poll_interval)
            return 0
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        live = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for proc in live:
            while proc.poll() is None and time.monotonic() < deadline and not self.force.is_set():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.1)
            if proc.poll() is None:
                log.warning("pid %d did not stop within %.0fs; killing it", proc.pid, self.stop_timeout)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()


def cmd_up(args: argparse.Namespace) -> int:
    """API + workers (+ an embedded Redis when REDIS_URL is unset), stopped together on Ctrl-C."""
    from .redis_server import RedisServer

    config = Config.from_env()
    _setup_logging(config)
    _check_port_free(args.host, args.port)
    data_dir = Path(args.data_dir) if args.data_dir else config.data_dir

    stop, force = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            force.set()  # a second Ctrl-C: do not wait for children
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.ExitStack() as stack:
            server: RedisServer | None = None
            if config.redis_url is None:
                server = RedisServer(data_dir=data_dir / "redis", appendfsync=config.appendfsync,
                                     die_with_parent=True)
                stack.enter_context(server)
                redis_url = server.url
                redis_desc = f"Redis {redis_url} (embedded, data in {data_dir / 'redis'})"
            else:
                redis_url = config.redis_url
                redis_desc = f"Redis {redact_url(redis_url)} (REDIS_URL)"
            env = dict(os.environ, REDIS_URL=redis_url)
            api_url = f"http://{_client_host(args.host)}:{args.port}"
            plural = "s" if args.workers != 1 else ""
            sup = Supervisor(api_argv=serve_command(args.host, args.port), worker_argv=worker_command(),
                             workers=args.workers, env=env, health_url=api_url + "/healthz", stop=stop,
                             force=force, redis=server,
                             banner=f"newsdedup: API listening on {api_url} with {args.workers} worker{plural}; "
                                    f"{redis_desc}. Ctrl-C stops.")
            rc = sup.run()
            if stop.is_set():
                log.info("stopped")
            return rc
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


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
    from .evaluate import main as eval_main

    rc = eval_main(args)
    return int(rc or 0)


def cmd_retry(args: argparse.Namespace) -> int:
    from .admin import retry_command

    return int(retry_command(args) or 0)


def _setup_logging(config: Config) -> None:
    from .logs import setup

    setup(config)


def cmd_ingest(args: argparse.Namespace) -> int:
    from .ops.ingest import cmd_ingest as ingest

    return ingest(args)


def cmd_export(args: argparse.Namespace) -> int:
    from .ops.export import cmd_export as export

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
