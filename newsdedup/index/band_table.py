"""The LSH band table in Redis: index parameters, insert-and-read, lookup and removal.

Each article's signature is cut into bands (:class:`~newsdedup.index.minhash.Banding`);
articles sharing a band value are candidates. The band values live in a linear hash
table per band over Redis strings (layout in :mod:`newsdedup.keys`, scripts in
``storage/lua/``). Insert-and-read is one atomic script, so two copies processed at the
same moment by two workers always meet: whichever is inserted second sees the first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.errors import IndexMismatch
from newsdedup.index.minhash import Banding
from newsdedup.storage.migrate import migrate_prefix
from newsdedup.storage.records import decoded, distinct_members, n4
from newsdedup.storage.redis_client import check_mode
from newsdedup.storage.scripts import Scripts
from newsdedup.storage.txn import Txn

log = logging.getLogger(__name__)

MAX_BUCKET_MEMBERS = 4096  # articles sharing one band value (boilerplate-only pages): no more are added
MAX_CANDIDATES = 2000

# One article for :meth:`BandTable.insert`: record key, number, version, signature (None: not
# indexed, only its fields are written) and the record fields written with it.
IndexRow = tuple[str, int, int, "npt.NDArray[np.uint32] | None", dict[str, Any]]


class BandTable:
    """The band table as this process's configuration sees it (one per Redis client)."""

    def __init__(self, client: Any, config: Config, scripts: Scripts) -> None:
        self.r = client
        self.cfg = config
        self.scripts = scripts
        self.banding = Banding.for_threshold(config.lsh_threshold, config.num_perm)
        self._index_ok = False
        # what the band-table scripts are told: where buckets live, how the table starts and grows
        self.table_args: tuple[str, int, int, int] = (keys.BAND_PREFIX, config.lsh_bucket_bits,
                                                      config.lsh_bucket_load, self.banding.bands)

    # ------------------------------------------------------------------ parameters

    def index_params(self) -> str:
        """What stored signatures and band values depend on; changing any of it needs a new index."""
        b = self.banding
        return (f"num_perm={self.cfg.num_perm} bands={b.bands} rows={b.rows} "
                f"shingle_cjk={self.cfg.shingle_cjk} shingle_latin={self.cfg.shingle_latin} tokens=v1 lsh=table")

    def _legacy_params(self, stored: str | None) -> bool:
        """Whether ``stored`` describes this configuration's index in the fixed-bucket layout."""
        if stored is None:
            return False
        legacy = re.sub(r" bucket_bits=\d+", "", stored)
        return legacy != stored and legacy + " lsh=table" == self.index_params()

    def ensure_index(self, recheck: bool = False) -> None:
        """Record the index parameters on first use; refuse to work on an index built otherwise.

        ``recheck`` after a reconnect: Redis may have come back empty (then this records them again).
        An index in the old fixed-bucket layout with the same parameters is moved into the band
        table first.
        """
        if self._index_ok and not recheck:
            return
        check_mode(self.r)  # a single-node client on a cluster node: refuse before writing, not MOVED midway
        migrate_prefix(self.r)  # data written before the cluster schema: renamed once, before any write
        mine = self.index_params()
        self.r.hsetnx(keys.META, "index", mine)
        stored = decoded(self.r.hget(keys.META, "index"))
        if stored != mine and self._legacy_params(stored):
            self.migrate_buckets(stored or "")
            stored = decoded(self.r.hget(keys.META, "index"))
        if stored != mine:
            raise IndexMismatch(
                f"the index in Redis was built with [{stored}] but this process is configured for [{mine}]; "
                "set NEWSDEDUP_NUM_PERM, NEWSDEDUP_LSH_THRESHOLD and NEWSDEDUP_SHINGLE_CJK/LATIN back to the "
                "values it was built with, or point REDIS_URL at an empty database to build a new index")
        self._index_ok = True

    def migrate_buckets(self, legacy: str) -> int:
        """Move an index's fixed bucket hashes (``nd:lsh:*``) into the band table; entries moved.

        Each chunk of keys moves atomically and a moved key is gone, so processes that start at
        the same moment can both run this; the parameters are switched once nothing is left.
        Workers of the earlier version must be stopped first: they would keep writing old buckets.
        """
        log.info("moving the LSH index from fixed buckets into the band table (once; measured 7 s per 100k articles)")
        moved = 0
        while True:
            legacy_keys = list(self.r.scan_iter(match=keys.LEGACY_LSH_PREFIX + "*", count=1000))
            if not legacy_keys:
                break
            # a few keys per call: at 1M articles a legacy bucket holds ~1,000 entries
            for i in range(0, len(legacy_keys), 16):
                chunk = legacy_keys[i:i + 16]
                bands = [key.decode().split(":")[2] for key in chunk]
                moved += int(self.scripts.migrate_buckets(keys=[keys.BANDS, *chunk], args=[*self.table_args, *bands]))
        txn = Txn().expect_field(keys.META, "index", legacy).hset(keys.META, {"index": self.index_params()})
        self.scripts.run(txn)
        if moved:
            log.info("moved %d LSH entries from fixed buckets into the band table", moved)
        return moved

    # ------------------------------------------------------------------ entries

    def insert(self, rows: Sequence[IndexRow]) -> list[list[int] | None]:
        """Write each row's record fields and insert its band values, in one atomic script.

        Returns, per row, the articles that already shared a band value with it (capped), or
        None where the record moved on to another version meanwhile (nothing was written).
        """
        if not rows:
            return []
        signed = [i for i, row in enumerate(rows) if row[3] is not None]
        values_le: dict[int, bytes] = {}
        if signed:
            bands = self.banding.band_values(np.stack([rows[i][3] for i in signed]))  # type: ignore[misc]
            values_le = {i: bands[k].tobytes() for k, i in enumerate(signed)}
        txn = Txn()
        txn.k(keys.BANDS)
        argv: list[Any] = [MAX_BUCKET_MEMBERS, *self.table_args]
        for i, (key, n, ver, _sig, values) in enumerate(rows):
            argv.extend((txn.k(key), n4(n), ver, values_le.get(i, b""), len(values)))
            for k, v in values.items():
                argv.extend((k, v))
        res = self.scripts.call(self.scripts.index, txn.keys, argv)  # waits for replicas when configured
        return [None if packed is None or packed is False
                else distinct_members(packed, exclude=row[1])[:MAX_CANDIDATES]
                for row, packed in zip(rows, res)]

    def unindex(self, txn: Txn, n: int, sig: npt.NDArray[np.uint32]) -> Txn:
        """Writes that take article ``n`` (indexed with ``sig``) out of the band table."""
        return self.unindex_many(txn, [(n, sig)])

    def unindex_many(self, txn: Txn, items: Sequence[tuple[int, npt.NDArray[np.uint32]]]) -> Txn:
        """Writes that take several articles (number, signature indexed) out of the band table at once."""
        if not items:
            return txn
        bands = self.banding.band_values(np.stack([sig for _, sig in items]))
        return txn.unband_many(keys.BANDS, keys.BAND_PREFIX, self.cfg.lsh_bucket_bits,
                               [(n4(n), bands[k].tobytes()) for k, (n, _) in enumerate(items)])

    def lookup(self, sig: npt.NDArray[np.uint32]) -> list[int]:
        """Indexed articles sharing a band value with ``sig`` (read only; POST /v1/check)."""
        values = self.banding.band_values(sig[None, :])[0].tobytes()
        found = self.scripts.lookup(keys=[keys.BANDS], args=[keys.BAND_PREFIX, self.cfg.lsh_bucket_bits, values])
        return distinct_members(found)[:MAX_CANDIDATES]
