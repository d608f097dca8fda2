"""The LSH band table in Redis: index parameters, insert-and-read, lookup and removal.

Each article's signature is cut into bands (:class:`~newsdedup.index.minhash.Banding`);
articles sharing a band value are candidates. The band values live in 6 band groups,
each a linear hash table over Redis strings under its own hash tag (layout in
:mod:`newsdedup.keys`, addressing in :mod:`newsdedup.index.band_groups`, script
``storage/lua/band_group.lua``). Insert-and-read is one atomic script per group, so two
copies processed at the same moment by two workers always meet: both insert a band value
they share in the same group's script, and whichever runs second sees the first.
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
from newsdedup.index.band_groups import BandGroups
from newsdedup.index.band_migrate import migrate_legacy
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
        self.groups = BandGroups(scripts, self.banding.bands, config.lsh_bucket_bits, config.lsh_bucket_load,
                                 MAX_BUCKET_MEMBERS)

    # ------------------------------------------------------------------ parameters

    def index_params(self) -> str:
        """What stored signatures and band values depend on; changing any of it needs a new index."""
        b = self.banding
        return (f"num_perm={self.cfg.num_perm} bands={b.bands} rows={b.rows} "
                f"shingle_cjk={self.cfg.shingle_cjk} shingle_latin={self.cfg.shingle_latin} tokens=v1 lsh=table"
                f" groups={keys.BAND_GROUPS}")

    def _legacy_params(self, stored: str | None) -> bool:
        """Whether ``stored`` describes this configuration's index in an older layout: one table
        for all bands (no ``groups=``) or, before it, fixed buckets (``bucket_bits=``, no ``lsh=``)."""
        if stored is None or " groups=" in stored:
            return False
        groups = f" groups={keys.BAND_GROUPS}"
        fixed = re.sub(r" bucket_bits=\d+", "", stored)
        return stored + groups == self.index_params() or (
            fixed != stored and fixed + " lsh=table" + groups == self.index_params())

    def ensure_index(self, recheck: bool = False) -> None:
        """Record the index parameters on first use; refuse to work on an index built otherwise.

        ``recheck`` after a reconnect: Redis may have come back empty (then this records them again).
        An index in an older layout with the same parameters is moved into the band groups first.
        """
        if self._index_ok and not recheck:
            return
        check_mode(self.r)  # a single-node client on a cluster node: refuse before writing, not MOVED midway
        migrate_prefix(self.r)  # data written before the cluster schema: renamed once, before any write
        mine = self.index_params()
        self.r.hsetnx(keys.META, "index", mine)
        stored = decoded(self.r.hget(keys.META, "index"))
        if stored != mine and self._legacy_params(stored):
            migrate_legacy(self.r, self.groups, self.banding.bands, stored or "", mine)
            stored = decoded(self.r.hget(keys.META, "index"))
        if stored != mine:
            raise IndexMismatch(
                f"the index in Redis was built with [{stored}] but this process is configured for [{mine}]; "
                "set NEWSDEDUP_NUM_PERM, NEWSDEDUP_LSH_THRESHOLD and NEWSDEDUP_SHINGLE_CJK/LATIN back to the "
                "values it was built with, or point REDIS_URL at an empty database to build a new index")
        if recheck:
            self.groups.state = None  # Redis may have come back empty or older: read the states again
        self._index_ok = True

    # ------------------------------------------------------------------ entries

    def insert(self, rows: Sequence[IndexRow]) -> list[list[int] | None]:
        """Write each row's record fields, then insert its band values (one call per band group).

        The fields go first (one script in the data slot, checking each row's version), so
        whoever finds an article in a bucket can read its signature. Returns, per row, the
        articles that already shared a band value with it (capped), or None where the record
        moved on to another version meanwhile (nothing was written or inserted).
        """
        if not rows:
            return []
        txn = Txn()
        argv: list[Any] = []
        for key, _n, ver, _sig, values in rows:
            argv.extend((txn.k(key), ver, len(values)))
            for k, v in values.items():
                argv.extend((k, v))
        written = self.scripts.features(txn.keys, argv)
        signed = [i for i, row in enumerate(rows) if written[i] and row[3] is not None]
        out: list[list[int] | None] = [[] if ok else None for ok in written]
        if signed:
            bands = self.banding.band_values(np.stack([rows[i][3] for i in signed]))  # type: ignore[misc]
            found, _ = self.groups.run("i", [n4(rows[i][1]) for i in signed], bands)
            for i, packed in zip(signed, found):
                out[i] = distinct_members(packed, exclude=rows[i][1])[:MAX_CANDIDATES]
            # an article deleted between its fields and its band entries: its removal may have taken
            # the entries out before they were there, so they are taken out here
            now = self.scripts.hmget_many([rows[i][0] for i in signed], ("ver",))
            gone = [j for j, (ver,) in enumerate(now) if ver is None]
            if gone:
                self.groups.run("u", [n4(rows[signed[j]][1]) for j in gone], bands[gone])
                for j in gone:
                    out[signed[j]] = None
        return out

    def unindex(self, n: int, sig: npt.NDArray[np.uint32]) -> int:
        """Take article ``n`` (indexed with ``sig``) out of the band table; entries removed."""
        return self.unindex_many([(n, sig)])

    def unindex_many(self, items: Sequence[tuple[int, npt.NDArray[np.uint32]]]) -> int:
        """Take several articles (number, signature indexed) out of the band table; entries removed.

        One call per group (pipelined): each bucket is read and rewritten once for all the
        entries it loses. Not atomic with the caller's transaction: callers remove the article
        first; an entry left behind by a crash in between is skipped by readers
        (``Verifier.candidate_data`` needs the signature).
        """
        if not items:
            return 0
        bands = self.banding.band_values(np.stack([sig for _, sig in items]))
        return self.groups.run("u", [n4(n) for n, _ in items], bands)[1]

    def lookup(self, sig: npt.NDArray[np.uint32]) -> list[int]:
        """Indexed articles sharing a band value with ``sig`` (read only; POST /v1/check)."""
        found, _ = self.groups.run("l", [b"\0\0\0\0"], self.banding.band_values(sig[None, :]))
        return distinct_members(found[0])[:MAX_CANDIDATES]
