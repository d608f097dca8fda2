"""``newsdedup up``: the whole service in the foreground, and the argv of its processes.

The supervisor runs the API (gunicorn) and the queue workers as child processes,
plus an embedded redis-server when ``REDIS_URL`` is unset; it restarts workers that
die and stops everything in order (children first, Redis last) on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from newsdedup.config import Config
from newsdedup.errors import ConfigError, NewsDedupError
from newsdedup.observe.logs import redact
from newsdedup.ops.redis_cluster import RedisCluster
from newsdedup.ops.redis_server import RedisServer, set_parent_death_signal

log = logging.getLogger("newsdedup.up")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
WSGI_APP = "service.wsgi:app"


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
            # JSON logs: gunicorn's own lines as JSON, and the app logs each request (with its request id)
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


def up(config: Config, host: str, port: int, workers: int, data_dir: Path, cluster: bool = False) -> int:
    """API + workers (+ an embedded Redis when REDIS_URL is unset), stopped together on Ctrl-C.

    ``cluster``: a local Redis Cluster (3 masters + 3 replicas) in ``data_dir/cluster`` instead of the
    one embedded Redis; the API and workers reach it through redis-py's cluster client.
    """
    if cluster and config.redis_url is not None:
        raise ConfigError("--cluster starts a local Redis Cluster, but REDIS_URL is set; unset REDIS_URL or drop "
                          "--cluster")
    _check_port_free(host, port)

    stop, force = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            force.set()  # a second Ctrl-C: do not wait for children
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.ExitStack() as stack:
            server: RedisServer | RedisCluster | None = None
            cluster_env: dict[str, str] = {}
            if cluster:
                server = RedisCluster(data_dir / "cluster", appendfsync=config.appendfsync, die_with_parent=True)
                stack.enter_context(server)
                redis_url = server.url
                redis_desc = (f"Redis Cluster {redis_url} ({server.masters} masters + "
                              f"{server.masters * server.replicas} replicas, data in {data_dir / 'cluster'})")
                cluster_env["NEWSDEDUP_REDIS_CLUSTER"] = "true"
            elif config.redis_url is None:
                server = RedisServer(data_dir=data_dir / "redis", appendfsync=config.appendfsync,
                                     die_with_parent=True)
                stack.enter_context(server)
                redis_url = server.url
                redis_desc = f"Redis {redis_url} (embedded, data in {data_dir / 'redis'})"
            else:
                redis_url = config.redis_url
                redis_desc = f"Redis {redact(redis_url)} (REDIS_URL)"
            env = dict(os.environ, REDIS_URL=redis_url, **cluster_env)
            api_url = f"http://{_client_host(host)}:{port}"
            plural = "s" if workers != 1 else ""
            sup = Supervisor(api_argv=serve_command(host, port), worker_argv=worker_command(),
                             workers=workers, env=env, health_url=api_url + "/healthz", stop=stop,
                             force=force, redis=server,
                             banner=f"newsdedup: API listening on {api_url} with {workers} worker{plural}; "
                                    f"{redis_desc}. Ctrl-C stops.")
            rc = sup.run()
            if stop.is_set():
                log.info("stopped")
            return rc
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


