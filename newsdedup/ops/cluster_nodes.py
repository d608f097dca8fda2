"""Looking at a local Redis Cluster: its ports, ``CLUSTER NODES``, health, replication and roles.

:class:`ClusterView` is what :class:`~newsdedup.ops.redis_cluster.RedisCluster` (which starts and
stops the nodes) and tests use to ask the running nodes about the cluster; every question goes to
the nodes themselves, so it also sees what a failover changed.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from newsdedup.ops.redis_server import LOOPBACK, RedisServer, RedisServerError

__all__ = ["BUS_OFFSET", "SLOTS", "ClusterNodeInfo", "ClusterView", "free_cluster_port", "parse_cluster_nodes"]

SLOTS = 16384
# Redis < 7 puts the cluster bus on port + 10000 (no cluster-port setting), so both must be free
# and the port at most 55535.
BUS_OFFSET = 10000
_PORT_RANGE = (20000, 45000)  # below the kernel's ephemeral range (32768+ is handed out to clients: +10000 is not)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_cluster_port(rng: random.Random | None = None, taken: set[int] | frozenset[int] = frozenset()) -> int:
    """A loopback port that is free, with its cluster-bus port (+10000) free too, a moment ago."""
    pick = rng or random.Random()
    for _ in range(200):
        port = pick.randrange(*_PORT_RANGE)
        if port in taken or port + BUS_OFFSET in taken:
            continue
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            return port
    raise RedisServerError("no free pair of ports (port, port+10000) found for a cluster node")


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of ``CLUSTER NODES``."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None  # for a replica: the id of its master
    connected: bool
    slots: int  # how many slots it serves

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags


def _count_slots(fields: list[str]) -> int:
    n = 0
    for f in fields:
        if f.startswith("["):  # a slot being imported or migrated: not served yet
            continue
        lo, _, hi = f.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def parse_cluster_nodes(text: str) -> list[ClusterNodeInfo]:
    """Parse ``CLUSTER NODES`` output (the format is the same in Redis 3 to 7)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        addr = parts[1].split("@")[0]
        port = int(addr.rsplit(":", 1)[1]) if ":" in addr and addr.rsplit(":", 1)[1].isdigit() else 0
        out.append(ClusterNodeInfo(node_id=parts[0], port=port, flags=frozenset(parts[2].split(",")),
                                   master_id=None if parts[3] == "-" else parts[3],
                                   connected=parts[7] == "connected", slots=_count_slots(parts[8:])))
    return out


def _info_fields(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


class ClusterView:
    """Questions about the cluster made of :attr:`nodes` (``masters`` masters with ``replicas`` each)."""

    nodes: list[RedisServer]
    masters: int
    replicas: int
    data_dir: Path | None

    # -- addresses ------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.masters * (1 + self.replicas)

    def _port(self, node: RedisServer) -> int:
        if node.port is None:
            raise RedisServerError("the cluster has not been started; call start() first")
        return node.port

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT of a live master (a cluster client discovers the rest from it)."""
        live = self.live_masters()
        if not live:
            raise RedisServerError("no live master in the cluster")
        return f"redis://{LOOPBACK}:{self._port(live[0])}"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(LOOPBACK, self._port(n)) for n in self.nodes]

    def client(self, **kwargs: object) -> redis.cluster.RedisCluster:
        """A redis-py cluster client seeded with every node (decode_responses=False unless given)."""
        from redis.cluster import ClusterNode
        from redis.cluster import RedisCluster as ClusterClient

        seeds = [ClusterNode(h, p) for h, p in self.startup_nodes]
        return ClusterClient(startup_nodes=seeds, **kwargs)  # type: ignore[arg-type]

    def _node_client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self._port(node), socket_timeout=2.0, socket_connect_timeout=1.0,
                           decode_responses=True)

    def _ask(self, node: RedisServer, *command: str) -> str | None:
        """One command to one node; None when it does not answer (killed, restarting)."""
        if not node.running:
            return None
        c = self._node_client(node)
        try:
            return str(c.execute_command(*command))
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
            return None
        finally:
            c.close()

    def view(self, node: RedisServer) -> list[ClusterNodeInfo]:
        """The cluster as ``node`` sees it (empty when it does not answer)."""
        text = self._ask(node, "CLUSTER", "NODES")
        return parse_cluster_nodes(text) if text else []

    def info(self, node: RedisServer) -> dict[str, str]:
        text = self._ask(node, "CLUSTER", "INFO")
        return _info_fields(text) if text else {}

    def _replication(self, node: RedisServer) -> dict[str, object]:
        """INFO replication of one node (empty when it does not answer)."""
        if not node.running:
            return {}
        c = self._node_client(node)
        try:
            return dict(c.info("replication"))
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
            return {}
        finally:
            c.close()

    def node_at(self, port: int) -> RedisServer:
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    def live_masters(self) -> list[RedisServer]:
        """Running nodes that the first running node sees as healthy masters serving slots, in node order."""
        for node in self.nodes:
            seen = self.view(node)
            if seen:
                ports = {i.port for i in seen if i.is_master and not i.failed and i.slots > 0}
                return [n for n in self.nodes if n.port in ports and n.running]
        return []

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RedisServerError(f"timed out after {timeout:.0f}s waiting for {what}; "
                                       f"node logs are in {self.data_dir}")
            time.sleep(0.05)

    def healthy(self) -> bool:
        """Every running node says cluster_state:ok, sees every slot served and agrees that every live
        master has ``replicas`` replicas; their replication links are up (so a failover has one to promote)."""
        running = [n for n in self.nodes if n.running]
        if not running:
            return False
        for node in running:
            info = self.info(node)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return False
        seen: list[ClusterNodeInfo] = []
        for node in running:  # gossip spreads the replica relations: wait until every node knows them
            seen = self.view(node)
            masters = [i for i in seen if i.is_master and not i.failed and i.slots > 0]
            for m in masters:
                followers = [i for i in seen if i.master_id == m.node_id and not i.failed and i.connected]
                if len(followers) < min(self.replicas, len(running) - len(masters)):
                    return False
        replicas = [i for i in seen if not i.is_master and not i.failed]
        return all(i.port and self._replication(self.node_at(i.port)).get("master_link_status") == "up"
                   for i in replicas)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        self._wait(self.healthy, timeout, "cluster_state:ok on every node with every replica attached")

    def replicated(self) -> bool:
        """Every live master's replicas have acknowledged its whole replication stream so far."""
        for node in self.live_masters():
            repl = self._replication(node)
            target = repl.get("master_repl_offset")
            followers = [v for k, v in repl.items() if k.startswith("slave") and isinstance(v, dict)]
            if target is None or len(followers) < self.replicas:
                return False
            if any(int(f.get("offset", -1)) < int(str(target)) for f in followers):
                return False
        return True

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Wait until replicas hold every write made so far (tests: "nothing in flight" before a kill)."""
        self._wait(self.replicated, timeout, "the replicas to catch up with their masters")

    def master_index(self, i: int) -> int:
        """The node number of the ``i``-th live master (in node order)."""
        live = self.live_masters()
        if not 0 <= i < len(live):
            raise IndexError(f"there are {len(live)} live masters; no master {i}")
        return self.nodes.index(live[i])

    def replicas_of(self, node: RedisServer) -> list[RedisServer]:
        seen = next((v for v in (self.view(n) for n in self.nodes if n is not node) if v), [])
        me = next((i for i in seen if i.port == node.port), None)
        if me is None:
            return []
        return [self.node_at(i.port) for i in seen if i.master_id == me.node_id and i.port]
