"""Shared by bench/run.py and bench/profile.py: the article corpus, synthetic articles, process hygiene.

Articles come from ``../shared/data`` (relative to the repository root) when it is there and are
read at run time only: nothing from it is ever written into the repository. Synthetic articles
are generated from a seed and an index alone, so article ``i`` is the same in every run and
any scale (a million of them) can be produced lazily without holding them in memory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from workers.consumer import Worker

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO.parent / "shared" / "data"
ZH_FILE = "sina_zh_2018.jsonl.gz"
EN_FILE = "bbc_news_en.jsonl.gz"
SKIP_CATEGORIES = frozenset({"TechNews"})

SYNTH_SEED = 20240607
DUP_SHARE = 0.20  # share of synthetic articles that are near-duplicates of an earlier one
DUP_WINDOW = 2000  # a near-duplicate copies one of the previous DUP_WINDOW articles


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    text: str
    source: str

    def payload(self) -> dict[str, str]:
        """The JSON object POSTed to /v1/articles (and parsed by ``parse_article``)."""
        return {"id": self.id, "title": self.title, "text": self.text, "source": self.source}


# ------------------------------------------------------------------ the real corpus


def load_real(data_dir: Path = DATA_DIR, limit: int | None = None) -> list[Article]:
    """Sina (zh, without TechNews) and, when present, BBC (en), interleaved in a fixed shuffled order."""
    out: list[Article] = []
    for name, source, prefix in ((ZH_FILE, "news.sina.com.cn", "zh"), (EN_FILE, "bbc.co.uk", "en")):
        path = data_dir / name
        if not path.is_file():
            continue
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if row.get("category") in SKIP_CATEGORIES:
                    continue
                text = row.get("text") or ""
                if not text.strip():
                    continue
                # ids are opaque here (the corpus's contain slashes, which the API rejects)
                digest = hashlib.blake2b(str(row["id"]).encode("utf-8"), digest_size=8).hexdigest()
                out.append(Article(id=f"{prefix}-{digest}-{len(out)}", title=row.get("title") or "", text=text,
                                   source=source))
    random.Random(0).shuffle(out)
    return out[:limit] if limit is not None else out


# ------------------------------------------------------------------ synthetic articles

# Vocabularies written for this benchmark (no corpus text): frequent characters and news words.
_ZH = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定"
    "行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其"
    "些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建"
    "月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接"
    "知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器"
    "压志世金增争济阶油思术极交受联什认六共权收证改清美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声"
    "报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容"
    "儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写"
    "存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严龙飞"
)
_ZH_WORDS = (
    "记者 报道 表示 政府 经济 市场 公司 发展 企业 投资 增长 项目 城市 今年 去年 数据 消费 政策 技术 服务 "
    "社会 国际 合作 比赛 球队 球员 教练 电影 演员 导演 观众 学生 学校 教育 考试 医院 医生 患者 健康 研究 "
    "专家 科学 环境 能源 交通 旅游 价格 银行 金融 股票 产品 用户 平台 网络 手机 互联网 活动 会议 部门 工作 "
    "问题 情况 方面 目前 进一步 推动 加强 提高"
).split()
_EN = (
    "the the the the of of of to to to and and and a a a in in in is is that that for for it was was on on "
    "said said he she they we with as his her at by from have has had be been are were not but an this which "
    "will would could about after over more than new year years people government minister report market shares "
    "rose fell percent company profit quarter city council plan police officers arrested court judge ruled appeal "
    "election voters party leader campaign budget tax spending hospital doctors patients health service school "
    "teachers pupils exam results weather storm flooding homes energy prices oil gas electricity football club "
    "match season coach players win defeat league title bank interest rates inflation economy growth jobs workers "
    "union strike talks agreement deal trade exports imports technology software phone users data privacy research "
    "scientists study climate emissions carbon project railway trains passengers delays airport flights airline "
    "tourism visitors museum exhibition film festival music album band chart singer award prize director actor "
    "series television viewers broadcast network online digital internet mobile games console sales retail shops "
    "consumers spending figures analysts expected forecast chief executive chairman board investors firm group "
    "business industry sector costs million billion pounds dollars euros week month day time first last next "
    "government's country national international world european british american chinese local regional"
).split()
_SOURCES = tuple(f"{name}.example" for name in (
    "dailywire", "metrotimes", "globalnews", "citypost", "eveningstar", "morningherald", "newsdesk", "wirefeed",
    "kuaixun", "xinwenwang", "caijing", "tiyu", "keji", "yule", "shishi", "redian", "portal", "agency",
    "bulletin", "observer", "tribune", "chronicle", "gazette", "courier"))
# Half the sources stamp a fixed footer on every article: boilerplate the engine learns and removes.
_FOOTERS = {s: (f"（来源：{s}，转载请注明出处）" if i % 2 else f"Follow {s} for more news. All rights reserved.")
            for i, s in enumerate(_SOURCES) if i % 4 < 2}


def _mix(*parts: int) -> int:
    """splitmix64 of a few integers: a cheap deterministic hash for per-article decisions."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 27
        x = x * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x


@lru_cache(maxsize=1)
def _tables() -> dict[str, Any]:
    """Code points / words with Zipf-like cumulative probabilities (computed once)."""
    zh_units = list(_ZH) + _ZH_WORDS
    zh_w = 1.0 / (np.arange(len(zh_units)) + 8.0)
    en_w = 1.0 / (np.arange(len(_EN)) + 4.0)
    return {"zh": np.array(zh_units, dtype=object), "zh_cdf": np.cumsum(zh_w) / zh_w.sum(),
            "en": np.array(_EN, dtype=object), "en_cdf": np.cumsum(en_w) / en_w.sum()}


def _draw(rng: np.random.Generator, cdf: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.intp]:
    return np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1)


def _zh_sentences(rng: np.random.Generator, chars: int) -> list[str]:
    t = _tables()
    units = t["zh"][_draw(rng, t["zh_cdf"], chars)]
    out: list[str] = []
    i = 0
    while i < len(units):
        n = int(rng.integers(6, 18))
        parts = units[i:i + n]
        i += n
        s = "".join(parts)
        cut = len(s) // 2
        out.append(s[:cut] + "，" + s[cut:] + "。")
    return out


def _en_sentences(rng: np.random.Generator, words: int) -> list[str]:
    t = _tables()
    ws = t["en"][_draw(rng, t["en_cdf"], words)]
    out: list[str] = []
    i = 0
    while i < len(ws):
        n = int(rng.integers(8, 24))
        s = " ".join(ws[i:i + n])
        i += n
        out.append(s[:1].upper() + s[1:] + ".")
    return out


def _paragraphs(sentences: list[str], zh: bool, rng: np.random.Generator) -> str:
    paras: list[str] = []
    i = 0
    while i < len(sentences):
        n = int(rng.integers(2, 6))
        paras.append(("" if zh else " ").join(sentences[i:i + n]))
        i += n
    return "\n".join(paras)


@dataclass(frozen=True)
class _Draft:
    lang: str
    title: str
    sentences: list[str]
    source: str


class Synthetic:
    """Deterministic synthetic news: mixed zh/en, 1,000-1,500 characters, ~20% planted near-duplicates."""

    def __init__(self, seed: int = SYNTH_SEED, prefix: str = "syn") -> None:
        self.seed = seed
        self.prefix = prefix

    def is_dup(self, k: int) -> bool:
        return k > 0 and _mix(self.seed, k, 1) % 10_000 < int(DUP_SHARE * 10_000)

    def source_of(self, k: int) -> int | None:
        """The earlier original a near-duplicate copies (None when no original is found nearby)."""
        for t in range(16):
            j = k - 1 - _mix(self.seed, k, 2, t) % min(k, DUP_WINDOW)
            if not self.is_dup(j):
                return j
        return None

    def _draft(self, k: int) -> _Draft:
        rng = np.random.default_rng([self.seed, k])
        target = int(rng.integers(1000, 1501))
        source = _SOURCES[int(rng.integers(len(_SOURCES)))]
        if rng.random() < 0.5:
            sents = _zh_sentences(rng, target * 9 // 10)  # units include 2-3 char words; trimmed below
            title = "".join(_zh_sentences(rng, 10)[0][:-1].split("，"))
            lang = "zh"
        else:
            sents = _en_sentences(rng, target // 4)
            title = " ".join(w.capitalize() for w in _en_sentences(rng, 9)[0][:-1].split()[:9])
            lang = "en"
        total = 0
        keep: list[str] = []
        for s in sents:  # trim to the target length
            if total + len(s) > target and keep:
                break
            keep.append(s)
            total += len(s)
        return _Draft(lang=lang, title=title, sentences=keep, source=source)

    @staticmethod
    def sources() -> tuple[str, ...]:
        return _SOURCES

    @staticmethod
    def footer(source: str) -> str:
        """The line a source stamps under every article ("" for sources without one), newline first."""
        f = _FOOTERS.get(source)
        return "\n" + f if f else ""

    def sentences(self, k: int) -> tuple[str, list[str]]:
        """(language, sentences) of original article ``k``: material for other generators."""
        d = self._draft(k)
        return d.lang, d.sentences

    def _render(self, d: _Draft, rng: np.random.Generator) -> str:
        text = _paragraphs(d.sentences, d.lang == "zh", rng)
        footer = _FOOTERS.get(d.source)
        return text + "\n" + footer if footer else text

    def article(self, k: int) -> Article:
        rng = np.random.default_rng([self.seed, k, 7])
        j = self.source_of(k) if self.is_dup(k) else None
        if j is None:
            d = self._draft(k)
        else:  # a repost: another source, a few sentences dropped, replaced or added, a few characters changed
            orig = self._draft(j)
            sents = list(orig.sentences)
            own = self._draft(k)
            filler = own.sentences if own.lang == orig.lang else orig.sentences[::-1]
            for _ in range(int(rng.integers(0, 3))):
                if len(sents) > 4:
                    sents.pop(int(rng.integers(len(sents))))
            for _ in range(int(rng.integers(0, 3))):
                sents[int(rng.integers(len(sents)))] = filler[int(rng.integers(len(filler)))]
            if rng.random() < 0.5:
                sents.insert(int(rng.integers(len(sents) + 1)), filler[int(rng.integers(len(filler)))])
            for _ in range(int(rng.integers(0, 6))):
                i = int(rng.integers(len(sents)))
                s = sents[i]
                p = int(rng.integers(len(s)))
                sents[i] = s[:p] + ("的" if orig.lang == "zh" else "s") + s[p + 1:]
            others = [s for s in _SOURCES if s != orig.source]
            d = _Draft(lang=orig.lang, title=orig.title, sentences=sents,
                       source=others[int(rng.integers(len(others)))])
        return Article(id=f"{self.prefix}-{k}", title=d.title, text=self._render(d, rng), source=d.source)


class Corpus:
    """Article ``i``: the real corpus first (unless synthetic only), then synthetic articles."""

    def __init__(self, real: list[Article], synthetic: Synthetic | None = None) -> None:
        self.real = real
        self.synthetic = synthetic or Synthetic()

    @classmethod
    def build(cls, synthetic_only: bool = False, data_dir: Path = DATA_DIR) -> Corpus:
        return cls([] if synthetic_only else load_real(data_dir))

    def get(self, i: int) -> Article:
        return self.real[i] if i < len(self.real) else self.synthetic.article(i - len(self.real))

    def range(self, lo: int, hi: int) -> list[Article]:
        return [self.get(i) for i in range(lo, hi)]

    def batches(self, n: int, size: int) -> Iterator[list[Article]]:
        for lo in range(0, n, size):
            yield self.range(lo, min(n, lo + size))

    def describe(self, n: int) -> str:
        real = min(n, len(self.real))
        return f"{real} real + {n - real} synthetic" if real else f"{n} synthetic"


def unseen(k: int) -> Article:
    """An article that is in no index: synthetic with another seed."""
    return Synthetic(seed=SYNTH_SEED + 1, prefix="unseen").article(k)


# ------------------------------------------------------------------ processes


class Service:
    """``newsdedup up`` as a subprocess in its own session; stopped (then killed) by its own pid/group."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (``up`` stops its API and workers), then SIGKILL to the process group we created."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def start_up(redis_url: str, workers: int, work_dir: Path, settings: dict[str, str] | None = None,
             host: str = "127.0.0.1") -> tuple[Service, int]:
    """``newsdedup up --workers N`` on a free port against ``redis_url``, once it answers /healthz.

    Runs on defaults (``NEWSDEDUP_*`` of the shell is not passed on) plus ``settings``; a rate limit
    far above what a bench sends keeps the per-request counter (its cost is part of every request)
    without ever refusing one. Stopped again if it does not come up.
    """
    from newsdedup.ops.redis_server import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}
    env.update(REDIS_URL=redis_url, NEWSDEDUP_RATE_LIMIT="10000000", PYTHONUNBUFFERED="1")
    env.update(settings or {})
    argv = [sys.executable, "-m", "newsdedup.cli", "up", "--host", host, "--port", str(port),
            "--workers", str(workers), "--data-dir", str(work_dir / "data")]
    service = Service(argv, env, work_dir / "service.log").start()

    def healthy() -> bool:
        if not service.running:
            raise RuntimeError(f"`newsdedup up` exited early:\n{service.log_tail()}")
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                return conn.getresponse().status == 200
            finally:
                conn.close()
        except OSError:
            return False

    try:
        if not wait_until(healthy, 90, 0.2):
            raise RuntimeError(f"the API did not answer /healthz within 90 s:\n{service.log_tail()}")
    except BaseException:
        service.stop()
        raise
    return service, port


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def process_cpu(roots: dict[str, int | None]) -> dict[str, tuple[float, float]]:
    """CPU seconds (user, system) so far of each root's process tree, by role.

    A process in the tree of ``newsdedup up`` is "api" (gunicorn), "worker" (queue worker) or
    "supervisor"; other roots are counted whole under their own name. Linux only (/proc);
    elsewhere an empty dict.
    """
    if not Path("/proc/self/stat").exists():
        return {}
    kids = _proc_children()
    out: dict[str, tuple[float, float]] = {}
    for name, root in roots.items():
        if root is None:
            continue
        todo = [root]
        while todo:
            pid = todo.pop()
            todo.extend(kids.get(pid, ()))
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            user, system = int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK
            role = name
            if name == "service":
                role = "api" if b"gunicorn" in cmd else "worker" if b" worker" in cmd else "supervisor"
            u0, s0 = out.get(role, (0.0, 0.0))
            out[role] = (u0 + user, s0 + system)
    return out


def drain(worker: Worker, deadline: float) -> int:
    """``Worker.step`` until two steps in a row find nothing, or the deadline; articles handled.

    The loop of ``workers.consumer.process_available``, but on the worker's own settings
    (``process_available`` shortens the visibility timeout, so it reclaims more often).
    """
    handled = idle = 0
    while idle < 2 and time.monotonic() < deadline:
        got = worker.step(block_ms=None)
        handled += got
        idle = idle + 1 if got == 0 else 0
    return handled


def install_exit_signals() -> None:
    """SIGTERM/SIGHUP raise SystemExit so every ``finally`` (and context manager) cleans up."""
    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _exit)


def wait_until(pred: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())
