"""RedisCluster: a real local Redis Cluster (3 masters + 3 replicas) from the redis-server the project ships."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from newsdedup.ops.redis_binaries import find_redis_server
from newsdedup.ops.redis_cluster import (
    BUS_OFFSET,
    RedisCluster,
    find_redis_cli,
    free_cluster_port,
    parse_cluster_nodes,
)

NODES_TEXT = "\n".join([
    "07c37dfe 127.0.0.1:30004@31004 slave e7d1eecc 0 1426238317239 4 connected",
    "67ed2db8 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922",
    "292f8b36 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected 10923-16383 [12-<-abc]",
    "e7d1eecc 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460",
])


def test_parse_cluster_nodes() -> None:
    nodes = {n.port: n for n in parse_cluster_nodes(NODES_TEXT)}
    assert set(nodes) == {30001, 30002, 30003, 30004}
    assert nodes[30004].master_id == nodes[30001].node_id and not nodes[30004].is_master
    assert nodes[30001].slots == 5461 and nodes[30002].slots == 5462 and nodes[30003].slots == 5461
    assert nodes[30003].failed and not nodes[30002].failed
    assert "myself" in nodes[30001].flags


def test_free_cluster_port_leaves_room_for_the_bus() -> None:
    port = free_cluster_port()
    assert port + BUS_OFFSET <= 65535
    for p in (port, port + BUS_OFFSET):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # free: binds


def test_redis_cli_is_found_beside_the_server() -> None:
    cli = find_redis_cli()
    assert cli is not None and os.access(cli, os.X_OK)
    assert Path(cli).parent == Path(find_redis_server()).parent


def _keys_on(node_port: int) -> int:
    c = redis.Redis(port=node_port)
    try:
        return int(c.dbsize())
    finally:
        c.close()


@pytest.mark.slow
def test_cluster_nodes_are_configured(redis_cluster: RedisCluster) -> None:
    cluster = redis_cluster
    assert len(cluster.nodes) == 6
    assert cluster.healthy()
    for i, node in enumerate(cluster.nodes):
        cfg = node.client(decode_responses=True).config_get("*")
        assert cfg["cluster-enabled"] == "yes"
        assert cfg["cluster-node-timeout"] == "1000"
        assert cfg["appendonly"] == "yes"
        assert cluster.data_dir is not None
        assert (cluster.data_dir / f"node-{i}" / "nodes.conf").stat().st_size > 0  # the cluster-config-file
    assert len(cluster.live_masters()) == 3
    for m in cluster.live_masters():
        assert len(cluster.replicas_of(m)) == 1
    assert cluster.url.startswith("redis://127.0.0.1:")


@pytest.mark.slow
def test_keys_survive_a_master_killed(redis_cluster: RedisCluster) -> None:
    cluster = redis_cluster
    client = ClusterClient.from_url(cluster.url)
    try:
        for i in range(2000):
            client.set(f"k:{i}", str(i))
        # the keys spread over every master
        per_master = {m.port: _keys_on(m.port) for m in cluster.live_masters()}  # type: ignore[arg-type]
        assert len(per_master) == 3 and all(n > 400 for n in per_master.values()), per_master
        cluster.wait_replicated()
        victim_index = cluster.master_index(1)
        heirs = {r.port for r in cluster.replicas_of(cluster.nodes[victim_index])}
        killed = cluster.kill_master(1)
        assert killed is cluster.nodes[victim_index] and not killed.running
        promoted = cluster.wait_for_failover(killed)
        assert promoted.port in heirs
        assert promoted.client().info("replication")["role"] == "master"
        fresh = ClusterClient.from_url(cluster.url)
        try:
            assert [fresh.get(f"k:{i}") for i in range(2000)] == [str(i).encode() for i in range(2000)]
        finally:
            fresh.close()
        # the old client finds the new master by itself (MOVED / connection errors refresh its slot map)
        assert client.get("k:7") == b"7"
        # the killed node comes back as a replica of the one that took its place
        cluster.restart_node(killed)
        cluster.wait_healthy()
        assert killed.client().info("replication")["role"] == "slave"
        assert killed.port in {r.port for r in cluster.replicas_of(promoted)}
    finally:
        client.close()


@pytest.mark.slow
def test_created_with_commands_and_restarted_from_its_data_dir(tmp_path: Path) -> None:
    """Without redis-cli the cluster is made from Python; a stopped cluster comes back from its data dir."""
    with RedisCluster(tmp_path, masters=3, replicas=1, node_timeout_ms=1000, use_redis_cli=False) as c:
        assert c.redis_cli is None
        assert len(c.live_masters()) == 3 and all(len(c.replicas_of(m)) == 1 for m in c.live_masters())
        client = c.client()
        for i in range(100):
            client.set(f"x:{i}", i)
        client.close()
        ports = [n.port for n in c.nodes]
    assert tmp_path.exists() and (tmp_path / "ports.json").exists()
    with RedisCluster(tmp_path, node_timeout_ms=1000) as again:
        assert [n.port for n in again.nodes] == ports
        client = again.client()
        assert [client.get(f"x:{i}") for i in range(100)] == [str(i).encode() for i in range(100)]
        client.close()


def test_one_master_cluster_in_a_temporary_dir() -> None:
    """redis-cli wants 3 masters; smaller clusters are made from Python. A temporary dir is removed."""
    c = RedisCluster(masters=1, replicas=0)
    c.start()
    try:
        data_dir = c.data_dir
        assert data_dir is not None and data_dir.is_dir()
        assert ClusterClient.from_url(c.url).ping()
    finally:
        c.stop()
    assert not data_dir.exists()
