"""Addressing the band groups' tables from the client, so that every bucket a script touches is declared.

A bucket's address depends on its group's state (level, next), which moves as buckets
split. The client keeps the last state each group returned, computes the address of
every value it sends and the buckets the next splits will need, and names them all in
KEYS (deduplicated; one slot: the group's tag). The script recomputes each address from
the current state and defers what the client addressed wrongly (its bucket split since);
those are re-sent with the state the script returned (docs/cluster.md 4.1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from newsdedup import keys
from newsdedup.errors import StorageUnavailable
from newsdedup.storage.scripts import Scripts

ATTEMPTS = 8  # calls per group before giving up (each defers only what split in between)
CHUNK = 256  # articles per script call (KEYS stay a few thousand at most)
EXTRA_STEPS = 1  # splits declared beyond what this client expects (others may have inserted)
_DESC = np.dtype([("p", "u1"), ("a", "<u4")])  # a declared bucket: band position, address
_ADDR_BITS = 33  # (band position << 33) | address: one integer per bucket, for deduplication
_ADDR_MASK = (1 << _ADDR_BITS) - 1


class BandGroups:
    """The last state this client saw of each group's table, and the calls built from it."""

    def __init__(self, scripts: Scripts, bands: int, initial_level: int, load: int, max_members: int) -> None:
        self.scripts = scripts
        self.initial, self.load, self.max_members = initial_level, load, max_members
        # the bands of each group, by position in the group
        self.bands_of = [list(range(g, bands, keys.BAND_GROUPS)) for g in range(keys.BAND_GROUPS)]
        self.state: list[tuple[int, int, int]] | None = None  # (level, next, entries) per group
        self.resent = 0  # entries deferred by a script and sent again (their bucket had split)

    def refresh(self) -> list[tuple[int, int, int]]:
        """Read every group's state (one round trip): the cache a new client starts from."""
        pipe = self.scripts.client.pipeline(transaction=False)
        for g in range(keys.BAND_GROUPS):
            pipe.hmget(keys.band_state(g), "level", "next", "entries")
        self.state = [(int(lv if lv is not None else self.initial), int(nx or 0), int(en or 0))
                      for lv, nx, en in pipe.execute()]
        return self.state

    def run(self, mode: str, n4s: Sequence[bytes], values: npt.NDArray[np.uint32],
            only: Sequence[Sequence[int]] | None = None) -> tuple[list[bytes], int]:
        """Apply ``mode`` ("i" insert and read, "m" insert, "l" lookup, "u" remove) to articles.

        ``values``: band values, one row per article (all bands); ``only[i]``: the bands of article
        i to use (default all). Returns, per article, the concatenated 4-byte members found, and how
        many entries were removed.
        """
        found: list[list[bytes]] = [[] for _ in n4s]
        removed = 0
        for start in range(0, len(n4s), CHUNK):
            part = range(start, min(len(n4s), start + CHUNK))
            removed += self._run_chunk(mode, n4s, values, only, part, found)
        return [b"".join(f) for f in found], removed

    def _run_chunk(self, mode: str, n4s: Sequence[bytes], values: npt.NDArray[np.uint32],
                   only: Sequence[Sequence[int]] | None, part: range, found: list[list[bytes]]) -> int:
        state = self.state or self.refresh()
        # pending[g]: article -> band positions in group g still to do
        pending: list[dict[int, list[int]]] = [{} for _ in range(keys.BAND_GROUPS)]
        for i in part:
            for band in (only[i] if only is not None else range(values.shape[1])):
                g = keys.band_group(band)
                pending[g].setdefault(i, []).append(band // keys.BAND_GROUPS)
        removed = 0
        for _ in range(ATTEMPTS):
            groups = [g for g in range(keys.BAND_GROUPS) if pending[g]]
            if not groups:
                return removed
            calls = [self._call(mode, g, state[g], pending[g], n4s, values) for g in groups]
            for g, (order, _), res in zip(groups, calls, self.scripts.band_groups([c[1] for c in calls])):
                got, deferred, level, nxt, entries, gone = res
                state[g] = (int(level), int(nxt), int(entries))
                removed += int(gone)
                pending[g] = {}
                for i, f, d in zip(order, got, deferred):
                    if f:
                        found[i].append(f)
                    if d:
                        pending[g][i] = list(d)
                        self.resent += len(d)
        if any(pending):
            raise StorageUnavailable("the band table kept splitting under this request; retry", retry_after=1)
        return removed

    def _call(self, mode: str, g: int, st: tuple[int, int, int], todo: dict[int, list[int]],
              n4s: Sequence[bytes], values: npt.NDArray[np.uint32]) -> tuple[list[int], tuple[list[str], list[Any]]]:
        """The articles of one group call and its (KEYS, ARGV), addressed from state ``st`` (vectorised)."""
        level, nxt, entries = st
        bands = self.bands_of[g]
        order = list(todo)
        counts = np.fromiter((len(todo[i]) for i in order), dtype=np.int64, count=len(order))
        pos = np.fromiter(chain.from_iterable(todo[i] for i in order), dtype=np.int64, count=int(counts.sum()))
        vs = values[np.repeat(np.asarray(order, dtype=np.int64), counts),
                    np.asarray(bands, dtype=np.int64)[pos]].astype(np.int64)
        m = 1 << level
        addrs = vs % m
        low = addrs < nxt
        if low.any():
            addrs[low] = vs[low] % (2 * m)
        codes, inv = np.unique((pos << _ADDR_BITS) | addrs, return_inverse=True)
        declared = codes.tolist()
        if mode in ("i", "m"):
            seen = set(declared)
            for p_nxt, p_m in self._splits(level, nxt, entries + len(vs), len(bands), len(vs)):
                for p in range(len(bands)):
                    for a in (p_nxt, p_nxt + p_m):
                        code = (p << _ADDR_BITS) | a
                        if code not in seen:
                            seen.add(code)
                            declared.append(code)
        desc = np.empty(len(declared), dtype=_DESC)
        desc["p"] = [c >> _ADDR_BITS for c in declared]
        desc["a"] = [c & _ADDR_MASK for c in declared]
        names = [keys.band_state(g)]
        names.extend(keys.bucket(g, bands[c >> _ADDR_BITS], c & _ADDR_MASK) for c in declared)
        args: list[Any] = [mode, self.max_members, self.initial, self.load, len(bands), desc.tobytes()]
        vbytes = vs.astype("<u4").tobytes()
        kbytes = (inv.reshape(-1) + 2).astype("<u2").tobytes()
        at = 0
        for i, c in zip(order, counts.tolist()):
            args.extend((n4s[i], vbytes[4 * at:4 * (at + c)], kbytes[2 * at:2 * (at + c)]))
            at += c
        return order, (names, args)

    def _splits(self, level: int, nxt: int, entries: int, nbands: int, added: int) -> list[tuple[int, int]]:
        """The splits (bucket ``next``, ``2**level``) a call adding ``added`` entries should find declared."""
        most = 8 + math.ceil(2 * added / (self.load * nbands))
        out: list[tuple[int, int]] = []
        extra = 0
        while len(out) < most and level < 31 and extra < EXTRA_STEPS:
            if entries <= self.load * nbands * ((1 << level) + nxt):
                extra += 1  # not needed by this client's count: a few more in case others added
            out.append((nxt, 1 << level))
            nxt += 1
            if nxt == 1 << level:
                level, nxt = level + 1, 0
        return out
