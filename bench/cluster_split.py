"""Figures behind docs/cluster.md: where Redis time goes per script today, how per-band hash tags split
the band-table work over a 3-master Redis Cluster, and what WAIT 1 costs on loopback.

    .venv/bin/python bench/cluster_split.py --articles 3000

1. One node: submit and process ``--articles`` articles with the real engine; Redis-side time of each
   script (``INFO commandstats`` evalsha usec, read around every call) per article.
2. The same articles' band values pushed through the real INDEX script three ways: one call per batch
   for all bands (today), one call per band per batch on one node (the per-band split's overhead),
   and one call per band per batch on a local 3+3 cluster with a hash tag per band (the CPU each
   master spends: ``INFO cpu`` and evalsha usec).
3. WAIT 1 after a write, on a master with one replica (loopback): wall time per write.
Nothing here asserts; it prints figures (2 shared cores: compare rows of one run only).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import redis
from benchlib import Corpus, drain, install_exit_signals
from redis.crc import key_slot

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.index.minhash import Banding
from newsdedup.ops.redis_cluster import SLOTS, RedisCluster
from newsdedup.ops.redis_server import RedisServer
from newsdedup.storage import blobs
from newsdedup.storage.records import n4
from newsdedup.storage.scripts import source
from newsdedup.text.tokens import warm_up
from workers.consumer import Worker

BATCH = 64


def cpu(r: Any) -> float:
    """Redis's own CPU time so far (user + system, seconds): unlike commandstats' wall-clock usec it does
    not grow while Redis waits for a core on this shared machine."""
    i = r.info("cpu")
    return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])


def info_cost(r: Any, rounds: int = 200) -> float:
    """Redis CPU of one pair of INFO cpu calls (subtracted from every measured call)."""
    c0 = cpu(r)
    for _ in range(rounds):
        cpu(r)
    return (cpu(r) - c0) / rounds


class Timed:
    """Wraps a registered script: adds the Redis CPU of each call (INFO cpu around it) to ``totals[label]``."""

    def __init__(self, r: Any, script: Callable[..., Any], label: str, totals: dict[str, list[float]],
                 overhead: float) -> None:
        self.r, self.script, self.label, self.totals, self.overhead = r, script, label, totals, overhead

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        before = cpu(self.r)
        out = self.script(*args, **kwargs)
        row = self.totals.setdefault(self.label, [0.0, 0])
        row[0] += max(0.0, cpu(self.r) - before - self.overhead)
        row[1] += 1
        return out


def instrument(r: Any, engine_scripts: Any, phase: str, totals: dict[str, list[float]], overhead: float) -> None:
    for attr in ("transact", "features", "band_groups", "boilerplate", "prune_boilerplate", "_hmget_flat", "_load",
                 "_cluster_state"):
        label = f"{attr.strip('_')} ({phase})" if attr == "transact" else attr.strip("_")
        setattr(engine_scripts, attr, Timed(r, getattr(engine_scripts, attr), label, totals, overhead))


def part1(server: RedisServer, corpus: Corpus, n: int, cfg: Config) -> npt.NDArray[np.uint32]:
    r = server.client(socket_timeout=60)
    totals: dict[str, list[float]] = {}
    overhead = info_cost(r)
    d = Dedup(r, cfg)
    instrument(r, d.engine.scripts, "submit", totals, overhead)
    c0 = cpu(r)
    for batch in corpus.batches(n, 500):
        d.submit([parse_article(a.payload()) for a in batch])
    worker = Worker(r, cfg, name="bench-cluster")
    instrument(r, worker.engine.scripts, "worker", totals, overhead)
    warm_up()
    handled = drain(worker, time.monotonic() + 900)
    calls = sum(int(c) for _, c in totals.values())
    whole = cpu(r) - c0 - 2 * calls * overhead
    scripted = sum(u for u, _ in totals.values())
    print(f"\n1. one node, {handled} articles submitted and processed: Redis CPU per article (INFO cpu around "
          "each script call)")
    print(f"   {'script':<22} {'calls':>7} {'us/article':>11} {'share':>6}")
    for label, (sec, ncalls) in sorted(totals.items(), key=lambda t: -t[1][0]):
        print(f"   {label:<22} {int(ncalls):>7} {sec * 1e6 / handled:>11.1f} {sec / whole:>6.1%}")
    print(f"   {'everything else':<22} {'':>7} {(whole - scripted) * 1e6 / handled:>11.1f} "
          f"{(whole - scripted) / whole:>6.1%}   (XADD/XREADGROUP/pipelined reads, AOF writes, cron)")
    print(f"   total {whole * 1e6 / handled:.0f} us/article on {r.info('server')['redis_version']} "
          f"({r.info('memory').get('mem_allocator')})")
    st = r.info("commandstats")
    usec = {k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in st.items()}
    stream = sum(usec.get(c, 0) for c in ("xadd", "xack", "xdel", "xreadgroup", "xclaim", "xautoclaim", "xpending"))
    direct = sum(usec.get(c, 0) for c in ("xreadgroup", "xclaim", "xautoclaim", "xpending", "incrby", "hlen"))
    print(f"   stream commands (XADD, XACK, XDEL inside scripts; XREADGROUP, XPENDING, XCLAIM): "
          f"{stream / (usec.get('evalsha', 0) + direct):.1%} of Redis command time (commandstats)")
    nums = sorted(int(x) for x in r.hvals(keys.IDS))
    sigs = blobs.read(r, nums, ("sig",))
    banding = Banding.for_threshold(cfg.lsh_threshold, cfg.num_perm)
    rows = [np.frombuffer(s[b"sig"], dtype="<u4") for s in sigs if s.get(b"sig")]
    r.close()
    return banding.band_values(np.stack(rows))


def balanced_tags(ngroups: int) -> list[str]:
    """A tag per band group whose slots are evenly spaced over 0..16383 (so any equal-range split is even)."""
    tags = []
    for g in range(ngroups):
        lo, hi = g * SLOTS // ngroups, (g + 1) * SLOTS // ngroups
        k = 0
        while not lo <= key_slot(f"g{g}.{k}".encode()) < hi:
            k += 1
        tags.append(f"g{g}.{k}")
    return tags


# Part 2 measured the single-table INDEX script (index.lua, before the band groups, commit bb22267) with its
# per-article version check removed, renamed per tag. That script is gone: the band groups it led to are
# measured by part 1 (the band_groups row: the 6 group calls of a batch, pipelined).
def group_index() -> str | None:
    try:
        return source("index").replace('if redis.call("HGET", akey, "ver") ~= ver then', "if false then")
    except FileNotFoundError:
        return None


def index_args(values: npt.NDArray[np.uint32], first_n: int, bands: list[int], cfg: Config,
               prefix: str) -> list[Any]:
    """INDEX's ARGV for one batch: articles with only the given bands, no article fields (nf=0)."""
    argv: list[Any] = [4096, prefix, cfg.lsh_bucket_bits, cfg.lsh_bucket_load, len(bands)]
    for i, row in enumerate(values):
        argv.extend((2, n4(first_n + i), 1, row[bands].tobytes(), 0))
    return argv


def groups_of(nbands: int, ngroups: int) -> list[list[int]]:
    return [list(range(nbands))[g::ngroups] for g in range(ngroups)]


def push(values: npt.NDArray[np.uint32], cfg: Config, call: Callable[[list[str], list[Any]], Any],
         tags: list[str], groups: list[list[int]], declare: bool = False) -> None:
    """Every batch through the band-table script: one call per band group (its own tag, state and buckets).

    ``declare``: also send, in KEYS, one bucket key per distinct (band, address) of the call, as the
    slot-legal script will (addresses at the starting level; the script ignores them here): what
    naming every bucket costs Redis in argument parsing and slot checks.
    """
    mask = (1 << cfg.lsh_bucket_bits) - 1
    for lo in range(0, len(values), BATCH):
        chunk = values[lo:lo + BATCH]
        for tag, bands in zip(tags, groups):
            ks = [f"nd:bts:{{{tag}}}", f"nd:bx:{{{tag}}}"]
            if declare:
                ks += sorted({f"nd:bt:{{{tag}}}:{b}:{int(v) & mask}" for b in bands for v in chunk[:, b]})
            call(ks, index_args(chunk, lo + 1, bands, cfg, f"nd:bt:{{{tag}}}:"))


def part2(values: npt.NDArray[np.uint32], cfg: Config, group_counts: list[int]) -> None:
    GROUP_INDEX = group_index()  # noqa: N806
    if GROUP_INDEX is None:
        print("\n2. skipped: the single-table INDEX script it measured was replaced by the band groups "
              "(see part 1's band_groups row)")
        return
    n, nbands = values.shape
    print(f"\n2. band table: {n} articles x {nbands} bands through the INDEX script (without the article version "
          f"check), batches of {BATCH}; Redis CPU per article")
    print("   one node:")
    base = 0.0
    for ng in [1, *group_counts]:
        tags, groups = balanced_tags(ng), groups_of(nbands, ng)
        with RedisServer(appendonly=False) as server:
            r = server.client()
            script = r.register_script(GROUP_INDEX)
            c0 = cpu(r)
            push(values, cfg, lambda k, a: script(keys=k, args=a), tags, groups)  # noqa: B023
            us = (cpu(r) - c0) * 1e6 / n
            base = base or us
            print(f"     {ng:>2} band group{'s' if ng > 1 else ' '} ({ng} calls per batch)  {us:7.1f} us/article  "
                  f"({us / base:.2f}x one call)")
            r.close()
    with RedisCluster(masters=3, replicas=0, appendonly=False) as cluster:
        cc = cluster.client()
        script = cc.register_script(GROUP_INDEX)
        masters = {m.port: m.client() for m in cluster.live_masters()}
        print("   3-master cluster (per master: groups it holds, CPU us/article, multiple of the one-node one-call "
              "figure):")
        for ng, declare in [(g, False) for g in group_counts] + [(6, True)]:
            tags, groups = balanced_tags(ng), groups_of(nbands, ng)
            c0 = {p: cpu(m) for p, m in masters.items()}
            push(values, cfg, lambda k, a: script(keys=k, args=a), tags, groups, declare)  # noqa: B023
            per = {p: (cpu(m) - c0[p]) * 1e6 / n for p, m in masters.items()}
            held = {p: 0 for p in masters}
            for t in tags:
                held[int(cc.get_node_from_key(f"{{{t}}}").port)] += 1
            cells = "  ".join(f"{held[p]:>2} g {u:6.1f} us ({u / base:.2f}x)" for p, u in per.items())
            label = f"{ng:>2} groups" + (" + bucket keys in KEYS" if declare else "")
            print(f"     {label}: {cells}  sum {sum(per.values()):6.1f} us")
            cc.flushall()
        naive = [0, 0, 0]
        for b in range(nbands):
            naive[min(2, key_slot(f"{{b{b}}}".encode()) * 3 // SLOTS)] += 1
        print(f"   bands per master with naive tags {{b0}}..{{b{nbands - 1}}} on equal slot ranges: {naive}")
        for m in masters.values():
            m.close()
        cc.close()


def part3(rounds: int) -> None:
    with RedisCluster(masters=3, replicas=1, appendonly=False) as cluster:
        master = cluster.live_masters()[0]
        r = master.client()
        mine = _slots_of(r)
        key = next(f"w{i}" for i in range(10_000) if key_slot(f"w{i}".encode()) in mine)
        print(f"\n3. WAIT on loopback ({rounds} writes of 100 bytes to one master with one replica)")
        for label, fn in (("SET", lambda: r.set(key, b"x" * 100)),
                          ("SET, then WAIT 1 1000", lambda: (r.set(key, b"x" * 100), r.wait(1, 1000))),
                          ("pipeline [SET, WAIT 1 1000]", lambda: _pipe_wait(r, key))):
            t0 = time.perf_counter()
            for _ in range(rounds):
                fn()
            print(f"   {label:<30} {(time.perf_counter() - t0) * 1e6 / rounds:8.1f} us per write")
        print(f"   replicas acknowledging: {r.wait(1, 1000)}")
        r.close()


def _slots_of(r: Any) -> set[int]:
    me = next(line for line in r.execute_command("CLUSTER", "NODES").decode().splitlines() if "myself" in line)
    out: set[int] = set()
    for f in me.split()[8:]:
        if f[0] != "[":
            lo, _, hi = f.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _pipe_wait(r: redis.Redis, key: str) -> None:
    p = r.pipeline(transaction=False)
    p.set(key, b"x" * 100)
    p.wait(1, 1000)
    p.execute()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--articles", type=int, default=3000)
    p.add_argument("--wait-rounds", type=int, default=2000)
    p.add_argument("--parts", default="1,2,3", help="which parts to run (part 1 always runs: it makes the data)")
    p.add_argument("--groups", default="3,6,12,37", help="band-group counts to try (default 3,6,12,37)")
    p.add_argument("--synthetic", action="store_true", help="synthetic articles only")
    args = p.parse_args(argv)
    install_exit_signals()
    cfg = Config()
    corpus = Corpus.build(synthetic_only=args.synthetic)
    print(f"corpus: {corpus.describe(args.articles)}", file=sys.stderr)
    parts = {int(x) for x in args.parts.split(",")}
    with RedisServer(die_with_parent=True) as server:
        values = part1(server, corpus, args.articles, cfg)
    if 2 in parts:
        part2(values, cfg, [int(g) for g in args.groups.split(",")])
    if 3 in parts:
        part3(args.wait_rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
