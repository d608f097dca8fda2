"""The one place where settings, their defaults and their validation live.

``Config.from_env()`` reads ``NEWSDEDUP_*`` variables (and ``REDIS_URL``) and
returns a frozen object; every entry point builds one and passes it down.
Errors name the variable and say what a valid value looks like.

=================================  ===============  =================================================
variable                           default          meaning
=================================  ===============  =================================================
REDIS_URL                          (unset)          Redis to use; unset means ``newsdedup up`` starts
                                                    an embedded redis-server in the data dir
NEWSDEDUP_DATA_DIR                 ./var            embedded Redis data (AOF) and runtime files
NEWSDEDUP_APPENDFSYNC              everysec         embedded Redis fsync policy: always|everysec|no
NEWSDEDUP_MAX_BODY                 8MB              largest request body (413 above it)
NEWSDEDUP_MAX_BATCH                500              most articles in one POST /v1/articles
NEWSDEDUP_MAX_TEXT_CHARS           2000000          longest text/html field in characters
NEWSDEDUP_MAX_ID_LENGTH            256              longest article id
NEWSDEDUP_NUM_PERM                 128              MinHash permutations
NEWSDEDUP_LSH_THRESHOLD            0.3              Jaccard at which LSH proposes candidates
NEWSDEDUP_SIM_THRESHOLD            0.5              estimated Jaccard that makes a duplicate
NEWSDEDUP_CONTAINMENT_THRESHOLD    0.8              estimated containment that makes a duplicate
NEWSDEDUP_SHINGLE_CJK              4                shingle length for CJK-dominant text (tokens)
NEWSDEDUP_SHINGLE_LATIN            3                shingle length for other text (tokens)
NEWSDEDUP_MIN_TOKENS               8                texts with fewer tokens are not indexed by LSH;
                                                    fewer left once page code is removed: no story
NEWSDEDUP_THIN_BODY_TOKENS         50               a body with fewer tokens (CJK: twice as many)
                                                    besides chrome is thin: its title decides
NEWSDEDUP_BOILERPLATE_MIN_DOCS     4                a line seen in this many docs of a source ...
NEWSDEDUP_BOILERPLATE_MIN_SHARE    0.01             ... and in this share of them is boilerplate
NEWSDEDUP_MERGE_RATIO              0.5              share of a cluster an article must match to fuse it
NEWSDEDUP_KEEP_TEXT                true             keep compressed cleaned text for explanations
NEWSDEDUP_LSH_BUCKET_BITS          6                starting size of the LSH band table: 2**bits
                                                    buckets per band (it grows by itself)
NEWSDEDUP_LSH_BUCKET_LOAD          64               average entries per LSH bucket before one splits
NEWSDEDUP_WORKER_BATCH             64               stream entries a worker reads at once
NEWSDEDUP_VISIBILITY_TIMEOUT       60               seconds before a silent worker's entries are claimed
NEWSDEDUP_MAX_ATTEMPTS             3                attempts before an article is dead-lettered
NEWSDEDUP_API_KEYS                 (unset)          comma-separated keys; set = writes need Bearer auth
NEWSDEDUP_AUTH_READS               false            also require a key for reads
NEWSDEDUP_RATE_LIMIT               6000             requests per minute per client (0 = off)
NEWSDEDUP_REDIS_TIMEOUT            5                Redis socket timeout, seconds
NEWSDEDUP_REDIS_CLUSTER            auto             REDIS_URL is a Redis Cluster node: true|false, or
                                                    auto: ask it (INFO cluster); a cluster node is
                                                    used through redis-py's cluster client
NEWSDEDUP_WAIT_REPLICAS            0                replicas that must hold a write before a 202 or
                                                    a done (WAIT; else 503, the entry stays pending)
NEWSDEDUP_LOG_LEVEL                INFO             logging level
NEWSDEDUP_LOG_FORMAT               text             text, or json: one object per line (time, level,
                                                    logger, message, request_id and other fields)
NEWSDEDUP_EVENTS_MAXLEN            200000           events kept in the feed (GET /v1/events); trimming
                                                    is approximate (whole stream nodes): a few more
NEWSDEDUP_RETENTION                0 (forever)      how long articles are kept: 30d, 12h, 90m, 45s;
                                                    older ones are removed by the sweeper
NEWSDEDUP_RETENTION_BY             ingested         ingested | published: which time the window counts
                                                    from (published: no or a future date -> ingested)
NEWSDEDUP_SWEEP_INTERVAL           window / 10      how often workers sweep expired articles
                                                    (default clamped to 5 s .. 60 s)
NEWSDEDUP_UI                       true             serve the web pages (/, /ui/...); false = 404
NEWSDEDUP_SECRET_KEY               (derived)        signs the pages' login cookie; default: derived
                                                    from NEWSDEDUP_API_KEYS (set it when keys rotate)
=================================  ===============  =================================================
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsdedup.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_size(name: str, raw: str) -> int:
    m = _SIZE.match(raw)
    if not m or m.group(2) is not None and m.group(2).lower() not in _UNITS:
        raise ConfigError(f"{name}={raw!r} is not a size; use bytes or a unit, e.g. 8MB, 512KB, 1048576")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*$", re.IGNORECASE)
_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
MAX_RETENTION = 100 * 365 * 86_400  # a century: beyond it "forever" (0) is what is meant


def parse_duration(name: str, raw: str, lo: float, hi: float, zero: bool = False) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` (decimals allowed) in seconds; ``0`` too when ``zero``.

    A bare number other than 0 is refused: "30" could mean seconds or days.
    """
    m = _DURATION.match(raw)
    hint = "use a number with a unit d, h, m or s, e.g. 30d, 12h, 90m, 45s" + (" (0 = forever)" if zero else "")
    if not m:
        raise ConfigError(f"{name}={raw!r} is not a duration; {hint}")
    value, unit = float(m.group(1)), m.group(2).lower()
    if value == 0 and zero:
        return 0.0
    if not unit:
        raise ConfigError(f"{name}={raw!r} has no unit; {hint}")
    seconds = value * _SECONDS[unit]
    if not lo <= seconds <= hi:
        raise ConfigError(f"{name}={raw!r} is out of range: it must be {_duration(lo)} to {_duration(hi)}"
                          + (" or 0 (forever)" if zero else "") + f"; {hint}")
    return seconds


def _duration(seconds: float) -> str:
    """``seconds`` in the largest unit that states it exactly (for messages)."""
    for unit, size in _SECONDS.items():
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _bool(name: str, raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def _int(name: str, raw: str, lo: int, hi: int) -> int:
    try:
        v = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; use a whole number from {lo} to {hi}") from None
    if not lo <= v <= hi:
        raise ConfigError(f"{name}={v} is out of range; use a whole number from {lo} to {hi}")
    return v


def _float(name: str, raw: str, lo: float, hi: float) -> float:
    try:
        v = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; use a value from {lo} to {hi}") from None
    if not lo <= v <= hi:
        raise ConfigError(f"{name}={v} is out of range; use a value from {lo} to {hi}")
    return v


@dataclass(frozen=True)
class Config:
    redis_url: str | None = None
    data_dir: Path = Path("./var")
    appendfsync: str = "everysec"
    max_body: int = 8 * 1024 * 1024
    max_batch: int = 500
    max_text_chars: int = 2_000_000
    max_id_length: int = 256
    num_perm: int = 128
    lsh_threshold: float = 0.3
    sim_threshold: float = 0.5
    containment_threshold: float = 0.8
    shingle_cjk: int = 4
    shingle_latin: int = 3
    min_tokens: int = 8
    thin_body_tokens: int = 50
    boilerplate_min_docs: int = 4
    boilerplate_min_share: float = 0.01
    merge_ratio: float = 0.5
    keep_text: bool = True
    lsh_bucket_bits: int = 6
    lsh_bucket_load: int = 64
    worker_batch: int = 64
    visibility_timeout: float = 60.0
    max_attempts: int = 3
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    auth_reads: bool = False
    rate_limit: int = 6000
    redis_timeout: float = 5.0
    redis_cluster: str = "auto"
    wait_replicas: int = 0  # replicas that must acknowledge a write before it counts (WAIT)
    log_level: str = "INFO"
    log_format: str = "text"
    events_maxlen: int = 200_000
    retention: float = 0.0  # seconds; 0 = keep forever
    retention_by: str = "ingested"
    sweep_interval: float | None = None  # seconds; None = a tenth of the window, clamped to [5, 60]
    ui: bool = True
    secret_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.appendfsync not in ("always", "everysec", "no"):
            raise ConfigError(f"NEWSDEDUP_APPENDFSYNC={self.appendfsync!r}: use always, everysec or no")
        if not 0 < self.lsh_threshold <= self.sim_threshold <= 1:
            raise ConfigError("NEWSDEDUP_LSH_THRESHOLD must be > 0 and <= NEWSDEDUP_SIM_THRESHOLD <= 1 "
                              f"(got {self.lsh_threshold} and {self.sim_threshold})")
        if self.redis_url is not None and not re.match(r"^(redis|rediss|unix)://", self.redis_url):
            raise ConfigError(f"REDIS_URL={self.redis_url!r}: use redis://host:port/db, rediss://... (TLS) "
                              "or unix:///path/to/socket")
        if self.redis_cluster not in ("auto", "true", "false"):
            raise ConfigError(f"NEWSDEDUP_REDIS_CLUSTER={self.redis_cluster!r}: use true, false or auto (ask Redis)")
        if isinstance(self.wait_replicas, bool) or not isinstance(self.wait_replicas, int) \
                or not 0 <= self.wait_replicas <= 100:
            raise ConfigError(f"NEWSDEDUP_WAIT_REPLICAS={self.wait_replicas!r}: use an integer from 0 (do not wait) "
                              "to 100, at most the number of replicas of each master")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"NEWSDEDUP_LOG_LEVEL={self.log_level!r}: use DEBUG, INFO, WARNING or ERROR")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"NEWSDEDUP_LOG_FORMAT={self.log_format!r}: use text or json")
        if self.retention_by not in ("ingested", "published"):
            raise ConfigError(f"NEWSDEDUP_RETENTION_BY={self.retention_by!r}: use ingested or published")
        if not 0 <= self.retention <= MAX_RETENTION:
            raise ConfigError(f"NEWSDEDUP_RETENTION={self.retention!r} s is out of range; use 0 (forever) to 36500d")

    @property
    def wait_timeout_ms(self) -> int:
        """How long WAIT may block for replica acknowledgements: NEWSDEDUP_REDIS_TIMEOUT."""
        return max(1, int(self.redis_timeout * 1000))

    @property
    def sweep_seconds(self) -> float:
        """Seconds between sweeps: the setting, else a tenth of the window within [5 s, 60 s]."""
        if self.sweep_interval is not None:
            return self.sweep_interval
        return min(60.0, max(5.0, self.retention / 10))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            v = env.get(name)
            return v if v is not None and v.strip() != "" else None

        kw: dict[str, Any] = {}
        if (v := get("REDIS_URL")) is not None:
            kw["redis_url"] = v.strip()
        if (v := get("NEWSDEDUP_DATA_DIR")) is not None:
            kw["data_dir"] = Path(v)
        if (v := get("NEWSDEDUP_APPENDFSYNC")) is not None:
            kw["appendfsync"] = v.strip().lower()
        if (v := get("NEWSDEDUP_MAX_BODY")) is not None:
            kw["max_body"] = parse_size("NEWSDEDUP_MAX_BODY", v)
        ints = {"NEWSDEDUP_MAX_BATCH": ("max_batch", 1, 100_000),
                "NEWSDEDUP_MAX_TEXT_CHARS": ("max_text_chars", 100, 100_000_000),
                "NEWSDEDUP_MAX_ID_LENGTH": ("max_id_length", 8, 4096),
                "NEWSDEDUP_NUM_PERM": ("num_perm", 16, 1024),
                "NEWSDEDUP_SHINGLE_CJK": ("shingle_cjk", 1, 16),
                "NEWSDEDUP_SHINGLE_LATIN": ("shingle_latin", 1, 16),
                "NEWSDEDUP_MIN_TOKENS": ("min_tokens", 1, 10_000),
                "NEWSDEDUP_THIN_BODY_TOKENS": ("thin_body_tokens", 0, 100_000),
                "NEWSDEDUP_BOILERPLATE_MIN_DOCS": ("boilerplate_min_docs", 2, 1_000_000),
                "NEWSDEDUP_LSH_BUCKET_BITS": ("lsh_bucket_bits", 0, 24),
                "NEWSDEDUP_LSH_BUCKET_LOAD": ("lsh_bucket_load", 4, 100_000),
                "NEWSDEDUP_WORKER_BATCH": ("worker_batch", 1, 10_000),
                "NEWSDEDUP_MAX_ATTEMPTS": ("max_attempts", 1, 100),
                "NEWSDEDUP_RATE_LIMIT": ("rate_limit", 0, 10_000_000),
                "NEWSDEDUP_EVENTS_MAXLEN": ("events_maxlen", 100, 100_000_000),
                "NEWSDEDUP_WAIT_REPLICAS": ("wait_replicas", 0, 100)}
        for name, (attr, lo, hi) in ints.items():
            if (v := get(name)) is not None:
                kw[attr] = _int(name, v, lo, hi)
        floats = {"NEWSDEDUP_LSH_THRESHOLD": ("lsh_threshold", 0.01, 1.0),
                  "NEWSDEDUP_SIM_THRESHOLD": ("sim_threshold", 0.01, 1.0),
                  "NEWSDEDUP_CONTAINMENT_THRESHOLD": ("containment_threshold", 0.01, 1.0),
                  "NEWSDEDUP_BOILERPLATE_MIN_SHARE": ("boilerplate_min_share", 0.0, 1.0),
                  "NEWSDEDUP_MERGE_RATIO": ("merge_ratio", 0.0, 1.0),
                  "NEWSDEDUP_VISIBILITY_TIMEOUT": ("visibility_timeout", 0.1, 86_400.0),
                  "NEWSDEDUP_REDIS_TIMEOUT": ("redis_timeout", 0.1, 600.0)}
        for name, (attr, flo, fhi) in floats.items():
            if (v := get(name)) is not None:
                kw[attr] = _float(name, v, flo, fhi)
        for name, attr in (("NEWSDEDUP_KEEP_TEXT", "keep_text"), ("NEWSDEDUP_AUTH_READS", "auth_reads"),
                           ("NEWSDEDUP_UI", "ui")):
            if (v := get(name)) is not None:
                kw[attr] = _bool(name, v)
        if (v := get("NEWSDEDUP_REDIS_CLUSTER")) is not None:
            mode = v.strip().lower()
            kw["redis_cluster"] = mode if mode == "auto" else str(_bool("NEWSDEDUP_REDIS_CLUSTER", v)).lower()
        if (v := get("NEWSDEDUP_API_KEYS")) is not None:
            kw["api_keys"] = tuple(k.strip() for k in v.split(",") if k.strip())
        if (v := get("NEWSDEDUP_SECRET_KEY")) is not None:
            if len(v.strip()) < 16:
                raise ConfigError("NEWSDEDUP_SECRET_KEY is too short; use at least 16 random characters")
            kw["secret_key"] = v.strip()
        if (v := get("NEWSDEDUP_LOG_LEVEL")) is not None:
            kw["log_level"] = v.strip().upper()
        if (v := get("NEWSDEDUP_LOG_FORMAT")) is not None:
            kw["log_format"] = v.strip().lower()
        if (v := get("NEWSDEDUP_RETENTION")) is not None:
            kw["retention"] = parse_duration("NEWSDEDUP_RETENTION", v, 1.0, MAX_RETENTION, zero=True)
        if (v := get("NEWSDEDUP_RETENTION_BY")) is not None:
            kw["retention_by"] = v.strip().lower()
        if (v := get("NEWSDEDUP_SWEEP_INTERVAL")) is not None:
            kw["sweep_interval"] = parse_duration("NEWSDEDUP_SWEEP_INTERVAL", v, 0.1, 86_400.0)
        kw.update(overrides)
        return cls(**kw)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)
