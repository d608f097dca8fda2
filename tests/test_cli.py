"""The `newsdedup` command: argument wiring, the production server argv, config errors, ingest, and `up`."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from newsdedup import cli
from newsdedup.cli import build_parser
from newsdedup.ops import ingest, supervisor
from newsdedup.ops.redis_server import RedisServer, free_port
from newsdedup.ops.supervisor import Supervisor, default_workers, serve_command
from tests.procs import (
    Http,
    Procs,
    procs,  # noqa: F401 - fixture
    wait_http_ready,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent

STUB_API = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


# --- argument wiring ---------------------------------------------------------------------------------------------

def test_parse_every_subcommand() -> None:
    p = build_parser()
    a = p.parse_args(["up"])
    assert (a.command, a.host, a.port, a.workers, a.data_dir) == ("up", "127.0.0.1", 8000, default_workers(), None)
    a = p.parse_args(["up", "--host", "0.0.0.0", "--port", "9000", "--workers", "3", "--data-dir", "/tmp/x"])
    assert (a.host, a.port, a.workers, a.data_dir) == ("0.0.0.0", 9000, 3, "/tmp/x")
    a = p.parse_args(["serve", "--port", "8080", "--threads", "8"])
    assert (a.command, a.host, a.port, a.threads, a.processes) == ("serve", "127.0.0.1", 8080, 8, None)
    assert p.parse_args(["worker"]).func is cli.cmd_worker
    a = p.parse_args(["ingest", "x.jsonl.gz", "--url", "http://h:1", "--batch-size", "5", "--api-key", "k",
                      "--wait"])
    assert (a.file, a.url, a.batch_size, a.api_key, a.wait) == ("x.jsonl.gz", "http://h:1", 5, "k", True)
    a = p.parse_args(["eval", "set.jsonl.gz", "--compare", "--out", "pred.jsonl"])
    assert (a.set, a.compare, a.out, a.func) == ("set.jsonl.gz", True, "pred.jsonl", cli.cmd_eval)
    a = p.parse_args(["retry", "a", "b"])
    assert (a.ids, a.all, a.func) == (["a", "b"], False, cli.cmd_retry)
    assert p.parse_args(["retry", "--all"]).all


@pytest.mark.parametrize(("cores", "workers"), [(None, 1), (1, 1), (2, 2), (3, 3), (8, 8), (9, 8), (64, 8)])
def test_default_workers_is_one_per_core_between_1_and_8(cores: int | None, workers: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever way the core count is read (all cores, or those this process may use), the answer is the same."""
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    if hasattr(os, "process_cpu_count"):
        monkeypatch.setattr(os, "process_cpu_count", lambda: cores)
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores or 0)))
    assert default_workers() == workers


@pytest.mark.parametrize("argv", [[], ["up", "--port", "0"], ["up", "--workers", "0"], ["nope"],
                                  ["ingest", "f", "--batch-size", "x"], ["retry"], ["retry", "a", "--all"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "newsdedup" in capsys.readouterr().err


def test_serve_command_is_gunicorn_not_flask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSDEDUP_API_PROCESSES", raising=False)
    argv = serve_command("0.0.0.0", 8000)
    assert argv[:3] == [sys.executable, "-m", "gunicorn"]
    assert argv[-1] == "service.wsgi:app"
    assert argv[argv.index("--bind") + 1] == "0.0.0.0:8000"
    assert argv[argv.index("--worker-class") + 1] == "gthread"
    assert argv[argv.index("--threads") + 1] == "4"
    assert 1 <= int(argv[argv.index("--workers") + 1]) <= 4
    assert not any("flask" in a for a in argv)
    assert serve_command("::", 80)[serve_command("::", 80).index("--bind") + 1] == "[::]:80"


def test_gunicorn_accepts_serve_command() -> None:
    from gunicorn.config import Config as GunicornConfig

    cfg = GunicornConfig()
    parsed = cfg.parser().parse_args(serve_command("127.0.0.1", 8123, processes=3, threads=2)[3:])
    for k, v in vars(parsed).items():
        if v is not None and k != "args":
            cfg.set(k.lower(), v)
    assert parsed.args == ["service.wsgi:app"]
    assert (cfg.bind, cfg.workers, cfg.threads, cfg.timeout) == (["127.0.0.1:8123"], 3, 2, 60)
    assert cfg.worker_class_str == "gthread"


def test_api_processes_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSDEDUP_API_PROCESSES", "7")
    argv = serve_command("127.0.0.1", 1)
    assert argv[argv.index("--workers") + 1] == "7"
    monkeypatch.setenv("NEWSDEDUP_API_PROCESSES", "many")
    with pytest.raises(cli.ConfigError, match="NEWSDEDUP_API_PROCESSES"):
        serve_command("127.0.0.1", 1)


def test_config_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_") and k != "REDIS_URL"}
    env["NEWSDEDUP_NUM_PERM"] = "abc"
    proc = subprocess.run([sys.executable, "-m", "newsdedup.cli", "up", "--data-dir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("newsdedup: error: NEWSDEDUP_NUM_PERM='abc' is not an integer")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "redis").exists()


# --- ingest ------------------------------------------------------------------------------------------------------

class StubService:
    """Records what the CLI sends; answers 503 first, 400 for batches holding id "bad", else 202."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_next = 1
        self.stats_calls = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.posts.append(body)
                stub.headers.append(dict(self.headers))
                if stub.fail_next:
                    stub.fail_next -= 1
                    self._send(503, {"error": {"code": "storage_unavailable", "message": "retry"}},
                               {"Retry-After": "0"})
                    return
                ids = [a.get("id") for a in body["articles"]]
                if "bad" in ids:
                    self._send(400, {"error": {"code": "invalid_request", "message": "bad article"}})
                    return
                self._send(202, {"articles": [{"id": i, "status": "queued", "href": f"/v1/articles/{i}"}
                                              for i in ids]})

            def do_GET(self) -> None:
                if self.path != "/v1/stats":  # e.g. /openapi.json: the client falls back to default limits
                    self._send(404, {"error": {"code": "not_found", "message": "no such endpoint"}})
                    return
                stub.stats_calls += 1
                left = 3 if stub.stats_calls < 3 else 0
                self._send(200, {"queue": {"pending": left, "in_flight": 0}})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def accepted_batches(self) -> list[list[str]]:
        return [[a["id"] for a in p["articles"]] for p in self.posts]


@pytest.fixture
def stub() -> Iterator[StubService]:
    s = StubService()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def _write_gz(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _article(i: int | str) -> str:
    return json.dumps({"id": str(i), "title": f"t{i}", "text": f"story number {i} about the weather",
                       "label": "x", "family": "original"}, ensure_ascii=False)


def test_ingest_batches_gzip_and_retries_503(stub: StubService, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "set.jsonl.gz"
    _write_gz(path, [_article(i) for i in range(5)] + [""])
    rc = cli.main(["ingest", str(path), "--url", stub.url, "--batch-size", "2", "--api-key", "k1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    # The first POST was answered 503 and sent again, unchanged.
    assert stub.accepted_batches() == [["0", "1"], ["0", "1"], ["2", "3"], ["4"]]
    assert stub.posts[0]["articles"][0]["label"] == "x"  # sent as given; the service ignores extra fields
    assert all(h["Authorization"] == "Bearer k1" for h in stub.headers)
    assert all(h["Content-Type"] == "application/json" for h in stub.headers)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["accepted"] == 5 and summary["rejected"] == 0
    assert summary["batches"] == 3 and summary["retries"] == 1
    assert summary["seconds"] >= 0 and "articles_per_second" in summary


def test_ingest_reports_bad_batches_and_lines_and_goes_on(stub: StubService, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    stub.fail_next = 0
    path = tmp_path / "set.jsonl"
    lines = [_article(0), "{not json", json.dumps({"id": "empty", "text": "  "}), _article("bad"), _article(1),
             _article(2)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc = cli.main(["ingest", str(path), "--url", stub.url, "--batch-size", "2"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert stub.accepted_batches() == [["0", "bad"], ["1", "2"]]  # invalid lines never leave the machine
    assert "line 2: not JSON" in err
    assert "line 3: text is empty" in err
    assert "lines 1-4: HTTP 400 invalid_request: bad article" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["accepted"], summary["rejected"]) == (2, 4)


def test_ingest_wait_polls_stats(stub: StubService, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    stub.fail_next = 0
    monkeypatch.setattr(ingest, "_pause", lambda s: None)
    path = tmp_path / "one.jsonl"
    path.write_text(_article(1) + "\n", encoding="utf-8")
    assert cli.main(["ingest", str(path), "--url", stub.url, "--wait"]) == 0
    assert stub.stats_calls == 3
    assert "waited_seconds" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_ingest_gives_up_when_the_service_stays_down(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_pause", lambda s: None)
    path = tmp_path / "one.jsonl"
    path.write_text(_article(1) + "\n", encoding="utf-8")
    rc = cli.main(["ingest", str(path), "--url", f"http://127.0.0.1:{free_port()}"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "(after 9 attempts)" in err
    assert json.loads(out.strip().splitlines()[-1])["aborted"] is True


def test_ingest_missing_file_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ingest", "/nonexistent/x.jsonl"]) == 2
    assert capsys.readouterr().err.startswith("newsdedup: error: /nonexistent/x.jsonl: no such file")


# --- up and its supervisor ---------------------------------------------------------------------------------------

def _wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def _stub_api(tmp_path: Path, port: int) -> list[str]:
    script = tmp_path / "stub_api.py"
    script.write_text(STUB_API, encoding="utf-8")
    return [sys.executable, str(script), str(port)]


def test_supervisor_restarts_dying_workers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="newsdedup.cli")
    port = free_port()
    sup = Supervisor(api_argv=_stub_api(tmp_path, port), worker_argv=[sys.executable, "-c", "raise SystemExit(3)"],
                     workers=1, env=dict(os.environ), health_url=f"http://127.0.0.1:{port}/healthz",
                     banner="ready!", poll_interval=0.05, out=open(os.devnull, "w"))  # noqa: SIM115
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(sup.run()))
    t.start()
    try:
        assert sup.ready.wait(60)
        deadline = time.monotonic() + 60  # the restart delay is 0.5 s; the rest is starting Python
        while caplog.text.count("exited with code 3") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sup.stop.set()
        t.join(30)
    assert result == [0]
    assert caplog.text.count("exited with code 3") >= 2
    assert all(c.proc is None or c.proc.poll() is not None for c in sup.children)


def test_supervisor_stops_everything_when_the_api_dies(tmp_path: Path) -> None:
    """The API exits 4: run() returns 4 and the workers are stopped by SIGTERM (not left to run out their
    sleep, nor killed after stop_timeout, which only a worker that ignores SIGTERM would need)."""
    sup = Supervisor(api_argv=[sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(4)"],
                     worker_argv=[sys.executable, "-c", "import time; time.sleep(600)"], workers=2,
                     env=dict(os.environ), health_url=f"http://127.0.0.1:{free_port()}/healthz",
                     poll_interval=0.05, stop_timeout=60)
    assert sup.run() == 4
    workers = [c for c in sup.children if c.name != "api"]
    assert len(workers) == 2
    assert [c.proc.returncode if c.proc else None for c in workers] == [-signal.SIGTERM] * 2


def test_up_runs_redis_api_and_workers_then_stops_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`up` with stub API/worker commands: Redis in the data dir, REDIS_URL handed down, clean stop, data kept."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    port = free_port()
    monkeypatch.setattr(supervisor, "serve_command", lambda host, p: _stub_api(tmp_path, p))
    marks = tmp_path / "marks"
    marks.mkdir()
    worker = ("import os, time, redis; r = redis.Redis.from_url(os.environ['REDIS_URL']); "
              f"r.incr('workers-started'); open(os.path.join({str(marks)!r}, str(os.getpid())), 'w').close(); "
              "time.sleep(60)")
    monkeypatch.setattr(supervisor, "worker_command", lambda: [sys.executable, "-c", worker])

    supervisors: list[Supervisor] = []

    class RecordingSupervisor(Supervisor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            supervisors.append(self)

    monkeypatch.setattr(supervisor, "Supervisor", RecordingSupervisor)

    def stop_when_ready() -> None:
        try:  # always stop `up`, even when something here goes wrong
            deadline = time.monotonic() + 30
            while not supervisors and time.monotonic() < deadline:
                time.sleep(0.01)
            if supervisors:
                supervisors[0].ready.wait(30)
            while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:  # both workers wrote
                time.sleep(0.05)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    # A harmless handler of our own: a late SIGTERM (after `up` restored it) must not end pytest.
    def ignore(signum: int, frame: object) -> None:
        pass

    original = signal.signal(signal.SIGTERM, ignore)
    try:
        killer = threading.Thread(target=stop_when_ready, daemon=True)
        killer.start()
        rc = cli.main(["up", "--port", str(port), "--workers", "2", "--data-dir", str(tmp_path / "var")])
        killer.join(5)
        assert signal.getsignal(signal.SIGTERM) is ignore  # `up` put back the handler it found
    finally:
        signal.signal(signal.SIGTERM, original)
    out = capsys.readouterr().out
    assert rc == 0
    assert f"API listening on http://127.0.0.1:{port} with 2 workers" in out
    assert "embedded" in out
    redis_dir = tmp_path / "var" / "redis"
    assert not (redis_dir / "redis.pid").exists()  # Redis was shut down gracefully
    with RedisServer(redis_dir) as again:
        assert redis.Redis.from_url(again.url).get("workers-started") == b"2"


# --- up --cluster ---------------------------------------------------------------------------------------------------

def test_up_cluster_refuses_a_redis_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["up", "--cluster"]).cluster is True
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    assert cli.main(["up", "--cluster", "--data-dir", str(tmp_path / "d")]) == 2
    assert "--cluster starts a local Redis Cluster, but REDIS_URL is set" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # no Redis was started


@pytest.mark.slow
def test_up_cluster_serves_and_processes_on_a_local_cluster(tmp_path: Path, procs: Procs) -> None:  # noqa: F811
    """`newsdedup up --cluster`: 3 masters + 3 replicas, the API and a worker on the cluster client, end to end."""
    port = free_port()
    up = procs.up(port, tmp_path / "var", workers=1, cluster=True, NEWSDEDUP_RATE_LIMIT=0)
    http = Http(f"http://127.0.0.1:{port}")
    wait_http_ready(http, up, timeout=90)
    text = "The council approved the new budget for the city library on Tuesday evening after a long debate."
    for i in ("a", "b"):
        assert http.post("/v1/articles", {"id": i, "title": "Budget", "text": text}).status == 202
    wait_until(lambda: up.check_alive() or http.get("/v1/articles/b").json.get("status") == "done", 60,
               interval=0.1, message="article b to be processed")
    assert http.get("/v1/articles/b").json["duplicate_of"] == "a"
    assert "Redis Cluster" in up.log() and "3 masters + 3 replicas" in up.log()
    assert up.terminate(60) == 0
    assert (tmp_path / "var" / "cluster" / "ports.json").exists()


@pytest.mark.slow
def test_supervisor_restarts_a_dead_cluster_node(redis_cluster: Any) -> None:
    """The supervisor treats a RedisCluster like its one embedded Redis: a node that dies is started again."""
    replica = redis_cluster.replicas_of(redis_cluster.live_masters()[0])[0]
    replica.kill()
    assert not redis_cluster.running and redis_cluster.returncode is not None
    sup = Supervisor(api_argv=[], worker_argv=[], workers=0, env={}, health_url="", redis=redis_cluster)
    assert sup._check() is None
    assert replica.running and redis_cluster.running
    redis_cluster.wait_healthy()
