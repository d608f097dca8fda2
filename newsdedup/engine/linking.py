"""Edges become cluster placements: one compare-and-set transaction per batch.

The policy is pure (:mod:`newsdedup.clusters.policy`); this module reads the state it
needs, turns the plan into checks and writes, and retries when another worker changed
something meanwhile. The same transaction marks the articles done, counts what their
sources teach about boilerplate, and acknowledges their queue entries: exactly once.
"""

from __future__ import annotations

import time
from typing import Any

from newsdedup import keys
from newsdedup.clusters.policy import Placement, plan
from newsdedup.config import Config
from newsdedup.engine.jobs import Job
from newsdedup.errors import ProcessingError
from newsdedup.explain import headline_member
from newsdedup.observe import events, metrics
from newsdedup.storage.records import decoded, now_ms
from newsdedup.storage.scripts import Scripts
from newsdedup.storage.txn import Txn

TXN_RETRIES = 50


def detach(j: Job) -> bool:
    """An updated article starts over in a new cluster of its own."""
    return bool(j.record.get(b"iver")) and int(j.record[b"iver"]) != j.ver


class Linker:
    """Places processed articles in clusters."""

    def __init__(self, client: Any, config: Config, scripts: Scripts) -> None:
        self.r = client
        self.cfg = config
        self.scripts = scripts

    def link(self, jobs: list[Job]) -> None:
        """Place every processed article in a cluster, mark it done and ack it, atomically."""
        for attempt in range(TXN_RETRIES):
            jobs = [j for j in jobs if j.skip is None and j.error is None]
            if not jobs:
                return
            if self.scripts.run(self._link_txn(jobs, assume_alone=attempt == 0)):
                return
            # something changed under us: drop entries whose article moved on, back off, re-read
            pipe = self.r.pipeline(transaction=False)
            for j in jobs:
                pipe.hmget(keys.article(j.n), "ver", "status")
            for j, (ver, status) in zip(jobs, pipe.execute()):
                if ver is None or int(ver) != j.ver or status != b"queued":
                    j.skip = "changed while processing"
            time.sleep(min(0.05, 0.001 * (2 ** min(attempt, 6))))
        raise ProcessingError("could not place articles in clusters: too much concurrent change")

    def _snapshot(self, ns: set[int]) -> tuple[dict[int, str], dict[str, set[int]], dict[str, bytes | None]]:
        order = sorted(ns)
        read = self.scripts.hmget_many([keys.article(m) for m in order], ("cluster",))
        cof = {m: c.decode() for m, (c,) in zip(order, read) if c}
        cids = sorted(set(cof.values()))
        state = self.scripts.cluster_state([(keys.cluster(c), keys.cluster_members(c)) for c in cids])
        members: dict[str, set[int]] = {}
        versions: dict[str, bytes | None] = {}
        for c, (v, mem) in zip(cids, state):
            versions[c] = v
            if v is None:  # an implicit singleton: the founding article alone
                members[c] = {m for m, cc in cof.items() if cc == c}
            else:
                members[c] = {int(x) for x in mem}
        return cof, members, versions

    def _link_txn(self, jobs: list[Job], assume_alone: bool = False) -> Txn:
        involved = {j.n for j in jobs} | {e.n for j in jobs for e in j.edges}
        # Most articles are new and alone in the cluster named after them. Their state need not be
        # read: the transaction checks it (article's cluster field, no cluster hash) and, if another
        # worker changed it meanwhile, fails; the retry then reads everything.
        alone = {j.n for j in jobs if assume_alone and not detach(j)
                 and (decoded(j.record.get(b"cluster")) or keys.cluster_id(j.n)) == keys.cluster_id(j.n)}
        cof, members, versions = self._snapshot(involved - alone)
        for n in alone:
            c = keys.cluster_id(n)
            if cof.setdefault(n, c) == c:
                if c not in versions:
                    members[c], versions[c] = {n}, None
                elif versions[c] is None:  # read as implicit through another article: n is in it too
                    members[c].add(n)
        # members of involved clusters may move too: their current cluster must be checked
        placements = []
        fresh: list[int] = []
        for j in jobs:
            starts_over = detach(j)
            if starts_over:
                fresh.append(j.n)
            placements.append(Placement(n=j.n, edges={e.n: e.score for e in j.edges if e.n in cof},
                                        detach=starts_over))
        if fresh:
            top = self.r.incrby(keys.SEQ, len(fresh))
            ids = {n: keys.cluster_id(top - i) for i, n in enumerate(fresh)}
            for p in placements:
                if p.detach:
                    p.fresh_id = ids[p.n]
        pl = plan(cof, members, placements, self.cfg.merge_ratio)
        now = now_ms()
        txn = Txn()
        for c, v in versions.items():
            if v is None:
                txn.expect_exists(keys.cluster(c), False)
            else:
                txn.expect_field(keys.cluster(c), "v", v)
        job_ns = {j.n: j for j in jobs}
        for m in sorted(involved):
            expected: dict[str, Any] = {"cluster": cof.get(m)}
            if m in job_ns:
                expected.update(ver=job_ns[m].ver, status="queued")
            txn.expect_fields(keys.article(m), expected)
        for c, mem in pl.members.items():
            old = members.get(c, set())
            explicit = versions.get(c) is not None
            if not mem:
                if explicit:
                    txn.delete(keys.cluster(c), keys.cluster_members(c))
                txn.zrem(keys.CLUSTERS, c).zrem(keys.SINGLES, c).zrem(keys.CLUSTER_SIZES, c)
                continue
            if len(mem) == 1 and keys.cluster_id(next(iter(mem))) == c and not explicit:
                continue  # an implicit singleton needs no keys of its own
            if explicit:
                txn.sadd(keys.cluster_members(c), sorted(mem - old))
                txn.srem(keys.cluster_members(c), sorted(old - mem))
            else:  # an implicit singleton (or a new id) becomes explicit: write every member
                txn.hset(keys.cluster(c), {"created_at": now})
                txn.sadd(keys.cluster_members(c), sorted(mem))
            txn.hset(keys.cluster(c), {"size": len(mem), "canonical": min(mem), "updated_at": now})
            txn.hincrby(keys.cluster(c), "v", 1)
            if len(mem) >= 2:
                txn.zadd(keys.CLUSTER_SIZES, len(mem), c)
            else:
                txn.zrem(keys.CLUSTER_SIZES, c)
        multi: list[str] = []
        single: list[str] = []
        for c in sorted({pl.cluster_of[j.n] for j in jobs} | {c for c, m in pl.members.items() if m}):
            (multi if len(pl.members.get(c, members.get(c, set()))) >= 2 else single).append(c)
        txn.zadd(keys.CLUSTERS, now, *multi).zadd(keys.SINGLES, now, *single)
        txn.zrem(keys.SINGLES, *[c for c in multi if c in members])  # new ids were in neither set
        txn.zrem(keys.CLUSTERS, *[c for c in single if versions.get(c) is not None])  # implicit: never 2+
        for old_c, new_c in pl.merged_into.items():
            if versions.get(old_c) is not None:
                txn.hset(keys.CALIAS, {old_c: new_c})
        for m in pl.changed:
            txn.hset(keys.article(m), {"cluster": pl.cluster_of[m]})
        # Boilerplate is learned from stories, not copies: only an article that starts a cluster of
        # its own counts its line shapes, so a story reposted many times on one site never turns
        # its own body into "chrome"; or a "copy" whose title clearly differs from every article it
        # matched (another story that only the site's template made look alike, text/story.py).
        # A page without story text teaches nothing. Counting here makes it exactly once.
        learned: dict[str, dict[bytes, int]] = {}
        for j in jobs:
            final = pl.cluster_of[j.n]
            lone = len(pl.members.get(final, members.get(final, set()))) == 1
            if j.features is not None and j.features.content_reason is None and (lone or j.teaches):
                counts = learned.setdefault(j.source, {keys.BP_DOCS_FIELD: 0})
                counts[keys.BP_DOCS_FIELD] += 1
                for sh in j.features.page.shapes:
                    counts[sh] = counts.get(sh, 0) + 1
                # what removing the article takes back: boilerplate is learned from the stories kept
                txn.hset(keys.article(j.n), {"bpsh": b"".join(j.features.page.shapes)})
        for src, counts in sorted(learned.items()):
            txn.hincrn(keys.boilerplate(src), counts)
        # pages without story text, by reason (an update may turn a failed scrape into a story, or back)
        none_by: dict[str, list[int]] = {r: [] for r in keys.CONTENT_REASONS}
        for j in jobs:
            if j.features is not None and j.features.content_reason is not None:
                none_by[j.features.content_reason].append(j.n)
        for r, ns in none_by.items():
            txn.sadd(keys.content_none(r), ns).srem(keys.content_none(r), [j.n for j in jobs if j.n not in ns])
        for j in jobs:
            head = headline_member(decoded(j.record.get(b"title")) or "", j.n)
            if j.record.get(b"head"):  # a new version: its earlier headline goes
                txn.cut(keys.headlines(j.n), j.record[b"head"], keys.HEADLINE_SEP)
            txn.append(keys.headlines(j.n), head)
            txn.hset(keys.article(j.n), {"status": "done", "processed_at": now, "error": "", "head": head})
        txn.incr_expiring(keys.done_bucket(now // keys.DONE_BUCKET_MS), len(jobs), keys.DONE_TTL_MS)
        txn.delete(*(keys.payload(j.n) for j in jobs))
        txn.xack(keys.QUEUE, keys.GROUP, *(j.entry_id for j in jobs))
        txn.hincrby(keys.META, "queued", -len(jobs))
        with_dups, merges = events.link_events(txn, self.cfg.events_maxlen, jobs, pl.cluster_of, pl.members, members,
                                               pl.merged_into, self._ids_of)
        metrics.count(txn, {b"processed:done": len(jobs), b"duplicates": with_dups, b"merges": merges,
                            **metrics.latency_fields((now - int(j.entry_id.split(b"-")[0])) / 1000 for j in jobs)})
        return txn

    def _ids_of(self, ns: list[int]) -> dict[int, str]:
        """External ids of article numbers (those that still exist): for the events."""
        rows = self.scripts.hmget_many([keys.article(m) for m in ns], ("id",))
        return {m: i.decode() for m, (i,) in zip(ns, rows) if i is not None}
