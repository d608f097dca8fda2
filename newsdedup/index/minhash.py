"""MinHash signatures for whole batches, LSH banding, and similarity estimates.

Signatures are datasketch's ``affine32`` MinHash (its permutations, seed 1,
so ``LeanMinHash`` objects can be built from ours) computed with numpy over
all shingles of a batch at once: one 32-bit multiply-add per shingle and
permutation, then a segmented minimum. Banding uses datasketch's own choice of (bands, rows) for
the LSH threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from datasketch import LeanMinHash, MinHash
from datasketch.lsh import _optimal_param

from newsdedup.text.tokens import _mix64

U64 = np.uint64
EMPTY = np.uint32(0xFFFFFFFF)
_CHUNK = 1 << 13  # shingles per block: bounds the work buffer to num_perm * 8192 * 4 bytes


@lru_cache(maxsize=4)
def permutations(num_perm: int, seed: int = 1) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """datasketch's own affine32 permutations (odd a, any b), so signatures match its MinHash."""
    perms = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return perms[0].astype(np.uint32), perms[1].astype(np.uint32)


def shingle_keys(hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint32]:
    """The 32-bit values MinHash sees for 64-bit shingle hashes (what datasketch's hashfunc returns)."""
    return ((hashes >> U64(32)) ^ (hashes & U64(0xFFFFFFFF))).astype(np.uint32)


def _fmix32(h: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        return h ^ (h >> np.uint32(16))


def signatures(shingle_sets: list[npt.NDArray[np.uint64]], num_perm: int) -> npt.NDArray[np.uint32]:
    """MinHash signatures (len(sets) x num_perm, uint32); an empty set gets all 0xFFFFFFFF.

    Bit for bit what datasketch's ``MinHash(scheme="affine32")`` gives when fed
    ``shingle_keys`` with an identity hash function, but for a whole batch.
    """
    out = np.full((len(shingle_sets), num_perm), EMPTY, dtype=np.uint32)
    if not shingle_sets:
        return out
    a, b = permutations(num_perm)
    lengths = np.fromiter((len(s) for s in shingle_sets), dtype=np.int64, count=len(shingle_sets))
    nonempty = np.flatnonzero(lengths)
    if not len(nonempty):
        return out
    keys = _fmix32(shingle_keys(np.concatenate([shingle_sets[i] for i in nonempty])))
    seg_len = lengths[nonempty]
    seg_start = np.concatenate(([0], np.cumsum(seg_len)[:-1]))
    # Permutations x shingles, in blocks of whole documents (~_CHUNK shingles) reusing one
    # buffer: the segmented minimum along the contiguous axis is what makes this fast.
    buf = np.empty((num_perm, max(min(_CHUNK, int(seg_len.sum())), int(seg_len.max()))), dtype=np.uint32)
    doc = 0
    while doc < len(nonempty):
        first = doc
        total = 0
        while doc < len(nonempty) and (total == 0 or total + seg_len[doc] <= _CHUNK):
            total += int(seg_len[doc])
            doc += 1
        lo = int(seg_start[first])
        view = buf[:, :total]
        with np.errstate(over="ignore"):
            np.multiply(a[:, None], keys[None, lo:lo + total], out=view)
            view += b[:, None]
        out[nonempty[first:doc]] = np.minimum.reduceat(view, seg_start[first:doc] - lo, axis=1).T
    return out


def lean_minhash(sig: npt.NDArray[np.uint32]) -> LeanMinHash:
    """A datasketch LeanMinHash view of one signature (for users of datasketch's API)."""
    return LeanMinHash(seed=1, hashvalues=sig, scheme="affine32")


def jaccard(sig: npt.NDArray[np.uint32], others: npt.NDArray[np.uint32]) -> npt.NDArray[np.float64]:
    """Estimated Jaccard of one signature against each row of ``others``."""
    if others.ndim == 1:
        others = others[None, :]
    return np.asarray((others == sig[None, :]).mean(axis=1), dtype=np.float64)


def containments(j: npt.NDArray[np.float64], size_a: int, sizes_b: npt.NDArray[np.int64]
                 ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Containment of A in each B and of each B in A, derived from Jaccard and set sizes.

    |A n B| = J (|A| + |B|) / (1 + J); containment of A in B = |A n B| / |A|.
    """
    sizes_b = sizes_b.astype(np.float64)
    inter = j * (size_a + sizes_b) / (1.0 + j)
    a_in_b = np.minimum(1.0, inter / max(size_a, 1))
    b_in_a = np.minimum(1.0, inter / np.maximum(sizes_b, 1.0))
    return a_in_b, b_in_a


@dataclass(frozen=True)
class Banding:
    """How signatures are cut into LSH bands, and the band values the index stores."""

    bands: int
    rows: int

    @classmethod
    def for_threshold(cls, threshold: float, num_perm: int) -> Banding:
        bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
        return cls(bands=bands, rows=rows)

    def band_hashes(self, sigs: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
        """64-bit hash of each band of each signature (n x bands)."""
        n = sigs.shape[0]
        used = sigs[:, : self.bands * self.rows].astype(U64).reshape(n, self.bands, self.rows)
        with np.errstate(over="ignore"):
            acc = np.zeros((n, self.bands), dtype=U64)
            for r in range(self.rows):
                acc = _mix64(acc ^ used[:, :, r])
            # the band index is mixed in so equal values in different bands differ
            acc = _mix64(acc + np.arange(self.bands, dtype=U64)[None, :] * U64(0x9E3779B97F4A7C15))
        return acc

    def band_values(self, sigs: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
        """The 32-bit value of each band (n x bands), little-endian: what the band table stores.

        The table both addresses buckets by a value's low bits and compares whole values.
        """
        return (self.band_hashes(sigs) & U64(0xFFFFFFFF)).astype("<u4")
