"""docker-compose.yml stays in step with the code: same Redis settings, same commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from newsdedup.cli import build_parser, serve_command
from newsdedup.ops.redis_server import redis_server_args

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _argv(command: str | list[str]) -> list[str]:
    return command.split() if isinstance(command, str) else [str(c) for c in command]


CLUSTER_NODES = {f"redis-node-{i}" for i in range(1, 7)}


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == ({"redis", "api", "worker", "redis-cluster-init", "api-cluster",
                                         "worker-cluster"} | CLUSTER_NODES)
    default = {name for name, svc in compose["services"].items() if not svc.get("profiles")}
    assert default == {"redis", "api", "worker"}  # the cluster is opt-in: --profile cluster


def test_cluster_profile_nodes_run_with_our_settings(compose: dict[str, Any]) -> None:
    for name in sorted(CLUSTER_NODES):
        node = compose["services"][name]
        assert node["profiles"] == ["cluster"] and str(node["image"]).startswith("redis:7")
        argv = _argv(node["command"])
        assert argv[:len(redis_server_args("everysec")) + 1] == ["redis-server", *redis_server_args("everysec")]
        assert argv[argv.index("--cluster-enabled") + 1] == "yes"
        assert argv[argv.index("--cluster-config-file") + 1] == "nodes.conf"
        assert f"{name}:/data" in node["volumes"] and name in compose["volumes"]
    init = compose["services"]["redis-cluster-init"]
    script = " ".join(_argv(init["command"]))
    assert "--cluster create" in script and "--cluster-replicas 1" in script and "--cluster-yes" in script
    assert set(init["depends_on"]) == CLUSTER_NODES
    assert all(d["condition"] == "service_healthy" for d in init["depends_on"].values())


def test_cluster_profile_runs_the_service_on_the_cluster(compose: dict[str, Any]) -> None:
    for name, plain in (("api-cluster", "api"), ("worker-cluster", "worker")):
        svc = compose["services"][name]
        assert svc["profiles"] == ["cluster"] and svc["command"] == compose["services"][plain]["command"]
        env = svc["environment"]
        assert env["REDIS_URL"].startswith("redis://redis-node-") and env["NEWSDEDUP_REDIS_CLUSTER"] == "true"
        assert int(env["NEWSDEDUP_WAIT_REPLICAS"]) == 1  # each node has one replica (--cluster-replicas 1)
        assert svc["depends_on"] == {"redis-cluster-init": {"condition": "service_completed_successfully"}}
    assert "8001:8000" in [str(p) for p in compose["services"]["api-cluster"]["ports"]]


def test_redis_runs_with_our_settings(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert str(redis["image"]).startswith("redis:7")
    assert _argv(redis["command"]) == ["redis-server", *redis_server_args("everysec")]
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in compose["volumes"]


def test_api_and_worker_use_redis_and_wait_for_it(compose: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        svc = compose["services"][name]
        env = svc["environment"]
        env = dict(e.split("=", 1) for e in env) if isinstance(env, list) else env
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert svc.get("build") == "."
    assert "8000:8000" in [str(p) for p in compose["services"]["api"]["ports"]]


def test_worker_can_scale(compose: dict[str, Any]) -> None:
    assert "container_name" not in compose["services"]["worker"]
    assert "ports" not in compose["services"]["worker"]


def test_commands(compose: dict[str, Any]) -> None:
    api = _argv(compose["services"]["api"]["command"])
    assert api == ["newsdedup", "serve", "--host", "0.0.0.0", "--port", "8000"]
    args = build_parser().parse_args(api[1:])
    # What `newsdedup serve` will exec for that command line: gunicorn bound to 0.0.0.0:8000.
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8000)
    argv = serve_command(args.host, args.port)
    assert argv[1:3] == ["-m", "gunicorn"]
    assert argv[argv.index("--bind") + 1] == "0.0.0.0:8000"
    assert _argv(compose["services"]["worker"]["command"]) == ["newsdedup", "worker"]


def test_dockerfile_runs_gunicorn_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "\nUSER " in text and "USER root" not in text
    assert 'CMD ["newsdedup", "serve", "--host", "0.0.0.0", "--port", "8000"]' in text
