"""What removing an article costs (issue 12): the removal path on an index filled in-process.

    .venv/bin/python bench/removal_cost.py [--articles 3000] [--batch 20] [--snapshot DIR] [--slowlog-us 200]
                                      [--sweeper]

Fills a private redis-server (no AOF) through the engine (``Dedup.submit`` + ``Worker`` steps, no
HTTP) with the bench corpus, then removes every article with ``Removal.remove`` in batches of
``--batch`` in article-number order (the sweeper's order: oldest first), or with ``--sweeper``
through ``Sweeper.sweep_batch`` (a 1 s window, so every article is expired; batches adapt to
take about ``CALL_SECONDS``), and prints

* ingest and removal wall time per article (removal includes its reads and retries);
* the removal transactions (``transact.lua`` calls): p50 / p99 / max of their duration inside
  Redis from SLOWLOG (threshold ``--slowlog-us``, 200 µs: calls under it count as 0 and a
  percentile under it prints as "<"; drained after every batch, outside the timed part; not 0,
  since Redis 6.2 also logs every command a script makes, which costs Redis CPU) and of the call
  as the client sees it (round trip included);
* Redis CPU per removed article (``used_cpu_user + used_cpu_sys``; machine load stretches wall
  times, not this) and the commands the scripts ran per article (``INFO commandstats``).

``--snapshot DIR`` keeps the filled database (``DIR/dump.rdb``) and reuses it on the next run,
so runs compare removal code on the same index. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import Corpus, drain  # noqa: E402

from newsdedup import keys  # noqa: E402
from newsdedup.articles import parse_article  # noqa: E402
from newsdedup.config import Config  # noqa: E402
from newsdedup.dedup import Dedup  # noqa: E402
from newsdedup.ops.redis_server import RedisServer  # noqa: E402
from newsdedup.retention.removal import Removal  # noqa: E402
from newsdedup.retention.sweeper import Sweeper  # noqa: E402
from newsdedup.storage.scripts import source  # noqa: E402
from workers.consumer import Worker  # noqa: E402

SLOWLOG_US = 200


def fill(data_dir: Path, n: int) -> float:
    """Index ``n`` corpus articles into a server in ``data_dir`` and SAVE it; seconds per article."""
    with RedisServer(data_dir=data_dir, appendonly=False) as srv:
        r = srv.client()
        cfg = Config.from_env({}, redis_url=srv.url)
        d, worker, corpus = Dedup(r, cfg), Worker(r, cfg, name="bench-removal"), Corpus.build()
        t = time.perf_counter()
        for arts in corpus.batches(n, 500):
            d.submit([parse_article(a.payload()) for a in arts])
            drain(worker, time.monotonic() + 3600)
        took = time.perf_counter() - t
        r.save()
    return took / n


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def cpu(r: Any) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def remove_all(data_dir: Path, batch: int, slowlog_us: int = SLOWLOG_US, aof: bool = True,
               sweeper: bool = False) -> dict[str, Any]:
    """Remove every article of the saved index in ``data_dir`` (a copy is used); the figures.

    ``sweeper``: through ``Sweeper.sweep_batch`` (all articles expired, batches adapting), else
    ``Removal.remove`` in batches of ``batch``.
    """
    sha = hashlib.sha1(source("transact").encode()).hexdigest().encode()
    with tempfile.TemporaryDirectory(prefix="nd-removal-") as tmp:
        shutil.copy(data_dir / "dump.rdb", Path(tmp) / "dump.rdb")
        with RedisServer(data_dir=tmp, appendonly=False) as srv:
            r: Any = srv.client()
            if aof:  # as `newsdedup up` runs it (appendfsync everysec); loaded from the RDB first
                r.config_set("appendonly", "yes")
                while r.info("persistence")["aof_rewrite_in_progress"] or r.info("persistence")[
                        "aof_rewrite_scheduled"]:
                    time.sleep(0.05)
            cfg = Config.from_env({"NEWSDEDUP_RETENTION": "1s"} if sweeper else {}, redis_url=srv.url)
            sweep = Sweeper(r, cfg, name="bench")
            removal = sweep.removal if sweeper else Removal(r, cfg)
            scripts = removal.engine.scripts
            run = scripts.run
            client_ms: list[float] = []

            def timed_run(txn: Any, client: Any = None) -> bool:
                t0 = time.perf_counter()
                try:
                    return run(txn, client)
                finally:
                    client_ms.append((time.perf_counter() - t0) * 1000)

            scripts.run = timed_run  # type: ignore[method-assign]
            nums = sorted(int(x) for x in r.hvals(keys.IDS))
            r.config_set("slowlog-log-slower-than", slowlog_us)
            r.config_set("slowlog-max-len", 100_000)
            r.slowlog_reset()
            r.config_resetstat()
            server_ms: list[float] = []
            wall = 0.0
            cpu0 = cpu(r)
            sizes: list[int] = []
            if sweeper and not sweep.acquire():
                raise SystemExit("the sweep lease is taken")
            for i in range(0, len(nums), batch) if not sweeper else iter(int, 1):
                t0 = time.perf_counter()
                if sweeper:
                    sizes.append(sweep.sweep_batch())
                    if not sizes[-1]:
                        break
                else:
                    removal.remove(nums[i:i + batch])
                wall += time.perf_counter() - t0
                log = r.execute_command("SLOWLOG", "GET", "100000")
                r.slowlog_reset()
                server_ms += [e[2] / 1000 for e in log if len(e[3]) > 1 and e[3][1] == sha]
            used = cpu(r) - cpu0
            stats = r.info("commandstats")
            left = sum(1 for k in r.scan_iter(count=1000) if not k.startswith((keys.PREFIX + "gone:").encode()))
    # calls under the threshold are not logged: they count as 0 (a percentile that low prints "<")
    server_ms = sorted(server_ms + [0.0] * (len(client_ms) - len(server_ms)))
    client_ms.sort()
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()
             if k.removeprefix("cmdstat_") in ("get", "set", "hincrby", "hmget", "hdel", "del", "zrem", "srem")}
    return {"articles": len(nums), "removal_us": wall / len(nums) * 1e6, "server": server_ms,
            "client": client_ms, "cpu_us": used / len(nums) * 1e6,
            "per_article": {k: round(v / len(nums), 1) for k, v in sorted(calls.items())}, "left": left,
            "sizes": sorted(sizes[:-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--slowlog-us", type=int, default=SLOWLOG_US)
    ap.add_argument("--sweeper", action="store_true", help="remove through the sweeper (adaptive batches)")
    ap.add_argument("--snapshot", type=Path, default=None, help="keep / reuse the filled index here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nd-fill-") as tmp:
        data = args.snapshot or Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        if (data / "dump.rdb").exists():
            print(f"reusing the index saved in {data}")
        else:
            print(f"N={args.articles} ingest {fill(data, args.articles) * 1e6:.0f} us/article")
        res = remove_all(data, args.batch, args.slowlog_us, sweeper=args.sweeper)
    s, c = res["server"], res["client"]
    z = res["sizes"]
    how = f"sweeper batches p50 {pct(z, .5)} (min {z[0]}, max {z[-1]})" if z else f"batch={args.batch}"
    print(f"N={res['articles']} {how}: removal {res['removal_us']:.0f} us/article wall, "
          f"Redis CPU {res['cpu_us']:.0f} us/article")
    lim = args.slowlog_us / 1000

    def ms(x: float) -> str:
        return f"<{lim:.2f}" if x < lim else f"{x:.2f}"

    print(f"  transact calls {len(s)}: in Redis p50 {ms(pct(s, .5))} ms, p99 {ms(pct(s, .99))} ms, "
          f"max {ms(s[-1]) if s else 'nan'} ms; at the client p50 {pct(c, .5):.2f} ms, "
          f"p99 {pct(c, .99):.2f} ms, max {c[-1] if c else float('nan'):.2f} ms")
    print(f"  commands per article: {res['per_article']}; keys left (but tombstones): {res['left']}")


if __name__ == "__main__":
    main()
