"""Where the engine's time goes: the worker loop on ~5,000 articles under a profiler.

    python bench/profile.py [--articles 5000] [--synthetic] [--profiler pyinstrument|cprofile] [--top 30]

Articles are submitted with ``Dedup.submit`` to a throwaway Redis first (not profiled); then the
loop of ``workers.consumer.process_available`` (``Worker.step`` -> ``Engine.process``) drains
the queue under pyinstrument (sampling; falls back to cProfile when it is not installed). Prints the
top functions by cumulative time; the full pyinstrument report is written to
``bench/results/profile.html`` / ``profile.txt``. Time spent inside Redis (Lua scripts, round
trips) appears as time in redis-py's socket reads.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named profile.py; with bench/ first on sys.path it would shadow the standard library
# module that cProfile imports. Move bench/ to the end so `import benchlib` still works.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE] + [_HERE]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

from benchlib import Corpus, drain, install_exit_signals  # noqa: E402

from newsdedup.articles import parse_article  # noqa: E402
from newsdedup.config import Config  # noqa: E402
from newsdedup.dedup import Dedup  # noqa: E402
from newsdedup.ops.redis_server import RedisServer  # noqa: E402
from newsdedup.text.tokens import warm_up  # noqa: E402
from workers.consumer import Worker  # noqa: E402

RESULTS = Path(_HERE) / "results"


def print_redis_time(r: Any, handled: int) -> None:
    """Time spent inside Redis per command (and per script): what the profiler sees as socket reads."""
    stats = r.info("commandstats")
    rows = sorted(((k.removeprefix("cmdstat_"), v["calls"], v["usec"]) for k, v in stats.items()),
                  key=lambda t: -t[2])
    total = sum(u for _, _, u in rows)
    print(f"inside Redis: {total / 1e6:.2f} s = {total / max(handled, 1):.0f} us per article")
    for name, calls, usec in rows[:8]:
        print(f"  {name:<14} {calls:>8} calls {usec / 1e6:7.2f} s  {usec / max(handled, 1):6.0f} us/article")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="profile the engine alone")
    p.add_argument("--articles", type=int, default=5000)
    p.add_argument("--synthetic", action="store_true", help="synthetic articles only")
    p.add_argument("--profiler", choices=("pyinstrument", "cprofile"), default=None,
                   help="default: pyinstrument when installed, else cProfile")
    p.add_argument("--top", type=int, default=30, help="functions to list (default 30)")
    p.add_argument("--sort", default="cumulative", help="cProfile sort key (default cumulative)")
    p.add_argument("--time-limit", type=float, default=900.0, help="seconds allowed for processing")
    args = p.parse_args(argv)
    install_exit_signals()
    use = args.profiler or ("pyinstrument" if importlib.util.find_spec("pyinstrument") else "cprofile")
    corpus = Corpus.build(synthetic_only=args.synthetic)
    cfg = Config()
    with RedisServer(die_with_parent=True) as server:
        r = server.client(socket_timeout=60)
        d = Dedup(r, cfg)
        for batch in corpus.batches(args.articles, 500):
            d.submit([parse_article(a.payload()) for a in batch])
        worker = Worker(r, cfg, name="bench-profile")
        warm_up()  # build the character tables now: a one-off cost per process
        print(f"profiling the worker loop over {corpus.describe(args.articles)} articles with {use}",
              file=sys.stderr)
        RESULTS.mkdir(parents=True, exist_ok=True)
        r.config_resetstat()
        t0 = time.perf_counter()
        if use == "pyinstrument":
            from pyinstrument import Profiler

            prof = Profiler(interval=0.001)
            prof.start()
            try:
                handled = drain(worker, time.monotonic() + args.time_limit)
            finally:
                prof.stop()
            secs = time.perf_counter() - t0
            (RESULTS / "profile.html").write_text(prof.output_html(), encoding="utf-8")
            (RESULTS / "profile.txt").write_text(prof.output_text(show_all=False), encoding="utf-8")
            flat = prof.output_text(flat=True, flat_time="total", show_all=True)
            lines = [ln for ln in flat.splitlines() if ln.strip()[:1].isdigit()]  # drop the banner
            print(f"{handled} articles in {secs:.1f} s = {handled / secs:.0f} articles/s (under the profiler)")
            print(f"top {args.top} functions by cumulative (total) time:")
            print("\n".join(lines[: args.top]))
            print(f"\ncall tree: {RESULTS / 'profile.txt'} (and profile.html)")
        else:
            import cProfile
            import pstats

            cprof = cProfile.Profile()
            cprof.enable()
            try:
                handled = drain(worker, time.monotonic() + args.time_limit)
            finally:
                cprof.disable()
            secs = time.perf_counter() - t0
            print(f"{handled} articles in {secs:.1f} s = {handled / secs:.0f} articles/s (under the profiler)")
            buf = io.StringIO()
            pstats.Stats(cprof, stream=buf).strip_dirs().sort_stats(args.sort).print_stats(args.top)
            print(buf.getvalue())
            cprof.dump_stats(str(RESULTS / "profile.pstats"))
        print_redis_time(r, handled)
        r.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
