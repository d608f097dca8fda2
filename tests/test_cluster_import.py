"""Moving a single Redis's data to a Redis Cluster with one documented command (docs/cluster.md).

Every key is hash-tagged, so ``redis-cli --cluster import`` copies the data as it is: the same
articles, clusters and index answer on the cluster, and new articles join the old clusters.
"""

from __future__ import annotations

import subprocess

import redis
from redis.cluster import RedisCluster as ClusterClient

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.ops.redis_cluster import RedisCluster
from newsdedup.ops.redis_server import RedisServer
from tests.procs import partition
from tests.textgen import light_edit, stories_and_copies
from workers.consumer import process_available


def test_redis_cli_cluster_import_moves_a_single_redis_to_the_cluster(
        redis_server: RedisServer, redis_client: redis.Redis, config: Config, redis_cluster: RedisCluster) -> None:
    d = Dedup(redis_client, config)
    texts, arts = stories_and_copies(70, 8, 4)
    d.submit([parse_article(a) for a in arts])
    process_available(redis_client, config)
    before = partition(redis_client)
    assert sum(len(g) == 2 for g in before) == 4
    stored = redis_client.dbsize()

    cc = ClusterClient.from_url(redis_cluster.url)
    cc.flushall()
    assert redis_cluster.redis_cli is not None
    node = redis_cluster.url.split("//")[1].split("/")[0]
    source = redis_server.url.split("//")[1].split("/")[0]
    subprocess.run([str(redis_cluster.redis_cli), "--cluster", "import", node, "--cluster-from", source,
                    "--cluster-copy"], check=True, capture_output=True, timeout=120)
    assert redis_client.dbsize() == stored  # --cluster-copy: the source is left intact (a rollback)
    per_master = [int(cc.dbsize(target_nodes=n)) for n in cc.get_primaries()]
    assert sum(per_master) == stored
    assert len(per_master) == 3 and min(per_master) > 0  # the data slot, band groups and blobs spread

    cfg = config.replace(redis_url=redis_cluster.url)
    on_cluster = Dedup(cc, cfg)
    assert partition(cc) == before
    for i in range(4):
        assert on_cluster.article(f"c{i}")["duplicate_of"] == f"o{i}"
    found = {x["id"] for x in on_cluster.check(parse_article({"text": texts[5]})[0])["duplicates"]}
    assert found == {"o5"}
    # new articles are processed on the cluster and join the clusters imported
    on_cluster.submit([parse_article({"id": "n5", "text": light_edit(texts[5], 9, 0.01)})])
    process_available(cc, cfg)
    assert on_cluster.article("n5")["cluster_id"] == on_cluster.article("o5")["cluster_id"]
    assert int(cc.hget(keys.META, "queued") or 0) == 0
    cc.flushall()
    cc.close()
