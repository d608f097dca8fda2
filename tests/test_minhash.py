"""Signatures match datasketch's MinHash bit for bit; estimates and banding behave."""

from __future__ import annotations

import numpy as np
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from newsdedup.index.minhash import Banding, containments, jaccard, lean_minhash, shingle_keys, signatures


def _sets(rng: np.random.Generator, sizes: list[int]) -> list[np.ndarray]:
    return [np.unique(rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)) for n in sizes]


def test_batch_signatures_equal_datasketch_affine32() -> None:
    rng = np.random.default_rng(3)
    sets = _sets(rng, [1, 5, 300, 9000, 20000])
    sigs = signatures(sets, 128)
    for s, sig in zip(sets, sigs):
        m = MinHash(num_perm=128, seed=1, scheme="affine32", hashfunc=lambda v: v)
        m.update_batch([int(k) for k in shingle_keys(s)])
        assert np.array_equal(m.hashvalues, sig)


def test_lean_minhash_is_datasketch_compatible_on_different_sets() -> None:
    """Our signature of A, as a LeanMinHash, against datasketch's own MinHash of B (1000 of 3000 keys
    shared: Jaccard 1/3): datasketch accepts it (same seed, scheme, size) and estimates what we estimate."""
    rng = np.random.default_rng(4)
    keys = rng.permutation(np.unique(rng.integers(0, 2**63, 5000, dtype=np.int64).astype(np.uint64)))[:4000]
    a, b = np.sort(keys[:2000]), np.sort(keys[1000:])
    sig_a, sig_b = signatures([a, b], 256)
    theirs = MinHash(num_perm=256, seed=1, scheme="affine32", hashfunc=lambda v: v)
    theirs.update_batch([int(k) for k in shingle_keys(b)])
    estimate = lean_minhash(sig_a).jaccard(theirs)
    assert estimate == jaccard(sig_a, sig_b)[0] == theirs.jaccard(lean_minhash(sig_a))
    assert abs(estimate - 1 / 3) < 0.08, estimate


def test_empty_set_gets_empty_signature() -> None:
    sig = signatures([np.zeros(0, dtype=np.uint64)], 64)
    assert (sig == 0xFFFFFFFF).all()


def test_jaccard_estimate_is_close() -> None:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 2**63, 2000, dtype=np.int64).astype(np.uint64)
    other = np.concatenate([base[:1000], rng.integers(0, 2**63, 1000, dtype=np.int64).astype(np.uint64)])
    true = 1000 / 3000
    sig = signatures([np.unique(base), np.unique(other)], 256)
    assert abs(jaccard(sig[0], sig[1:])[0] - true) < 0.08


def test_containment_from_jaccard_and_sizes() -> None:
    # A (100) inside B (400): J = 100/400 = 0.25 -> containment of A in B = 1, of B in A = 0.25
    a_in_b, b_in_a = containments(np.array([0.25]), 100, np.array([400]))
    assert abs(a_in_b[0] - 1.0) < 1e-9 and abs(b_in_a[0] - 0.25) < 1e-9


def test_banding_uses_datasketch_parameters_and_separates_bands() -> None:
    b = Banding.for_threshold(0.3, 128)
    assert (b.bands, b.rows) == _optimal_param(0.3, 128, 0.5, 0.5)
    sig = np.zeros((1, 128), dtype=np.uint32)
    h = b.band_hashes(sig)
    assert len(set(h[0].tolist())) == b.bands  # identical band values still land in different places
    values = b.band_values(sig)
    assert values.shape == (1, b.bands) and values.dtype == np.dtype("<u4")
    assert (values[0].astype(np.uint64) == (h[0] & np.uint64(0xFFFFFFFF))).all()
    assert len(set(values[0].tolist())) == b.bands
