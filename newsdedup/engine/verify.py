"""Candidates become edges: the estimated Jaccard or containment that makes a duplicate."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from newsdedup import keys
from newsdedup.config import Config
from newsdedup.engine.jobs import Edge, Features
from newsdedup.index.minhash import containments, jaccard
from newsdedup.storage import blobs
from newsdedup.storage.records import decoded, unpack_sig
from newsdedup.storage.scripts import Scripts
from newsdedup.text.story import titles_differ

MIN_CONTAINMENT_SHINGLES = 20  # containment of a tiny text in a big one says nothing


class Verifier:
    """Checks LSH candidates against the thresholds, with their stored signatures and sizes."""

    def __init__(self, config: Config, scripts: Scripts) -> None:
        self.cfg = config
        self.scripts = scripts

    def verify(self, f: Features, cands: list[int], data: dict[int, tuple[npt.NDArray[np.uint32], int]]
               ) -> list[Edge]:
        """Candidates whose estimated Jaccard or containment makes them duplicates."""
        ok = [m for m in cands if m in data]
        if not ok or f.sig is None:
            return []
        sigs = np.stack([data[m][0] for m in ok])
        sizes = np.array([data[m][1] for m in ok], dtype=np.int64)
        j = jaccard(f.sig, sigs)
        a_in_b, b_in_a = containments(j, f.size, sizes)
        small = np.minimum(sizes, f.size) >= MIN_CONTAINMENT_SHINGLES
        cont = np.where(small, np.maximum(a_in_b, b_in_a), 0.0)
        hit = (j >= self.cfg.sim_threshold) | (cont >= self.cfg.containment_threshold)
        at = np.flatnonzero(hit)
        return [Edge(n=ok[i], similarity=s, containment=c)
                for i, s, c in zip(at.tolist(), np.round(j[at], 4).tolist(), np.round(cont[at], 4).tolist())]

    def candidate_data(self, ns: Sequence[int]) -> dict[int, tuple[npt.NDArray[np.uint32], int]]:
        """Signature (from the blob) and size of each candidate that has both."""
        rows = self.scripts.hmget_many([keys.article(m) for m in ns], ("sig", "size"))
        recs = [{b"sig": sig_b} if sig_b is not None else {} for sig_b, _ in rows]
        out = {}
        for m, (_, size_b), got in zip(ns, rows, blobs.read(self.scripts.client, ns, ("sig",), recs)):
            sig_b = got.get(b"sig")
            sig = unpack_sig(sig_b, self.cfg.num_perm) if sig_b else None
            if sig is not None and size_b is not None:
                out[m] = (sig, int(size_b))
        return out

    def edge_heads(self, edges: Iterable[Edge]) -> dict[int, tuple[str, bool]]:
        """(title, thin body) of the articles these edges point at: one batched read for a whole batch."""
        ns = sorted({e.n for e in edges})
        rows = self.scripts.hmget_many([keys.article(m) for m in ns], ("title", "thin"))
        return {m: (decoded(t) or "", thin == b"1") for m, (t, thin) in zip(ns, rows)}

    @staticmethod
    def title_gate(f: Features, title: str, edges: list[Edge], heads: dict[int, tuple[str, bool]]
                   ) -> tuple[list[Edge], bool]:
        """Edges that stand once thin bodies are judged by title, and whether ``f`` may teach as a copy.

        ``heads`` has (title, thin) of every edge's article (:meth:`edge_heads`). An edge where either
        body is thin stands only if the titles do not clearly differ. A copy whose title clearly
        differs from every article it matched is another story dressed in the same template: it may
        teach its source's boilerplate (see ``linking.py``).
        """
        if not edges:
            return edges, False
        kept, differ = [], 0
        for e in edges:
            other_title, other_thin = heads.get(e.n, ("", False))
            apart = titles_differ(title, other_title)
            differ += apart
            if apart and (f.thin or other_thin):
                continue
            kept.append(e)
        return kept, bool(kept) and differ == len(edges)
