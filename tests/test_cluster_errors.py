"""Cluster errors, provoked on real local clusters: an outage is a 503 + Retry-After (retried by workers),
a slot bug (CROSSSLOT) is not; WAIT_REPLICAS on a cluster waits on the connection of the slot's master."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.errors import StorageUnavailable
from newsdedup.ops.redis_cluster import RedisCluster
from newsdedup.ops.redis_server import RedisServer
from newsdedup.storage.redis_client import CLUSTER_RETRIES
from newsdedup.storage.scripts import Scripts
from newsdedup.storage.txn import Txn, storage_errors, transient
from service.app import create_app
from tests.procs import wait_until
from workers.consumer import Worker, process_available

log = logging.getLogger(__name__)
TEXT = "The council approved the new budget for the city library on Tuesday evening after a long debate."


def _reader(replica: RedisServer) -> redis.Redis:
    """A client that reads a cluster replica's own data (READONLY; one connection keeps that state)."""
    client = replica.client(single_connection_client=True)
    client.execute_command("READONLY")
    return client


@pytest.fixture(scope="module")
def one_master() -> Iterator[RedisCluster]:
    with RedisCluster(masters=1, replicas=0) as c:
        yield c


@pytest.mark.slow
def test_cluster_errors_are_classified(one_master: RedisCluster) -> None:
    node = one_master.nodes[0].client()
    cc = ClusterClient.from_url(one_master.url)
    # a slot without a master: CLUSTERDOWN from the server -> transient, 503
    slot = cc.keyslot("x")
    node.execute_command("CLUSTER", "DELSLOTS", slot)
    try:
        with pytest.raises(redis.exceptions.ClusterDownError) as down:
            node.get("x")
        assert transient(down.value)
        with pytest.raises(StorageUnavailable), storage_errors():
            node.get("x")
    finally:
        node.execute_command("CLUSTER", "ADDSLOTS", slot)
    wait_until(lambda: node.execute_command("CLUSTER", "INFO").decode().count("cluster_state:ok"), 10)
    # keys of two slots in one script or command: a bug, never a 503
    with pytest.raises(redis.exceptions.RedisClusterException) as client_side:
        cc.eval("return 1", 2, "a", "b")
    assert not transient(client_side.value)
    with pytest.raises(redis.exceptions.ClusterCrossSlotError) as server_side:
        node.mget("a", "b")
    assert not transient(server_side.value)
    with pytest.raises(redis.exceptions.ClusterCrossSlotError), storage_errors():
        node.mget("a", "b")
    cc.close()


@pytest.mark.slow
def test_a_killed_master_is_a_bounded_503_then_nothing_acknowledged_is_lost(redis_cluster: RedisCluster) -> None:
    """WAIT_REPLICAS=1 on 3 masters + 3 replicas: SIGKILL the data slot's master; requests answer 503 + Retry-After
    (never 500, never hang) until its replica is promoted; every 202 before the kill is then still there."""
    cluster = redis_cluster
    cc = cluster.client()
    cc.flushall()
    timeout = 1.0
    cfg = Config.from_env({}, redis_url=cluster.url, wait_replicas=1, redis_timeout=timeout, rate_limit=0,
                          visibility_timeout=1.0)
    api = create_app(cfg).test_client()
    for i in range(5):
        r = api.post("/v1/articles", json={"id": f"a{i}", "title": "Budget", "text": TEXT})
        assert r.status_code == 202, r.data
    owner_port = cc.get_node_from_key(keys.IDS).port
    owner = next(n for n in cluster.nodes if n.port == owner_port)
    replica = cluster.replicas_of(owner)[0]
    on_replica = _reader(replica)
    assert on_replica.hlen(keys.IDS) == 5  # WAIT 1: on the replica when the 202s arrived
    live = cluster.live_masters()
    killed = cluster.kill_master(live.index(owner))
    statuses: list[int] = []
    seconds: list[float] = []

    def post() -> int:
        started = time.monotonic()
        r = api.post("/v1/articles", json={"id": f"b{len(statuses)}", "title": "Later", "text": TEXT})
        seconds.append(time.monotonic() - started)
        statuses.append(r.status_code)
        if r.status_code == 503:
            assert r.headers["Retry-After"].isdigit()
        return r.status_code

    restarted = False
    try:
        gap = [post() for _ in range(3)]  # the slot's master is dead: 503 until ...
        ready = api.get("/readyz")  # readiness asks the data slot's master, not any node
        cluster.wait_for_failover(killed)
        # ... its replica is promoted; it has no replica of its own yet, so WAIT 1 still cannot be met
        promoted_alone = post()
        cluster.restart_node(killed)  # it comes back as the replica of the promoted node
        restarted = True
        cluster.wait_healthy()
        wait_until(lambda: post() == 202, 30, interval=0.2, message="a 202 once the slot has a replica again")
        log.warning("failover with WAIT_REPLICAS=1: statuses %s, seconds %s", statuses, [round(x, 2) for x in seconds])
        assert gap == [503, 503, 503] and promoted_alone == 503, statuses
        assert ready.status_code == 503 and ready.headers["Retry-After"].isdigit()
        assert set(statuses) <= {202, 503}, statuses
        # a hang detector, not a performance figure: each attempt is bounded by the socket timeout
        assert max(seconds) < (CLUSTER_RETRIES + 1) * (timeout + 0.5) + 5, seconds
        for i in range(5):  # every 202 before the kill survived on the promoted replica
            assert api.get(f"/v1/articles/a{i}").status_code == 200
        worker_client = ClusterClient.from_url(cluster.url)
        process_available(worker_client, cfg)
        for i in range(5):
            assert api.get(f"/v1/articles/a{i}").get_json()["status"] == "done"
        worker_client.close()
    finally:
        if not restarted:
            cluster.restart_node(killed)
        cluster.wait_healthy()
        cc.close()
        on_replica.close()


def test_wait_on_a_cluster_uses_the_slot_masters_connection(redis_cluster: RedisCluster) -> None:
    """WAIT counts the writes of its own connection: on a cluster the script and WAIT go to the data slot's master
    together, so its replica has the article when the 202 arrives."""
    cluster = redis_cluster
    cluster.wait_healthy()
    cc = cluster.client()
    cc.flushall()
    cfg = Config.from_env({}, redis_url=cluster.url, wait_replicas=1, rate_limit=0)
    api = create_app(cfg).test_client()
    owner_port = cc.get_node_from_key(keys.IDS).port
    replica: RedisServer = cluster.replicas_of(next(n for n in cluster.nodes if n.port == owner_port))[0]
    on_replica = _reader(replica)
    for i in range(20):
        assert api.post("/v1/articles", json={"id": f"w{i}", "title": "T", "text": f"{TEXT} {i}"}).status_code == 202
        assert on_replica.hexists(keys.IDS, f"w{i}")
    cc.close()
    on_replica.close()


def _move_empty_slot(cluster: RedisCluster, slot: int, to: RedisServer) -> None:
    """Give an empty slot to another master (what the end of a resharding does), known to every node."""
    new_id = to.client().execute_command("CLUSTER", "MYID").decode()
    to.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", new_id)
    for m in cluster.live_masters():
        if m is not to:
            m.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", new_id)
    cluster.wait_healthy()


@pytest.mark.slow
def test_a_waited_write_follows_a_moved_slot(redis_cluster: RedisCluster) -> None:
    """The [script, WAIT] pipeline goes to the slot's master directly: after the slot moved, the MOVED answer
    refreshes the client's slot map and the write lands (and is waited for) on the new owner."""
    cluster = redis_cluster
    cluster.wait_healthy()
    cc = cluster.client()
    cc.flushall()
    client = ClusterClient.from_url(cluster.url)
    scripts = Scripts(client, wait_replicas=1, wait_timeout_ms=5000)
    assert scripts.run(Txn().hset(keys.META, {"before": 1}))
    slot = client.keyslot(keys.META)
    old = next(n for n in cluster.nodes if n.port == client.get_node_from_key(keys.META).port)
    new = next(m for m in cluster.live_masters() if m is not old)
    cc.flushall()
    _move_empty_slot(cluster, slot, new)
    try:
        assert client.get_node_from_key(keys.META).port == old.port  # the client's map is stale
        assert scripts.run(Txn().hset(keys.META, {"after": 1}))
        assert new.client().hget(keys.META, "after") == b"1"
        assert client.get_node_from_key(keys.META).port == new.port
    finally:
        cc.flushall()
        _move_empty_slot(cluster, slot, old)
        client.close()
        cc.close()


@pytest.mark.slow
def test_a_worker_leaves_its_entries_pending_while_the_data_slot_has_no_master(one_master: RedisCluster) -> None:
    """CLUSTERDOWN (the slot is served by nobody) in a worker: a transient error, no attempt counted, nothing
    failed; once the slot is served again the article is processed."""
    node = one_master.nodes[0].client()
    cc = ClusterClient.from_url(one_master.url)
    cc.flushall()
    cfg = Config.from_env({}, redis_url=one_master.url, rate_limit=0, visibility_timeout=0.5)
    api = create_app(cfg).test_client()
    assert api.post("/v1/articles", json={"id": "a", "title": "Budget", "text": TEXT}).status_code == 202
    worker = Worker(ClusterClient.from_url(one_master.url), cfg, name="w1")
    slot = cc.keyslot(keys.QUEUE)
    node.execute_command("CLUSTER", "DELSLOTS", slot)
    try:
        with pytest.raises(Exception) as err:  # noqa: PT011 - which one redis-py raises is the point
            worker.step(block_ms=None)
        assert transient(err.value), repr(err.value)
        log.warning("worker step with the data slot unserved: %r", err.value)
    finally:
        node.execute_command("CLUSTER", "ADDSLOTS", slot)
    wait_until(lambda: b"cluster_state:ok" in node.execute_command("CLUSTER", "INFO"), 10)
    n = int(node.hget(keys.IDS, "a") or 0)
    assert node.hget(keys.article(n), "attempts") == b"0" and node.hget(keys.article(n), "status") == b"queued"
    assert process_available(ClusterClient.from_url(one_master.url), cfg) == 1
    assert api.get("/v1/articles/a").get_json()["status"] == "done"
    cc.close()
