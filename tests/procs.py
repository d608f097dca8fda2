"""Helpers for tests that run the real thing: worker, API and `up` processes, a real Redis, real HTTP.

Nothing here mocks anything. Processes are started with an explicit environment,
in their own process group, with their output in a log file; the ``procs``
fixture stops every one of them (SIGTERM, then SIGKILL) whatever the test did,
and prints the end of their logs so a failure shows what the processes said.
Synchronisation is always "poll a condition until a deadline" (:func:`wait_until`).

Also here: a small JSON-over-HTTP client on urllib, a deterministic generator of
synthetic articles with planted copies and their ground truth, and checks of the
Redis index invariants that must hold after any crash or race.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.index.minhash import Banding
from tests.textgen import EN_WORDS, ZH_CHARS, en_article, zh_article

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
T = TypeVar("T")


# --- polling -----------------------------------------------------------------------------------------------------

def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05, message: str = "") -> T:
    """Call ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass (AssertionError).

    Exceptions propagate: a predicate that can legitimately fail for a while catches its own.
    """
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message or predicate!r} "
                                 f"(last value {last!r})")
        time.sleep(interval)
        last = predicate()
    return last


# --- processes ---------------------------------------------------------------------------------------------------

def base_env(**settings: Any) -> dict[str, str]:
    """The test's environment without any REDIS_URL / NEWSDEDUP_* setting, plus ``settings`` (None drops one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_") and k != "REDIS_URL"}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for k, v in settings.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == pid:
            out.append(int(d.name))
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren, ...), from /proc."""
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = _children(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2:][:1] not in ("Z", "X")


class Proc:
    """One child process in its own process group, output in ``log_path``."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in cleanup()
        self.popen = subprocess.Popen(argv, env=dict(env), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()
        self.known_descendants: set[int] = set()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def remember_descendants(self) -> set[int]:
        """Record the current descendants (so cleanup can reach those that left the process group)."""
        if self.alive:
            self.known_descendants.update(descendants(self.pid))
        return set(self.known_descendants)

    def signal(self, sig: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> int:
        """SIGKILL the whole process group (a crash); returns the exit code."""
        self.remember_descendants()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return self.popen.wait(10)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM the process itself and wait for it; raises subprocess.TimeoutExpired if it hangs."""
        self.signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise (with the end of its log) when the process has exited; None otherwise (handy in predicates)."""
        if not self.alive:
            raise AssertionError(f"{self.name} (pid {self.pid}) exited with code {self.returncode}:\n"
                                 f"{tail(self.log())}")

    def cleanup(self) -> None:
        """Stop it and everything it started, whatever state it is in."""
        self.remember_descendants()
        if self.alive:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # stragglers left in the group by a dead leader
        for pid in self.known_descendants:  # children that made their own session (`up` does)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Procs:
    """Starts the project's processes for one test; :meth:`cleanup` stops them all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.all: list[Proc] = []

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        p = Proc(name, argv, env, self.log_dir / f"{len(self.all):02d}-{name}.log")
        self.all.append(p)
        return p

    def worker(self, redis_url: str, name: str = "worker", **settings: Any) -> Proc:
        """``python -m newsdedup.cli worker`` against ``redis_url``; settings are NEWSDEDUP_* env values."""
        env = base_env(REDIS_URL=redis_url, **settings)
        return self.start(name, [PYTHON, "-m", "newsdedup.cli", "worker"], env)

    def serve(self, redis_url: str, port: int, processes: int = 1, threads: int = 4, **settings: Any) -> Proc:
        """``python -m newsdedup.cli serve`` (gunicorn) on 127.0.0.1:port."""
        env = base_env(REDIS_URL=redis_url, **settings)
        return self.start("serve", [PYTHON, "-m", "newsdedup.cli", "serve", "--host", "127.0.0.1", "--port",
                                    str(port), "--processes", str(processes), "--threads", str(threads)], env)

    def up(self, port: int, data_dir: Path, workers: int = 1, cluster: bool = False, **settings: Any) -> Proc:
        """``python -m newsdedup.cli up`` (REDIS_URL unset unless given: embedded Redis in data_dir/redis;
        ``cluster``: ``--cluster``, a local Redis Cluster in data_dir/cluster)."""
        env = base_env(**settings)
        return self.start("up", [PYTHON, "-m", "newsdedup.cli", "up", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", str(workers), "--data-dir", str(data_dir),
                                 *(["--cluster"] if cluster else [])], env)

    def cleanup(self) -> None:
        for p in self.all:  # all at once: each then takes its own time to stop, not the sum of them
            p.remember_descendants()
            p.signal(signal.SIGTERM)
        for p in reversed(self.all):
            p.cleanup()

    def report(self) -> str:
        return "\n".join(f"----- {p.name} (pid {p.pid}, rc {p.returncode}) {p.log_path}\n{tail(p.log())}"
                         for p in self.all)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Processes started through this are always stopped; their logs are printed (shown on failure)."""
    ps = Procs(tmp_path / "logs")
    try:
        yield ps
    finally:
        ps.cleanup()
        print(ps.report())


def consumer_name(proc: Proc) -> str:
    """The consumer name a worker process uses in the queue's group (workers.consumer.consumer_name)."""
    return f"{socket.gethostname()}-{proc.pid}"


def consumers(r: redis.Redis) -> dict[str, dict[str, Any]]:
    """XINFO CONSUMERS of the queue group by name ({} while the group does not exist)."""
    try:
        rows = r.xinfo_consumers(keys.QUEUE, keys.GROUP)
    except redis.exceptions.ResponseError:
        return {}
    return {(c["name"].decode() if isinstance(c["name"], bytes) else c["name"]): c for c in rows}


def local_tcp_ports(pid: int) -> set[int]:
    """Local ports of the TCP sockets process ``pid`` holds (from /proc/<pid>/fd and /proc/net/tcp)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def in_xreadgroup(r: redis.Redis, proc: Proc) -> bool:
    """True when one of the process's Redis connections is (blocked) in XREADGROUP right now."""
    ports = local_tcp_ports(proc.pid)
    for c in r.client_list():
        _host, _, port = str(c.get("addr", "")).rpartition(":")
        if port.isdigit() and int(port) in ports and c.get("cmd") == "xreadgroup":
            return True
    return False


def wait_worker_ready(r: redis.Redis, proc: Proc, timeout: float = 30.0) -> None:
    """Until the worker consumes the queue: it is a consumer of the group, or it waits in XREADGROUP.

    (Redis 6.2 creates the consumer only once something is delivered to it, so on an empty queue the
    worker is found by its connection in CLIENT LIST.)
    """
    name = consumer_name(proc)

    def consuming() -> bool:
        proc.check_alive()
        return name in consumers(r) or in_xreadgroup(r, proc)

    wait_until(consuming, timeout, message=f"{proc.name} to consume the queue as {name}")


def pending_of(r: redis.Redis, proc: Proc) -> list[dict[str, Any]]:
    """The entries delivered to this worker and not acknowledged yet."""
    try:
        return list(r.xpending_range(keys.QUEUE, keys.GROUP, min="-", max="+", count=100_000,
                                     consumername=consumer_name(proc)))
    except redis.exceptions.ResponseError:
        return []


# --- HTTP --------------------------------------------------------------------------------------------------------

@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Http:
    """A JSON-over-HTTP client on urllib that never retries: the test sees every answer."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Response:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout if timeout is None else timeout) as resp:
                return Response(resp.status, dict(resp.headers.items()), resp.read(), time.monotonic() - t0)
        except urllib.error.HTTPError as e:
            with contextlib.closing(e):
                return Response(e.code, dict(e.headers.items()), e.read(), time.monotonic() - t0)

    def get(self, path: str, timeout: float | None = None) -> Response:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: Any, timeout: float | None = None) -> Response:
        return self.request("POST", path, body, timeout=timeout)

    def answers(self, path: str, status: int = 200) -> bool:
        """True when GET path answers ``status`` now (connection errors are False)."""
        try:
            return self.get(path, timeout=2.0).status == status
        except (urllib.error.URLError, OSError):
            return False

    def queue_left(self) -> int:
        q = self.get("/v1/stats").json["queue"]
        return int(q["pending"]) + int(q["in_flight"])


def wait_http_ready(http: Http, proc: Proc, path: str = "/readyz", timeout: float = 45.0) -> None:
    def ready() -> bool:
        proc.check_alive()
        return http.answers(path)

    wait_until(ready, timeout, interval=0.1, message=f"{proc.name} to answer {path}")


# --- synthetic articles ------------------------------------------------------------------------------------------

SITES = ("新华网", "人民网", "Daily Courier", "Metro Times", "华龙网", "Coastal Herald")
COPY_KINDS = ("exact", "edit", "trunc", "chrome")


@dataclass
class Corpus:
    """Articles as submitted ({id, title, text, source}) and the story each one tells (ground truth)."""

    articles: list[dict[str, Any]] = field(default_factory=list)
    story: dict[str, str] = field(default_factory=dict)
    kind: dict[str, str] = field(default_factory=dict)

    def truth(self) -> set[frozenset[str]]:
        groups: dict[str, set[str]] = {}
        for i, s in self.story.items():
            groups.setdefault(s, set()).add(i)
        return {frozenset(g) for g in groups.values()}

    def ids(self) -> list[str]:
        return [a["id"] for a in self.articles]


def _en_story(rng: random.Random) -> str:
    """An English story of 600 to 1500 characters."""
    text = en_article(rng.randrange(1 << 30), words=rng.randint(100, 210))
    return _fit(text, 600, 1500)


def _zh_story(rng: random.Random) -> str:
    return _fit(zh_article(rng.randrange(1 << 30), chars=rng.randint(600, 1300)), 600, 1500)


def _fit(text: str, lo: int, hi: int) -> str:
    if len(text) > hi:
        cut = max(text.rfind(p, 0, hi) for p in ("。", ".")) + 1
        text = text[:cut] if cut >= lo else text[:hi]
    assert lo <= len(text) <= hi, len(text)
    return text


def _edit(text: str, rng: random.Random, zh: bool) -> str:
    """Light edits: a few characters (Chinese) or words (English) replaced, one sentence dropped."""
    if zh:
        chars = list(text)
        for _ in range(max(2, len(chars) // 80)):
            i = rng.randrange(len(chars))
            if "\u4e00" <= chars[i] <= "\u9fff":
                chars[i] = rng.choice(ZH_CHARS)
        text = "".join(chars)
        sents = text.split("。")
    else:
        words = text.split(" ")
        for _ in range(max(2, len(words) // 60)):
            i = rng.randrange(len(words))
            if words[i].isalpha() and words[i].islower():
                words[i] = rng.choice(EN_WORDS)
        text = " ".join(words)
        sents = text.split(". ")
    if len(sents) > 6:  # drop one sentence from the middle
        del sents[rng.randrange(2, len(sents) - 2)]
    return ("。" if zh else ". ").join(sents)


def _truncate(text: str, rng: random.Random) -> str:
    """The first 65-85% of the story, cut after a sentence (wire versions are often shortened)."""
    keep = int(len(text) * rng.uniform(0.65, 0.85))
    cut = max(text.rfind("。", 0, keep), text.rfind(".", 0, keep)) + 1
    return text[:cut] if cut > len(text) // 2 else text[:keep]


def _chrome(text: str, site: str, rng: random.Random, zh: bool) -> str:
    day = f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
    if zh:
        top = f"{site} | 首页 | 新闻 | 评论\n来源：{site} {day} 编辑：{rng.choice('王李张刘')}敏"
        foot = f"分享到：微博 微信 QQ空间\n[责任编辑：{rng.choice('王李张刘')}强]\n版权所有 {site} 未经授权不得转载"
    else:
        top = f"{site} | Home | World | Business\nPublished {day} by staff"
        foot = f"Share: Facebook | Twitter | Email\n© {site}. All rights reserved.\nSign up for the {site} newsletter"
    return f"{top}\n{text}\n{foot}"


def make_corpus(stories: int, seed: int, copies: tuple[int, int] = (1, 3), singles: int = 0,
                together: bool = True) -> Corpus:
    """``stories`` stories (alternately Chinese and English) each with ``copies`` planted copies, plus
    ``singles`` unrelated stories without copies.

    Copy kinds: exact re-post (other source), light edits, truncation, the story inside a site's chrome.
    With ``together`` the copies of one story are submitted next to each other (so concurrent workers
    see them at the same moment); otherwise everything is shuffled.
    """
    rng = random.Random(seed)
    corpus = Corpus()
    groups: list[list[dict[str, Any]]] = []
    for s in range(stories + singles):
        zh = s % 2 == 0
        text = _zh_story(rng) if zh else _en_story(rng)
        label = f"s{s:03d}"
        title = (f"新闻{s}号" if zh else f"Story number {s}")
        group = [{"id": f"{label}-orig", "title": title, "text": text, "source": rng.choice(SITES)}]
        n_copies = 0 if s >= stories else rng.randint(*copies)
        for c in range(n_copies):
            kind = COPY_KINDS[(s + c) % len(COPY_KINDS)]
            site = rng.choice(SITES)
            if kind == "exact":
                body = text
            elif kind == "edit":
                body = _edit(text, rng, zh)
            elif kind == "trunc":
                body = _truncate(text, rng)
            else:
                body = _chrome(text, site, rng, zh)
            group.append({"id": f"{label}-{kind}{c}", "title": title, "text": body, "source": site})
        rng.shuffle(group)
        for a in group:
            corpus.story[a["id"]] = label
            corpus.kind[a["id"]] = a["id"].split("-", 1)[1].rstrip("0123456789")
        groups.append(group)
    rng.shuffle(groups)
    corpus.articles = [a for g in groups for a in g]
    if not together:
        rng.shuffle(corpus.articles)
    return corpus


# --- what Redis holds --------------------------------------------------------------------------------------------

def article_numbers(r: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(keys.IDS).items()}


def statuses(r: redis.Redis, ids: Iterable[str]) -> dict[str, str | None]:
    nums = article_numbers(r)
    ids = list(ids)
    pipe = r.pipeline(transaction=False)
    for i in ids:
        pipe.hget(keys.article(nums[i]) if i in nums else keys.PREFIX + "none", "status")
    return {i: (s.decode() if s is not None else None) for i, s in zip(ids, pipe.execute())}


def as_partition(cluster_of: Mapping[str, str]) -> set[frozenset[str]]:
    """{article id: cluster id} as a set of clusters (each a frozenset of ids)."""
    groups: dict[str, set[str]] = {}
    for i, c in cluster_of.items():
        groups.setdefault(c, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def partition(r: redis.Redis, ids: Iterable[str] | None = None) -> set[frozenset[str]]:
    """The clusters of the given (default: all) articles, by their stored ``cluster`` field."""
    nums = article_numbers(r)
    ids = list(nums) if ids is None else list(ids)
    pipe = r.pipeline(transaction=False)
    for i in ids:
        pipe.hget(keys.article(nums[i]), "cluster")
    groups: dict[bytes, set[str]] = {}
    for i, c in zip(ids, pipe.execute()):
        assert c is not None, f"article {i} has no cluster"
        groups.setdefault(c, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def queue_settled(r: redis.Redis) -> bool:
    """Nothing queued (nd:meta queued == 0) and nothing delivered but unacknowledged."""
    queued = int(r.hget(keys.META, "queued") or 0)
    try:
        pending = int(r.xpending(keys.QUEUE, keys.GROUP)["pending"])
    except redis.exceptions.ResponseError:
        pending = 0
    return queued == 0 and pending == 0


def band_states(r: redis.Redis) -> list[dict[str, int]]:
    """Each band group's table state (level, next, entries; empty for a group never written)."""
    return [{k.decode(): int(v) for k, v in r.hgetall(keys.band_state(g)).items()}  # type: ignore[union-attr]
            for g in range(keys.BAND_GROUPS)]


def band_table(r: redis.Redis) -> dict[int, dict[int, list[tuple[int, int]]]]:
    """The LSH band table as {band: {bucket: [(band value, article number), ...]}}, checked as read.

    Every bucket is whole 8-byte entries, in its band's group, each at the address its band value
    has under that group's state, and each group's state counts its entries.
    """
    table: dict[int, dict[int, list[tuple[int, int]]]] = {}
    for g, st in enumerate(band_states(r)):
        level, nxt = st.get("level", 0), st.get("next", 0)
        total = 0
        head = keys.bucket(g, 0, 0)[:-len("0:0")]
        for key in r.scan_iter(match=head + "*", count=1000):
            band, bucket = (int(x) for x in key.decode()[len(head):].split(":"))
            assert keys.band_group(band) == g, key
            raw = r.get(key)
            assert isinstance(raw, bytes) and raw and len(raw) % 8 == 0, (key, raw)
            entries = [(int.from_bytes(raw[i:i + 4], "little"), int.from_bytes(raw[i + 4:i + 8], "little"))
                       for i in range(0, len(raw), 8)]
            for value, _ in entries:
                addr = value % (1 << level)
                if addr < nxt:
                    addr = value % (1 << (level + 1))
                assert addr == bucket, f"{key!r} holds band value {value} that belongs in bucket {addr}"
            table.setdefault(band, {})[bucket] = entries
            total += len(entries)
        assert st.get("entries", 0) == total, (g, st, total)
    assert not r.exists(keys.LEGACY_BANDS), "the single-table layout's state is still there"
    return table


def pending_unbands(r: redis.Redis) -> set[int]:
    """Removed articles whose band entries a removal has yet to take out (a crash in between)."""
    return {int(n) for n in r.hkeys(keys.UNBAND)}


def band_entries(r: redis.Redis) -> list[tuple[int, int]]:
    """Every (band value, article number) entry of the band table, checked by :func:`band_table`."""
    return [e for buckets in band_table(r).values() for entries in buckets.values() for e in entries]


def band_count(config: Config) -> int:
    """Entries one indexed article puts in the band table."""
    return Banding.for_threshold(config.lsh_threshold, config.num_perm).bands


def cluster_of(d: Dedup, article_id: str) -> str:
    """The cluster of a processed article (fails if it is not done)."""
    a = d.article(article_id)
    assert a["status"] == "done", a
    return str(a["cluster_id"])


def cluster_record(r: redis.Redis, cid: str) -> dict[str, Any]:
    """What Redis holds for one cluster id: its record's size and canonical, its member set, its zsets.

    An implicit singleton (or a cluster that is gone) has size/canonical None and no members.
    """
    size, canonical = r.hmget(keys.cluster(cid), "size", "canonical")
    zsets = {name for name, key in (("clusters", keys.CLUSTERS), ("singles", keys.SINGLES))
             if r.zscore(key, cid) is not None}
    return {"size": None if size is None else int(size), "canonical": None if canonical is None else int(canonical),
            "members": {int(m) for m in r.smembers(keys.cluster_members(cid))}, "zsets": zsets}


def check_index_invariants(r: redis.Redis) -> None:
    """What must hold after any crash, redelivery, race, update or delete, once the queue is settled.

    - the band table is consistent (see :func:`band_table`), holds an entry at most once and only
      articles that exist, or removed ones listed in nd:unband (their removal owes the entries);
    - a cluster is explicit (an nd:c record and an nd:cm set) once it has had 2+ members, and stays
      explicit when members leave (by update or delete) so that its id stays the one its members
      carry: an explicit cluster may be down to 1 member. Its record's size is its set's size and its
      canonical member the smallest number; it is listed in nd:clusters with 2+ members, in nd:singles
      with 1. Never founded on 2+ members, a cluster is implicit: ``c<n>`` of its only article, in nd:singles;
    - every article that names a cluster is in it: an explicit one's set, or the implicit one named after
      it; no article is in two sets; the zsets list only clusters that exist, each in one of them;
    - nd:csizes scores exactly the clusters with 2+ members by their size;
    - the nd:heads:{chunk} strings hold exactly the headline records articles name in their ``head`` field.
    """
    nums = {n: i for i, n in article_numbers(r).items()}
    owed = pending_unbands(r)
    assert not owed & set(nums), "an article still stored is listed in nd:unband"
    banded: set[int] = set()
    for band, buckets in band_table(r).items():
        for bucket, entries in buckets.items():
            assert len(entries) == len(set(entries)), f"band {band} bucket {bucket} holds an entry twice"
            unknown = {m for _, m in entries} - set(nums) - owed
            assert not unknown, f"band {band} bucket {bucket} holds articles that do not exist: {unknown}"
            banded.update(m for _, m in entries)
    check_blobs(r, sorted(nums), banded)
    member_of: dict[int, str] = {}
    explicit = {key.decode()[len(keys.PREFIX + "cm:"):] for key in r.scan_iter(match=keys.PREFIX + "cm:*", count=1000)}
    records = {key.decode()[len(keys.PREFIX + "c:"):] for key in r.scan_iter(match=keys.PREFIX + "c:*", count=1000)}
    assert records == explicit, f"cluster records without members {records - explicit}, " \
                                f"member sets without a record {explicit - records}"
    sizes = {c.decode(): int(sc) for c, sc in r.zrange(keys.CLUSTER_SIZES, 0, -1, withscores=True)}
    for cid in sorted(explicit):
        rec = cluster_record(r, cid)
        mem = rec["members"]
        assert mem, f"explicit cluster {cid} has no members"
        assert rec["size"] == len(mem), (cid, rec)
        assert rec["canonical"] == min(mem), f"cluster {cid}: canonical {rec['canonical']}, members {mem}"
        assert rec["zsets"] == ({"clusters"} if len(mem) >= 2 else {"singles"}), (cid, rec)
        gone = mem - set(nums)
        assert not gone, f"cluster {cid} lists articles that do not exist: {gone}"
        assert sizes.get(cid) == (len(mem) if len(mem) >= 2 else None), f"nd:csizes says {sizes.get(cid)} for {cid}"
        for m in mem:
            assert m not in member_of, f"article {m} is in clusters {member_of[m]} and {cid}"
            member_of[m] = cid
    pipe = r.pipeline(transaction=False)
    order = sorted(nums)
    for n in order:
        pipe.hmget(keys.article(n), "status", "cluster", "head")
    rows = pipe.execute()
    assert set(sizes) <= explicit, f"nd:csizes lists clusters without members: {set(sizes) - explicit}"
    heads = sorted(h for _, _, h in rows if h is not None)
    stored = sorted(rec + keys.HEADLINE_SEP.encode() for key in r.scan_iter(match=keys.PREFIX + "heads:*", count=1000)
                    for rec in (r.get(key) or b"").split(keys.HEADLINE_SEP.encode())[:-1])
    assert stored == heads, "the headline records disagree with the articles' head fields"
    named: set[str] = set()
    for n, (st, c, _) in zip(order, rows):
        if n in member_of:
            assert c is not None and c.decode() == member_of[n], \
                f"article {n} says cluster {c!r} but is a member of {member_of[n]}"
        if c is None:
            assert st != b"done", f"done article {n} has no cluster"
            continue
        cid = c.decode()
        named.add(cid)
        if n not in member_of:
            assert cid == keys.cluster_id(n), f"article {n} says cluster {cid}, which does not list it"
            assert r.zscore(keys.SINGLES, cid) is not None, f"singleton {cid} is missing from nd:singles"
            assert r.zscore(keys.CLUSTERS, cid) is None, f"singleton {cid} is in nd:clusters"
    listed = {c.decode() for key in (keys.CLUSTERS, keys.SINGLES) for c in r.zrange(key, 0, -1)}
    assert listed == named, f"zsets list clusters no article is in: {listed - named}; " \
                            f"articles name unlisted clusters: {named - listed}"


def check_blobs(r: redis.Redis, numbers: list[int], banded: set[int]) -> None:
    """Every article in the band table has its signature in its blob (or, stored before blobs, in its hash);
    a done article's blob holds the version it was indexed at."""
    pipe = r.pipeline(transaction=False)
    for n in numbers:
        pipe.hmget(keys.article(n), "status", "iver", "sig").hmget(keys.blob(n), "ver", "sig")
    replies = pipe.execute()
    for k, n in enumerate(numbers):
        (status, iver, legacy_sig), (ver, sig) = replies[2 * k], replies[2 * k + 1]
        if ver is None:  # stored before blobs: the fields are still in the article hash
            assert n not in banded or legacy_sig, f"article {n} is in the band table without a signature"
            continue
        assert legacy_sig is None, f"article {n} has a blob and a signature in its hash"
        assert n not in banded or sig, f"article {n} is in the band table, its blob has no signature"
        if status == b"done":
            assert ver == iver, f"done article {n} was indexed at version {iver!r}, its blob is {ver!r}"


def orphan_blobs(r: redis.Redis) -> set[int]:
    """Numbers of blobs whose article is not stored."""
    blobs = {int(k.rsplit(b":", 1)[1]) for k in r.scan_iter(match=keys.BLOB_MATCH, count=1000)}
    return blobs - {int(n) for n in r.hvals(keys.IDS)}


def stored_traces(r: redis.Redis, n: int, article_id: str, band_numbers: set[int]) -> dict[str, bool]:
    """Which of an article's traces Redis holds: record, payload, id mapping, time-index entry, band entries,
    bulky fields (its blob, or its hash for an article stored before blobs)."""
    return {"record": bool(r.exists(keys.article(n))), "payload": bool(r.exists(keys.payload(n))),
            "id": r.hget(keys.IDS, article_id) == str(n).encode(), "expiry": r.zscore(keys.EXPIRY, n) is not None,
            "bands": n in band_numbers,
            "blob": bool(r.exists(keys.blob(n)) or r.hexists(keys.article(n), "sig"))}  # or stored before blobs


def check_removal_invariants(r: redis.Redis, before: Mapping[str, int], crashed: bool = False
                             ) -> tuple[set[str], set[str]]:
    """Every article of ``before`` (id -> number; done, indexed) is wholly there or wholly gone.

    Returns (kept ids, removed ids). Also checks the index invariants, that the time index names
    only stored articles, that no blob is left of a removed article (a clean removal: a crash between
    the transaction and the blob deletes may leave one), that no cluster names a removed article and
    that the zsets only hold clusters that exist. ``crashed``: a remover was killed, so blobs of
    removed articles may be left (orphans: harmless, never read).
    """
    check_index_invariants(r)
    numbers = {m for _, m in band_entries(r)} - pending_unbands(r)  # owed entries: removed, to be taken out
    kept, removed = set(), set()
    for i, n in before.items():
        traces = stored_traces(r, n, i, numbers)
        if traces["record"]:
            assert traces == {**traces, "id": True, "expiry": True, "bands": True, "blob": True}, (i, n, traces)
            kept.add(i)
        else:
            if crashed:
                traces.pop("blob")
            assert not any(traces.values()), f"article {i} ({n}) is half removed: {traces}"
            removed.add(i)
    stored = {int(n) for n in r.hvals(keys.IDS)}
    assert {int(m) for m in r.zrange(keys.EXPIRY, 0, -1)} == stored, "time index and stored articles differ"
    assert crashed or not orphan_blobs(r), f"blobs of removed articles are left: {orphan_blobs(r)}"
    gone = {before[i] for i in removed}
    for key in r.scan_iter(match=keys.PREFIX + "cm:*", count=1000):
        assert not {int(m) for m in r.smembers(key)} & gone, f"{key!r} names removed articles"
    for zkey in (keys.CLUSTERS, keys.SINGLES):
        for c in r.zrange(zkey, 0, -1):
            cid = c.decode()
            if not r.exists(keys.cluster(cid)):  # implicit: its founding article is there and in it
                num = keys.cluster_number(cid)
                assert num is not None and r.hget(keys.article(num), "cluster") == c, f"{zkey} lists gone {cid}"
    return kept, removed
