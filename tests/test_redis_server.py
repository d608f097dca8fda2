"""RedisServer: the private redis-server that `newsdedup up` and the tests rely on for durability."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
import redis

from newsdedup.errors import ConfigError
from newsdedup.ops.redis_server import RedisServer, RedisServerError, find_redis_server, redis_server_args


def test_find_redis_server_gives_an_executable() -> None:
    path = find_redis_server()
    assert os.access(path, os.X_OK)


def test_redis_server_args_carry_durability_and_encoding() -> None:
    args = redis_server_args("always")
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    assert args[args.index("--hash-max-ziplist-entries") + 1] == "1024"
    with pytest.raises(ConfigError):
        redis_server_args("sometimes")


def test_session_fixture_answers(redis_client: redis.Redis) -> None:
    assert redis_client.ping()
    assert redis_client.dbsize() == 0


def test_starts_pings_and_applies_settings(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        assert server.running and server.pid and server.port
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        c = server.client(decode_responses=True)
        assert c.ping()
        cfg = c.config_get("*")
        assert cfg["appendonly"] == "yes"
        assert cfg["appendfsync"] == "everysec"
        assert cfg["save"] == ""
        assert cfg["hash-max-ziplist-entries"] == "1024"
        assert cfg["hash-max-ziplist-value"] == "4096"
        assert cfg["bind"] == "127.0.0.1"
        assert Path(str(cfg["dir"])) == tmp_path.resolve()
        assert (tmp_path / "redis.log").exists()
    assert not server.running
    assert server.returncode == 0  # graceful shutdown
    assert tmp_path.exists()  # a given data dir is kept


def test_temporary_data_dir_is_removed_on_stop() -> None:
    server = RedisServer().start()
    data_dir = server.data_dir
    assert data_dir is not None and data_dir.is_dir()
    server.stop()
    assert not data_dir.exists()


def test_aof_persists_across_restart_and_new_server(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        server.client().set("k", "v1")
        port, pid = server.port, server.pid
        server.restart()
        assert server.port == port and server.pid != pid
        assert server.client().get("k") == b"v1"
        server.client().hset("h", mapping={"a": "1"})
    with RedisServer(tmp_path) as again:
        c = again.client()
        assert c.get("k") == b"v1"
        assert c.hgetall("h") == {b"a": b"1"}


def test_kill_then_restart_recovers_fsynced_writes(tmp_path: Path) -> None:
    with RedisServer(tmp_path, appendfsync="always") as server:
        c = server.client()
        for i in range(200):
            c.rpush("l", i)
        c.close()
        old = server.pid
        server.kill()
        assert not server.running
        assert server.returncode == -signal.SIGKILL
        server.restart()
        assert server.pid != old
        assert server.client().llen("l") == 200


def test_unix_socket_mode(tmp_path: Path) -> None:
    with RedisServer(tmp_path, unix_socket=True) as server:
        assert server.url.startswith("unix://")
        assert server.socket_path is not None and server.socket_path.exists()
        c = redis.Redis.from_url(server.url)
        assert c.ping()
        c.set("x", "1")
        server.restart()
        assert redis.Redis.from_url(server.url).get("x") == b"1"


def test_password_is_required_and_in_the_url(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password="s3 cret/") as server:
        assert redis.Redis.from_url(server.url).ping()
        assert server.port is not None
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"PING\r\n")
            assert raw.recv(100).startswith(b"-NOAUTH")


def test_data_dir_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="Redis data directory"):
        RedisServer(blocker / "redis").start()
    with pytest.raises(ConfigError, match="not a directory|Redis data directory"):
        RedisServer(blocker).start()


def test_second_server_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server, pytest.raises(RedisServerError, match="already using"):
        RedisServer(tmp_path).start()
    assert not server.running


def test_startup_failure_quotes_the_log(tmp_path: Path) -> None:
    with pytest.raises(RedisServerError, match="no-such-directive") as info:
        RedisServer(tmp_path, extra_args=["--no-such-directive", "1"]).start()
    assert "exited with code" in str(info.value)


def _fake_binary(path: Path, banner: str) -> str:
    """A stand-in executable that prints a ``--version`` banner (only the version parsing is under test)."""
    path.write_text(f"#!/bin/sh\necho '{banner}'\n")
    path.chmod(0o755)
    return str(path)


def test_redis_server_version_and_newest(tmp_path: Path) -> None:
    from newsdedup.ops.redis_binaries import newest_redis_server, redis_server_candidates, redis_server_version

    shipped = find_redis_server()
    assert shipped in redis_server_candidates()
    version = redis_server_version(shipped)
    assert version is not None and version >= (6, 0)
    newer = _fake_binary(tmp_path / "new", "Redis server v=99.1.2 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64")
    mute = _fake_binary(tmp_path / "mute", "no version here")
    assert redis_server_version(newer) == (99, 1, 2)
    assert redis_server_version(mute) is None
    assert redis_server_version(str(tmp_path / "missing")) is None
    assert newest_redis_server([shipped, mute, newer]) == newer
    assert newest_redis_server([shipped, shipped]) == shipped
    assert newest_redis_server([mute]) is None


def test_huge_pages_are_allowed_unless_turned_off(tmp_path: Path) -> None:
    """Redis's own default (disable-thp yes) is lifted and the allocators are told to use huge pages
    (bench/README.md, "Cost from 10k to 1M"); huge_pages=False keeps Redis's default."""
    from newsdedup.ops.redis_binaries import HUGE_PAGE_ENV, huge_page_settings, redis_server_version

    binary = find_redis_server()
    env, args = huge_page_settings(binary)
    if (redis_server_version(binary) or (0,)) < (6, 2, 14):
        assert (env, args) == ({}, [])
        return
    assert env == HUGE_PAGE_ENV and args == ["--disable-thp", "no"]
    for huge, want in ((True, "no"), (False, "yes")):
        with RedisServer(data_dir=tmp_path / str(huge), huge_pages=huge) as server:
            c = server.client(decode_responses=True)
            assert c.config_get("disable-thp") == {"disable-thp": want}
            environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
            assert (b"MALLOC_CONF=" + HUGE_PAGE_ENV["MALLOC_CONF"].encode() in environ) is huge
            c.close()
